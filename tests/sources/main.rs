//! Finding sources: the TXT record and bloom filter codec, the in-process
//! `Discovery` API, nearby computers on a real LAN of network namespaces, and USB
//! drives as real loop mounts.

#[path = "../common/mod.rs"]
mod common;

mod codec;
mod discovery;
mod lan;
mod usb;
