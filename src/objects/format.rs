//! Sizes, rates, times and dates in words, translated.

use gettextrs::{gettext, ngettext};
use gtk4::glib;

/// "12.3 MB".
pub fn size(bytes: u64) -> String {
    glib::format_size(bytes).into()
}

/// "1.2 MB/s".
pub fn rate(bytes_per_second: u64) -> String {
    // Translators: a transfer rate; {} is a size such as “1.2 MB”.
    gettext("{}/s").replace("{}", &size(bytes_per_second))
}

/// "3.2 MB of 12.1 MB".
pub fn size_of(done: u64, total: u64) -> String {
    // Translators: download progress, e.g. “3.2 MB of 12.1 MB”.
    gettext("{done} of {total}")
        .replace("{done}", &size(done))
        .replace("{total}", &size(total.max(done)))
}

/// "About 5 seconds left", "About 3 minutes left".
pub fn time_left(seconds: u64) -> String {
    if seconds < 90 {
        let n = u32::try_from(seconds.max(1)).unwrap_or(u32::MAX);
        ngettext("About {} second left", "About {} seconds left", n).replace("{}", &n.to_string())
    } else if seconds < 90 * 60 {
        let n = u32::try_from(seconds.div_ceil(60)).unwrap_or(u32::MAX);
        ngettext("About {} minute left", "About {} minutes left", n).replace("{}", &n.to_string())
    } else {
        let n = u32::try_from(seconds.div_ceil(3600)).unwrap_or(u32::MAX);
        ngettext("About {} hour left", "About {} hours left", n).replace("{}", &n.to_string())
    }
}

/// A commit date: "24 November 2026".
pub fn date(unix_seconds: u64) -> String {
    let Ok(seconds) = i64::try_from(unix_seconds) else {
        return String::new();
    };
    glib::DateTime::from_unix_local(seconds)
        .ok()
        // Translators: a date as strftime() writes it; see “man strftime”.
        .and_then(|d| d.format(&gettext("%-d %B %Y")).ok())
        .map(Into::into)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        // GLib puts a no-break space between number and unit.
        assert_eq!(size_of(1_000, 2_000_000), "1.0\u{a0}kB of 2.0\u{a0}MB");
        assert_eq!(rate(1_500_000), "1.5\u{a0}MB/s");
        assert_eq!(time_left(1), "About 1 second left");
        assert_eq!(time_left(0), "About 1 second left");
        assert_eq!(time_left(42), "About 42 seconds left");
        assert_eq!(time_left(150), "About 3 minutes left");
        assert_eq!(time_left(7200), "About 2 hours left");
        assert!(date(0).contains("1970") || date(0).contains("1969"));
    }
}
