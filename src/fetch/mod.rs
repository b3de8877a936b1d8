//! Pulling objects from sources into the local repository.

pub mod engine;
pub mod error;
pub mod local;
pub mod pull;
pub mod transport;

pub use error::FetchError;
pub use local::LocalSource;
