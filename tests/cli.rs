//! The command line's exit codes and error messages, `validate` on every kind of input file,
//! and bundled scripts run by name from an empty folder.

use crate::support::{marketsim, marketsim_in, stderr, stdout, temp_dir};

/// Every script in `fixtures/invalid` fails with exit code 2, a message that names the file
/// and place, and writes nothing.
#[test]
fn invalid_scripts_are_refused_with_a_located_message() {
    insta::glob!("../fixtures/invalid", "*.yaml", |path| {
        let out = temp_dir();
        let target = out.path().join("run");
        let relative = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        let output = marketsim(&[
            "run",
            &relative,
            "--out",
            &target.to_string_lossy(),
            "--quiet",
        ]);
        assert_eq!(output.status.code(), Some(2), "{relative}");
        assert!(
            !target.exists(),
            "{relative}: a failed run wrote its output directory"
        );
        insta::assert_snapshot!(stderr(&output));
    });
}

/// Every event library in `fixtures/invalid-library` fails `validate` with exit code 2 and a
/// message that names the file, the place and what is allowed.
#[test]
fn invalid_event_libraries_are_refused_with_a_located_message() {
    insta::glob!("../fixtures/invalid-library", "*.yaml", |path| {
        let relative = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        let output = marketsim(&["validate", &relative]);
        assert_eq!(output.status.code(), Some(2), "{relative}");
        insta::assert_snapshot!(stderr(&output));
    });
}

/// Command lines that must be refused with exit code 2 and a message that says what is
/// expected: one snapshot each. `{tmp}` is a fresh folder holding `afile`, a file.
const REFUSED_COMMAND_LINES: &[(&str, &str)] = &[
    // clap took `-1` for a flag and suggested `-- -1`, which would make it the script.
    (
        "seed-negative",
        "run scenarios/baseline.yaml --out {tmp}/run --seed -1",
    ),
    // "invalid digit found in string".
    (
        "seed-negative-with-equals",
        "run scenarios/baseline.yaml --out {tmp}/run --seed=-1",
    ),
    (
        "seed-too-large",
        "run scenarios/baseline.yaml --out {tmp}/run --seed 18446744073709551616",
    ),
    (
        "days-out-of-range",
        "run scenarios/baseline.yaml --out {tmp}/run --days 400days",
    ),
    // "expected number at 0".
    (
        "duration-negative",
        "run scenarios/baseline.yaml --out {tmp}/run --duration -3d",
    ),
    (
        "duration-past-year-9999",
        "run fixtures/scripts/late-start.yaml --out {tmp}/run --days 30",
    ),
    // "File exists".
    (
        "out-inside-a-file",
        "run scenarios/baseline.yaml --out {tmp}/afile/sub --duration 1h",
    ),
    ("unknown-bundled-name", "run suply-crisis --out {tmp}/run"),
    (
        "validate-unknown-kind",
        "validate fixtures/not-an-input.yaml",
    ),
];

#[test]
fn refused_command_lines_say_what_is_expected() {
    for (name, command_line) in REFUSED_COMMAND_LINES {
        let folder = temp_dir();
        std::fs::write(folder.path().join("afile"), "a file, not a folder")
            .unwrap_or_else(|e| panic!("{e}"));
        let tmp = folder.path().to_string_lossy().into_owned();
        let command_line = command_line.replace("{tmp}", &tmp);
        let args: Vec<&str> = command_line.split_whitespace().collect();
        let output = marketsim(&args);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", stderr(&output));
        assert!(
            !folder.path().join("run").exists(),
            "{name}: a refused run wrote its output"
        );
        insta::assert_snapshot!(
            format!("refused_{name}"),
            stderr(&output).replace(&tmp, "{tmp}")
        );
    }
}

