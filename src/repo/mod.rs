//! The OSTree archive repository: object names and formats, the verified object
//! store, refs, configuration, summaries, fsck and checkout.

pub mod checksum;
pub mod error;

pub use checksum::{Checksum, ObjectName, ObjectType};
pub use error::{RepoError, Result};
pub mod filez;
pub mod objects;
pub mod store;
pub mod fsck;
pub mod checkout;
pub mod refs;
pub mod config;
pub mod summary;
pub mod summary_gen;
