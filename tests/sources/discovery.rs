//! The `Discovery` engine API in-process, on a GLib main context of the test's own:
//! the event stream, one summary shared by every consumer, refresh, and the JSON
//! shape of events. Drives and LAN are off here (they have their own tests).

use std::sync::Arc;
use std::time::Duration;

use crate::common::sources::*;
use ferry::sources::{
    Discovery, DiscoveryOptions, LanInterfaces, SourceEvent, SourceKind, SourceState,
};

fn options(static_sources: Vec<String>) -> DiscoveryOptions {
    DiscoveryOptions {
        mounts: false,
        lan: LanInterfaces::Off,
        static_sources,
        // This machine's connection may be metered; these tests are about others.
        allow_metered: true,
        ..DiscoveryOptions::default()
    }
}

/// Runs `f` on a fresh main context made thread-default for this test.
fn on_main_context<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let context = glib::MainContext::new();
    context
        .with_thread_default(|| context.block_on(f()))
        .expect("main context");
}

async fn next_event(rx: &async_channel::Receiver<SourceEvent>) -> SourceEvent {
    let timeout = glib::timeout_future(Duration::from_secs(10));
    let recv = rx.recv();
    futures_select(recv, timeout)
        .await
        .expect("an event within 10 s")
        .expect("stream open")
}

/// Resolves with the first future's output, or `None` when the timeout fires.
async fn futures_select<T>(
    first: impl std::future::Future<Output = T>,
    timeout: impl std::future::Future<Output = ()>,
) -> Option<T> {
    use std::pin::pin;
    use std::task::Poll;
    let mut first = pin!(first);
    let mut timeout = pin!(timeout);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = first.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timeout.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[test]
fn sources_engine_events_shared_summary_and_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = OstreeRepo::create(&dir.path().join("upstream"), COLLECTION, REF);
    let url = format!("file://{}", upstream.path.display());
    let client = ClientRepo::create(&dir.path().join("client"), &url, COLLECTION);
    let first_commit = upstream.rev_parse(REF);

    on_main_context(|| async {
        let discovery =
            Discovery::start(&client.path, options(vec![url.clone()])).expect("discovery");
        let events = discovery.subscribe();
        discovery.settled().await;

        let sources = discovery.sources();
        assert_eq!(sources.len(), 2, "{sources:#?}");
        // Static before internet.
        assert_eq!(sources[0].kind, SourceKind::Static);
        assert_eq!(sources[1].kind, SourceKind::Internet);
        for s in &sources {
            assert_eq!(s.state, SourceState::Ready, "{s:?}");
            let r = s
                .refs
                .iter()
                .find(|r| r.ref_name == REF)
                .expect("tracked ref offered");
            assert_eq!(r.commit.to_hex(), first_commit);
        }

        // Each source was announced, then filled in.
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(event);
        }
        for id in ["upstream:origin".to_owned(), format!("static:{url}")] {
            let mine: Vec<&SourceEvent> = seen.iter().filter(|e| e.source().id == id).collect();
            assert!(
                matches!(mine.first(), Some(SourceEvent::Added { source }) if source.state == SourceState::Discovered),
                "{id}: {mine:#?}"
            );
            assert!(
                matches!(mine.last(), Some(SourceEvent::Changed { source }) if source.state == SourceState::Ready),
                "{id}: {mine:#?}"
            );
        }

        // One summary, parsed once, shared by every consumer.
        let a = discovery.summary("upstream:origin").expect("summary kept");
        let b = discovery.summary("upstream:origin").expect("summary kept");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.summary.collection_id.as_deref(), Some(COLLECTION));

        // A late subscriber starts with the current list.
        let late = discovery.subscribe();
        let mut prefilled = Vec::new();
        while let Ok(SourceEvent::Added { source }) = late.try_recv() {
            prefilled.push(source);
        }
        assert_eq!(prefilled, discovery.sources());

        // The upstream moves on; a refresh picks it up as one change per source.
        let second_commit = upstream.commit_version(REF, "2.0");
        discovery.refresh();
        let mut changed = std::collections::BTreeSet::new();
        while changed.len() < 2 {
            match next_event(&late).await {
                SourceEvent::Changed { source } => {
                    if source
                        .refs
                        .iter()
                        .any(|r| r.ref_name == REF && r.commit.to_hex() == second_commit)
                    {
                        changed.insert(source.id.clone());
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let c = discovery.summary("upstream:origin").unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "a new summary after the change");

        discovery.stop();
        // Stopping ends every stream.
        while late.try_recv().is_ok() {}
        assert!(late.recv().await.is_err());
    });
}

#[test]
fn sources_engine_event_json_shape() {
    let source = ferry::sources::Source::new(
        "static:http://10.0.0.1:8000/0".into(),
        SourceKind::Static,
        "10.0.0.1".into(),
        "http://10.0.0.1:8000/0".into(),
    );
    let json = serde_json::to_value(SourceEvent::Added { source }).unwrap();
    assert_eq!(json["event"], "added");
    assert_eq!(json["source"]["id"], "static:http://10.0.0.1:8000/0");
    assert_eq!(json["source"]["kind"], "static");
    assert_eq!(json["source"]["state"], "discovered");
    assert_eq!(json["source"]["refs"], serde_json::json!([]));
    assert!(json["source"]["last_modified"].is_null());
    for (state, text) in [
        (SourceState::NotServing, "not-serving"),
        (SourceState::Unreachable, "unreachable"),
        (SourceState::Outdated, "outdated"),
        (SourceState::Failed, "failed"),
        (SourceState::Ready, "ready"),
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), text);
    }
}
