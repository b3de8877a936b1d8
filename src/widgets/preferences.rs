//! `FerryPreferencesWindow`: sharing with nearby computers, its upload limit,
//! whether to use the internet on metered connections, the download limit, and
//! where to look for updates (drives, the local network). Every switch is bound to
//! Ferry's GSettings; the window's [`FerryUpdater`](crate::widgets::FerryUpdater)
//! follows the same keys.

use gtk4 as gtk;
use libadwaita as adw;

use adw::subclass::prelude::*;
use gtk::{gio, glib, prelude::*};

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(resource = "/io/github/ferry_updates/Ferry/ui/preferences.ui")]
    pub struct FerryPreferencesWindow {
        #[template_child]
        pub share_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub metered_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub limit_spin: TemplateChild<gtk::SpinButton>,
        #[template_child]
        pub download_limit_spin: TemplateChild<gtk::SpinButton>,
        #[template_child]
        pub limit_internet_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub drives_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub lan_switch: TemplateChild<gtk::Switch>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryPreferencesWindow {
        const NAME: &'static str = "FerryPreferencesWindow";
        type Type = super::FerryPreferencesWindow;
        type ParentType = adw::PreferencesWindow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for FerryPreferencesWindow {}
    impl WidgetImpl for FerryPreferencesWindow {}
    impl WindowImpl for FerryPreferencesWindow {}
    impl AdwWindowImpl for FerryPreferencesWindow {}
    impl PreferencesWindowImpl for FerryPreferencesWindow {}
}

glib::wrapper! {
    pub struct FerryPreferencesWindow(ObjectSubclass<imp::FerryPreferencesWindow>)
        @extends gtk::Widget, gtk::Window, adw::Window, adw::PreferencesWindow,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native, gtk::Root,
            gtk::ShortcutManager;
}

impl FerryPreferencesWindow {
    pub fn new(settings: &gio::Settings, parent: Option<&gtk::Window>) -> Self {
        let window: Self = glib::Object::builder()
            .property("transient-for", parent)
            .build();
        let imp = window.imp();
        settings
            .bind("share-updates", &*imp.share_switch, "active")
            .build();
        for (key, switch) in [
            ("use-metered", &*imp.metered_switch),
            (
                "download-rate-limit-internet-only",
                &*imp.limit_internet_switch,
            ),
            ("look-on-drives", &*imp.drives_switch),
            ("look-on-lan", &*imp.lan_switch),
        ] {
            settings.bind(key, switch, "active").build();
        }
        // Bytes/s in the key, KiB/s shown.
        settings
            .bind(
                "download-rate-limit",
                &imp.download_limit_spin.adjustment(),
                "value",
            )
            .mapping(|variant, _| {
                variant
                    .get::<u32>()
                    .map(|v| (f64::from(v) / 1024.0).round().to_value())
            })
            .set_mapping(|value, _| {
                let bytes =
                    (value.get::<f64>().ok()?.round() * 1024.0).clamp(0.0, f64::from(u32::MAX));
                Some((bytes as u32).to_variant())
            })
            .build();
        // KiB/s as a "u" key; the spin button's adjustment holds a double.
        settings
            .bind("bandwidth-limit", &imp.limit_spin.adjustment(), "value")
            .mapping(|variant, _| variant.get::<u32>().map(|v| f64::from(v).to_value()))
            .set_mapping(|value, _| {
                let kib = value
                    .get::<f64>()
                    .ok()?
                    .round()
                    .clamp(0.0, f64::from(u32::MAX));
                Some((kib as u32).to_variant())
            })
            .build();
        window
    }
}
