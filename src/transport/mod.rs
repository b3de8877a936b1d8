//! Getting bytes from a source: `file://` (USB drives, sideload and local repos)
//! and HTTP through soup3. Summaries, signatures, config and objects all come
//! through here, so every source's bytes obey one set of rules:
//!
//! - a size cap enforced while the body streams in (never more than cap + one
//!   chunk is read);
//! - bodies larger than [`SPILL_SIZE`] go to a file as they arrive, and are handed
//!   out memory-mapped from that file, so memory does not grow with object size;
//! - HTTP: redirects only to the same origin, an inactivity timeout, and a floor
//!   under the average rate ([`RateFloor`]) so a trickling server cannot hold a
//!   request forever.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gio::prelude::*;
use glib::translate::from_glib_full;

mod file;
mod http;
mod rate;

pub use rate::RateLimiter;

/// Bodies up to this size stay in memory; larger ones are spilled to disk.
pub(crate) const SPILL_SIZE: usize = 1024 * 1024;
const READ_CHUNK: usize = 64 * 1024;
const MAX_REDIRECTS: usize = 3;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("not found")]
    NotFound,
    #[error("cannot connect: {0}")]
    Unreachable(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("HTTP status {0}")]
    Http(u32),
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("refused a redirect to {0}, another host")]
    Redirect(String),
    /// The average rate fell under the floor after the grace period.
    #[error("too slow: under {min_rate} bytes per second after {grace_secs} s")]
    TooSlow { min_rate: u64, grace_secs: u64 },
    /// A file source holds something that is not a file where one should be (a
    /// FIFO, device, socket, or a link out of the repository).
    #[error("refused: {0}")]
    Refused(String),
    /// A drive read that did not return in time.
    #[error("not answering: {0}")]
    NotAnswering(String),
    #[error("{0}")]
    Io(String),
}

impl TransportError {
    /// Whether the source as a whole is gone (rather than one request failing). A
    /// drive that stops answering, or that holds FIFOs, devices or links out of
    /// itself, is not asked again either.
    pub fn source_is_gone(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable(_)
                | TransportError::Lost(_)
                | TransportError::Refused(_)
                | TransportError::NotAnswering(_)
        )
    }
}

/// A body: small ones in memory, large ones in a file the caller owns (always in
/// the spill directory it named, never on the source itself).
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    File { path: PathBuf, len: u64 },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes: a spilled body is mapped from its file, which is then removed
    /// (the mapping keeps it readable), so large bodies live in the page cache,
    /// not in the process's memory.
    pub fn into_bytes(self) -> Result<glib::Bytes, TransportError> {
        match self {
            Body::Memory(bytes) => Ok(glib::Bytes::from_owned(bytes)),
            Body::File { path, len } => {
                let mapped = std::fs::File::open(&path).and_then(|file| map_file(&file, len));
                let _ = std::fs::remove_file(&path);
                mapped.map_err(|e| TransportError::Io(format!("{}: {e}", path.display())))
            }
        }
    }
}

/// A floor under a request's average rate: by `grace + n / min_rate` after it
/// started, a request must have received more than `n` bytes. A server that
/// trickles (a byte every few seconds) fails after the grace period; a fast one
/// is never checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateFloor {
    pub min_rate: u64,
    pub grace: Duration,
}

impl Default for RateFloor {
    fn default() -> Self {
        Self {
            min_rate: 4 * 1024,
            grace: Duration::from_secs(10),
        }
    }
}

impl RateFloor {
    /// How long the request started at `started` may wait for byte `received + 1`.
    pub fn time_left(&self, started: Instant, received: u64) -> Option<Duration> {
        let allowed = self.grace + Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        allowed
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
    }

    pub fn error(&self) -> TransportError {
        TransportError::TooSlow {
            min_rate: self.min_rate,
            grace_secs: self.grace.as_secs(),
        }
    }
}

/// Settings for HTTP sources.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Seconds to connect or to wait for more data before a request fails.
    pub timeout_secs: u32,
    /// Connections per host.
    pub max_conns_per_host: i32,
    pub rate_floor: RateFloor,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout_secs: std::env::var("FERRY_HTTP_TIMEOUT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30),
            max_conns_per_host: 16,
            rate_floor: RateFloor::default(),
        }
    }
}

/// The HTTP side of every transport: one soup session and its rules.
#[derive(Clone, Debug)]
pub struct HttpClient {
    session: soup::Session,
    rate_floor: RateFloor,
    /// The download limit its bodies are read under, if any.
    limiter: Option<RateLimiter>,
}

