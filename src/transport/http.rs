//! HTTP through soup3: same-origin redirects only, a size cap enforced while the
//! body streams in, a floor under the average rate, large bodies spilled to
//! disk, and the client's download limit (`RateLimiter`) applied as bytes arrive.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gio::prelude::*;
use soup::prelude::*;

use super::{next_read, Body, HttpClient, Spill, TransportError, MAX_REDIRECTS};

fn classify_send_error(error: &glib::Error) -> TransportError {
    TransportError::Unreachable(error.message().to_owned())
}

fn same_origin(a: &glib::Uri, b: &glib::Uri) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && a.port() == b.port()
}

pub(super) async fn http_get(
    client: &HttpClient,
    uri: &str,
    limit: u64,
    spill_dir: &Path,
    received: &AtomicU64,
) -> Result<Body, TransportError> {
    let started = Instant::now();
    let floor = client.rate_floor;
    let origin = glib::Uri::parse(uri, glib::UriFlags::NONE)
        .map_err(|e| TransportError::Io(e.to_string()))?;
    let mut target = origin.clone();
    for _ in 0..=MAX_REDIRECTS {
        let message = soup::Message::from_uri("GET", &target);
        message.set_flags(soup::MessageFlags::NO_REDIRECT);
        let wait = floor.time_left(started, 0).ok_or_else(|| floor.error())?;
        // Dropping the future on timeout cancels the request.
        let stream = glib::future_with_timeout(
            wait,
            client
                .session
                .send_future(&message, glib::Priority::DEFAULT),
        )
        .await
        .map_err(|_| floor.error())?
        .map_err(|e| classify_send_error(&e))?;
        let status = message.status_code();
        match status {
            200 => {
                let body = Received {
                    limit,
                    spill_dir,
                    started,
                    counter: received,
                };
                return read_body(&message, stream, client, body).await;
            }
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

/// Where a body goes and what bounds it.
struct Received<'a> {
    limit: u64,
    spill_dir: &'a Path,
    started: Instant,
    counter: &'a AtomicU64,
}

async fn read_body(
    message: &soup::Message,
    stream: gio::InputStream,
    client: &HttpClient,
    to: Received<'_>,
) -> Result<Body, TransportError> {
    let Received {
        limit,
        spill_dir,
        started,
        counter,
    } = to;
    let floor = client.rate_floor;
    // Time spent waiting for the download limit is not the source's slowness.
    let mut held_back = std::time::Duration::ZERO;
    let declared = message
        .response_headers()
        .map(|h| h.content_length())
        .unwrap_or(0);
    if declared as u64 > limit {
        return Err(TransportError::TooLarge(limit));
    }
    let mut body = Spill::new(spill_dir);
    loop {
        let wait = floor
            .time_left(started + held_back, body.total())
            .ok_or_else(|| floor.error())?;
        let chunk = glib::future_with_timeout(
            wait,
            // Never more than one byte past the cap is read.
            stream.read_bytes_future(next_read(limit, body.total()), glib::Priority::DEFAULT),
        )
        .await
        .map_err(|_| floor.error())?
        .map_err(|e| TransportError::Lost(e.message().to_owned()))?;
        if chunk.is_empty() {
            break;
        }
        body.push(&chunk, limit)?;
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(limiter) = &client.limiter {
            held_back += limiter.take(chunk.len() as u64).await;
        }
    }
    if declared > 0 && body.total() != declared as u64 {
        return Err(TransportError::Lost(format!(
            "got {} of {declared} bytes",
            body.total()
        )));
    }
    body.finish()
}
