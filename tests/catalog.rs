//! Catalog validation: each fixture in `fixtures/invalid-catalog` edits the embedded catalog and
//! must be refused with a located message; arbitrary input must never panic the loaders.

use std::path::Path;

use chrono::Datelike;
use marketsim::market::catalog::{Catalog, EMBEDDED_CATALOG};
use marketsim::scenario::script::{Script, MAX_DURATION_MS};
use proptest::prelude::*;

#[derive(serde::Deserialize)]
struct Edit {
    replace: String,
    with: String,
}

#[test]
fn invalid_catalogs_are_refused_with_a_located_message() {
    insta::glob!("../fixtures/invalid-catalog", "*.yaml", |path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let edit: Edit =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            EMBEDDED_CATALOG.contains(&edit.replace),
            "{}: `replace` text not found in the catalog",
            path.display()
        );
        let edited = EMBEDDED_CATALOG.replacen(&edit.replace, &edit.with, 1);
        match Catalog::parse(Path::new("marketplace.yaml"), &edited) {
            Ok(_) => panic!("{}: the edited catalog was accepted", path.display()),
            Err(diagnostic) => insta::assert_snapshot!(diagnostic.to_string()),
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary text never panics the script loader.
    #[test]
    fn arbitrary_text_never_panics_the_script_loader(text in "\\PC{0,400}") {
        let _ = Script::parse(Path::new("s.yaml"), &text);
    }

    /// YAML-shaped text built from the script's own keys never panics it either, and a script
    /// it accepts always has a duration within the limits and ends before the year 10000.
    #[test]
    fn yaml_shaped_scripts_never_panic(
        keys in proptest::collection::vec(prop_oneof![
            Just("name"), Just("seed"), Just("start"), Just("duration"), Just("bucket"), Just("catalog"), Just("now"), Just("extra")
        ], 0..8),
        values in proptest::collection::vec(prop_oneof![
            Just("a".to_string()), Just("-1".to_string()), Just("1e400".to_string()), Just("2025-01-01T00:00:00Z".to_string()),
            Just("9999-12-31T00:00:00Z".to_string()), Just("2025-02-03".to_string()),
            Just("0s".to_string()), Just("999999d".to_string()), Just("[1, 2]".to_string()), Just("{a: b}".to_string()),
            Just("~".to_string()), "[a-z0-9:.-]{0,40}", large_duration(),
        ], 8),
    ) {
        let text: String = keys.iter().zip(values.iter()).map(|(k, v)| format!("{k}: {v}\n")).collect();
        if let Ok(script) = Script::parse(Path::new("s.yaml"), &text) {
            prop_assert!((1..=MAX_DURATION_MS).contains(&script.duration_ms), "{text}");
            prop_assert!(script.start.year() <= 9999, "{text}");
        }
    }

    /// Deleting or rewriting any line of the real catalog never panics the catalog loader.
    #[test]
    fn mutated_catalogs_never_panic(line_index in 0usize..600, replacement in "\\PC{0,30}", delete in any::<bool>()) {
        let mut lines: Vec<&str> = EMBEDDED_CATALOG.lines().collect();
        let index = line_index % lines.len();
        if delete { lines.remove(index); } else { lines[index] = &replacement; }
        let _ = Catalog::parse(Path::new("marketplace.yaml"), &lines.join("\n"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Well-formed scripts with arbitrary timelines never panic the resolver: each either
    /// resolves to a plan or is refused with a diagnostic, and every planned item starts
    /// inside the run (a wrapped time would land anywhere).
    #[test]
    fn arbitrary_timelines_never_panic(entries in proptest::collection::vec((
        prop_oneof![
            Just("day 1 10:00".to_string()), Just("+2h".to_string()), Just("-1d".to_string()), Just("-30d".to_string()),
            Just("2025-01-01T12:00:00Z".to_string()), Just("day 9".to_string()), Just("+0s".to_string()), "[a-z0-9 :+-]{0,40}",
            any::<u64>().prop_map(|day| format!("day {day} 10:00")),
            "[0-9]{1,30}".prop_map(|day| format!("day {day}")),
            large_duration().prop_map(|d| format!("+{d}")),
            large_duration().prop_map(|d| format!("-{d}")),
        ],
        prop_oneof![
            Just("scenario: supply-crisis".to_string()),
            Just("scenario: unknown-one".to_string()),
            Just("event: ib-exam-season".to_string()),
            Just("event: no-such-event".to_string()),
            Just("stop: supply-crisis".to_string()),
            Just("reset: true".to_string()),
            Just("scenario: supply-crisis\n    intensity: 3".to_string()),
            Just("scenario: payment-outage\n    duration: 1h\n    streams: [\"customer.*\"]".to_string()),
            large_duration().prop_map(|d| format!("scenario: payment-outage\n    duration: {d}\n    settlement: {d}")),
            Just("event: ib-exam-season\n    red_herring: true".to_string()),
        ],
    ), 0..6), policy in prop_oneof![Just("concurrent"), Just("one-at-a-time")]) {
        let mut text = format!("name: fuzz\nseed: 1\nstart: 2025-01-01T00:00:00Z\nduration: 3d\npolicy: {policy}\nbackground_events: false\ntimeline:");
        if entries.is_empty() {
            text.push_str(" []");
        }
        text.push('\n');
        for (at, action) in &entries {
            text.push_str(&format!("  - at: \"{at}\"\n    {action}\n"));
        }
        if let Ok(script) = Script::parse(Path::new("fuzz.yaml"), &text) {
            if let Ok(plan) = marketsim::scenario::RunPlan::from_script(script, None, None) {
                for action in &plan.timeline.actions {
                    prop_assert!(action.at_ms <= plan.duration_ms, "{text}");
                }
            }
        }
    }
}

/// Durations from small to far beyond a `u64` of milliseconds, in one part or several:
/// `as u64` truncation and unchecked sums only show on numbers this large.
fn large_duration() -> impl Strategy<Value = String> {
    let unit = prop_oneof![
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just("d"),
        Just("days")
    ];
    let number = prop_oneof![
        (0u64..1_000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{1,25}",
    ];
    let part = (number, unit).prop_map(|(n, unit)| format!("{n}{unit}"));
    proptest::collection::vec(part, 1..4).prop_map(|parts| parts.join(" "))
}
