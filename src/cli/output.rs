//! Printing for `ferryctl`: JSON for scripts, text for people.

use std::time::{Duration, Instant};

use serde::Serialize;

pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// One JSON object per line (for event streams).
pub fn print_json_line(value: &impl Serialize) {
    println!("{}", serde_json::to_string(value).expect("serializable"));
}

/// Decimal sizes, as GNOME shows them (“48.2 MB”).
pub fn format_size(bytes: u64) -> String {
    glib::format_size(bytes).to_string()
}

pub fn format_timestamp(seconds: u64) -> String {
    glib::DateTime::from_unix_utc(seconds as i64)
        .and_then(|t| t.format("%Y-%m-%d %H:%M:%S UTC"))
        .map(|s| s.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// Limits how often something is printed (progress on a terminal).
pub struct PrintPacer {
    interval: Duration,
    last: Option<Instant>,
}

impl PrintPacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    pub fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < self.interval) {
            return false;
        }
        self.last = Some(now);
        true
    }
}
