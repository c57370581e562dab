//! The command path under proptest: any JSON a live client can send as a command — well-formed or
//! not, with huge, negative, tiny or unicode values, inline scenarios and events with extreme
//! modifiers, applied now or backdated by any amount — is applied or refused with an error, never
//! a panic, and the session goes on advancing to exactly the time asked afterwards (a command
//! never stalls the runner).

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};

use marketsim::engine::{NoSink, MS_PER_HOUR, MS_PER_MINUTE};
use marketsim::scenario::{RunPlan, Script};
use marketsim::session::{Command, Session};

/// The session every case starts from: `fixtures/scripts/replay-base.yaml`, loaded once.
fn base_plan() -> &'static RunPlan {
    static PLAN: OnceLock<RunPlan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let script = Script::load(Path::new("fixtures/scripts/replay-base.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        RunPlan::from_script(script, None, None).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Numbers a parser or a model can trip over.
fn awkward_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(5e-324)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        (-1e6f64..1e6).prop_map(|x| json!(x)),
        (0.0f64..5.0).prop_map(|x| json!(x)),
    ]
}

/// Strings: ids of the library, durations in every spelling, and arbitrary unicode.
fn awkward_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("exam-season-surge".to_string()),
        Just("supply-crisis".to_string()),
        Just("payment-gateway-outage".to_string()),
        Just("blog-post-goes-viral".to_string()),
        Just("customer.tutor.search".to_string()),
        Just("2h".to_string()),
        Just("-1h".to_string()),
        Just("0m".to_string()),
        Just("99999999999999999999d".to_string()),
        Just("1.5h".to_string()),
        Just(String::new()),
        "\\PC{0,24}",
    ]
}

/// Any JSON value, nested a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        awkward_number(),
        awkward_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(awkward_text(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A stream change or lever set with extreme values.
fn modifiers() -> impl Strategy<Value = Value> {
    (
        awkward_text(),
        awkward_number(),
        any::<bool>(),
        awkward_number(),
    )
        .prop_map(|(stream, value, as_override, lever)| {
            let change = if as_override {
                json!({ "override": value })
            } else {
                json!({ "multiplier": value })
            };
            json!({ "streams": { stream: change }, "levers": { "api_errors": lever } })
        })
}

fn inline_scenario() -> impl Strategy<Value = Value> {
    (awkward_text(), awkward_text(), awkward_text(), modifiers()).prop_map(
        |(id, duration, settlement, modifiers)| {
            json!({
                "id": id, "name": "Inline", "description": "Generated.",
                "duration": duration, "settlement": settlement, "modifiers": modifiers,
            })
        },
    )
}

fn inline_event() -> impl Strategy<Value = Value> {
    (awkward_text(), awkward_text(), modifiers(), any::<bool>()).prop_map(
        |(id, duration, effect, has_effect)| {
            let mut event = json!({
                "id": id, "type": "marketing", "title": "Generated", "description": "…",
                "severity": "warning", "icon": "x",
                "expectedImpact": {
                    "streams": ["customer.tutor.search"], "direction": "increase",
                    "magnitude": "high", "duration": duration,
                },
            });
            if has_effect {
                let mut effect = effect;
                effect["duration"] = json!(duration);
                effect["settlement"] = json!("30m");
                event["effect"] = effect;
            }
            event
        },
    )
}

/// A command as a client would send it: mostly the right shape with awkward values, sometimes
/// anything at all.
fn command_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (
            awkward_text(),
            proptest::option::of(awkward_number()),
            proptest::option::of(awkward_text()),
            proptest::option::of(proptest::collection::vec(awkward_text(), 0..3)),
            proptest::option::of(inline_scenario()),
        )
            .prop_map(|(scenario, intensity, duration, streams, definition)| {
                let mut command = json!({ "type": "activate", "scenario": scenario });
                if let Some(intensity) = intensity {
                    command["intensity"] = intensity;
                }
                if let Some(duration) = duration {
                    command["duration"] = json!(duration);
                }
                if let Some(streams) = streams {
                    command["streams"] = json!(streams);
                }
                if let Some(definition) = definition {
                    command["definition"] = definition;
                }
                command
            }),
        2 => (prop_oneof![awkward_text().prop_map(Value::String), inline_event()], any::<bool>())
            .prop_map(|(event, red_herring)| {
                json!({ "type": "inject", "event": event, "redHerring": red_herring })
            }),
        1 => awkward_text().prop_map(|scenario| json!({ "type": "stop", "scenario": scenario })),
        1 => Just(json!({ "type": "reset" })),
        1 => (awkward_text(), awkward_text()).prop_map(|(recommendation, action)| {
            json!({ "type": "resolve", "recommendation": recommendation, "action": action })
        }),
        1 => any_json(),
    ]
}

/// When a command is dated: now, a little back, or any amount back or forward.
fn dating() -> impl Strategy<Value = Option<i128>> {
    prop_oneof![
        4 => Just(None),
        2 => (0i128..(2 * MS_PER_HOUR) as i128).prop_map(|back| Some(-back)),
        1 => any::<i64>().prop_map(|offset| Some(i128::from(offset))),
    ]
}

fn cases() -> u32 {
    std::env::var("MARKETSIM_COMMAND_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_command_is_applied_or_refused_and_the_session_goes_on(
        commands in proptest::collection::vec((command_json(), dating(), 1u64..90), 1..6),
    ) {
        let mut session = Session::for_run(base_plan(), false).map_err(TestCaseError::fail)?;
        session.keep_checkpoints();
        session.advance_to(3 * MS_PER_HOUR, &mut NoSink);
        for (value, dating, minutes_after) in commands {
            let text = value.to_string();
            if let Ok(command) = serde_json::from_str::<Command>(&text) {
                let now = session.now();
                let at = dating.map(|offset| {
                    u64::try_from((i128::from(now) + offset).max(0)).unwrap_or(u64::MAX)
                });
                // Refused or applied; a refusal must say why.
                if let Err(error) = session.apply(command, at, &mut NoSink) {
                    prop_assert!(!error.to_string().is_empty(), "{text}");
                }
            }
            let target = session.now() + minutes_after * MS_PER_MINUTE;
            session.advance_to(target, &mut NoSink);
            prop_assert_eq!(session.now(), target, "after {}", text);
        }
    }
}
