//! A served session, driven at high speed — activate, inject, stop, backdate, speed changes,
//! pause and resume — then stopped with `--out`: `marketsim run` of its recording gives a run
//! directory that `marketsim diff` finds identical (exit 0).

use std::time::Duration;

use marketsim::live::runner::Control;
use marketsim::live::server::{start, ServeOptions};
use marketsim::scenario::timeline::RawEventEntry;
use marketsim::session::Command;

use crate::support::{marketsim, stderr, stdout, temp_dir};

fn activate(scenario: &str) -> Command {
    Command::Activate {
        scenario: scenario.to_string(),
        definition: None,
        intensity: None,
        duration: None,
        settlement: None,
        streams: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_session_replays_into_an_identical_run_directory() {
    let dir = temp_dir();
    let out = dir.path().join("served");
    let options = ServeOptions {
        port: 0,
        speed: 7_200.0,
        history_ms: 12 * 3_600_000,
        now: Some("2025-03-04T10:00:00Z".parse().unwrap_or_default()),
        out: Some(out.clone()),
        ..ServeOptions::default()
    };
    let server = start(options).await.unwrap_or_else(|e| panic!("{e}"));
    let runner = server.runner().clone();
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    runner
        .command(activate("exam-season-surge"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pause(300).await;
    runner
        .command(
            Command::Inject {
                event: RawEventEntry::Id("blog-post-goes-viral".to_string()),
                red_herring: None,
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    runner
        .control(Control::Speed(20_000.0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pause(300).await;
    runner
        .command(
            Command::Stop {
                scenario: "exam-season-surge".to_string(),
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    runner
        .control(Control::Pause)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = server.state().virtual_ms;
    // Backdated six hours: the history from there on is simulated again with it.
    let backdated = runner
        .command(activate("payment-outage"), Some(now - 6 * 3_600_000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(backdated.rewritten_buckets.is_some_and(|b| !b.is_empty()));
    runner
        .control(Control::Resume)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The baseline is fitted beside the history; wait for it so the run is analyzed.
    for _ in 0..600 {
        if server.state().analyzed {
            break;
        }
        pause(100).await;
    }
    assert!(server.state().analyzed, "the baseline never arrived");
    pause(300).await;
    let written = server.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written.as_deref(), Some(out.as_path()));

    let replay = dir.path().join("replay");
    let out_arg = out.to_string_lossy().into_owned();
    let output = marketsim(&[
        "run",
        &format!("{out_arg}/recording.yaml"),
        "--out",
        &replay.to_string_lossy(),
        "--quiet",
        "--no-truth",
        "--analyze",
        "--baseline",
        &format!("{out_arg}/baseline.json"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let diff = marketsim(&["diff", &out_arg, &replay.to_string_lossy()]);
    assert_eq!(diff.status.code(), Some(0), "{}", stdout(&diff));
    for file in [
        "series.csv",
        "timeline.json",
        "truth.json",
        "recommendations.json",
        "anomalies.json",
    ] {
        let served = std::fs::read(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let replayed = std::fs::read(replay.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(served == replayed, "{file} differs");
    }
}
