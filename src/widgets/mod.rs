//! The GTK4/libadwaita front end. The engine knows nothing of it; it only consumes
//! the engine's API and events.
//!
//! - [`FerryApplication`]: options, settings, app actions; opens the window.
//! - [`FerryWindow`]: status area, source choice, sources list; its model is a
//!   [`FerryUpdater`](crate::objects::FerryUpdater).
//! - [`FerrySourceRow`]: one source's row, bound to a
//!   [`FerrySource`](crate::objects::FerrySource).
//! - [`FerryPreferencesWindow`], [`FerryUsbDialog`], [`FerryHistoryWindow`].
//!
//! The models and the words they show live in [`crate::objects`].

mod application;
mod history_window;
mod preferences;
mod source_row;
mod usb_dialog;
mod window;

pub use application::FerryApplication;
pub use history_window::FerryHistoryWindow;
pub use preferences::FerryPreferencesWindow;
pub use source_row::FerrySourceRow;
pub use usb_dialog::FerryUsbDialog;
pub use window::FerryWindow;
