//! The GUI's models: GObjects that are no widgets (as Snapshot keeps `objects/`
//! apart from `widgets/`), and the words they show. Widgets bind to their
//! properties; they know the engine, never GTK widgets.
//!
//! - [`FerryUpdater`]: the window's model, driving discovery and the engine.
//! - [`FerrySource`]: one source, an item of the sources list.
//! - [`FerryProgress`]: a transfer's progress, sampled for the widgets.
//! - [`format`]: sizes, rates, times and dates in words.

pub mod format;
pub mod progress;
mod source;
mod updater;

pub use progress::{FerryProgress, ProgressSample};
pub use source::FerrySource;
pub use updater::{text, FerryUpdater, Launch, Status, AUTOMATIC};