/// `--days` takes the form `summary.json` writes (`30days`) as well as a bare number.
#[test]
fn days_accept_a_unit() {
    let out = temp_dir();
    let target = out.path().join("run");
    let output = marketsim(&[
        "run",
        "scenarios/baseline.yaml",
        "--out",
        &target.to_string_lossy(),
        "--days",
        "1days",
        "--no-truth",
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary = std::fs::read_to_string(target.join("summary.json"))
        .unwrap_or_else(|e| panic!("summary.json: {e}"));
    assert!(summary.contains("\"durationMs\": 86400000"), "{summary}");
}

/// The README's `marketsim validate scenarios/*.yaml` takes in the catalog and the event
/// library too: each file is checked as what its top-level keys say it is.
#[test]
fn validate_recognises_every_kind_of_bundled_file() {
    let mut files: Vec<String> = ["scenarios", "scenarios/library"]
        .iter()
        .flat_map(|folder| {
            std::fs::read_dir(folder)
                .unwrap_or_else(|e| panic!("{folder}: {e}"))
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".yaml"))
                .map(move |name| format!("{folder}/{name}"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 27, "{files:?}");
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let output = marketsim(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(stdout(&output));
}

/// A newcomer outside a clone: bundled scripts run and validate by name from an empty folder,
/// and `scenarios` lists the names.
#[test]
fn bundled_scripts_run_by_name_from_an_empty_folder() {
    let folder = temp_dir();
    let output = marketsim_in(
        folder.path(),
        &[
            "run",
            "supply-crisis",
            "--out",
            "r",
            "--days",
            "3",
            "--no-truth",
            "--quiet",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let summary = std::fs::read_to_string(folder.path().join("r/summary.json"))
        .unwrap_or_else(|e| panic!("r/summary.json: {e}"));
    assert!(
        summary.contains("\"path\": \"<embedded>/supply-crisis.yaml\""),
        "{summary}"
    );

    let output = marketsim_in(folder.path(), &["validate", "baseline", "viral-blog-post"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().count(), 2, "{}", stdout(&output));

    let listing = stdout(&marketsim_in(folder.path(), &["scenarios"]));
    for (name, _) in marketsim::bundled::BUNDLED_SCRIPTS {
        assert!(
            listing.contains(&format!("\n  {name} ")),
            "{name} not listed"
        );
    }
}

/// A file at the path wins over a bundled script of the same name.
#[test]
fn a_file_shadows_a_bundled_name() {
    let folder = temp_dir();
    std::fs::write(
        folder.path().join("baseline"),
        "name: local\nseed: 1\nstart: 2025-01-01T00:00:00Z\nduration: 1h\nbackground_events: false\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = marketsim_in(folder.path(), &["validate", "baseline"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "baseline: ok (run script, 0 timeline entries, 12 scenarios and 36 events in the library)\n"
    );
}

#[test]
fn a_bad_flag_exits_2() {
    let output = marketsim(&[
        "run",
        "scenarios/baseline.yaml",
        "--out",
        "x",
        "--days",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--days"));
}

#[test]
fn an_existing_run_is_not_overwritten_without_force() {
    let out = temp_dir();
    let target = out.path().join("run");
    let target = target.to_string_lossy();
    let first = marketsim(&[
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        &target,
        "--quiet",
        "--duration",
        "2h",
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let read_summary = || {
        std::fs::read(out.path().join("run/summary.json"))
            .unwrap_or_else(|e| panic!("run/summary.json: {e}"))
    };
    let summary_before = read_summary();

    let refused = marketsim(&[
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        &target,
        "--quiet",
        "--seed",
        "8",
        "--duration",
        "2h",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    insta::assert_snapshot!(stderr(&refused).replace(&*target, "<out>/run"), @"error: <out>/run already holds a run; pass --force to replace it");
    assert_eq!(read_summary(), summary_before);

    let forced = marketsim(&[
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        &target,
        "--quiet",
        "--seed",
        "8",
        "--duration",
        "2h",
        "--force",
    ]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert_ne!(read_summary(), summary_before);
    // No temporary or backup directories are left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("run")]);
}

#[test]
fn a_directory_that_is_not_a_run_is_never_replaced() {
    let out = temp_dir();
    std::fs::write(out.path().join("precious.txt"), "keep me").unwrap_or_else(|e| panic!("{e}"));
    let target = out.path().to_string_lossy();
    let output = marketsim(&[
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        &target,
        "--quiet",
        "--force",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is not a marketsim run directory"));
    assert_eq!(
        std::fs::read_to_string(out.path().join("precious.txt"))
            .unwrap_or_else(|e| panic!("precious.txt: {e}")),
        "keep me"
    );
}

#[test]
fn an_unknown_stream_suggests_the_nearest_name() {
    let output = marketsim(&["inspect", "session.booking.requestd"]);
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(stderr(&output), @"error: no stream named `session.booking.requestd`; did you mean `session.booking.requested`?");
}

#[test]
fn a_directory_that_is_not_a_run_cannot_be_inspected() {
    let out = temp_dir();
    let output = marketsim(&[
        "inspect",
        "customer.tutor.search",
        "--run",
        &out.path().to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not a run directory"));
}
