//! Replay: an analyzed session stepped in random increments (as a paced live runner steps it)
//! and given random commands at random virtual times — activations, inline scenarios, stops,
//! resets, injections, take-action on recommendations, backdated commands — records itself as
//! a run script; `marketsim run` of that script (with the session's baseline) gives a
//! byte-identical run directory.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;

use marketsim::analyst::rules::RulesAnalyst;
use marketsim::app::history::simulate_baseline;
use marketsim::app::run::{write_run_directory, RunFiles};
use marketsim::engine::{NoSink, MS_PER_HOUR, MS_PER_MINUTE};
use marketsim::output::run_dir::PendingRunDirectory;
use marketsim::scenario::timeline::RawEventEntry;
use marketsim::scenario::{RunPlan, Script};
use marketsim::session::analysis::{AnalystRunner, SessionAnalysis};
use marketsim::session::{Command, Session};
use marketsim::stats::Baseline;

use crate::support::{directory_contents, marketsim, stderr, temp_dir};

/// What a test session is driven by: steps forward and commands.
#[derive(Debug, Clone)]
enum Step {
    /// Advance by this many milliseconds (a frame of a paced runner, or a long jump).
    Advance(u64),
    Activate {
        scenario: usize,
        intensity_tenths: u8,
    },
    ActivateInline {
        multiplier_tenths: u8,
    },
    Stop(usize),
    Reset,
    /// Take the first action of the `n`th active recommendation, if there is one.
    Resolve(usize),
    Inject {
        event: usize,
        red_herring: bool,
    },
    /// The command `inner`, dated this many milliseconds before now.
    Backdated {
        inner: Box<Step>,
        back_ms: u64,
    },
}

const SCENARIOS: &[&str] = &[
    "supply-crisis",
    "exam-season-surge",
    "payment-outage",
    "viral-blog-post",
];
const EVENTS: &[&str] = &[
    "ib-exam-season",
    "blog-post-goes-viral",
    "payment-gateway-outage",
];

fn command_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..SCENARIOS.len(), 1u8..20).prop_map(|(scenario, intensity_tenths)| Step::Activate {
            scenario,
            intensity_tenths
        }),
        (5u8..30).prop_map(|multiplier_tenths| Step::ActivateInline { multiplier_tenths }),
        (0..SCENARIOS.len()).prop_map(Step::Stop),
        Just(Step::Reset),
        (0usize..3).prop_map(Step::Resolve),
        (0..EVENTS.len(), any::<bool>())
            .prop_map(|(event, red_herring)| Step::Inject { event, red_herring }),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop_oneof![
            (1u64..2_000).prop_map(Step::Advance),
            (1u64..4 * 60).prop_map(|minutes| Step::Advance(minutes * MS_PER_MINUTE)),
        ],
        3 => command_strategy(),
        1 => (command_strategy(), 1u64..30 * 60).prop_map(|(inner, minutes)| Step::Backdated {
            inner: Box::new(inner),
            back_ms: minutes * MS_PER_MINUTE,
        }),
    ]
}

fn command_of(step: &Step, session: &Session) -> Option<Command> {
    Some(match step {
        Step::Resolve(n) => {
            let analysis = session.analysis()?;
            let recommendation = analysis
                .recommendations()
                .iter()
                .filter(|r| r.resolved_at.is_none())
                .nth(*n)?;
            Command::Resolve {
                recommendation: recommendation.id.clone(),
                action: recommendation.actions.first()?.id.clone(),
            }
        }
        Step::Activate {
            scenario,
            intensity_tenths,
        } => Command::Activate {
            scenario: SCENARIOS[*scenario].to_string(),
            definition: None,
            intensity: Some(f64::from(*intensity_tenths) / 10.0),
            duration: None,
            settlement: None,
            streams: None,
        },
        Step::ActivateInline { multiplier_tenths } => {
            let text = format!(
                "id: inline-surge\nname: Inline surge\ndescription: Searches move.\n\
                 duration: 2h\nsettlement: 30m\nmodifiers:\n  streams:\n    \
                 customer.tutor.search:\n      multiplier: {}\n",
                f64::from(*multiplier_tenths) / 10.0
            );
            Command::Activate {
                scenario: "inline-surge".to_string(),
                definition: Some(Box::new(
                    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}")),
                )),
                intensity: None,
                duration: None,
                settlement: None,
                streams: None,
            }
        }
        Step::Stop(scenario) => Command::Stop {
            scenario: SCENARIOS[*scenario].to_string(),
        },
        Step::Reset => Command::Reset,
        Step::Inject { event, red_herring } => Command::Inject {
            event: RawEventEntry::Id(EVENTS[*event].to_string()),
            red_herring: red_herring.then_some(true),
        },
        Step::Advance(_) | Step::Backdated { .. } => return None,
    })
}

/// The base script's plan and baseline, computed once for every case.
fn base() -> &'static (RunPlan, Arc<Baseline>) {
    static BASE: OnceLock<(RunPlan, Arc<Baseline>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let script = Script::load(Path::new("fixtures/scripts/replay-base.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = RunPlan::from_script(script, None, None).unwrap_or_else(|e| panic!("{e}"));
        let baseline = simulate_baseline(&plan).unwrap_or_else(|e| panic!("{e}"));
        (plan, Arc::new(baseline))
    })
}

/// Drives an analyzed session from `fixtures/scripts/replay-base.yaml` through `steps` up to
/// `end_ms`, writes its run directory and recording, replays the recording with `marketsim run
/// --analyze --baseline`, and compares every file.
fn check_replay(steps: &[Step], end_ms: u64) -> Result<(), TestCaseError> {
    check_replay_with(steps, end_ms, false)
}

