//! `FerryApplication`: command-line options, settings, the application-wide
//! actions (preferences, about, quit) and the window.

use std::cell::RefCell;
use std::path::PathBuf;

use gettextrs::gettext;
use gtk4 as gtk;
use libadwaita as adw;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{gio, glib};

use crate::config::{APP_ID, VERSION};
use crate::objects::Launch;
use crate::signals::{on_stop_signals, StopSignals};
use crate::sources::LOG_DOMAIN;
use crate::widgets::{FerryPreferencesWindow, FerryWindow};

/// Resources and icons live under the base id for every profile, so the
/// development build finds the same ones.
const RESOURCE_BASE_PATH: &str = "/io/github/ferry_updates/Ferry/";
const ICON_NAME: &str = "io.github.ferry_updates.Ferry";
/// The settings schema: the base id for every profile, so both share settings.
const SCHEMA_ID: &str = "io.github.ferry_updates.Ferry";
/// The schema compiled at build time, for runs of a Ferry that is not installed.
const COMPILED_SCHEMA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/gschemas.compiled"));

/// Ferry's settings: the installed schema (or one `GSETTINGS_SCHEMA_DIR` points
/// to); otherwise the schema built into the binary, kept in memory only.
fn load_settings() -> gio::Settings {
    let installed = gio::SettingsSchemaSource::default()
        .and_then(|source| source.lookup(SCHEMA_ID, true))
        .is_some();
    if installed {
        return gio::Settings::new(SCHEMA_ID);
    }
    glib::g_warning!(
        LOG_DOMAIN,
        "the settings schema {SCHEMA_ID} is not installed: settings last until Ferry quits"
    );
    let schema = builtin_schema().expect("the schema built into Ferry loads");
    gio::Settings::new_full(&schema, Some(&gio::memory_settings_backend_new()), None)
}

fn builtin_schema() -> Result<gio::SettingsSchema, String> {
    // GIO reads compiled schemas from a directory only: write ours to a private one.
    let template = glib::tmp_dir().join("ferry-schema-XXXXXX");
    let dir = glib::mkdtemp(&template).ok_or("cannot make a temporary directory")?;
    let file = dir.join("gschemas.compiled");
    let result = std::fs::write(&file, COMPILED_SCHEMA)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            gio::SettingsSchemaSource::from_directory(
                &dir,
                gio::SettingsSchemaSource::default().as_ref(),
                false,
            )
            .map_err(|e| e.to_string())
        })
        .and_then(|source| {
            source
                .lookup(SCHEMA_ID, false)
                .ok_or_else(|| format!("no schema {SCHEMA_ID}"))
        });
    // The source has mapped the file; the directory is not needed any more.
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir(&dir);
    result
}

mod imp {
    use super::*;

    #[derive(Debug, Default)]
    pub struct FerryApplication {
        pub launch: RefCell<Launch>,
        pub settings: RefCell<Option<gio::Settings>>,
        /// SIGINT and SIGTERM quit while Ferry runs.
        pub stop_signals: RefCell<Option<StopSignals>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryApplication {
        const NAME: &'static str = "FerryApplication";
        type Type = super::FerryApplication;
        type ParentType = adw::Application;
    }

    impl ObjectImpl for FerryApplication {
        fn constructed(&self) {
            self.parent_constructed();
            self.obj().add_options();
        }
    }

    impl ApplicationImpl for FerryApplication {
        fn handle_local_options(
            &self,
            options: &glib::VariantDict,
        ) -> std::ops::ControlFlow<glib::ExitCode> {
            if options.contains("version") {
                println!("ferry {VERSION}");
                return std::ops::ControlFlow::Break(glib::ExitCode::SUCCESS);
            }
            let mut launch = self.launch.borrow_mut();
            launch.repo = options
                .lookup::<PathBuf>("repo")
                .ok()
                .flatten()
                .or_else(|| std::env::var_os("FERRY_REPO").map(PathBuf::from));
            launch.demo = options.contains("demo");
            launch.discovery.no_lan = options.contains("no-lan");
            launch.discovery.no_mounts = options.contains("no-mounts");
            launch.discovery.static_sources = options
                .lookup::<Vec<String>>("static-source")
                .ok()
                .flatten()
                .unwrap_or_default();
            launch.discovery.sideload_dirs = options
                .lookup::<Vec<PathBuf>>("sideload-dir")
                .ok()
                .flatten()
                .unwrap_or_default();
            // Go on: register and activate.
            std::ops::ControlFlow::Continue(())
        }

