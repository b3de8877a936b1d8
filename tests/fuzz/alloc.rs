//! Heap accounting for the fuzz tests: this binary defines `malloc`, `free`,
//! `calloc`, `realloc` and the aligned variants, forwarding each to glibc's own
//! (`__libc_malloc`, …) and counting the bytes per thread.
//!
//! Why not a `#[global_allocator]`: it sees only Rust allocations, and most of the
//! parsers' work happens in C (GVariant and GKeyFile in GLib allocate with
//! `malloc`). A definition of `malloc` in the executable takes the place of libc's
//! for every library of the process (glibc's documented way to replace malloc), and
//! Rust's `System` allocator calls `malloc` too, so both are counted.
//!
//! Counters are per thread (proptest runs each test on its own thread), signed
//! (a block freed on another thread than the one that allocated it is subtracted
//! there), and kept in `const` thread-locals without destructors, which never
//! allocate themselves.

use std::cell::Cell;
use std::ffi::c_void;

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(count: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn malloc_usable_size(ptr: *mut c_void) -> usize;
}

thread_local! {
    /// Bytes allocated and not yet freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Highest `LIVE` since the last [`start`].
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// Largest single block since the last [`start`].
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn allocated(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: a block glibc just returned.
    let size = unsafe { malloc_usable_size(ptr) };
    let live = LIVE.get() + size as isize;
    LIVE.set(live);
    if live > PEAK.get() {
        PEAK.set(live);
    }
    if size > LARGEST.get() {
        LARGEST.set(size);
    }
}

fn freeing(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: a live block about to be freed.
    let size = unsafe { malloc_usable_size(ptr) };
    LIVE.set(LIVE.get() - size as isize);
}

/// What one measured stretch of code allocated.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Highest live heap above the level at the start, in bytes.
    pub peak: usize,
    /// Largest single block, in bytes.
    pub largest: usize,
}

/// Starts measuring on this thread; returns the live level to pass to [`usage`].
pub fn start() -> isize {
    let live = LIVE.get();
    PEAK.set(live);
    LARGEST.set(0);
    live
}

/// What this thread allocated since [`start`] returned `base`.
pub fn usage(base: isize) -> Usage {
    Usage {
        peak: (PEAK.get() - base).max(0) as usize,
        largest: LARGEST.get(),
    }
}

/// # Safety
/// The C `malloc` contract.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let ptr = __libc_malloc(size);
    allocated(ptr);
    ptr
}

/// # Safety
/// The C `calloc` contract.
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    let ptr = __libc_calloc(count, size);
    allocated(ptr);
    ptr
}

/// # Safety
/// The C `realloc` contract.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let old = if ptr.is_null() {
        0
    } else {
        malloc_usable_size(ptr)
    };
    let new = __libc_realloc(ptr, size);
    // On failure the old block stays; realloc(p, 0) frees it and returns NULL.
    if !new.is_null() || (size == 0 && !ptr.is_null()) {
        LIVE.set(LIVE.get() - old as isize);
        allocated(new);
    }
    new
}

/// # Safety
/// The C `free` contract.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    freeing(ptr);
    __libc_free(ptr);
}

/// # Safety
/// The C `memalign` contract.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let ptr = __libc_memalign(align, size);
    allocated(ptr);
    ptr
}

/// # Safety
/// The C `aligned_alloc` contract.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}

/// # Safety
/// The C `posix_memalign` contract.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if align < std::mem::size_of::<usize>() || !align.is_power_of_two() {
        return libc::EINVAL;
    }
    let ptr = memalign(align, size);
    if ptr.is_null() {
        return libc::ENOMEM;
    }
    *out = ptr;
    0
}

#[test]
fn counts_c_and_rust_allocations() {
    let base = start();
    let rust = vec![1u8; 3 << 20];
    let after_rust = usage(base);
    drop(rust);
    assert!(after_rust.peak >= 3 << 20, "{after_rust:?}");
    assert!(after_rust.largest >= 3 << 20, "{after_rust:?}");

    // GLib's own copy of the bytes, made with malloc.
    let base = start();
    let bytes = glib::Bytes::from_owned(vec![0u8; 16]);
    let copy = glib::Bytes::from(&vec![7u8; 5 << 20][..]);
    let c = usage(base);
    drop((bytes, copy));
    assert!(c.peak >= 10 << 20, "{c:?}");
}
