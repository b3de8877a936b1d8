//! Where an update came from: `ferryctl update` counts the bytes by kind of
//! source (USB sticks, nearby computers, the internet), prints them with the
//! internet saved (text, and `received` in `--json`), and appends the update to
//! the history in `$XDG_DATA_HOME/ferry/history.jsonl`.

use super::*;

/// A commit whose files are split so that the stick (a `file://` source), the
/// nearby computer (a static source on loopback) and the upstream each must
/// send some.
struct ThreeWays {
    client: Client,
    upstream: Server,
    peer: Server,
    stick_uri: String,
    up: Upstream,
}

impl ThreeWays {
    fn new() -> Self {
        let up = Upstream::new(90, 4000);
        let files = files_of(&closure(&up.repo, up.latest()));
        let stick = up.snapshot("stick");
        // By a file's index modulo 4: 0 only the upstream has, 1 the peer (and
        // the upstream), 2 the stick (and the upstream), 3 everyone.
        let with_residue = |residues: &[usize]| -> Vec<&String> {
            files
                .iter()
                .enumerate()
                .filter(|(i, _)| residues.contains(&(i % 4)))
                .map(|(_, o)| o)
                .collect()
        };
        for object in with_residue(&[0, 1]) {
            fs::remove_file(stick.join(object_path(object))).unwrap();
        }
        let peer_repo = up.snapshot("peer");
        let peer = Server::start(
            &peer_repo,
            ServeOptions {
                missing: with_residue(&[0, 2])
                    .into_iter()
                    .map(|o| object_path(o))
                    .collect(),
                ..Default::default()
            },
        );
        let upstream = Server::start(&up.repo, ServeOptions::default());
        let client = Client::new(&upstream.url(), Trust::None);
        Self {
            client,
            upstream,
            peer,
            stick_uri: file_uri(&stick),
            up,
        }
    }

    fn discovery(&self) -> Vec<String> {
        vec![
            "--static-source".into(),
            self.peer.url(),
            "--static-source".into(),
            self.stick_uri.clone(),
        ]
    }
}

fn history(client: &Client) -> Vec<Value> {
    fs::read_to_string(client.data_home().join("ferry/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn update_json_counts_bytes_per_kind_of_source_and_the_history_records_it() {
    let w = ThreeWays::new();
    let discovery = w.discovery();
    let discovery: Vec<&str> = discovery.iter().map(String::as_str).collect();
    let run = w.client.update(&discovery, &[]).ok();
    w.client.assert_at(w.up.latest());

    let mut by_source: BTreeMap<String, u64> = BTreeMap::new();
    for e in run.of_kind("object-fetched") {
        *by_source
            .entry(e["source"].as_str().unwrap().to_owned())
            .or_default() += e["bytes"].as_u64().unwrap();
    }
    let stick = by_source[&format!("static:{}", w.stick_uri)];
    let nearby = by_source[&w.peer.static_id()];
    let internet = by_source["upstream:origin"];
    let done = run.events.last().unwrap();
    let received = &done["received"];
    assert_eq!(received["usb"]["bytes"], stick, "{received}");
    assert_eq!(received["usb"]["sources"], 1);
    assert_eq!(received["nearby"]["bytes"], nearby);
    assert_eq!(received["nearby"]["sources"], 1);
    assert_eq!(received["internet"]["bytes"], internet);
    assert_eq!(received["internet"]["sources"], 1);
    assert_eq!(received["internet_saved"], stick + nearby);

    let entries = history(&w.client);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["commit"], w.up.latest());
    assert_eq!(entry["refs"], serde_json::json!([format!("origin:{REF}")]));
    assert_eq!(entry["received"]["internet_bytes"], internet);
    assert_eq!(entry["received"]["drive_bytes"], stick);
    assert_eq!(entry["sources"].as_array().unwrap().len(), 3, "{entry}");

    // Up to date: nothing pulled, nothing added to the history.
    w.client.update(&discovery, &[]).ok();
    assert_eq!(history(&w.client).len(), 1);
    assert!(!w.upstream.requests().is_empty());
}

#[test]
fn update_text_says_where_the_update_came_from_and_the_internet_saved() {
    let w = ThreeWays::new();
    let mut cmd = w.client.ferryctl();
    cmd.args(w.discovery()).arg("update");
    let out = stdout_of(&mut cmd);
    w.client.assert_at(w.up.latest());
    let line = out
        .lines()
        .find(|l| l.contains("of internet saved"))
        .unwrap_or_else(|| panic!("no “internet saved” line:\n{out}"));
    assert!(
        line.contains(" from the USB stick, ")
            && line.contains(" from a nearby computer, ")
            && line.contains(" from the internet — "),
        "{line}"
    );
    assert_eq!(history(&w.client).len(), 1);
}
