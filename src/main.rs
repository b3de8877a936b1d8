//! `ferry`: the GUI. Thin: the application lives in `ferry::widgets`.

use ferry::config::{GETTEXT_PACKAGE, LOCALEDIR};
use ferry::widgets::FerryApplication;
use gettextrs::LocaleCategory;
use gtk4::{gio, glib, prelude::*};

fn main() -> glib::ExitCode {
    // Without these, every translatable string (code and templates) stays in English.
    gettextrs::setlocale(LocaleCategory::LcAll, "");
    gettextrs::bindtextdomain(GETTEXT_PACKAGE, LOCALEDIR).expect("bind the text domain");
    gettextrs::bind_textdomain_codeset(GETTEXT_PACKAGE, "UTF-8").expect("set the codeset");
    gettextrs::textdomain(GETTEXT_PACKAGE).expect("set the text domain");

    glib::set_application_name("Ferry");
    // The window template is looked up in these resources, so register them first.
    gio::resources_register_include!("resources.gresource").expect("register resources");

    FerryApplication::new().run()
}
