//! What every file a run writes has in common: one timestamp format, and the permissions of any
//! file the user creates.

use std::path::Path;

use crate::support::{directory_contents, marketsim, run_script, stderr, temp_dir};

/// The fixture with a scenario and an event, analyzed, with events: every kind of file a run
/// directory can hold.
fn analyzed_run_with_events(out: &Path) {
    let output = run_script(
        "fixtures/scripts/timestamps.yaml",
        out,
        &["--analyze", "--events"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Every date-time in `text`: each `YYYY-MM-DDT` and the characters a time can hold after it.
fn date_times(text: &str) -> Vec<&str> {
    const SHAPE: &[u8] = b"0000-00-00T";
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut index = 0;
    while index + SHAPE.len() <= bytes.len() {
        let starts_here = SHAPE
            .iter()
            .zip(&bytes[index..])
            .all(|(shape, byte)| match shape {
                b'0' => byte.is_ascii_digit(),
                other => other == byte,
            });
        if !starts_here {
            index += 1;
            continue;
        }
        let length = bytes[index..]
            .iter()
            .position(|byte| !(byte.is_ascii_alphanumeric() || b"-:.+".contains(byte)))
            .unwrap_or(bytes.len() - index);
        found.push(&text[index..index + length]);
        index += length;
    }
    found
}

/// RFC 3339 in UTC with milliseconds, as JavaScript's `toISOString` writes it:
/// `2025-03-10T00:00:00.000Z`.
fn is_the_one_format(date_time: &str) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00:00:00.000Z";
    date_time.len() == SHAPE.len()
        && SHAPE
            .iter()
            .zip(date_time.as_bytes())
            .all(|(shape, byte)| match shape {
                b'0' => byte.is_ascii_digit(),
                other => other == byte,
            })
}

#[test]
fn the_date_time_scanner_finds_every_form() {
    let text = r#"a,2025-03-10T00:00:00Z,b "2025-03-10T00:00:00.000Z" (evt_001, 2025-03-10T03:30:00+00:00)"#;
    assert_eq!(
        date_times(text),
        [
            "2025-03-10T00:00:00Z",
            "2025-03-10T00:00:00.000Z",
            "2025-03-10T03:30:00+00:00"
        ]
    );
    let formats: Vec<bool> = date_times(text)
        .into_iter()
        .map(is_the_one_format)
        .collect();
    assert_eq!(formats, [false, true, false]);
}

/// series.csv once wrote `…T00:00:00Z` while every other file wrote milliseconds; now every
/// timestamp of every file, payload times and those inside sentences included, has one format.
#[test]
fn every_timestamp_of_a_run_directory_has_one_format() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    analyzed_run_with_events(&run);
    let mut checked_files = Vec::new();
    for (name, bytes) in directory_contents(&run) {
        let name = name.to_string_lossy().into_owned();
        let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let found = date_times(&text);
        if let Some(other) = found.iter().find(|found| !is_the_one_format(found)) {
            panic!("{name} writes `{other}`, not `2025-03-10T00:00:00.000Z`");
        }
        if !found.is_empty() {
            checked_files.push(name);
        }
    }
    // Each file that holds times held some, so the test saw every writer.
    assert_eq!(
        checked_files,
        [
            "anomalies.json",
            "baseline.json",
            "events.jsonl",
            "labels.csv",
            "recommendations.json",
            "series.csv",
            "summary.json",
            "timeline.json",
            "truth.json"
        ]
    );
}

/// Runs written before the format was settled have `…T00:00:00Z` in series.csv: readers still
/// take them, and see the same run.
#[test]
fn a_series_with_timestamps_in_seconds_is_still_read() {
    let dir = temp_dir();
    let run = dir.path().join("run");
    let output = run_script("fixtures/scripts/timestamps.yaml", &run, &["--no-truth"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let older = dir.path().join("older");
    std::fs::create_dir(&older).unwrap_or_else(|e| panic!("{e}"));
    for (name, bytes) in directory_contents(&run) {
        let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"));
        let text = if name == Path::new("series.csv") {
            text.replace(":00.000Z,", ":00Z,")
        } else {
            text
        };
        std::fs::write(older.join(&name), text).unwrap_or_else(|e| panic!("{e}"));
    }
    let series = std::fs::read_to_string(older.join("series.csv")).unwrap_or_default();
    assert!(series.contains("\n2025-03-10T00:00:00Z,"), "{series:.200}");

    let (run, older) = (run.to_string_lossy(), older.to_string_lossy());
    let output = marketsim(&["diff", &run, &older]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = marketsim(&["export", &older, "--from", "2025-03-10T01:00:00.000Z"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Exports and `eval.json` came out 0600 (tempfile's mode for secrets), and run directories were
/// 0755 only by tempfile's default for folders: every output gets what a file or folder the user
/// creates gets (0644 and 0755 under the usual umask), compared here with such a file and
/// folder, so the test holds whatever the umask is.
#[cfg(unix)]
#[test]
fn outputs_get_the_permissions_of_any_new_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let dir = temp_dir();
    let probe_file = dir.path().join("probe.txt");
    std::fs::write(&probe_file, "").unwrap_or_else(|e| panic!("{e}"));
    let probe_folder = dir.path().join("probe");
    std::fs::create_dir(&probe_folder).unwrap_or_else(|e| panic!("{e}"));
    let (file_mode, folder_mode) = (mode(&probe_file), mode(&probe_folder));

    let run = dir.path().join("run");
    analyzed_run_with_events(&run);
    assert_eq!(mode(&run), folder_mode, "the run directory");
    for (name, _) in directory_contents(&run) {
        assert_eq!(mode(&run.join(&name)), file_mode, "{}", name.display());
    }

    let exported = dir.path().join("export.csv");
    let output = marketsim(&[
        "export",
        &run.to_string_lossy(),
        "-o",
        &exported.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(mode(&exported), file_mode, "an exported file");

    let evaluation = dir.path().join("eval.json");
    let output = marketsim(&[
        "eval",
        &run.to_string_lossy(),
        "--out",
        &evaluation.to_string_lossy(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(mode(&evaluation), file_mode, "eval.json");
}

/// The temporary siblings in `folder` (`.marketsim-tmp-…`, `.marketsim-old-…`).
fn temp_siblings(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".marketsim-"))
        .collect();
    names.sort();
    names
}

/// A fault (issue 17): `kill -9` in the middle of a run. The run directory never exists half
/// written — a previous run at the target stays byte for byte what it was — and the staging
/// folder the killed process left is swept by the next write into that folder.
#[cfg(target_os = "linux")]
#[test]
fn kill_9_during_a_run_leaves_no_half_written_run_and_the_next_write_sweeps_its_leftovers() {
    let dir = temp_dir();
    let target = dir.path().join("run");
    let output = run_script("scenarios/baseline.yaml", &target, &["--days", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let before = directory_contents(&target);

    // A long run replacing it, killed once it has begun writing its staging folder.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_marketsim"))
        .args([
            "run",
            "scenarios/baseline.yaml",
            "--days",
            "60",
            "--events",
            "--force",
        ])
        .args(["--quiet", "--out"])
        .arg(&target)
        .current_dir(crate::support::root())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start marketsim: {e}"));
    let started = std::time::Instant::now();
    while temp_siblings(dir.path()).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no staging folder appeared"
        );
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "the run ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), None, "killed by a signal");

    assert_eq!(
        directory_contents(&target),
        before,
        "the previous run is untouched"
    );
    let left = temp_siblings(dir.path());
    assert_eq!(left.len(), 1, "the killed run's staging folder: {left:?}");
    assert!(left[0].starts_with(".marketsim-tmp-"), "{left:?}");

    // The next write into the folder removes it (its process is gone); the target is whole.
    let other = dir.path().join("other");
    let output = run_script("scenarios/baseline.yaml", &other, &["--days", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(temp_siblings(dir.path()), Vec::<String>::new());
    assert_eq!(
        directory_contents(&other),
        before,
        "a whole run, the same as the first"
    );
}
