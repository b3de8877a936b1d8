//! What ships besides the code: the desktop file, metainfo, schema and
//! translations, and the Flatpak manifest.

mod data_files;
mod flatpak;
mod translations;
