//! `FerryProgress`: the progress of one transfer (an update's download, a copy to
//! a USB stick), sampled for the widgets.
//!
//! Reports come as fast as the engine sends them. The model keeps
//! only the newest and publishes it every [`SAMPLE_INTERVAL`] — the one timer that
//! paces progress in the window — so widgets redraw at most ten times a second
//! however fast reports come. Each published sample is in the properties and in
//! [`FerryProgress::sample`], and announced by the `sampled` signal.

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;
use std::time::Duration;

use gtk4::{glib, prelude::*, subclass::prelude::*};

use crate::fetch::engine::{EngineEvent, SourceProgress};
use crate::share::usb::UsbEvent;

/// How often the newest report reaches the widgets.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// One published state of a transfer.
#[derive(Clone, Debug, Default)]
pub struct ProgressSample {
    pub bytes_done: u64,
    /// An estimate that may grow while the transfer runs.
    pub bytes_total: u64,
    pub eta_seconds: Option<u64>,
    /// Per source (downloads only).
    pub sources: Vec<SourceProgress>,
}

impl ProgressSample {
    /// What an engine event says of the download, if it is a progress report.
    pub fn from_engine(event: &EngineEvent) -> Option<Self> {
        match event {
            EngineEvent::Progress {
                overall, sources, ..
            } => Some(Self {
                bytes_done: overall.bytes_done,
                bytes_total: overall.bytes_total,
                eta_seconds: overall.eta_seconds,
                sources: sources.clone(),
            }),
            _ => None,
        }
    }

    /// What a USB copier event says of the copy, if it is a progress report.
    pub fn from_usb(event: &UsbEvent) -> Option<Self> {
        match event {
            UsbEvent::Progress {
                bytes_done,
                bytes_total,
                ..
            } => Some(Self {
                bytes_done: *bytes_done,
                bytes_total: *bytes_total,
                ..Self::default()
            }),
            _ => None,
        }
    }

    /// The total as shown: never less than what is done.
    pub fn total(&self) -> u64 {
        self.bytes_total.max(self.bytes_done)
    }

    /// Done so far, 0 to 1.
    pub fn fraction(&self) -> f64 {
        self.part(self.bytes_done)
    }

    /// `bytes` as a part of the total, 0 to 1 (a source's share of a download).
    pub fn part(&self, bytes: u64) -> f64 {
        match self.total() {
            0 => 0.0,
            total => (bytes as f64 / total as f64).clamp(0.0, 1.0),
        }
    }
}

mod imp {
    use super::*;

    #[derive(Debug, Default, glib::Properties)]
    #[properties(wrapper_type = super::FerryProgress)]
    pub struct FerryProgress {
        /// A transfer is running: reports are being sampled.
        #[property(get)]
        pub(super) active: Cell<bool>,
        /// Done so far, 0 to 1, as of the last sample.
        #[property(get, minimum = 0.0, maximum = 1.0)]
        pub(super) fraction: Cell<f64>,
        #[property(get)]
        pub(super) bytes_done: Cell<u64>,
        #[property(get)]
        pub(super) bytes_total: Cell<u64>,
        /// The newest report, not yet published.
        pub(super) pending: RefCell<Option<ProgressSample>>,
        /// The last published sample.
        pub(super) sample: RefCell<ProgressSample>,
        pub(super) timer: RefCell<Option<glib::SourceId>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryProgress {
        const NAME: &'static str = "FerryProgress";
        type Type = super::FerryProgress;
    }

    #[glib::derived_properties]
    impl ObjectImpl for FerryProgress {
        fn signals() -> &'static [glib::subclass::Signal] {
            static SIGNALS: OnceLock<Vec<glib::subclass::Signal>> = OnceLock::new();
            // A new sample is published (see `FerryProgress::sample`).
            SIGNALS.get_or_init(|| vec![glib::subclass::Signal::builder("sampled").build()])
        }

        fn dispose(&self) {
            if let Some(timer) = self.timer.take() {
                timer.remove();
            }
        }
    }
}

glib::wrapper! {
    pub struct FerryProgress(ObjectSubclass<imp::FerryProgress>);
}

impl Default for FerryProgress {
    fn default() -> Self {
        glib::Object::new()
    }
}

impl FerryProgress {
    pub fn new() -> Self {
        Self::default()
    }

