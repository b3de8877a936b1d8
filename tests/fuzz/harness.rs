//! What every fuzz case checks (no panic, a time limit, a heap bound) and the
//! inputs: random bytes, and structure-aware mutations of valid inputs.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use crate::alloc;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
pub const DEFAULT_CASES: u32 = 10_000;

/// Longest one parse may take, in CPU time of its thread (wall time would count
/// the other tests and builds sharing the machine). Real parses take microseconds
/// to milliseconds; a second means a hang (or work far out of proportion to the
/// input).
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(1);

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The proptest settings of every property: `PROPTEST_CASES` cases (default
/// [`DEFAULT_CASES`]), each failure saved next to its property's source
/// (`tests/fuzz/NAME.proptest-regressions`, committed) and replayed first.
pub fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        // Shrinking a failure stays bounded too.
        max_shrink_iters: 2_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// The most heap one parse may hold at once: `per_input_byte` × the input's size
/// plus `fixed` (buffers, GLib's per-variant structures, error strings).
#[derive(Clone, Copy, Debug)]
pub struct HeapBound {
    pub per_input_byte: usize,
    pub fixed: usize,
}

impl HeapBound {
    pub const fn new(per_input_byte: usize, fixed: usize) -> Self {
        Self {
            per_input_byte,
            fixed,
        }
    }

    pub fn limit(&self, input_len: usize) -> usize {
        self.per_input_byte * input_len + self.fixed
    }
}

/// Runs `parse` on an input of `input_len` bytes and asserts that it took less
/// than [`CASE_TIME_LIMIT`] of CPU time and that the heap it held at its peak, result
/// included, stayed within `bound`. A panic inside fails the case as it is.
pub fn check<R>(what: &str, input_len: usize, bound: HeapBound, parse: impl FnOnce() -> R) -> R {
    let base = alloc::start();
    let started = thread_cpu_time();
    let wall = Instant::now();
    let result = parse();
    let elapsed = thread_cpu_time().saturating_sub(started);
    let wall = wall.elapsed();
    let usage = alloc::usage(base);
    assert!(
        elapsed < CASE_TIME_LIMIT,
        "{what}: {elapsed:?} of CPU ({wall:?} wall) for {input_len} bytes of input"
    );
    let limit = bound.limit(input_len);
    assert!(
        usage.peak <= limit,
        "{what}: {} bytes of heap at the peak for {input_len} bytes of input (bound {limit}; largest block {})",
        usage.peak,
        usage.largest
    );
    result
}

/// One edit of a valid input. Positions are taken modulo the input's length.
#[derive(Clone, Debug)]
pub enum Edit {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    /// Overwrites a 1-, 2-, 4- or 8-byte word (little- or big-endian) counted from
    /// the end: where GVariant keeps its framing offsets.
    WordFromEnd(usize, u64, u8, bool),
    /// The same counted from the start: where `.filez` keeps its header length.
    Word(usize, u64, u8, bool),
    /// Copies a stretch of the input over another place (or repeats it there).
    Duplicate(usize, usize, usize),
}

fn word_bytes(value: u64, width: u8, big_endian: bool) -> Vec<u8> {
    let width = [1usize, 2, 4, 8][usize::from(width % 4)];
    if big_endian {
        value.to_be_bytes()[8 - width..].to_vec()
    } else {
        value.to_le_bytes()[..width].to_vec()
    }
}

fn overwrite(bytes: &mut [u8], at: usize, word: &[u8]) {
    for (i, b) in word.iter().enumerate() {
        if let Some(slot) = bytes.get_mut(at + i) {
            *slot = *b;
        }
    }
}

impl Edit {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let at = |pos: usize| if len == 0 { 0 } else { pos % len };
        match self {
            Edit::FlipBit(pos, bit) if len > 0 => bytes[at(*pos)] ^= 1 << (bit % 8),
            Edit::SetByte(pos, value) if len > 0 => bytes[at(*pos)] = *value,
            Edit::Insert(pos, data) => {
                let pos = pos % (len + 1);
                bytes.splice(pos..pos, data.iter().copied());
            }
            Edit::Remove(pos, n) if len > 0 => {
                let pos = at(*pos);
                let end = (pos + n).min(len);
                bytes.drain(pos..end);
            }
            Edit::Truncate(keep) => bytes.truncate(keep % (len + 1)),
            Edit::WordFromEnd(back, value, width, be) if len > 0 => {
                let word = word_bytes(*value, *width, *be);
                let at = len.saturating_sub(1 + back % len);
                overwrite(bytes, at, &word);
            }
            Edit::Word(pos, value, width, be) if len > 0 => {
                overwrite(bytes, at(*pos), &word_bytes(*value, *width, *be));
            }
            Edit::Duplicate(from, n, to) if len > 0 => {
                let from = at(*from);
                let stretch = bytes[from..(from + n).min(len)].to_vec();
                let to = to % (len + 1);
                if to.is_multiple_of(2) {
                    bytes.splice(to..to, stretch);
                } else {
                    overwrite(bytes, to, &stretch);
                }
            }
            _ => {}
        }
    }
}

/// Values that tend to sit on boundaries: zero, all ones, small offsets, sizes.
fn interesting_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        Just(0x7fff_ffff),
        Just(10 * 1024 * 1024),
        Just(10 * 1024 * 1024 + 1),
        0u64..300,
    ]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    let pos = any::<usize>();
    prop_oneof![
        3 => (pos, any::<u8>()).prop_map(|(p, b)| Edit::FlipBit(p, b)),
        2 => (pos, any::<u8>()).prop_map(|(p, b)| Edit::SetByte(p, b)),
        1 => (pos, proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, d)| Edit::Insert(p, d)),
        1 => (pos, 1usize..32).prop_map(|(p, n)| Edit::Remove(p, n)),
        1 => pos.prop_map(Edit::Truncate),
        3 => (0usize..32, interesting_word(), any::<u8>(), any::<bool>())
            .prop_map(|(b, v, w, e)| Edit::WordFromEnd(b, v, w, e)),
        1 => (pos, interesting_word(), any::<u8>(), any::<bool>())
            .prop_map(|(p, v, w, e)| Edit::Word(p, v, w, e)),
        1 => (pos, 1usize..64, pos).prop_map(|(f, n, t)| Edit::Duplicate(f, n, t)),
    ]
}

/// A valid input from `seeds` with one to six edits.
pub fn mutated(seeds: &'static [Vec<u8>]) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "no seed inputs");
    (0..seeds.len(), proptest::collection::vec(edit(), 1..7)).prop_map(move |(i, edits)| {
        let mut bytes = seeds[i].clone();
        for e in &edits {
            e.apply(&mut bytes);
        }
        bytes
    })
}

/// What a parser of untrusted bytes gets: mostly mutated valid inputs (random
/// bytes rarely get past the first check), some unchanged, some pure noise.
pub fn untrusted(seeds: &'static [Vec<u8>], max_random: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => mutated(seeds),
        1 => proptest::sample::select(seeds.to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..max_random),
    ]
    .boxed()
}
