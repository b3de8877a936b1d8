//! `FerryUsbDialog`: "Copy Update to USB Stick…". Lists mounted removable drives,
//! copies the tracked refs onto the chosen one with [`crate::share::usb`] (as
//! `ostree create-usb` lays drives out) on a worker thread, shows progress (sampled
//! by a [`FerryProgress`]), then "done" or why it failed.

use std::cell::RefCell;
use std::path::PathBuf;

use gettextrs::gettext;
use gtk4 as gtk;
use libadwaita as adw;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::{gio, glib};

use crate::objects::{format, FerryProgress};
use crate::share::usb::{self, UsbError, UsbEvent, UsbOptions};
use crate::sources::mounts;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(resource = "/io/github/ferry_updates/Ferry/ui/usb-dialog.ui")]
    pub struct FerryUsbDialog {
        #[template_child]
        pub choose_page: TemplateChild<gtk::ScrolledWindow>,
        #[template_child]
        pub copying_page: TemplateChild<adw::StatusPage>,
        #[template_child]
        pub drives_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub copy_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub progress_bar: TemplateChild<gtk::ProgressBar>,
        #[template_child]
        pub progress_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub done_page: TemplateChild<adw::StatusPage>,
        #[template_child]
        pub failed_page: TemplateChild<adw::StatusPage>,
        pub repo: RefCell<PathBuf>,
        /// The chosen drive's mount point.
        pub chosen: RefCell<Option<PathBuf>>,
        pub group: RefCell<Option<gtk::CheckButton>>,
        pub monitor: RefCell<Option<(gio::VolumeMonitor, Vec<glib::SignalHandlerId>)>>,
        /// The copy's progress, sampled.
        pub progress: FerryProgress,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FerryUsbDialog {
        const NAME: &'static str = "FerryUsbDialog";
        type Type = super::FerryUsbDialog;
        type ParentType = adw::Window;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.install_action("usb.back", None, |dialog, _, _| {
                dialog.show_page(Page::Choose);
                dialog.fill_drives();
            });
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

    impl ObjectImpl for FerryUsbDialog {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            self.copy_button.connect_clicked(glib::clone!(
                #[weak]
                obj,
                move |_| obj.copy()
            ));
            let monitor = gio::VolumeMonitor::get();
            let refill = glib::clone!(
                #[weak]
                obj,
                move |_: &gio::VolumeMonitor, _: &gio::Mount| obj.fill_drives()
            );
            let handlers = vec![
                monitor.connect_mount_added(refill.clone()),
                monitor.connect_mount_removed(refill.clone()),
                monitor.connect_mount_changed(refill),
            ];
            self.monitor.replace(Some((monitor, handlers)));
            self.progress
                .bind_property("fraction", &*self.progress_bar, "fraction")
                .build();
            let label = self.progress_label.clone();
            self.progress.connect_sampled(move |progress| {
                if progress.active() {
                    label.set_label(&format::size_of(
                        progress.bytes_done(),
                        progress.bytes_total(),
                    ));
                }
            });
        }

        fn dispose(&self) {
            if let Some((monitor, handlers)) = self.monitor.take() {
                for handler in handlers {
                    monitor.disconnect(handler);
                }
            }
        }
    }

    impl WidgetImpl for FerryUsbDialog {}
    impl WindowImpl for FerryUsbDialog {}
    impl AdwWindowImpl for FerryUsbDialog {}
}

glib::wrapper! {
    pub struct FerryUsbDialog(ObjectSubclass<imp::FerryUsbDialog>)
        @extends gtk::Widget, gtk::Window, adw::Window,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native, gtk::Root,
            gtk::ShortcutManager;
}

/// A mounted drive one may copy to: removable, or mounted where desktops mount
/// removable drives.
fn is_usb_drive(mount: &gio::Mount) -> Option<PathBuf> {
    if mount.is_shadowed() {
        return None;
    }
    let path = mount.root().path()?;
    let removable_place = path.starts_with("/media") || path.starts_with("/run/media");
    let removable =
        mount.can_unmount() || mount.can_eject() || mount.drive().is_some_and(|d| d.is_removable());
    (removable_place || removable).then_some(path)
}

/// "3.2 GB free", when the file system tells.
fn free_space(path: &std::path::Path) -> Option<String> {
    let info = gio::File::for_path(path)
        .query_filesystem_info(gio::FILE_ATTRIBUTE_FILESYSTEM_FREE, gio::Cancellable::NONE)
        .ok()?;
    let free = info.attribute_uint64(gio::FILE_ATTRIBUTE_FILESYSTEM_FREE);
    // Translators: free space on a drive, e.g. “3.2 GB free”.
    Some(gettext("{} free").replace("{}", &format::size(free)))
}

/// Why a copy failed, in plain words.
fn explain(error: &UsbError) -> String {
    match error {
        UsbError::ReadOnly(_) | UsbError::NotWritable { .. } => {
            gettext("The USB stick cannot be written to. Nothing was copied.")
        }
        UsbError::NoSpace { needed, .. } => gettext(
            "There is not enough space on the USB stick: the update needs {}. Nothing was copied.",
        )
        .replace("{}", &format::size(*needed)),
        UsbError::NoInodes { .. } => {
            gettext("There is no room for more files on the USB stick. Nothing was copied.")
        }
        UsbError::NothingTracked => gettext("This computer has no update to copy."),
        _ => gettext("Something went wrong while copying."),
    }
}

