//! The sources list: discovery's events become [`FerrySource`] items, with what
//! each offers in words; the source choice ("Automatic" or one source); which
//! sources the engine may use.

use gettextrs::gettext;
use gtk4::{gio, glib, prelude::*, subclass::prelude::*};

use super::checking::{Blocked, Installed};
use super::text::{freshness_words, unusable_source_words, Known};
use super::{FerryUpdater, AUTOMATIC};
use crate::fetch::engine::unused_reason;
use crate::objects::FerrySource;
use crate::sources::{sort_sources, Locality, Source, SourceEvent};

impl FerryUpdater {
    pub(super) fn source_event(&self, event: SourceEvent) {
        let store = self.store();
        match event {
            SourceEvent::Added { source } | SourceEvent::Changed { source } => {
                match self.item(&source.id) {
                    Some((_, item)) => item.set_source(&source),
                    None => {
                        let item = FerrySource::new(&source);
                        let mut all: Vec<Source> = self
                            .items()
                            .iter()
                            .filter_map(FerrySource::source)
                            .collect();
                        all.push(source.clone());
                        sort_sources(&mut all);
                        let position = all.iter().position(|s| s.id == source.id).unwrap_or(0);
                        store.insert(position as u32, &item);
                        item.set_selected(*self.imp().source_choice.borrow() == source.id);
                        item.connect_selected_notify(glib::clone!(
                            #[weak(rename_to = obj)]
                            self,
                            move |item| {
                                if item.selected() {
                                    obj.set_source_choice(item.id());
                                }
                            }
                        ));
                    }
                }
            }
            SourceEvent::Removed { source } => {
                if let Some((position, item)) = self.item(&source.id) {
                    store.remove(position);
                    if item.selected() {
                        self.toast(
                            &gettext("“{}” is gone: choose another source")
                                .replace("{}", &item.name()),
                        );
                    }
                }
            }
        }
        self.refresh_freshness();
        self.schedule_check();
    }

    /// Marks the chosen source's item as selected (and no other).
    pub(super) fn sync_selection(&self) {
        let choice = self.imp().source_choice.borrow().clone();
        for item in self.items() {
            item.set_if_changed("selected", item.id() == choice);
        }
    }

    /// Whether the engine (and discovery) leave `source` out: the internet on a
    /// metered connection, unless allowed. Only for the words shown; the engine
    /// decides by itself.
    pub(super) fn metered_excluded(&self, source: &Source) -> bool {
        source.locality() == Locality::Internet
            && !self.imp().use_metered.get()
            && gio::NetworkMonitor::default().is_network_metered()
    }

    pub(super) fn network_changed(&self) {
        self.refresh_freshness();
        self.schedule_check();
    }

    /// Updates every item's "what it has, how fresh" text.
    pub(super) fn refresh_freshness(&self) {
        let imp = self.imp();
        let installed = imp.installed.borrow();
        let plans = imp.plans.borrow();
        for item in self.items() {
            let Some(source) = item.source() else {
                continue;
            };
            let unusable = unusable_source_words(
                source.state,
                self.metered_excluded(&source),
                self.not_trusted_for_any(&source, &installed),
            );
            let text = unusable.unwrap_or_else(|| {
                installed
                    .iter()
                    .find_map(|i| source.offer_for(&i.target).map(|offer| (i, offer.clone())))
                    .map(|(i, offer)| {
                        let newest = plans
                            .iter()
                            .find(|p| {
                                p.remote == i.target.remote.name && p.ref_name == i.target.ref_name
                            })
                            .map(|p| Known {
                                commit: p.commit,
                                timestamp: Some(p.timestamp),
                                version: p.version.clone(),
                            });
                        let mine = i.commit.map(|commit| Known {
                            commit,
                            timestamp: i.timestamp,
                            version: None,
                        });
                        freshness_words(&offer, mine.as_ref(), newest.as_ref())
                    })
                    .unwrap_or_else(|| gettext("Has nothing for this computer"))
            });
            item.set_if_changed("freshness", text);
        }
    }

    /// Whether `source` offers tracked refs, and may be used for none of them: their
    /// remotes verify no signatures and it is a discovered, not a chosen, source.
    fn not_trusted_for_any(&self, source: &Source, installed: &[Installed]) -> bool {
        let named = self.named_sources();
        let mut offered = installed
            .iter()
            .filter(|i| source.offer_for(&i.target).is_some())
            .peekable();
        offered.peek().is_some()
            && offered.all(|i| unused_reason(&i.target.remote, source, &named).is_some())
    }

    /// The source chosen by hand, if one is.
    pub(super) fn named_sources(&self) -> Vec<String> {
        let choice = self.imp().source_choice.borrow().clone();
        if choice == AUTOMATIC {
            Vec::new()
        } else {
            vec![choice]
        }
    }

    /// The sources to give the engine: the chosen one, or every one allowed.
    pub(super) fn engine_sources(&self) -> Result<Vec<Source>, Blocked> {
        let discovery = self.imp().discovery.borrow().clone();
        let Some(discovery) = discovery else {
            return Err(Blocked::NoSources);
        };
        let choice = self.imp().source_choice.borrow().clone();
        // The engine leaves out the internet on a metered connection itself.
        let allowed = discovery.sources().into_iter();
        if choice == AUTOMATIC {
            let sources: Vec<Source> = allowed.collect();
            if sources.is_empty() {
                return Err(Blocked::NoSources);
            }
            Ok(sources)
        } else {
            let chosen: Vec<Source> = allowed.filter(|s| s.id == choice).collect();
            if chosen.is_empty() {
                return Err(Blocked::ChosenSourceMissing);
            }
            Ok(chosen)
        }
    }
}
