//! `FerrySource`: one source as the UI sees it, an item of the window's
//! `gio::ListStore`. Discovery events and (sampled) engine progress update its
//! properties; rows ([`crate::widgets::FerrySourceRow`]) bind to them.

use std::cell::{Cell, RefCell};

use gettextrs::gettext;
use gtk4::{glib, prelude::*, subclass::prelude::*};

use crate::sources::{Source, SourceKind, SourceState};

mod imp {
    use super::*;

    #[derive(Debug, Default, glib::Properties)]
    #[properties(wrapper_type = super::FerrySource)]
    pub struct FerrySource {
        /// Discovery's stable id.
        #[property(get, set)]
        id: RefCell<String>,
        /// `usb`, `lan`, `internet` or `static`.
        #[property(get, set)]
        kind: RefCell<String>,
        /// What the row shows as its title (and its accessible name).
        #[property(get, set)]
        name: RefCell<String>,
        #[property(get, set)]
        uri: RefCell<String>,
        #[property(get, set)]
        icon_name: RefCell<String>,
        /// What it offers and how fresh that is, in words.
        #[property(get, set)]
        freshness: RefCell<String>,
        /// Discovery's state.
        #[property(get, set, builder(SourceState::default()))]
        state: Cell<SourceState>,
        /// The one source chosen instead of "Automatic".
        #[property(get, set)]
        selected: Cell<bool>,
        /// Whether the current download uses it (its progress is shown).
        #[property(get, set)]
        downloading: Cell<bool>,
        /// Its share of the whole download, 0 to 1.
        #[property(get, set, minimum = 0.0, maximum = 1.0)]
        progress_fraction: Cell<f64>,
        /// Bytes per second, lately.
        #[property(get, set)]
        rate: Cell<u64>,
        /// Bytes it has served in this download.
        #[property(get, set)]
        bytes: Cell<u64>,
        /// Bytes and rate in words ("1.2 MB · 300 kB/s").
        #[property(get, set)]
        progress_text: RefCell<String>,
        /// The source as discovery last reported it.
        pub source: RefCell<Option<Source>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerrySource {
        const NAME: &'static str = "FerrySource";
        type Type = super::FerrySource;
    }

    #[glib::derived_properties]
    impl ObjectImpl for FerrySource {}
}

glib::wrapper! {
    pub struct FerrySource(ObjectSubclass<imp::FerrySource>);
}

/// The icon of a kind of source.
pub fn icon_for(source: &Source) -> &'static str {
    match source.kind {
        SourceKind::Usb => "drive-removable-media-symbolic",
        SourceKind::Lan => "computer-symbolic",
        SourceKind::Internet => "network-server-symbolic",
        // Given by hand: a computer nearby, or a directory.
        SourceKind::Static if source.is_local_file() => "drive-harddisk-symbolic",
        SourceKind::Static => "computer-symbolic",
    }
}

/// The name shown for a source.
pub fn display_name(source: &Source) -> String {
    match source.kind {
        SourceKind::Static if !source.is_local_file() => {
            // Translators: a source given by its address, e.g. “Computer at 10.0.0.5”.
            gettext("Computer at {}").replace("{}", &source.name)
        }
        _ => source.name.clone(),
    }
}

impl FerrySource {
    pub fn new(source: &Source) -> Self {
        let obj: Self = glib::Object::builder()
            .property("id", &source.id)
            .property("kind", source.kind.as_str())
            .build();
        obj.set_source(source);
        obj
    }

    /// Takes what discovery reports now.
    pub fn set_source(&self, source: &Source) {
        self.set_if_changed("name", display_name(source));
        self.set_if_changed("uri", source.uri.clone());
        self.set_if_changed("icon-name", icon_for(source).to_owned());
        self.set_if_changed("state", source.state);
        self.imp().source.replace(Some(source.clone()));
    }

    /// The source as discovery last reported it.
    pub fn source(&self) -> Option<Source> {
        self.imp().source.borrow().clone()
    }

    /// Sets a property only when its value changes, so bound widgets redraw only
    /// for real changes.
    pub fn set_if_changed<V>(&self, name: &str, value: V)
    where
        V: ToValue + Into<glib::Value> + PartialEq + for<'a> glib::value::FromValue<'a> + 'static,
    {
        if self.property::<V>(name) != value {
            self.set_property(name, value);
        }
    }
}