    /// A transfer starts: from nothing done, sampled from now on.
    pub fn start(&self) {
        let imp = self.imp();
        imp.pending.take();
        self.publish(ProgressSample::default());
        if imp.timer.borrow().is_none() {
            let weak = self.downgrade();
            let timer = glib::timeout_add_local(SAMPLE_INTERVAL, move || match weak.upgrade() {
                Some(progress) => {
                    progress.publish_pending();
                    glib::ControlFlow::Continue
                }
                None => glib::ControlFlow::Break,
            });
            imp.timer.replace(Some(timer));
        }
        if !imp.active.replace(true) {
            self.notify_active();
        }
    }

    /// Keeps the newest report; the next tick publishes it.
    pub fn report(&self, sample: ProgressSample) {
        self.imp().pending.replace(Some(sample));
    }

    /// Keeps what an engine event reports, if it reports progress.
    pub fn engine_event(&self, event: &EngineEvent) {
        if let Some(sample) = ProgressSample::from_engine(event) {
            self.report(sample);
        }
    }

    /// Keeps what a USB copier event reports, if it reports progress.
    pub fn usb_event(&self, event: &UsbEvent) {
        if let Some(sample) = ProgressSample::from_usb(event) {
            self.report(sample);
        }
    }

    /// The transfer ended: publishes its last report and stops sampling.
    pub fn finish(&self) {
        let imp = self.imp();
        if let Some(timer) = imp.timer.take() {
            timer.remove();
        }
        self.publish_pending();
        if imp.active.replace(false) {
            self.notify_active();
        }
    }

    /// The last published sample.
    pub fn sample(&self) -> ProgressSample {
        self.imp().sample.borrow().clone()
    }

    /// Connects to `sampled`: a new sample is published.
    pub fn connect_sampled<F: Fn(&Self) + 'static>(&self, f: F) -> glib::SignalHandlerId {
        self.connect_local("sampled", false, move |values| {
            let progress = values[0].get::<Self>().expect("the emitter");
            f(&progress);
            None
        })
    }

    fn publish_pending(&self) {
        if let Some(sample) = self.imp().pending.take() {
            self.publish(sample);
        }
    }

    fn publish(&self, sample: ProgressSample) {
        let imp = self.imp();
        let fraction = sample.fraction();
        if (imp.fraction.replace(fraction) - fraction).abs() > f64::EPSILON {
            self.notify_fraction();
        }
        if imp.bytes_done.replace(sample.bytes_done) != sample.bytes_done {
            self.notify_bytes_done();
        }
        let total = sample.total();
        if imp.bytes_total.replace(total) != total {
            self.notify_bytes_total();
        }
        imp.sample.replace(sample);
        self.emit_by_name::<()>("sampled", &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn keeps_the_newest_report_and_publishes_it_once() {
        let progress = FerryProgress::new();
        let published = Rc::new(Cell::new(0));
        let counter = published.clone();
        progress.connect_sampled(move |_| counter.set(counter.get() + 1));
        for done in [10, 20, 30] {
            progress.report(ProgressSample {
                bytes_done: done,
                bytes_total: 40,
                ..ProgressSample::default()
            });
        }
        // Reports alone reach no widget: only a tick (or the end) publishes.
        assert_eq!(published.get(), 0);
        assert_eq!(progress.bytes_done(), 0);
        progress.finish();
        assert_eq!(published.get(), 1);
        assert_eq!(progress.sample().bytes_done, 30);
        assert_eq!((progress.bytes_done(), progress.bytes_total()), (30, 40));
        assert_eq!(progress.fraction(), 0.75);
        // Nothing new: nothing published again.
        progress.finish();
        assert_eq!(published.get(), 1);
    }

    #[test]
    fn fractions_stay_between_nothing_and_everything() {
        let sample = |done, total| ProgressSample {
            bytes_done: done,
            bytes_total: total,
            ..ProgressSample::default()
        };
        assert_eq!(sample(0, 0).fraction(), 0.0);
        assert_eq!(sample(50, 200).fraction(), 0.25);
        // The estimate fell behind: the total shown is what is done.
        assert_eq!(sample(300, 200).total(), 300);
        assert_eq!(sample(300, 200).fraction(), 1.0);
        assert_eq!(sample(50, 200).part(400), 1.0);
        let copy = UsbEvent::Progress {
            ref_name: "os/stable".into(),
            bytes_done: 10,
            bytes_total: 40,
            objects_done: 1,
            objects_total: 4,
        };
        assert_eq!(
            ProgressSample::from_usb(&copy).map(|s| s.fraction()),
            Some(0.25)
        );
    }
}