/// The dialog's pages; one shows at a time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Choose,
    Copying,
    Done,
    Failed,
}

impl FerryUsbDialog {
    fn show_page(&self, page: Page) {
        let imp = self.imp();
        imp.choose_page.set_visible(page == Page::Choose);
        imp.copying_page.set_visible(page == Page::Copying);
        imp.done_page.set_visible(page == Page::Done);
        imp.failed_page.set_visible(page == Page::Failed);
    }

    pub fn new(parent: &impl IsA<gtk::Window>, repo: &str) -> Self {
        let dialog: Self = glib::Object::builder()
            .property("transient-for", parent)
            .build();
        dialog.imp().repo.replace(PathBuf::from(repo));
        dialog.fill_drives();
        dialog
    }

    /// Lists the drives again, keeping the choice when its drive is still there.
    fn fill_drives(&self) {
        let imp = self.imp();
        let list = &imp.drives_list;
        while let Some(row) = list.row_at_index(0) {
            list.remove(&row);
        }
        let group = gtk::CheckButton::new();
        imp.group.replace(Some(group.clone()));
        // Named as the sources list names drives: volume name, label, mount name.
        let mut drives: Vec<(String, PathBuf)> = gio::VolumeMonitor::get()
            .mounts()
            .iter()
            .filter_map(|m| {
                let path = is_usb_drive(m)?;
                let name = m
                    .volume()
                    .map(|v| v.name().to_string())
                    .or_else(|| mounts::fs_label(&path))
                    .unwrap_or_else(|| m.name().to_string());
                Some((name, path))
            })
            .collect();
        drives.sort();
        drives.dedup_by(|a, b| a.1 == b.1);
        let chosen = imp.chosen.borrow().clone();
        let still_there = drives.iter().any(|(_, p)| Some(p) == chosen.as_ref());
        if !still_there {
            imp.chosen.replace(None);
        }
        for (name, path) in drives {
            let row = adw::ActionRow::builder().title(&name).build();
            let subtitle = match free_space(&path) {
                Some(free) => format!("{} — {free}", path.display()),
                None => path.display().to_string(),
            };
            row.set_subtitle(&subtitle);
            let check = gtk::CheckButton::builder()
                .valign(gtk::Align::Center)
                .build();
            check.set_group(Some(&group));
            check.set_active(still_there && chosen.as_ref() == Some(&path));
            check.connect_toggled(glib::clone!(
                #[weak(rename_to = dialog)]
                self,
                move |check| {
                    if check.is_active() {
                        dialog.imp().chosen.replace(Some(path.clone()));
                        dialog.imp().copy_button.set_sensitive(true);
                    }
                }
            ));
            row.add_prefix(&check);
            row.add_prefix(
                &gtk::Image::builder()
                    .icon_name("drive-removable-media-symbolic")
                    .icon_size(gtk::IconSize::Large)
                    .build(),
            );
            row.set_activatable_widget(Some(&check));
            list.append(&row);
        }
        imp.copy_button.set_sensitive(imp.chosen.borrow().is_some());
    }

    fn copy(&self) {
        let imp = self.imp();
        let Some(mount) = imp.chosen.borrow().clone() else {
            return;
        };
        self.show_page(Page::Copying);
        imp.progress.start();
        // Until the first report.
        imp.progress_label.set_label(&gettext("Starting…"));
        let options = UsbOptions {
            repo: imp.repo.borrow().clone(),
            mount,
            refs: Vec::new(),
            destination_repo: None,
        };
        let (sender, receiver) = async_channel::unbounded::<UsbEvent>();
        let dialog = self.downgrade();
        let progress = imp.progress.clone();
        glib::MainContext::default().spawn_local(async move {
            let worker = gio::spawn_blocking(move || {
                usb::prepare_usb(&options, &|event| {
                    let _ = sender.send_blocking(event.clone());
                })
            });
            while let Ok(event) = receiver.recv().await {
                progress.usb_event(&event);
            }
            progress.finish();
            let result = match worker.await {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(error)) => {
                    glib::g_warning!(crate::sources::LOG_DOMAIN, "copy to USB failed: {error}");
                    Err(explain(&error))
                }
                Err(_) => Err(gettext("Something went wrong while copying.")),
            };
            let Some(dialog) = dialog.upgrade() else {
                return;
            };
            let imp = dialog.imp();
            match result {
                Ok(report) => {
                    imp.done_page.set_description(Some(
                        &gettext("Copied {}. Other computers can now update from the USB stick.")
                            .replace("{}", &format::size(report.bytes_copied)),
                    ));
                    dialog.show_page(Page::Done);
                }
                Err(reason) => {
                    imp.failed_page.set_description(Some(&reason));
                    dialog.show_page(Page::Failed);
                }
            }
        });
    }
}
