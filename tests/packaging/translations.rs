//! Every translation is complete: the template is extracted from po/POTFILES.in the
//! way meson's `ferry-pot` target does (xgettext, glib preset), every string the
//! Rust code passes to gettext()/ngettext() is in it, and every language in
//! po/LINGUAS translates every message (plurals included), none fuzzy.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn listed_files() -> Vec<String> {
    fs::read_to_string(root().join("po/POTFILES.in"))
        .expect("read po/POTFILES.in")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Runs a gettext tool; its stdout.
fn tool(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start (install gettext): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The template, as meson's i18n module makes it.
fn extract_template(dir: &Path) -> String {
    let list = dir.join("POTFILES");
    fs::write(&list, listed_files().join("\n")).unwrap();
    let pot = dir.join("ferry.pot");
    tool(
        Command::new("xgettext")
            .args([
                "--package-name=ferry",
                "--from-code=UTF-8",
                "--add-comments",
            ])
            .args(["--keyword=_", "--keyword=N_", "--keyword=C_:1c,2"])
            .args([
                "--keyword=NC_:1c,2",
                "--keyword=gettext",
                "--keyword=ngettext:1,2",
            ])
            .arg("--directory")
            .arg(root())
            .arg("--files-from")
            .arg(&list)
            .arg("--output")
            .arg(&pot),
    );
    fs::read_to_string(&pot).expect("xgettext wrote the template")
}

/// A C string literal's contents, unescaped (what PO files and Rust share).
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The msgids (and plural msgids) of a PO file or template.
fn msgids(po: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in po.lines() {
        if let Some(rest) = line
            .strip_prefix("msgid_plural ")
            .or_else(|| line.strip_prefix("msgid "))
        {
            if let Some(done) = current.take() {
                ids.insert(done);
            }
            current = Some(unescape(rest.trim_matches('"')));
        } else if line.starts_with('"') {
            if let Some(text) = current.as_mut() {
                text.push_str(&unescape(line.trim().trim_matches('"')));
            }
        } else if let Some(done) = current.take() {
            ids.insert(done);
        }
    }
    ids.extend(current);
    ids.remove("");
    ids
}

/// Literals passed to gettext() and ngettext() in a Rust file.
fn rust_literals(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for call in ["gettext(", "ngettext("] {
        let mut rest = source;
        while let Some(at) = rest.find(call) {
            rest = &rest[at + call.len()..];
            let trimmed = rest.trim_start();
            let Some(literal) = trimmed.strip_prefix('"') else {
                continue;
            };
            let mut end = 0;
            let bytes = literal.as_bytes();
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            found.push(unescape(&literal[..end]));
            if call == "ngettext(" {
                // The plural is the second literal.
                let after = literal[end + 1..].trim_start().trim_start_matches(',');
                if let Some(plural) = after.trim_start().strip_prefix('"') {
                    let stop = plural.find('"').unwrap_or(plural.len());
                    found.push(unescape(&plural[..stop]));
                }
            }
        }
    }
    found
}

#[test]
fn every_rust_string_is_extracted() {
    let dir = tempfile::tempdir().unwrap();
    let template = msgids(&extract_template(dir.path()));
    let mut missing = Vec::new();
    for file in listed_files().iter().filter(|f| f.ends_with(".rs")) {
        let source = fs::read_to_string(root().join(file)).unwrap();
        for literal in rust_literals(&source) {
            if !template.contains(&literal) {
                missing.push(format!("{file}: {literal:?}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "xgettext does not extract these strings (a Rust construct confuses its C \
         parser?):\n{}",
        missing.join("\n")
    );
    // And the template is not empty for another reason.
    assert!(template.contains("Update Available"), "{template:?}");
}

#[test]
fn every_language_translates_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let template = extract_template(dir.path());
    let template_path = dir.path().join("ferry.pot");
    let linguas = fs::read_to_string(root().join("po/LINGUAS")).unwrap();
    let langs: Vec<&str> = linguas
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(!langs.is_empty());
    for lang in langs {
        let po = root().join(format!("po/{lang}.po"));
        // Brought up to date with the template, as `meson compile ferry-update-po`.
        let merged = dir.path().join(format!("{lang}.po"));
        tool(
            Command::new("msgmerge")
                .args(["--quiet", "--no-fuzzy-matching", "--output-file"])
                .arg(&merged)
                .arg(&po)
                .arg(&template_path),
        );
        let untranslated = tool(
            Command::new("msgattrib")
                .args(["--untranslated", "--no-obsolete"])
                .arg(&merged),
        );
        let fuzzy = tool(
            Command::new("msgattrib")
                .args(["--only-fuzzy", "--no-obsolete"])
                .arg(&merged),
        );
        let untranslated = msgids(&untranslated);
        let fuzzy = msgids(&fuzzy);
        assert!(
            untranslated.is_empty() && fuzzy.is_empty(),
            "po/{lang}.po is incomplete: untranslated {untranslated:#?}, fuzzy {fuzzy:#?}"
        );
        // Plural forms and format strings agree with the originals.
        tool(
            Command::new("msgfmt")
                .args(["--check", "-o", "/dev/null"])
                .arg(&merged),
        );
    }
    assert!(msgids(&template).len() > 100);
}
