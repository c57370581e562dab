//! The stream inspector and the stream list, as users read them.

use crate::support::{marketsim, stderr, stdout, temp_dir};

#[test]
fn streams_lists_all_fifty_by_domain() {
    let output = marketsim(&["streams"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(stdout(&output));
}

#[test]
fn inspect_shows_definition_flows_and_run_statistics() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    let run_text = run.to_string_lossy();
    let output = marketsim(&[
        "run",
        "fixtures/scripts/short.yaml",
        "--out",
        &run_text,
        "--events",
        "--quiet",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = marketsim(&["inspect", "session.booking.requested", "--run", &run_text]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!(stdout(&output).replace(&*run_text, "<run>"));
}
