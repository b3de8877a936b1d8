//! A source named by hand and read once, without discovery (`ferryctl pull URI`):
//! a repository on disk is read as drives and sideload repositories are (its refs,
//! [`drive_repo::read_repo`]), an HTTP(S) one from its summary as static sources
//! are ([`http::fetch_summary`], [`SummaryInfo::parse`]).

use gio::prelude::*;

use crate::repo::beneath;
use crate::repo::refs::{self, RefKind};
use crate::transport::HttpClient;

use super::discovery::normalize_source_uri;
use super::drive_repo;
use super::error::SourcesError;
use super::http;
use super::model::{OfferedRef, Source, SourceKind, SourceState};
use super::summary::SummaryInfo;

/// Reads the source at `uri` (a path, `file://`, `http://` or `https://` URI) into
/// a ready [`Source`] of kind [`SourceKind::Static`], id `static:URI`. Runs on the
/// thread-default main context (HTTP).
pub async fn read_named_source(uri: &str, http: &HttpClient) -> Result<Source, SourcesError> {
    let uri = normalize_source_uri(uri)?;
    let unreadable = |reason: String| SourcesError::Unreadable {
        uri: uri.clone(),
        reason,
    };
    let mut source = Source::new(
        format!("static:{uri}"),
        SourceKind::Static,
        uri.clone(),
        uri.clone(),
    );
    if let Some(path) = gio::File::for_uri(&uri)
        .path()
        .filter(|_| uri.starts_with("file:"))
    {
        let path_repo = path.clone();
        // Off the main context with a deadline, as discovery reads drives: a
        // drive that stops answering fails the pull instead of hanging it.
        let (repo, heads) = beneath::off_thread(beneath::drive_deadline(), move || {
            let repo = drive_repo::read_repo(&path_repo)?;
            // A repository without a collection id offers its branches by name
            // (drives skip them: they cannot say which remote they belong to; a
            // source named by hand is given its remote by whoever named it).
            let heads = match &repo.collection_id {
                Some(_) => Vec::new(),
                None => refs::list_refs(&repo.path)
                    .map_err(|e| drive_repo::DriveRepoError::Refs {
                        path: repo.path.clone(),
                        reason: e.to_string(),
                    })?
                    .into_iter()
                    .filter(|(kind, _, _)| *kind == RefKind::Head)
                    .map(|(_, ref_name, commit)| {
                        let (timestamp, version) = drive_repo::commit_info(&repo.path, &commit);
                        OfferedRef {
                            collection_id: None,
                            ref_name,
                            commit,
                            timestamp,
                            version,
                        }
                    })
                    .collect(),
            };
            Ok::<_, drive_repo::DriveRepoError>((repo, heads))
        })
        .await
        .map_err(|e| unreadable(format!("not answering: {e}")))?
        .map_err(|e| unreadable(e.to_string()))?;
        source.name = path.display().to_string();
        source.refs = repo.refs;
        source.refs.extend(heads);
        source.last_modified = repo.last_modified;
    } else {
        let bytes = http::fetch_summary(http, &uri, &gio::Cancellable::new())
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let summary = SummaryInfo::parse(&bytes, None).map_err(unreadable)?;
        source.refs = summary.refs;
        source.last_modified = summary.last_modified;
    }
    source.state = SourceState::Ready;
    Ok(source)
}
