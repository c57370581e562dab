//! The command line's exit codes and error messages.

use crate::support::{marketsim, stderr, temp_dir};

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
    let summary_before = std::fs::read(out.path().join("run/summary.json")).unwrap_or_default();

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
    assert_eq!(
        std::fs::read(out.path().join("run/summary.json")).unwrap_or_default(),
        summary_before
    );

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
    assert_ne!(
        std::fs::read(out.path().join("run/summary.json")).unwrap_or_default(),
        summary_before
    );
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
    std::fs::write(out.path().join("precious.txt"), "keep me").unwrap_or_default();
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
        std::fs::read_to_string(out.path().join("precious.txt")).unwrap_or_default(),
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
