//! Discovery: USB drives, nearby computers and the upstream, as one live list of
//! sources.
//!
//! - [`model`]: [`Source`], its kind and state, and [`SourceEvent`]s — the
//!   `ferryctl sources --json` contract.
//! - [`Discovery`]: runs on the GLib main context; watches drives
//!   (`gio::VolumeMonitor`) and sideload directories, browses DNS-SD
//!   (`_ostree_repo._tcp`), fetches the upstream's and static sources' summaries, and
//!   keeps the current list, emitting events on `async-channel`s.
//! - [`lan::txt`], [`lan::bloom`]: the libostree/eos-updater advertisement codec.

mod discovery;
pub mod drive_repo;
mod error;
mod http;
pub mod lan;
pub mod locality;
pub mod model;
pub mod mounts;
mod named;
pub mod own_repo;
pub mod summary;

pub use discovery::{
    normalize_source_uri, sort_sources, Discovery, DiscoveryOptions, DiscoverySwitches, LOG_DOMAIN,
};
pub use error::{SourcesError, SummaryError};
pub use http::{fetch_summary, summary_uri};
pub use lan::LanInterfaces;
pub use locality::Locality;
pub use model::{
    CollectionRef, OfferedRef, RejectReason, Rejection, Source, SourceEvent, SourceKind,
    SourceState, Target,
};
pub use named::read_named_source;
pub use own_repo::OwnRepo;
pub use summary::SummaryInfo;
