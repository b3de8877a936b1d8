//! Fetching a source's `summary`: over HTTP with soup3, or from a `file://` URI.

use gio::prelude::*;
use soup::prelude::*;

use super::error::FetchError;

/// No summary Ferry reads is larger than this.
pub const MAX_SUMMARY_SIZE: usize = 64 << 20;

/// `BASE/summary`.
pub fn summary_uri(base: &str) -> String {
    format!("{}/summary", base.trim_end_matches('/'))
}

/// Fetches `BASE/summary`. Runs on the thread-default main context.
pub async fn fetch_summary(
    session: &soup::Session,
    base: &str,
    cancellable: &gio::Cancellable,
) -> Result<glib::Bytes, FetchError> {
    let uri = summary_uri(base);
    let bytes = if uri.starts_with("file://") {
        fetch_file(&uri, cancellable).await?
    } else if uri.starts_with("http://") || uri.starts_with("https://") {
        fetch_http(session, &uri, cancellable).await?
    } else {
        return Err(FetchError::InvalidUri(format!(
            "{base}: only file, http and https are supported"
        )));
    };
    if bytes.len() > MAX_SUMMARY_SIZE {
        return Err(FetchError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

async fn fetch_file(uri: &str, cancellable: &gio::Cancellable) -> Result<glib::Bytes, FetchError> {
    let file = gio::File::for_uri(uri);
    let info = file
        .query_info_future(
            "standard::size",
            gio::FileQueryInfoFlags::NONE,
            glib::Priority::DEFAULT,
        )
        .await
        .map_err(file_error)?;
    if usize::try_from(info.size()).map_or(true, |s| s > MAX_SUMMARY_SIZE) {
        return Err(FetchError::TooLarge(
            usize::try_from(info.size()).unwrap_or(usize::MAX),
        ));
    }
    if cancellable.is_cancelled() {
        return Err(FetchError::Io("cancelled".into()));
    }
    let (data, _etag) = file.load_contents_future().await.map_err(file_error)?;
    Ok(glib::Bytes::from_owned(data))
}

fn file_error(e: glib::Error) -> FetchError {
    if e.matches(gio::IOErrorEnum::NotFound) || e.matches(gio::IOErrorEnum::NotDirectory) {
        FetchError::NotFound
    } else {
        FetchError::Io(e.to_string())
    }
}

async fn fetch_http(
    session: &soup::Session,
    uri: &str,
    cancellable: &gio::Cancellable,
) -> Result<glib::Bytes, FetchError> {
    let message = soup::Message::new("GET", uri)
        .map_err(|e| FetchError::InvalidUri(format!("{uri}: {e}")))?;
    let result = session
        .send_and_read_future(&message, glib::Priority::DEFAULT)
        .await;
    if cancellable.is_cancelled() {
        return Err(FetchError::Io("cancelled".into()));
    }
    let body = result.map_err(|e| FetchError::Unreachable(e.message().to_owned()))?;
    match message.status_code() {
        200 => Ok(body),
        404 | 410 => Err(FetchError::NotFound),
        status => Err(FetchError::Http {
            status,
            reason: message
                .reason_phrase()
                .map(|r| r.to_string())
                .unwrap_or_default(),
        }),
    }
}
