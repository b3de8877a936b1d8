//! `FerryWindow`: the main window. A status area (what is installed, what is
//! available, download progress, errors) with Update and Cancel, the choice between
//! "Automatic" and one source, and the live list of sources. Its model is a
//! [`FerryUpdater`], which the template's bindings look up.

use std::cell::RefCell;

use gettextrs::gettext;
use gtk4 as gtk;
use libadwaita as adw;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{gio, glib};

use crate::config::PROFILE;
use crate::fetch::history;
use crate::objects::{FerrySource, FerryUpdater, Launch, Status, AUTOMATIC};
use crate::widgets::{FerryApplication, FerryHistoryWindow, FerrySourceRow, FerryUsbDialog};

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate, glib::Properties)]
    #[template(resource = "/io/github/ferry_updates/Ferry/ui/window.ui")]
    #[properties(wrapper_type = super::FerryWindow)]
    pub struct FerryWindow {
        /// The model the status area and the sources list show.
        #[property(get)]
        pub updater: RefCell<Option<FerryUpdater>>,
        #[template_child]
        pub window_title: TemplateChild<adw::WindowTitle>,
        #[template_child]
        pub toast_overlay: TemplateChild<adw::ToastOverlay>,
        #[template_child]
        pub automatic_check: TemplateChild<gtk::CheckButton>,
        #[template_child]
        pub sources_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub status_icon: TemplateChild<gtk::Image>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryWindow {
        const NAME: &'static str = "FerryWindow";
        type Type = super::FerryWindow;
        type ParentType = adw::ApplicationWindow;

        fn class_init(klass: &mut Self::Class) {
            // The template looks up properties of this type.
            FerryUpdater::ensure_type();
            klass.bind_template();
            klass.install_action("win.update", None, |win, _, _| win.model().update());
            klass.install_action("win.cancel", None, |win, _, _| win.model().cancel());
            klass.install_action("win.refresh", None, |win, _, _| win.model().refresh());
            klass.install_action("win.copy-to-usb", None, |win, _, _| win.copy_to_usb());
            klass.install_action("win.history", None, |win, _, _| {
                FerryHistoryWindow::new(win, &history::default_history_path()).present();
            });
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[glib::derived_properties]
    impl ObjectImpl for FerryWindow {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            // libadwaita stripes the header bar of development builds.
            if PROFILE == "development" {
                obj.add_css_class("devel");
            }
            obj.setup_model();
        }
    }

    impl WidgetImpl for FerryWindow {}
    impl WindowImpl for FerryWindow {
        fn close_request(&self) -> glib::Propagation {
            // Downloads, servers and the demo world end with the window.
            self.obj().model().shutdown();
            self.parent_close_request()
        }
    }
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
    pub fn new(app: &FerryApplication, launch: Launch) -> Self {
        let window: Self = glib::Object::builder().property("application", app).build();
        let updater = window.model();
        let settings = app.settings();
        for key in [
            "source-choice",
            "use-metered",
            "share-updates",
            "bandwidth-limit",
            "download-rate-limit",
            "download-rate-limit-internet-only",
            "look-on-drives",
            "look-on-lan",
        ] {
            settings.bind(key, &updater, key).build();
        }
        updater.start(launch);
        window
    }

    /// The window's model.
    pub fn model(&self) -> FerryUpdater {
        self.imp()
            .updater
            .borrow()
            .clone()
            .expect("set in constructed()")
    }

    fn setup_model(&self) {
        let imp = self.imp();
        let updater = FerryUpdater::new();
        imp.updater.replace(Some(updater.clone()));
        self.notify("updater");

        for (action, property) in [("win.update", "can-update"), ("win.cancel", "can-cancel")] {
            let window = self.downgrade();
            let update = move |updater: &FerryUpdater| {
                if let Some(window) = window.upgrade() {
                    window.action_set_enabled(action, updater.property::<bool>(property));
                }
            };
            update(&updater);
            updater.connect_notify_local(Some(property), move |updater, _| update(updater));
        }
        let window = self.downgrade();
        let usb_enabled = move |updater: &FerryUpdater| {
            if let Some(window) = window.upgrade() {
                window.action_set_enabled(
                    "win.copy-to-usb",
                    !updater.repo_path().is_empty() && !updater.downloading(),
                );
            }
        };
        usb_enabled(&updater);
        updater.connect_repo_path_notify(usb_enabled.clone());
        updater.connect_downloading_notify(usb_enabled);

        // The status icon takes the colour of the news.
        let icon = imp.status_icon.clone();
        let paint = move |updater: &FerryUpdater| {
            let class = match updater.status() {
                Status::UpToDate | Status::Ready => "success",
                Status::Error => "error",
                Status::Available | Status::Downloading => "accent",
                _ => "dim-label",
            };
            for other in ["success", "error", "accent", "dim-label"] {
                icon.remove_css_class(other);
            }
            icon.add_css_class(class);
            // The spinner stands in for the icon while Ferry looks.
            icon.set_visible(!updater.busy());
        };
        paint(&updater);
        updater.connect_status_notify(paint.clone());
        updater.connect_busy_notify(paint);

        let title = imp.window_title.clone();
        updater.connect_demo_notify(move |updater| {
            if updater.demo() {
                title.set_subtitle(&gettext("Demonstration"));
            }
        });

        let overlay = imp.toast_overlay.clone();
        updater.connect_local("toast", false, move |values| {
            let message: String = values[1].get().expect("a string");
            overlay.add_toast(adw::Toast::new(&message));
            None
        });

        // "Automatic" and the rows' radio buttons form one group.
        let automatic = imp.automatic_check.clone();
        automatic.set_active(updater.source_choice() == AUTOMATIC);
        automatic.connect_toggled(glib::clone!(
            #[weak]
            updater,
            move |check| {
                if check.is_active() {
                    updater.set_source_choice(AUTOMATIC);
                }
            }
        ));
        updater.connect_source_choice_notify(glib::clone!(
            #[weak]
            automatic,
            move |updater| {
                let is_automatic = updater.source_choice() == AUTOMATIC;
                if automatic.is_active() != is_automatic {
                    automatic.set_active(is_automatic);
                }
            }
        ));
        imp.sources_list
            .bind_model(Some(&updater.store()), move |item| {
                let source = item
                    .downcast_ref::<FerrySource>()
                    .expect("the store holds FerrySources");
                FerrySourceRow::new(source, &automatic).upcast()
            });
    }

    fn copy_to_usb(&self) {
        let dialog = FerryUsbDialog::new(self, &self.model().repo_path());
        dialog.present();
    }
}
