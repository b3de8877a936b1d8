//! The OSTree archive repository: object names and formats, the verified object
//! store, refs, configuration, summaries, fsck and checkout.

pub mod checksum;
pub mod error;

pub use checksum::{Checksum, ObjectName, ObjectType};
pub use error::{RepoError, Result};
