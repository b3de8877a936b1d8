//! The GTK4/libadwaita front end. The engine knows nothing of it; it only consumes
//! the engine's API and events.

mod application;
mod window;

pub use application::FerryApplication;
pub use window::FerryWindow;
