//! `ferry::signals`: SIGINT and SIGTERM reach a callback on the GLib main context
//! while the guard lives (the process goes on), and end the process again once it
//! is dropped. `ferryctl update` (tests/engine, `sigint_*`), `ferryctl serve`
//! (tests/share) and the window (tests/gui) rely on it end to end.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ferry::signals::on_stop_signals;

/// Iterates the default main context until `done`, for at most 5 s.
fn iterate_until(done: impl Fn() -> bool) -> bool {
    let context = glib::MainContext::default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() && Instant::now() < deadline {
        context.iteration(false);
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// The handler the process has now for `signal`.
fn disposition(signal: libc::c_int) -> libc::sighandler_t {
    // SAFETY: only reads the current action into a zeroed struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut action), 0);
        action.sa_sigaction
    }
}

#[test]
fn stop_signals_call_back_on_the_main_context_then_end_the_process_again() {
    let calls = Rc::new(Cell::new(0u32));
    let guard = {
        let calls = calls.clone();
        on_stop_signals(move || calls.set(calls.get() + 1))
    };
    // Each signal, and each repeat, calls back; none ends this process.
    for (n, signal) in [libc::SIGINT, libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .enumerate()
    {
        // SAFETY: raise(3) on this process, whose handler the guard installed.
        assert_eq!(unsafe { libc::raise(signal) }, 0);
        let expected = n as u32 + 1;
        assert!(
            iterate_until(|| calls.get() == expected),
            "signal {signal} did not call back ({} calls)",
            calls.get()
        );
    }
    assert_ne!(disposition(libc::SIGINT), libc::SIG_DFL);

    drop(guard);
    // Nothing watches them now: Ctrl-C and SIGTERM end the process again.
    assert_eq!(disposition(libc::SIGINT), libc::SIG_DFL);
    assert_eq!(disposition(libc::SIGTERM), libc::SIG_DFL);
    assert_eq!(calls.get(), 3);
}
