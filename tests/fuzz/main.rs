//! Property-based fuzz tests of every parser of untrusted bytes: GVariant objects
//! (commit, dirtree, dirmeta), `.filez` headers and content, summaries,
//! `summary.sig`, detached metadata, DNS-SD TXT records and bloom filters, config
//! key files and ref files.
//!
//! Each property runs `PROPTEST_CASES` cases (default 10,000) of random bytes and of
//! structure-aware mutations of valid inputs made by the real `ostree` tool and by
//! Ferry's own writers (bit flips, inserted and removed bytes, truncation, and
//! overwritten words where GVariant keeps its framing offsets and `.filez` its
//! header length). Every case must return (no panic) within a second, holding no
//! more heap at its peak than the bound its parser states (see [`harness`]).
//! A failing case is saved under `proptest-regressions/` and replayed first on the
//! next run; fixed bugs also keep an explicit regression test.
//!
//! A longer run (README, "Fuzzing"): `PROPTEST_CASES=1000000 cargo test --release
//! --test fuzz`.

mod alloc;
mod harness;
mod seeds;

mod config;
mod filez;
mod lan;
mod objects;
mod refs;
mod summary;
mod trust;

// The support every suite shares (the fuzz seeds use its GnuPG and ostree repositories).
#[path = "../common/mod.rs"]
mod common;
