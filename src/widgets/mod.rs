//! The GTK4/libadwaita front end. The engine knows nothing of it; it only consumes
//! the engine's API and events.
//!
//! - [`FerryApplication`]: options, settings, app actions; opens the window.
//! - [`FerryWindow`]: status area, source choice, sources list.
//! - [`FerryUpdater`]: the window's model, driving discovery and the engine.
//! - [`FerrySource`] / [`FerrySourceRow`]: one source and its row.
//! - [`FerryPreferencesWindow`], [`FerryUsbDialog`].

mod application;
pub mod format;
mod preferences;
mod source_object;
mod source_row;
mod updater;
mod usb_dialog;
mod window;

pub use application::FerryApplication;
pub use preferences::FerryPreferencesWindow;
pub use source_object::FerrySource;
pub use source_row::FerrySourceRow;
pub use updater::{FerryUpdater, Launch, Status, AUTOMATIC};
pub use usb_dialog::FerryUsbDialog;
pub use window::FerryWindow;
