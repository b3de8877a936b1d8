//! Response bodies, optionally under one bandwidth cap shared by every response.
//!
//! Without a cap a body is handed to soup whole (a `glib::Bytes`, typically a
//! mapping of the file: nothing is copied onto the heap). With a cap, a token
//! bucket refilled at the configured rate releases the body chunk by chunk: soup
//! pauses a message whose body has no more data, and the bucket's timer appends the
//! next chunk and unpauses it when tokens are available. Waiting responses are
//! served in turn, so one large download cannot starve the others.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use glib::prelude::*;

/// How often the bucket is refilled while responses wait.
const TICK: Duration = Duration::from_millis(10);

/// A body being sent under the cap.
struct Outgoing {
    msg: glib::WeakRef<soup::ServerMessage>,
    data: glib::Bytes,
    offset: Cell<usize>,
    /// The message finished or its connection closed: never touch it again.
    done: Cell<bool>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    queue: VecDeque<Rc<Outgoing>>,
    timer: Option<glib::SourceId>,
}

/// A bandwidth cap shared by every response of a server.
pub struct UploadCap {
    rate: u64,
    chunk: usize,
    burst: f64,
    bucket: RefCell<Bucket>,
    me: Weak<UploadCap>,
}

impl UploadCap {
    /// A cap of `rate` bytes per second across all responses.
    pub fn new(rate: u64) -> Rc<Self> {
        let rate = rate.max(1);
        // Chunks of ~50 ms of the rate, between 1 KiB and 64 KiB.
        let chunk = ((rate / 20) as usize).clamp(1024, 64 * 1024);
        let burst = (chunk as f64).max(rate as f64 / 10.0);
        Rc::new_cyclic(|me| Self {
            rate,
            chunk,
            burst,
            bucket: RefCell::new(Bucket {
                tokens: chunk as f64,
                last: Instant::now(),
                queue: VecDeque::new(),
                timer: None,
            }),
            me: me.clone(),
        })
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Sends `data` as `msg`'s response body (the status and Content-Length are
    /// already set).
    pub fn send(&self, msg: &soup::ServerMessage, data: glib::Bytes) {
        let Some(body) = msg.response_body() else {
            return;
        };
        body.set_accumulate(false);
        if data.is_empty() {
            body.complete();
            return;
        }
        let out = Rc::new(Outgoing {
            msg: msg.downgrade(),
            data,
            offset: Cell::new(0),
            done: Cell::new(false),
        });
        let mark_done = {
            let out = out.clone();
            move |_: &soup::ServerMessage| out.done.set(true)
        };
        msg.connect_finished(mark_done.clone());
        msg.connect_disconnected(mark_done);
        let me = self.me.clone();
        let weak_out = Rc::downgrade(&out);
        msg.connect_wrote_chunk(move |_| {
            if let (Some(upload_cap), Some(out)) = (me.upgrade(), weak_out.upgrade()) {
                if out.offset.get() < out.data.len() && !out.done.get() {
                    // soup pauses the message if no chunk is appended here.
                    upload_cap.feed(out, false);
                }
            }
        });
        self.feed(out, false);
    }

    fn refill(bucket: &mut Bucket, rate: u64, burst: f64) {
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.last = now;
        bucket.tokens = (bucket.tokens + elapsed * rate as f64).min(burst);
    }

    /// Appends the next chunk if the bucket allows, else queues the body.
    fn feed(&self, out: Rc<Outgoing>, unpause: bool) {
        let mut bucket = self.bucket.borrow_mut();
        Self::refill(&mut bucket, self.rate, self.burst);
        if bucket.tokens <= 0.0 || !bucket.queue.is_empty() {
            bucket.queue.push_back(out);
            drop(bucket);
            self.ensure_timer();
            return;
        }
        let n = self.append_chunk(&out, &mut bucket);
        drop(bucket);
        if n > 0 && unpause {
            if let Some(msg) = out.msg.upgrade() {
                msg.unpause();
            }
        }
    }

    /// Appends up to one chunk of `out` to its message; returns the bytes appended.
    fn append_chunk(&self, out: &Outgoing, bucket: &mut Bucket) -> usize {
        let Some(msg) = out.msg.upgrade() else {
            return 0;
        };
        let Some(body) = msg.response_body() else {
            return 0;
        };
        let start = out.offset.get();
        let end = (start + self.chunk).min(out.data.len());
        body.append_bytes(&glib::Bytes::from_bytes(&out.data, start..end));
        out.offset.set(end);
        if end == out.data.len() {
            body.complete();
        }
        // Tokens may go negative: a debt repaid before anything else is sent.
        bucket.tokens -= (end - start) as f64;
        end - start
    }

    fn ensure_timer(&self) {
        let mut bucket = self.bucket.borrow_mut();
        if bucket.timer.is_some() {
            return;
        }
        let me = self.me.clone();
        bucket.timer = Some(glib::timeout_add_local(TICK, move || match me.upgrade() {
            Some(upload_cap) => upload_cap.tick(),
            None => glib::ControlFlow::Break,
        }));
    }

    fn tick(&self) -> glib::ControlFlow {
        let mut unpause = Vec::new();
        let mut bucket = self.bucket.borrow_mut();
        Self::refill(&mut bucket, self.rate, self.burst);
        while bucket.tokens > 0.0 {
            let Some(out) = bucket.queue.pop_front() else {
                break;
            };
            if out.done.get() {
                continue;
            }
            if self.append_chunk(&out, &mut bucket) > 0 {
                unpause.push(out);
            }
        }
        let idle = bucket.queue.is_empty();
        if idle {
            bucket.timer = None;
        }
        drop(bucket);
        for out in unpause {
            if let (false, Some(msg)) = (out.done.get(), out.msg.upgrade()) {
                msg.unpause();
            }
        }
        if idle {
            glib::ControlFlow::Break
        } else {
            glib::ControlFlow::Continue
        }
    }

    /// For a body made as it is sent (chunk by chunk, not a `glib::Bytes`): takes
    /// `len` bytes' worth of tokens and returns `None` when the chunk may go now,
    /// or how long to wait before asking again. Bodies queued here go first.
    pub fn try_take(&self, len: usize) -> Option<Duration> {
        let mut bucket = self.bucket.borrow_mut();
        Self::refill(&mut bucket, self.rate, self.burst);
        if bucket.tokens <= 0.0 || !bucket.queue.is_empty() {
            let deficit = (-bucket.tokens).max(0.0);
            return Some(TICK.max(Duration::from_secs_f64(deficit / self.rate as f64)));
        }
        // As for queued bodies: a debt repaid before anything else is sent.
        bucket.tokens -= len as f64;
        None
    }

    /// Stops the timer; queued bodies are abandoned (the server is going away).
    pub fn stop(&self) {
        let mut bucket = self.bucket.borrow_mut();
        bucket.queue.clear();
        if let Some(id) = bucket.timer.take() {
            id.remove();
        }
    }
}

/// Sends `data` as the body of `msg`: whole, or under `upload_cap`'s cap.
pub fn send_body(msg: &soup::ServerMessage, data: glib::Bytes, upload_cap: Option<&UploadCap>) {
    match upload_cap {
        Some(upload_cap) => upload_cap.send(msg, data),
        None => {
            if let Some(body) = msg.response_body() {
                body.set_accumulate(false);
                if !data.is_empty() {
                    body.append_bytes(&data);
                }
                body.complete();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_bodies_take_tokens_and_wait_when_in_debt() {
        let upload_cap = UploadCap::new(100_000);
        // The first chunk goes at once, into debt; the next waits for the debt.
        assert_eq!(upload_cap.try_take(64 * 1024), None);
        let wait = upload_cap.try_take(64 * 1024).expect("in debt");
        assert!(wait >= Duration::from_millis(300), "{wait:?}");
        assert!(wait <= Duration::from_millis(700), "{wait:?}");
    }
}