impl HttpClient {
    pub fn new(settings: &HttpSettings) -> Self {
        let session = soup::Session::builder()
            .timeout(settings.timeout_secs)
            .idle_timeout(60)
            .max_conns(256)
            .max_conns_per_host(settings.max_conns_per_host)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            session,
            rate_floor: settings.rate_floor,
            limiter: None,
        }
    }

    /// The same client (one session), its bodies read under `limiter`.
    pub fn limited(&self, limiter: RateLimiter) -> Self {
        Self {
            limiter: Some(limiter),
            ..self.clone()
        }
    }
}

/// Where a source's files are: a directory or an HTTP base URI.
#[derive(Clone, Debug)]
pub enum Transport {
    File(PathBuf),
    Http { client: HttpClient, base: String },
}

impl Transport {
    /// `file://…`, a plain path, or `http(s)://…`.
    pub fn for_uri(uri: &str, client: &HttpClient) -> Result<Self, TransportError> {
        if uri.starts_with("http://") || uri.starts_with("https://") {
            glib::Uri::parse(uri, glib::UriFlags::NONE)
                .map_err(|e| TransportError::Io(e.to_string()))?;
            return Ok(Transport::Http {
                client: client.clone(),
                base: uri.trim_end_matches('/').to_owned(),
            });
        }
        if uri.starts_with("file://") {
            let path = gio::File::for_uri(uri)
                .path()
                .ok_or_else(|| TransportError::Io(format!("{uri} is not a local path")))?;
            return Ok(Transport::File(path));
        }
        if uri.contains("://") {
            return Err(TransportError::Io(format!(
                "{uri}: only file, http and https are supported"
            )));
        }
        Ok(Transport::File(PathBuf::from(uri)))
    }

    pub fn is_file(&self) -> bool {
        matches!(self, Transport::File(_))
    }

    /// Whether a download limit is holding this source's requests back now (so
    /// their slowness says nothing about the source).
    pub fn is_throttled(&self) -> bool {
        match self {
            Transport::Http { client, .. } => client
                .limiter
                .as_ref()
                .is_some_and(RateLimiter::is_throttling),
            Transport::File(_) => false,
        }
    }

    /// The directory of a `file://` source.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Transport::File(path) => Some(path),
            Transport::Http { .. } => None,
        }
    }

    /// Fetches `relative` (e.g. `summary`, `objects/ab/….dirtree`); a body over
    /// `SPILL_SIZE` is spilled into `spill_dir` and mapped (see [`Body::into_bytes`]).
    pub async fn get_bytes(
        &self,
        relative: &str,
        limit: u64,
        spill_dir: &Path,
    ) -> Result<glib::Bytes, TransportError> {
        self.get(relative, limit, spill_dir).await?.into_bytes()
    }

    /// Fetches `relative`; a body over `SPILL_SIZE` is written to a new file in
    /// `spill_dir` as it arrives.
    pub async fn get(
        &self,
        relative: &str,
        limit: u64,
        spill_dir: &Path,
    ) -> Result<Body, TransportError> {
        self.get_counted(relative, limit, spill_dir, &Arc::default())
            .await
    }

    /// As [`Self::get`], adding the bytes received to `received` as they come (the
    /// engine watches it to tell a slow request from a large one).
    pub async fn get_counted(
        &self,
        relative: &str,
        limit: u64,
        spill_dir: &Path,
        received: &Arc<AtomicU64>,
    ) -> Result<Body, TransportError> {
        match self {
            Transport::File(root) => {
                let root = root.clone();
                let relative = relative.to_owned();
                let spill = spill_dir.to_path_buf();
                let shown = root.join(&relative);
                // Off the main context, with a deadline: a drive that hangs blocks
                // nothing else.
                crate::repo::beneath::off_thread(
                    crate::repo::beneath::drive_deadline(),
                    move || file::read_file(&root, &relative, limit, &spill),
                )
                .await
                .unwrap_or_else(|e| {
                    Err(TransportError::NotAnswering(format!(
                        "{}: {e}",
                        shown.display()
                    )))
                })
            }
            Transport::Http { client, base } => {
                let uri = format!("{base}/{relative}");
                http::http_get(client, &uri, limit, spill_dir, received).await
            }
        }
    }
}

/// Maps `file` read-only into a `glib::Bytes` (no copy onto the heap).
pub fn map_file(file: &File, len: u64) -> io::Result<glib::Bytes> {
    if len == 0 {
        return Ok(glib::Bytes::from_static(b""));
    }
    // SAFETY: plain GLib calls on a valid fd; ownership of the returned GBytes is
    // taken, and the mapping stays alive as long as the bytes do.
    unsafe {
        let mut error = std::ptr::null_mut();
        let mapped =
            glib::ffi::g_mapped_file_new_from_fd(file.as_raw_fd(), glib::ffi::GFALSE, &mut error);
        if mapped.is_null() {
            let error: glib::Error = from_glib_full(error);
            return Err(io::Error::other(error.message().to_owned()));
        }
        let bytes: glib::Bytes = from_glib_full(glib::ffi::g_mapped_file_get_bytes(mapped));
        glib::ffi::g_mapped_file_unref(mapped);
        Ok(bytes)
    }
}

