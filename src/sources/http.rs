//! Fetching a source's `summary` through the one transport every source's files
//! go through (same caps, timeouts and redirect rule as objects).

use gio::prelude::*;

use crate::transport::{HttpClient, Transport, TransportError};

use super::error::SummaryError;

/// No summary Ferry reads is larger than this.
pub const MAX_SUMMARY_SIZE: usize = 64 << 20;

/// `BASE/summary`.
pub fn summary_uri(base: &str) -> String {
    format!("{}/summary", base.trim_end_matches('/'))
}

/// No `summary.sig` Ferry reads is larger than this (a few signatures).
pub const MAX_SUMMARY_SIG_SIZE: usize = 1 << 20;

/// Fetches `BASE/summary`. Runs on the thread-default main context.
pub async fn fetch_summary(
    http: &HttpClient,
    base: &str,
    cancellable: &gio::Cancellable,
) -> Result<glib::Bytes, SummaryError> {
    fetch_file(http, base, "summary", MAX_SUMMARY_SIZE, cancellable).await
}

/// Fetches `BASE/summary.sig`; `None` when the source has none (404).
pub async fn fetch_summary_sig(
    http: &HttpClient,
    base: &str,
    cancellable: &gio::Cancellable,
) -> Result<Option<glib::Bytes>, SummaryError> {
    match fetch_file(http, base, "summary.sig", MAX_SUMMARY_SIG_SIZE, cancellable).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(SummaryError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn fetch_file(
    http: &HttpClient,
    base: &str,
    name: &str,
    cap: usize,
    cancellable: &gio::Cancellable,
) -> Result<glib::Bytes, SummaryError> {
    let transport = Transport::for_uri(base, http).map_err(|e| match e {
        TransportError::Io(reason) => SummaryError::InvalidUri(reason),
        other => SummaryError::InvalidUri(other.to_string()),
    })?;
    let result = transport
        .get_bytes(name, cap as u64, &std::env::temp_dir())
        .await;
    if cancellable.is_cancelled() {
        return Err(SummaryError::Io("cancelled".into()));
    }
    result.map(glib::Bytes::from_owned).map_err(|e| match e {
        TransportError::NotFound => SummaryError::NotFound,
        TransportError::Unreachable(reason)
        | TransportError::Lost(reason)
        | TransportError::NotAnswering(reason) => SummaryError::Unreachable(reason),
        TransportError::Http(status) => SummaryError::Http {
            status,
            reason: String::new(),
        },
        TransportError::TooLarge(limit) => {
            SummaryError::TooLarge(usize::try_from(limit).unwrap_or(usize::MAX))
        }
        other => SummaryError::Io(other.to_string()),
    })
}
