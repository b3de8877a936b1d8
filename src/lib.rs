//! Ferry: updates from nearby.
//!
//! The engine (`repo`, `trust`, `sources`, `fetch`, `share`) never imports GTK; the
//! GUI (`widgets`, behind the `gui` feature) and `ferryctl` are two consumers of it.

pub mod cli;
pub mod fetch;
pub mod repo;
pub mod sources;
pub mod share;
pub mod trust;

#[cfg(feature = "gui")]
pub mod widgets;
