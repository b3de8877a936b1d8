//! Getting bytes from a source: `file://` (USB drives, sideload and local repos)
//! and HTTP through soup3. Both stream: a body larger than `SPILL_SIZE` goes to a
//! file as it arrives, so memory does not grow with object size.

use std::io::Write;
use std::path::{Path, PathBuf};

use gio::prelude::*;
use soup::prelude::*;

/// Bodies up to this size stay in memory; larger ones are spilled to disk.
const SPILL_SIZE: usize = 1024 * 1024;
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
    #[error("{0}")]
    Io(String),
}

impl TransportError {
    /// Whether the source as a whole is gone (rather than one request failing).
    pub fn source_is_gone(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable(_) | TransportError::Lost(_)
        )
    }
}

/// A body: small ones in memory, large ones in a file the caller owns.
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
}

/// Settings for HTTP sources.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Seconds to connect or to wait for more data before a request fails.
    pub timeout_secs: u32,
    /// Connections per host.
    pub max_conns_per_host: i32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            timeout_secs: std::env::var("FERRY_HTTP_TIMEOUT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30),
            max_conns_per_host: 16,
        }
    }
}

pub fn new_session(settings: &HttpSettings) -> soup::Session {
    soup::Session::builder()
        .timeout(settings.timeout_secs)
        .idle_timeout(60)
        .max_conns(256)
        .max_conns_per_host(settings.max_conns_per_host)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Where a source's files are: a directory or an HTTP base URI.
#[derive(Clone, Debug)]
pub enum Transport {
    File(PathBuf),
    Http {
        session: soup::Session,
        base: String,
    },
}

impl Transport {
    /// `file://…`, a plain path, or `http(s)://…`.
    pub fn for_uri(uri: &str, session: &soup::Session) -> Result<Self, TransportError> {
        if uri.starts_with("http://") || uri.starts_with("https://") {
            glib::Uri::parse(uri, glib::UriFlags::NONE)
                .map_err(|e| TransportError::Io(e.to_string()))?;
            return Ok(Transport::Http {
                session: session.clone(),
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

    /// The directory of a `file://` source.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Transport::File(path) => Some(path),
            Transport::Http { .. } => None,
        }
    }

    /// Fetches `relative` (e.g. `summary`, `objects/ab/….dirtree`) into memory.
    pub async fn get_bytes(&self, relative: &str, limit: u64) -> Result<Vec<u8>, TransportError> {
        match self.get(relative, limit, None).await? {
            Body::Memory(bytes) => Ok(bytes),
            Body::File { .. } => unreachable!("no spill directory given"),
        }
    }

    /// Fetches `relative`; a body over `SPILL_SIZE` is written to a new file in
    /// `spill_dir` (when given) as it arrives.
    pub async fn get(
        &self,
        relative: &str,
        limit: u64,
        spill_dir: Option<&Path>,
    ) -> Result<Body, TransportError> {
        match self {
            Transport::File(root) => {
                let path = root.join(relative);
                let spill = spill_dir.map(Path::to_path_buf);
                gio::spawn_blocking(move || read_file(&path, limit, spill.as_deref()))
                    .await
                    .unwrap_or_else(|_| Err(TransportError::Io("reader thread panicked".into())))
            }
            Transport::Http { session, base } => {
                http_get(session, &format!("{base}/{relative}"), limit, spill_dir).await
            }
        }
    }
}

fn read_file(path: &Path, limit: u64, spill_dir: Option<&Path>) -> Result<Body, TransportError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    if !meta.is_file() {
        return Err(TransportError::NotFound);
    }
    if meta.len() > limit {
        return Err(TransportError::TooLarge(limit));
    }
    match spill_dir {
        // A file source needs no copy: the caller reads it where it is.
        Some(_) if meta.len() as usize > SPILL_SIZE => Ok(Body::File {
            path: path.to_owned(),
            len: meta.len(),
        }),
        _ => std::fs::read(path)
            .map(Body::Memory)
            .map_err(|e| file_error(path, e)),
    }
}

fn file_error(path: &Path, e: std::io::Error) -> TransportError {
    match e.kind() {
        std::io::ErrorKind::NotFound => TransportError::NotFound,
        // A drive pulled out mid-read shows as I/O errors or a vanished mount.
        _ if !path.exists() => TransportError::Lost(e.to_string()),
        _ => TransportError::Io(format!("{}: {e}", path.display())),
    }
}

fn classify_send_error(error: &glib::Error) -> TransportError {
    TransportError::Unreachable(error.message().to_owned())
}

fn same_origin(a: &glib::Uri, b: &glib::Uri) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && a.port() == b.port()
}

async fn http_get(
    session: &soup::Session,
    uri: &str,
    limit: u64,
    spill_dir: Option<&Path>,
) -> Result<Body, TransportError> {
    let origin = glib::Uri::parse(uri, glib::UriFlags::NONE)
        .map_err(|e| TransportError::Io(e.to_string()))?;
    let mut target = origin.clone();
    for _ in 0..=MAX_REDIRECTS {
        let message = soup::Message::from_uri("GET", &target);
        message.set_flags(soup::MessageFlags::NO_REDIRECT);
        let stream = session
            .send_future(&message, glib::Priority::DEFAULT)
            .await
            .map_err(|e| classify_send_error(&e))?;
        let status = message.status_code();
        match status {
            200 => return read_body(&message, stream, limit, spill_dir).await,
            404 | 410 => return Err(TransportError::NotFound),
            301 | 302 | 303 | 307 | 308 => {
                let location = message
                    .response_headers()
                    .and_then(|h| h.one("Location"))
                    .ok_or(TransportError::Http(status))?;
                let next = target
                    .parse_relative(&location, glib::UriFlags::NONE)
                    .map_err(|e| TransportError::Io(e.to_string()))?;
                if !same_origin(&origin, &next) {
                    return Err(TransportError::Redirect(next.to_str().to_string()));
                }
                target = next;
            }
            _ => return Err(TransportError::Http(status)),
        }
    }
    Err(TransportError::Http(310))
}

async fn read_body(
    message: &soup::Message,
    stream: gio::InputStream,
    limit: u64,
    spill_dir: Option<&Path>,
) -> Result<Body, TransportError> {
    let declared = message
        .response_headers()
        .map(|h| h.content_length())
        .unwrap_or(0);
    if declared as u64 > limit {
        return Err(TransportError::TooLarge(limit));
    }
    let mut memory = Vec::new();
    let mut spill: Option<(PathBuf, std::fs::File)> = None;
    let mut total = 0u64;
    loop {
        let chunk = stream
            .read_bytes_future(READ_CHUNK, glib::Priority::DEFAULT)
            .await
            .map_err(|e| TransportError::Lost(e.message().to_owned()))?;
        if chunk.is_empty() {
            break;
        }
        total += chunk.len() as u64;
        if total > limit {
            return Err(TransportError::TooLarge(limit));
        }
        match (&mut spill, spill_dir) {
            (Some((path, file)), _) => file.write_all(&chunk).map_err(|e| spill_error(path, e))?,
            (None, Some(dir)) if memory.len() + chunk.len() > SPILL_SIZE => {
                let path = dir.join(format!("download-{:016x}", rand::random::<u64>()));
                let mut file = std::fs::File::create(&path).map_err(|e| spill_error(&path, e))?;
                file.write_all(&memory).map_err(|e| spill_error(&path, e))?;
                file.write_all(&chunk).map_err(|e| spill_error(&path, e))?;
                memory = Vec::new();
                spill = Some((path, file));
            }
            _ => memory.extend_from_slice(&chunk),
        }
    }
    if declared > 0 && total != declared as u64 {
        return Err(TransportError::Lost(format!(
            "got {total} of {declared} bytes"
        )));
    }
    Ok(match spill {
        Some((path, _)) => Body::File { path, len: total },
        None => Body::Memory(memory),
    })
}

fn spill_error(path: &Path, e: std::io::Error) -> TransportError {
    TransportError::Io(format!("{}: {e}", path.display()))
}
