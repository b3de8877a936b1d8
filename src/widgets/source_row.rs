//! `FerrySourceRow`: one row of the sources list, bound to a [`FerrySource`]: icon,
//! name, what it has and how fresh, the radio button that makes it the only source,
//! and while downloading its share of the download, bytes and rate. Screen readers
//! (and the at-spi tests) know the row by its title, the source's name: AdwActionRow
//! labels itself with it.

use std::cell::RefCell;

use gtk4 as gtk;
use libadwaita as adw;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::glib;

use crate::objects::FerrySource;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate, glib::Properties)]
    #[template(resource = "/io/github/ferry_updates/Ferry/ui/source-row.ui")]
    #[properties(wrapper_type = super::FerrySourceRow)]
    pub struct FerrySourceRow {
        /// The source shown.
        #[property(get, set = Self::set_item, construct_only)]
        item: RefCell<Option<FerrySource>>,
        #[template_child]
        pub choice: TemplateChild<gtk::CheckButton>,
        #[template_child]
        pub icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub progress_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub progress_bar: TemplateChild<gtk::ProgressBar>,
        #[template_child]
        pub progress_label: TemplateChild<gtk::Label>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerrySourceRow {
        const NAME: &'static str = "FerrySourceRow";
        type Type = super::FerrySourceRow;
        type ParentType = adw::ActionRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl FerrySourceRow {
        fn set_item(&self, item: Option<FerrySource>) {
            let Some(item) = item else { return };
            let row = self.obj();
            item.bind_property("name", &*row, "title")
                .sync_create()
                .build();
            item.bind_property("freshness", &*row, "subtitle")
                .sync_create()
                .build();
            item.bind_property("icon-name", &*self.icon, "icon-name")
                .sync_create()
                .build();
            item.bind_property("selected", &*self.choice, "active")
                .sync_create()
                .bidirectional()
                .build();
            item.bind_property("downloading", &*self.progress_box, "visible")
                .sync_create()
                .build();
            item.bind_property("progress-fraction", &*self.progress_bar, "fraction")
                .sync_create()
                .build();
            item.bind_property("progress-text", &*self.progress_label, "label")
                .sync_create()
                .build();
            self.item.replace(Some(item));
        }
    }

    #[glib::derived_properties]
    impl ObjectImpl for FerrySourceRow {}
    impl WidgetImpl for FerrySourceRow {}
    impl ListBoxRowImpl for FerrySourceRow {}
    impl PreferencesRowImpl for FerrySourceRow {}
    impl ActionRowImpl for FerrySourceRow {}
}

glib::wrapper! {
    pub struct FerrySourceRow(ObjectSubclass<imp::FerrySourceRow>)
        @extends gtk::Widget, gtk::ListBoxRow, adw::PreferencesRow, adw::ActionRow,
        @implements gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl FerrySourceRow {
    /// A row for `item`, whose radio button joins `group`.
    pub fn new(item: &FerrySource, group: &gtk::CheckButton) -> Self {
        let row: Self = glib::Object::builder().property("item", item).build();
        row.imp().choice.set_group(Some(group));
        row
    }
}
