//! Pulling objects from sources into the local repository.

pub mod error;
pub mod local;
pub mod pull;

pub use error::FetchError;
pub use local::LocalSource;
