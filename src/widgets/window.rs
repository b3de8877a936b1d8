//! `FerryWindow`: the main window. For now a header bar with the primary menu and a
//! status page; the status area and the source list will grow here.

use std::cell::RefCell;

use gtk4 as gtk;
use libadwaita as adw;

use adw::subclass::prelude::*;
use gtk::{gio, glib, prelude::*};

use crate::config::PROFILE;
use crate::widgets::FerryApplication;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate, glib::Properties)]
    #[template(resource = "/io/github/ferry_updates/Ferry/ui/window.ui")]
    #[properties(wrapper_type = super::FerryWindow)]
    pub struct FerryWindow {
        /// The line under the title of the status page ("Updates from nearby", later
        /// "Up to date", "Update available" …). Set from the template.
        #[property(get, set)]
        status_description: RefCell<String>,
        #[template_child]
        pub status_page: TemplateChild<adw::StatusPage>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryWindow {
        const NAME: &'static str = "FerryWindow";
        type Type = super::FerryWindow;
        type ParentType = adw::ApplicationWindow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[glib::derived_properties]
    impl ObjectImpl for FerryWindow {
        fn constructed(&self) {
            self.parent_constructed();
            // libadwaita stripes the header bar of development builds.
            if PROFILE == "development" {
                self.obj().add_css_class("devel");
            }
        }
    }

    impl WidgetImpl for FerryWindow {}
    impl WindowImpl for FerryWindow {}
    impl ApplicationWindowImpl for FerryWindow {}
    impl AdwApplicationWindowImpl for FerryWindow {}
}

glib::wrapper! {
    pub struct FerryWindow(ObjectSubclass<imp::FerryWindow>)
        @extends gtk::Widget, gtk::Window, gtk::ApplicationWindow, adw::ApplicationWindow,
        // No gtk::Accessible: gtk4-rs exposes it only with its v4_10 feature.
        @implements gio::ActionGroup, gio::ActionMap, gtk::Buildable,
            gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

impl FerryWindow {
    pub fn new(app: &FerryApplication) -> Self {
        glib::Object::builder().property("application", app).build()
    }
}
