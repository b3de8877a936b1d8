//! OSTree repositories (archive, bare, bare-user, bare-user-only): object names
//! and formats, the verified object store, refs, configuration, summaries, fsck
//! and checkout. How each mode stores file objects: [`modes`].

pub mod beneath;
pub mod checksum;
pub mod error;

pub use checksum::{Checksum, ObjectName, ObjectType};
pub use error::{RepoError, Result};
pub mod checkout;
pub mod closure;
pub mod commit;
pub mod config;
pub mod delta;
pub mod durable;
pub mod filez;
pub mod fsck;
pub mod modes;
pub mod objects;
pub mod refs;
pub mod store;
pub mod summary;
pub mod summary_gen;

/// The user's repository when none is named (`--repo`, `FERRY_REPO`):
/// `$XDG_DATA_HOME/ferry/repo`.
pub fn default_repo_path() -> std::path::PathBuf {
    glib::user_data_dir().join("ferry").join("repo")
}
