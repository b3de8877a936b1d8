//! Small GVariant helpers for `a{sv}` metadata dictionaries.

use glib::prelude::*;
use glib::{Variant, VariantTy};

/// The GVariant type of detached metadata and of `summary.sig`.
pub(crate) const VARDICT: &str = "a{sv}";

pub(crate) fn vardict_type() -> &'static VariantTy {
    VariantTy::VARDICT
}

/// Parses untrusted bytes as an `a{sv}` in normal form.
pub(crate) fn parse_vardict(bytes: &[u8]) -> Result<Variant, String> {
    let v = Variant::from_bytes_with_type(&glib::Bytes::from(bytes), vardict_type());
    if !v.is_normal_form() {
        return Err("it is not in GVariant normal form".to_owned());
    }
    Ok(v)
}

/// Checks that a caller-supplied variant is an `a{sv}`.
pub(crate) fn check_vardict(v: &Variant) -> Result<(), String> {
    if !v.is_type(vardict_type()) {
        return Err(format!("its type is {} instead of {VARDICT}", v.type_()));
    }
    if !v.is_normal_form() {
        return Err("it is not in GVariant normal form".to_owned());
    }
    Ok(())
}

/// The value of the first entry named `key` in an `a{sv}`, unboxed.
pub(crate) fn lookup(dict: &Variant, key: &str) -> Option<Variant> {
    dict.iter().find_map(|entry| {
        let k = entry.child_value(0);
        if k.str() == Some(key) {
            entry.child_value(1).as_variant()
        } else {
            None
        }
    })
}

/// The elements of an `aay` value.
pub(crate) fn byte_arrays(v: &Variant) -> Result<Vec<Vec<u8>>, String> {
    if !v.is_type(VariantTy::BYTE_STRING_ARRAY) {
        return Err(format!("its type is {} instead of aay", v.type_()));
    }
    v.iter()
        .map(|child| child.fixed_array::<u8>().map(<[u8]>::to_vec))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// Builds an `a{sv}` from (key, value) pairs, keeping their order.
pub(crate) fn build_vardict(entries: impl IntoIterator<Item = (String, Variant)>) -> Variant {
    let entries: Vec<Variant> = entries
        .into_iter()
        .map(|(k, v)| Variant::from_dict_entry(&k.to_variant(), &Variant::from_variant(&v)))
        .collect();
    Variant::array_from_iter_with_type(VariantTy::new("{sv}").expect("valid type string"), entries)
        .normal_form()
}

/// Builds an `aay` from byte strings.
pub(crate) fn build_byte_arrays<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Variant {
    Variant::array_from_iter_with_type(
        VariantTy::BYTE_STRING,
        items.into_iter().map(Variant::array_from_fixed_array::<u8>),
    )
}
