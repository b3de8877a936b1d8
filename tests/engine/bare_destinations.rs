//! Representative engine rules once more, into a `bare-user` repository (the mode
//! of a Flatpak user installation; file objects are inflated and written with
//! `user.ostreemeta` instead of copied as `.filez`): a drive through the engine,
//! a 404 moved on, a corrupt object dropped (also one spilled to disk), and a pull
//! resumed from its checkpoint. The scenarios live in `rules`; only the client's
//! repository mode differs.

use super::rules;

const MODE: &str = "bare-user";

#[test]
fn rule1_sideload_symlink_serves_every_object() {
    rules::rule1_sideload_symlink(MODE);
}

#[test]
fn rule5_object_missing_on_one_source_comes_from_another() {
    rules::rule5_object_missing_on_one_source(MODE);
}

#[test]
fn rule9_corrupt_file_object_drops_the_source() {
    rules::rule9_http(MODE, |up, commit| {
        super::files_of(&super::closure(&up.repo, commit))[3].clone()
    });
}

#[test]
fn rule9_large_objects_spilled_to_disk_are_verified_too() {
    rules::rule9_large_objects_spilled(MODE);
}

#[test]
fn rule10_pull_killed_with_its_only_source_resumes_from_checkpoint() {
    rules::rule10_resume_from_checkpoint(MODE);
}
