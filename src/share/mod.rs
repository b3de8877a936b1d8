//! Sharing updates: serve the local repository to nearby computers over HTTP,
//! advertise it over DNS-SD the way libostree's LAN finder and eos-updater expect,
//! and copy updates onto USB drives the way `ostree create-usb` does.
//!
//! - [`server`]: a read-only HTTP server (soup3) for the repository at `/RI/`, with a
//!   summary generated in memory from the refs it can serve completely.
//! - [`served`]: which refs can be served and the summary listing them.
//! - [`paths`]: the strict whitelist of request paths.
//! - [`advertise`]: the `_ostree_repo._tcp` DNS-SD service (mdns-sd).
//! - [`sharing`]: [`Sharing`], the server and its advertisement started and stopped
//!   together, as `ferryctl serve` and the app share updates.
//! - [`usb`]: `prepare-usb`, writing a drive libostree's mount finder reads.
//!
//! Nothing here imports GTK.

pub mod advertise;
pub mod paths;
pub mod served;
pub mod server;
pub mod sharing;
pub mod upload_cap;
pub mod usb;

use std::path::PathBuf;

use crate::repo::RepoError;

pub use sharing::Sharing;

/// The TCP port eos-updater serves on; `ferryctl serve` uses it by default.
pub const DEFAULT_PORT: u16 = 43381;

/// Errors of serving and advertising.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {address}: {message}")]
    Listen { address: String, message: String },
    #[error("cannot advertise on the LAN: {0}")]
    Advertise(String),
}

/// Parses a transfer rate in bytes per second: a number with an optional SI
/// (`k`, `M`, `G`: powers of 1000) or binary (`Ki`, `Mi`, `Gi`: powers of 1024)
/// suffix, optionally followed by `B` or `B/s`: `5M`, `500k`, `1.5MiB/s`, `20000`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let original = text;
    let text = text.trim();
    let text = text
        .strip_suffix("/s")
        .unwrap_or(text)
        .trim_end_matches(['B', 'b'])
        .trim_end();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: f64 = match suffix.trim() {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        "Ki" | "ki" => 1024.0,
        "Mi" | "mi" => 1024.0 * 1024.0,
        "Gi" | "gi" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "“{original}” is not a rate (examples: 5M, 500k, 2MiB/s)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("“{original}” is not a rate (examples: 5M, 500k, 2MiB/s)"))?;
    let rate = (value * multiplier).round();
    if !rate.is_finite() || rate < 1.0 || rate > u64::MAX as f64 {
        return Err(format!(
            "“{original}” is not a usable rate (at least 1 byte/s)"
        ));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("5M"), Ok(5_000_000));
        assert_eq!(parse_rate("500k"), Ok(500_000));
        assert_eq!(parse_rate("20000"), Ok(20_000));
        assert_eq!(parse_rate("1.5MiB/s"), Ok(1_572_864));
        assert_eq!(parse_rate("2 MB/s"), Ok(2_000_000));
        assert_eq!(parse_rate("1Ki"), Ok(1024));
        for bad in ["", "M", "5X", "-1", "0", "0.1", "1e3", "five"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
