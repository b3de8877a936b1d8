//! SIGINT and SIGTERM as calls on the GLib main context: how `ferryctl update`,
//! `ferryctl serve` and the window stop cleanly on Ctrl-C or `kill`.
//!
//! GLib's unix signal source does the part that must be async-signal-safe (its
//! handler only wakes the main context); the callback then runs on the default
//! main context like any other source, so it may cancel an engine or quit a loop.

use std::ffi::{c_int, c_uint};
use std::rc::Rc;

use glib::ffi::{gboolean, gpointer, GDestroyNotify, GSourceFunc};
use glib::thread_guard::ThreadGuard;
use glib::translate::from_glib;

extern "C" {
    // glib-unix.h, in libglib-2.0 (which glib-sys links) since GLib 2.30. glib-rs
    // 0.22 binds it only in the glib-unix crate, whose -sys part needs the
    // pkg-config module of GLib 2.80, newer than the GLib Ferry builds against.
    fn g_unix_signal_add_full(
        priority: c_int,
        signum: c_int,
        handler: GSourceFunc,
        user_data: gpointer,
        notify: GDestroyNotify,
    ) -> c_uint;
}

/// The signals that ask Ferry to stop: Ctrl-C and `kill`'s default.
pub const STOP_SIGNALS: [c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// While alive, SIGINT and SIGTERM call its callback instead of ending the
/// process. Dropped, they end it again: GLib restores their default action once
/// nothing watches them.
#[derive(Debug)]
#[must_use = "the signals end the process again once this is dropped"]
pub struct StopSignals {
    sources: Vec<glib::SourceId>,
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for source in self.sources.drain(..) {
            source.remove();
        }
    }
}

/// Calls `callback` on the default main context for every SIGINT and SIGTERM
/// while the returned guard lives. Call it on the thread that runs the default
/// main context (as with glib's `*_local` sources).
pub fn on_stop_signals(callback: impl Fn() + 'static) -> StopSignals {
    let context = glib::MainContext::default();
    let _acquired = context
        .acquire()
        .expect("the default main context belongs to another thread");
    let callback: Rc<dyn Fn()> = Rc::new(callback);
    let sources = STOP_SIGNALS
        .iter()
        .map(|&signum| watch(signum, callback.clone()))
        .collect();
    StopSignals { sources }
}

/// What the source holds: the callback, usable only on the thread that made it.
type Callback = ThreadGuard<Rc<dyn Fn()>>;

unsafe extern "C" fn dispatch(data: gpointer) -> gboolean {
    // SAFETY: `data` is the `Callback` boxed in `watch`, alive until `release`.
    let callback = unsafe { &*(data as *const Callback) };
    (callback.get_ref())();
    glib::ffi::GTRUE // keep watching: every signal calls again
}

unsafe extern "C" fn release(data: gpointer) {
    // SAFETY: called once, when the source is destroyed; `data` came from
    // `Box::into_raw` in `watch`.
    drop(unsafe { Box::from_raw(data as *mut Callback) });
}

fn watch(signum: c_int, callback: Rc<dyn Fn()>) -> glib::SourceId {
    let data = Box::into_raw(Box::new(ThreadGuard::new(callback))) as gpointer;
    // SAFETY: `dispatch` and `release` match GSourceFunc and GDestroyNotify, and
    // `data` stays valid until GLib calls `release`. GLib attaches the source to
    // the default main context, which this thread holds (see `on_stop_signals`).
    let id = unsafe {
        g_unix_signal_add_full(
            glib::ffi::G_PRIORITY_DEFAULT,
            signum,
            Some(dispatch),
            data,
            Some(release),
        )
    };
    assert_ne!(id, 0, "GLib refused to watch signal {signum}");
    // SAFETY: a non-zero id GLib just returned for a source of the default context.
    unsafe { from_glib(id) }
}
