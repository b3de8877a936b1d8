//! Ferry: updates from nearby.
//!
//! The engine (`repo`, `transport`, `trust`, `sources`, `fetch`, `share`) never imports GTK; the
//! GUI (`objects` and `widgets`, behind the `gui` feature) and `ferryctl` are two consumers of it.

pub mod cli;
/// Build-time settings (app id, version, install paths), generated from src/config.rs.in.
pub mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
pub mod demo;
pub mod fetch;
pub mod repo;
pub mod share;
pub mod signals;
pub mod sources;
pub mod system;
pub mod transport;
pub mod trust;

#[cfg(feature = "gui")]
pub mod objects;
#[cfg(feature = "gui")]
pub mod widgets;
