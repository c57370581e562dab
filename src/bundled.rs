//! The run scripts bundled into the binary (`scenarios/*.yaml` other than the catalog and the
//! event library), so `marketsim run supply-crisis --out DIR` works in any folder.
//!
//! A command-line argument names a script file when a file exists at that path, and a bundled
//! script otherwise (`Script::open` in `scenario::script`); the path always wins, so a
//! local file can shadow a bundled name. The catalog and scenario library are embedded beside
//! their parsers (`market::catalog`, `scenario::definition`).

use std::path::PathBuf;

/// The folder name bundled scripts are reported under, as the embedded catalog and library are.
const BUNDLED_FOLDER: &str = "<embedded>";

/// Every bundled run script by name (its file stem), sorted by name.
pub const BUNDLED_SCRIPTS: &[(&str, &str)] = &[
    (
        "app-release-bug",
        include_str!("../scenarios/app-release-bug.yaml"),
    ),
    ("baseline", include_str!("../scenarios/baseline.yaml")),
    (
        "churn-pattern",
        include_str!("../scenarios/churn-pattern.yaml"),
    ),
    (
        "competitor-disruption",
        include_str!("../scenarios/competitor-disruption.yaml"),
    ),
    (
        "exam-season-surge",
        include_str!("../scenarios/exam-season-surge.yaml"),
    ),
    (
        "normal-operations",
        include_str!("../scenarios/normal-operations.yaml"),
    ),
    (
        "payment-outage",
        include_str!("../scenarios/payment-outage.yaml"),
    ),
    (
        "quality-crisis",
        include_str!("../scenarios/quality-crisis.yaml"),
    ),
    (
        "recruiting-crisis",
        include_str!("../scenarios/recruiting-crisis.yaml"),
    ),
    (
        "school-holidays",
        include_str!("../scenarios/school-holidays.yaml"),
    ),
    (
        "supply-crisis",
        include_str!("../scenarios/supply-crisis.yaml"),
    ),
    (
        "support-overload",
        include_str!("../scenarios/support-overload.yaml"),
    ),
    (
        "viral-blog-post",
        include_str!("../scenarios/viral-blog-post.yaml"),
    ),
];

/// The text of the bundled script `name`, if there is one.
pub fn bundled_script(name: &str) -> Option<&'static str> {
    BUNDLED_SCRIPTS
        .iter()
        .find(|(bundled_name, _)| *bundled_name == name)
        .map(|(_, text)| *text)
}

/// The names of the bundled scripts, sorted.
pub fn bundled_script_names() -> impl Iterator<Item = &'static str> + Clone {
    BUNDLED_SCRIPTS.iter().map(|(name, _)| *name)
}

/// The path a bundled script is reported under in diagnostics and `summary.json`.
pub fn bundled_script_path(name: &str) -> PathBuf {
    PathBuf::from(format!("{BUNDLED_FOLDER}/{name}.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a script to `scenarios/` without bundling it (or the reverse) fails here.
    #[test]
    fn every_script_in_the_scenarios_folder_is_bundled_in_name_order() {
        let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut on_disk: Vec<String> = std::fs::read_dir(&scenarios)
            .unwrap_or_else(|e| panic!("{}: {e}", scenarios.display()))
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".yaml").map(str::to_string))
            .filter(|stem| stem != "events" && stem != "marketplace")
            .collect();
        on_disk.sort();
        let bundled: Vec<&str> = bundled_script_names().collect();
        assert_eq!(bundled, on_disk);
    }
}