        fn startup(&self) {
            self.parent_startup();
            let app = self.obj();
            self.settings.replace(Some(load_settings()));
            app.setup_actions();
            app.quit_on_signals();
        }

        fn shutdown(&self) {
            self.stop_signals.take();
            self.parent_shutdown();
        }

        fn activate(&self) {
            self.parent_activate();
            let app = self.obj();
            // A second launch raises the existing window instead of opening another.
            let window = app
                .active_window()
                .unwrap_or_else(|| FerryWindow::new(&app, self.launch.borrow().clone()).upcast());
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

    /// Ferry's settings.
    pub fn settings(&self) -> gio::Settings {
        self.imp()
            .settings
            .borrow()
            .clone()
            .expect("loaded at startup")
    }

    fn add_options(&self) {
        use glib::{OptionArg, OptionFlags};
        let options: [(&str, OptionArg, String, Option<&str>); 7] = [
            (
                "repo",
                OptionArg::Filename,
                gettext("The repository to keep up to date"),
                Some("PATH"),
            ),
            (
                "demo",
                OptionArg::None,
                gettext("Try Ferry on a demonstration made on the spot"),
                None,
            ),
            (
                "static-source",
                OptionArg::StringArray,
                gettext("Also use this source (http://HOST:PORT/PATH or file:///PATH)"),
                Some("URI"),
            ),
            (
                "sideload-dir",
                OptionArg::FilenameArray,
                gettext("A directory of links to repositories, used like USB sticks"),
                Some("DIR"),
            ),
            (
                "no-lan",
                OptionArg::None,
                gettext("Do not use the local network: neither look for nearby computers nor announce this one"),
                None,
            ),
            (
                "no-mounts",
                OptionArg::None,
                gettext("Do not look at USB sticks and other drives"),
                None,
            ),
            (
                "version",
                OptionArg::None,
                gettext("Show the version and quit"),
                None,
            ),
        ];
        for (name, arg, description, arg_description) in options {
            self.add_main_option(
                name,
                glib::Char::from(0),
                OptionFlags::NONE,
                arg,
                &description,
                arg_description,
            );
        }
    }

    /// SIGINT and SIGTERM quit as Ctrl+Q does: downloads stop cleanly and the demo
    /// world is removed.
    fn quit_on_signals(&self) {
        let app = self.downgrade();
        let signals = on_stop_signals(move || {
            if let Some(app) = app.upgrade() {
                app.activate_action("quit", None);
            }
        });
        self.imp().stop_signals.replace(Some(signals));
    }

    fn setup_actions(&self) {
        let quit = gio::ActionEntry::builder("quit")
            .activate(|app: &Self, _, _| {
                for window in app.windows() {
                    window.close();
                }
                app.quit();
            })
            .build();
        let about = gio::ActionEntry::builder("about")
            .activate(|app: &Self, _, _| app.show_about())
            .build();
        let preferences = gio::ActionEntry::builder("preferences")
            .activate(|app: &Self, _, _| {
                FerryPreferencesWindow::new(&app.settings(), app.active_window().as_ref())
                    .present();
            })
            .build();
        self.add_action_entries([quit, about, preferences]);
        self.set_accels_for_action("app.quit", &["<primary>q"]);
        self.set_accels_for_action("app.preferences", &["<primary>comma"]);
        self.set_accels_for_action("win.update", &["<primary>u"]);
        self.set_accels_for_action("win.cancel", &["<primary>period"]);
        self.set_accels_for_action("win.refresh", &["F5", "<primary>r"]);
        self.set_accels_for_action("win.copy-to-usb", &["<primary><shift>u"]);
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
