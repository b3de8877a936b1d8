//! Support for every integration test binary. Each suite's `main.rs` includes this
//! tree once:
//!
//! ```ignore
//! #[path = "../common/mod.rs"]
//! mod common;
//! ```
//!
//! and its modules `use crate::common::…`. No suite uses all of it.

#![allow(dead_code, unused_imports)]

pub mod cmd;
pub mod drive;
pub mod engine;
pub mod gpg;
pub mod lan;
pub mod repo;
pub mod share;
pub mod sources;
