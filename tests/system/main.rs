//! System mode: `ferryctl --sysroot` on real OSTree sysroots made by `ostree
//! admin` (as libostree's own tests make them: `init-fs`, `os-init`, no
//! bootloader, mutable deployments so the test can remove them).

#[path = "../common/mod.rs"]
mod common;

mod sysroot;