/// Where a spilled body goes: a new file in `dir`.
pub(crate) fn spill_path(dir: &Path) -> PathBuf {
    dir.join(format!("download-{:016x}", rand::random::<u64>()))
}

/// Copies what `reader` gives into memory, or into a spill file once it passes
/// `SPILL_SIZE`; more than `limit` bytes is an error. `on_error` names the source.
pub(crate) fn read_capped(
    mut reader: impl std::io::Read,
    limit: u64,
    spill_dir: &Path,
    on_error: impl Fn(std::io::Error) -> TransportError,
) -> Result<Body, TransportError> {
    let mut sink = Spill::new(spill_dir);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let want = next_read(limit, sink.total());
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(on_error(e)),
        };
        sink.push(&chunk[..n], limit)?;
    }
    sink.finish()
}

/// How much to ask for next: a chunk, but never more than one byte past `limit`.
pub(crate) fn next_read(limit: u64, received: u64) -> usize {
    let up_to_cap_plus_one = limit.saturating_sub(received).saturating_add(1);
    READ_CHUNK.min(usize::try_from(up_to_cap_plus_one).unwrap_or(usize::MAX))
}

/// A body being received: memory first, a file in `dir` past `SPILL_SIZE`. A
/// spill file not finished is removed when this is dropped.
pub(crate) struct Spill<'a> {
    dir: &'a Path,
    memory: Vec<u8>,
    file: Option<(PathBuf, std::fs::File)>,
    total: u64,
}

impl<'a> Spill<'a> {
    pub(crate) fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            memory: Vec::new(),
            file: None,
            total: 0,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn push(&mut self, bytes: &[u8], limit: u64) -> Result<(), TransportError> {
        use std::io::Write;
        self.total += bytes.len() as u64;
        if self.total > limit {
            return Err(TransportError::TooLarge(limit));
        }
        let spill_error =
            |path: &Path, e: std::io::Error| TransportError::Io(format!("{}: {e}", path.display()));
        match &mut self.file {
            Some((path, file)) => file.write_all(bytes).map_err(|e| spill_error(path, e)),
            None if self.memory.len() + bytes.len() > SPILL_SIZE => {
                let path = spill_path(self.dir);
                let mut file = std::fs::File::create(&path).map_err(|e| spill_error(&path, e))?;
                let written = file
                    .write_all(&self.memory)
                    .and_then(|()| file.write_all(bytes));
                self.memory = Vec::new();
                self.file = Some((path.clone(), file));
                written.map_err(|e| spill_error(&path, e))
            }
            None => {
                self.memory.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    pub(crate) fn finish(mut self) -> Result<Body, TransportError> {
        Ok(match self.file.take() {
            Some((path, _)) => Body::File {
                path,
                len: self.total,
            },
            None => Body::Memory(std::mem::take(&mut self.memory)),
        })
    }
}

impl Drop for Spill<'_> {
    fn drop(&mut self) {
        if let Some((path, _)) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_one_byte_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let endless = std::io::repeat(0);
        let counted = std::cell::Cell::new(0u64);
        struct Counted<'a, R>(R, &'a std::cell::Cell<u64>);
        impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1.set(self.1.get() + n as u64);
                Ok(n)
            }
        }
        let limit = 3 * SPILL_SIZE as u64 + 17;
        let error = read_capped(Counted(endless, &counted), limit, dir.path(), |e| {
            TransportError::Io(e.to_string())
        })
        .unwrap_err();
        assert!(matches!(error, TransportError::TooLarge(l) if l == limit));
        assert_eq!(counted.get(), limit + 1);
        // The spill file of the refused body is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_body_at_the_cap_is_accepted_and_spilled() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![7u8; SPILL_SIZE + 5];
        let body = read_capped(&bytes[..], bytes.len() as u64, dir.path(), |e| {
            TransportError::Io(e.to_string())
        })
        .unwrap();
        assert!(matches!(body, Body::File { len, .. } if len == bytes.len() as u64));
        let mapped = body.into_bytes().unwrap();
        assert_eq!(&mapped[..], &bytes[..]);
        // Mapped, and already unlinked: nothing left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rate_floor_allows_grace_then_demands_the_rate() {
        let floor = RateFloor {
            min_rate: 1000,
            grace: Duration::from_secs(10),
        };
        let now = Instant::now();
        assert!(floor.time_left(now, 0).unwrap() > Duration::from_secs(9));
        let long_ago = now - Duration::from_secs(20);
        assert_eq!(floor.time_left(long_ago, 5_000), None);
        assert!(floor.time_left(long_ago, 20_000).unwrap() > Duration::from_secs(9));
    }
}