/// As [`check_replay`]; with `from_replies`, the replay takes the analyst's answers from the
/// live session's recorded replies (`--analyst-replies`) instead of asking the analyst.
fn check_replay_with(steps: &[Step], end_ms: u64, from_replies: bool) -> Result<(), TestCaseError> {
    let (base_plan, baseline) = base();
    let mut live = Session::for_run(base_plan, false).map_err(TestCaseError::fail)?;
    live.keep_checkpoints();
    live.attach_analysis(SessionAnalysis::new(
        &base_plan.catalog,
        Arc::clone(baseline),
        base_plan.epoch(),
        base_plan.bucket_ms(),
        AnalystRunner::InPlace(Box::new(RulesAnalyst)),
    ));
    for step in steps {
        let now = live.now();
        match step {
            Step::Advance(ms) => {
                live.advance_to((now + ms).min(end_ms), &mut NoSink);
            }
            Step::Backdated { inner, back_ms } => {
                if let Some(command) = command_of(inner, &live) {
                    let at = now.saturating_sub(*back_ms);
                    // Refusals (too far back, a stop with no start) change nothing.
                    let _ = live.apply(command, Some(at), &mut NoSink);
                }
            }
            other => {
                if let Some(command) = command_of(other, &live) {
                    let _ = live.apply(command, None, &mut NoSink);
                }
            }
        }
    }
    live.advance_to(end_ms, &mut NoSink);
    live.finish(&mut NoSink);

    let dir = temp_dir();
    let script_path = dir.path().join("recording.yaml");
    let text = live.recording("replay").to_yaml();
    std::fs::write(&script_path, &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let script = Script::load(&script_path)
        .map_err(|e| TestCaseError::fail(format!("the recording does not load: {e}\n{text}")))?;
    let plan = RunPlan::from_script(script, None, None)
        .map_err(|e| TestCaseError::fail(format!("the recording does not plan: {e}\n{text}")))?;

    let live_dir = dir.path().join("live");
    let pending = PendingRunDirectory::create(&live_dir, false)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    write_run_directory(pending, &plan, &live, RunFiles::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;

    let replay_dir = dir.path().join("replay");
    let script_arg = script_path.to_string_lossy();
    let out_arg = replay_dir.to_string_lossy();
    let baseline_arg = live_dir.join("baseline.json");
    let baseline_arg = baseline_arg.to_string_lossy();
    let replies_path = dir.path().join("analyst-replies.json");
    let replies = live
        .analysis()
        .map(|analysis| analysis.replies_file())
        .ok_or_else(|| TestCaseError::fail("the live session is not analyzed"))?;
    std::fs::write(&replies_path, marketsim::output::to_pretty_json(&replies))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let replies_arg = replies_path.to_string_lossy().into_owned();
    let mut arguments = vec![
        "run",
        &script_arg,
        "--out",
        &out_arg,
        "--quiet",
        "--no-truth",
        "--analyze",
        "--baseline",
        &baseline_arg,
    ];
    if from_replies {
        arguments.extend(["--analyst-replies", replies_arg.as_str()]);
    }
    let output = marketsim(&arguments);
    prop_assert!(output.status.success(), "{}\n{}", stderr(&output), text);

    let live_files = directory_contents(&live_dir);
    let replay_files = directory_contents(&replay_dir);
    let names = |files: &[(std::path::PathBuf, Vec<u8>)]| {
        files
            .iter()
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(names(&live_files), names(&replay_files));
    for ((name, bytes_a), (_, bytes_b)) in live_files.iter().zip(&replay_files) {
        prop_assert!(
            bytes_a == bytes_b,
            "{} differs between the live session and its replay\n{}",
            name.display(),
            text
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MARKETSIM_REPLAY_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_recorded_session_replays_byte_identically(
        steps in prop::collection::vec(step_strategy(), 1..40),
        hours in 2u64..20,
    ) {
        check_replay(&steps, hours * MS_PER_HOUR)?;
    }
}

/// A fixed case with every kind of command, including a backdated activation and a reset.
#[test]
fn a_session_with_every_kind_of_command_replays_byte_identically() {
    let steps = vec![
        Step::Advance(90 * MS_PER_MINUTE),
        Step::Activate {
            scenario: 0,
            intensity_tenths: 10,
        },
        Step::Advance(1_234),
        Step::Inject {
            event: 1,
            red_herring: false,
        },
        Step::Advance(2 * MS_PER_HOUR),
        Step::Stop(0),
        Step::Advance(7),
        Step::ActivateInline {
            multiplier_tenths: 25,
        },
        Step::Advance(45 * MS_PER_MINUTE),
        Step::Backdated {
            inner: Box::new(Step::Activate {
                scenario: 2,
                intensity_tenths: 15,
            }),
            back_ms: 3 * MS_PER_HOUR,
        },
        Step::Advance(MS_PER_HOUR),
        Step::Resolve(0),
        Step::Advance(MS_PER_HOUR),
        Step::Reset,
        Step::Advance(MS_PER_HOUR),
    ];
    if let Err(error) = check_replay(&steps, 8 * MS_PER_HOUR) {
        panic!("{error}");
    }
    // The same session replayed from its recorded analyst replies, without the analyst.
    if let Err(error) = check_replay_with(&steps, 8 * MS_PER_HOUR, true) {
        panic!("from recorded replies: {error}");
    }
}
