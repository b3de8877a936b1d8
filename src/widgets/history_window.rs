//! `FerryHistoryWindow`: past updates (version, date, sources, bytes from the
//! internet), read from the log `ferryctl update` and the window both append to
//! (`fetch::history`).

use std::cell::Cell;
use std::path::Path;

use gtk4 as gtk;
use libadwaita as adw;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::glib;

use crate::fetch::history;
use crate::objects::text::history_words;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate, glib::Properties)]
    #[template(resource = "/io/github/ferry_updates/Ferry/ui/history-window.ui")]
    #[properties(wrapper_type = super::FerryHistoryWindow)]
    pub struct FerryHistoryWindow {
        #[template_child]
        pub stack: TemplateChild<gtk::Stack>,
        #[template_child]
        pub list: TemplateChild<gtk::ListBox>,
        /// How many past updates are listed.
        #[property(get)]
        pub entries: Cell<u32>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryHistoryWindow {
        const NAME: &'static str = "FerryHistoryWindow";
        type Type = super::FerryHistoryWindow;
        type ParentType = adw::Window;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.add_binding_action(
                gtk::gdk::Key::Escape,
                gtk::gdk::ModifierType::empty(),
                "window.close",
            );
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[glib::derived_properties]
    impl ObjectImpl for FerryHistoryWindow {}
    impl WidgetImpl for FerryHistoryWindow {}
    impl WindowImpl for FerryHistoryWindow {}
    impl AdwWindowImpl for FerryHistoryWindow {}
}

glib::wrapper! {
    pub struct FerryHistoryWindow(ObjectSubclass<imp::FerryHistoryWindow>)
        @extends gtk::Widget, gtk::Window, adw::Window,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native, gtk::Root,
            gtk::ShortcutManager;
}

impl FerryHistoryWindow {
    /// The history kept at `path`, newest first.
    pub fn new(parent: &impl IsA<gtk::Window>, path: &Path) -> Self {
        let window: Self = glib::Object::builder()
            .property("transient-for", parent)
            .build();
        window.show_entries(&history::load(path));
        window
    }

    fn show_entries(&self, entries: &[history::HistoryEntry]) {
        let imp = self.imp();
        for entry in entries {
            let (title, subtitle) = history_words(entry);
            let row = adw::ActionRow::builder()
                .title(glib::markup_escape_text(&title))
                .subtitle(glib::markup_escape_text(&subtitle))
                .build();
            imp.list.append(&row);
        }
        imp.entries
            .set(u32::try_from(entries.len()).unwrap_or(u32::MAX));
        self.notify_entries();
        imp.stack
            .set_visible_child_name(if entries.is_empty() { "empty" } else { "list" });
    }
}
