//! `FerryApplication`: owns the application-wide actions and opens the window.

use gettextrs::gettext;
use gtk4 as gtk;
use libadwaita as adw;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{gio, glib};

use crate::config::{APP_ID, VERSION};
use crate::widgets::FerryWindow;

/// Resources and icons live under the base id for every profile, so the
/// development build finds the same ones.
const RESOURCE_BASE_PATH: &str = "/io/github/ferry_updates/Ferry/";
const ICON_NAME: &str = "io.github.ferry_updates.Ferry";

mod imp {
    use super::*;

    #[derive(Debug, Default)]
    pub struct FerryApplication;

    #[glib::object_subclass]
    impl ObjectSubclass for FerryApplication {
        const NAME: &'static str = "FerryApplication";
        type Type = super::FerryApplication;
        type ParentType = adw::Application;
    }

    impl ObjectImpl for FerryApplication {}

    impl ApplicationImpl for FerryApplication {
        fn startup(&self) {
            self.parent_startup();
            let app = self.obj();
            app.setup_actions();
        }

        fn activate(&self) {
            self.parent_activate();
            let app = self.obj();
            // A second launch raises the existing window instead of opening another.
            let window = app
                .active_window()
                .unwrap_or_else(|| FerryWindow::new(&app).upcast());
            window.present();
        }
    }

    impl GtkApplicationImpl for FerryApplication {}
    impl AdwApplicationImpl for FerryApplication {}
}

glib::wrapper! {
    pub struct FerryApplication(ObjectSubclass<imp::FerryApplication>)
        @extends gio::Application, gtk::Application, adw::Application,
        @implements gio::ActionGroup, gio::ActionMap;
}

impl FerryApplication {
    pub fn new() -> Self {
        glib::Object::builder()
            .property("application-id", APP_ID)
            .property("resource-base-path", RESOURCE_BASE_PATH)
            .property("flags", gio::ApplicationFlags::empty())
            .build()
    }

    fn setup_actions(&self) {
        let quit = gio::ActionEntry::builder("quit")
            .activate(|app: &Self, _, _| app.quit())
            .build();
        let about = gio::ActionEntry::builder("about")
            .activate(|app: &Self, _, _| app.show_about())
            .build();
        self.add_action_entries([quit, about]);
        self.set_accels_for_action("app.quit", &["<primary>q"]);
    }

    fn show_about(&self) {
        let about = adw::AboutWindow::builder()
            .application_name("Ferry")
            .application_icon(ICON_NAME)
            .developer_name(gettext("The Ferry developers"))
            .version(VERSION)
            .comments(gettext("Finds updates on USB drives and nearby computers, downloads them from several sources at once, and passes them on."))
            .license_type(gtk::License::Gpl30)
            .modal(true)
            .build();
        // Translators: replace with your names, one per line.
        let credits = gettext("translator-credits");
        // Untranslated, it is the msgid itself: show no credits rather than that.
        if credits != "translator-credits" {
            about.set_translator_credits(&credits);
        }
        if let Some(window) = self.active_window() {
            about.set_transient_for(Some(&window));
        }
        about.present();
    }
}

impl Default for FerryApplication {
    fn default() -> Self {
        Self::new()
    }
}
