//! `ferry`: the GUI. Thin: the application lives in `ferry::widgets`.

use ferry::config::{GETTEXT_PACKAGE, LOCALEDIR};
use ferry::widgets::FerryApplication;
use gettextrs::LocaleCategory;
use gtk4::{gio, glib, prelude::*};

/// Where compiled translations are looked up instead of the installed ones
/// (`DIR/LANG/LC_MESSAGES/ferry.mo`): for uninstalled runs and tests.
const LOCALEDIR_ENV: &str = "FERRY_LOCALEDIR";

fn main() -> glib::ExitCode {
    // Without these, every translatable string (code and templates) stays in English.
    let localedir = std::env::var_os(LOCALEDIR_ENV).unwrap_or_else(|| LOCALEDIR.into());
    gettextrs::setlocale(LocaleCategory::LcAll, "");
    gettextrs::bindtextdomain(GETTEXT_PACKAGE, localedir).expect("bind the text domain");
    gettextrs::bind_textdomain_codeset(GETTEXT_PACKAGE, "UTF-8").expect("set the codeset");
    gettextrs::textdomain(GETTEXT_PACKAGE).expect("set the text domain");

    glib::set_application_name("Ferry");
    // The window template is looked up in these resources, so register them first.
    gio::resources_register_include!("resources.gresource").expect("register resources");

    FerryApplication::new().run()
}
