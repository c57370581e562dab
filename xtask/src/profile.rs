//! `cargo xtask profile`: where a run's time goes. Records a release run with `perf` (one core,
//! DWARF call graphs), folds the stacks with `inferno-collapse-perf`, draws a flame graph with
//! `inferno-flamegraph` into `reports/profile/`, and prints each part of the model's share of
//! the samples (by the leaf function: queue, bucket counting, flows, arrivals, …).
//!
//! The tools come from their registries, not from this repository: `apt-get install linux-perf`
//! (Debian) and `cargo install inferno --locked`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::{on_one_core, project_root, release_binary, run};

/// The parts of a run, each matched on the leaf function's name with its generic arguments
/// removed, first match wins.
const PARTS: &[(&str, &[&str])] = &[
    (
        "event queue (settle, schedule, pop)",
        &[
            "EventQueue",
            "BinaryHeap",
            "binary_heap",
            "is_live",
            "push_mut",
            // The comparisons of the queue's key minimum, inlined.
            "Ordering",
            "pop",
        ],
    ),
    (
        "bucket counts and fingerprints (RunCollector, encode, XXH3)",
        &[
            "RunCollector",
            "accept",
            "encode_with_time",
            "encode_from",
            "xxh3",
        ],
    ),
    (
        "arrivals and draws (rates, gaps, payloads, PCG, ln/exp)",
        &[
            "arrivals",
            "on_source",
            "next_u64",
            "wrapping_mul",
            "__ieee754",
            "floor",
            "round",
            "__cos",
            "log",
            "exp",
        ],
    ),
    (
        "flows (handle, react, flows/*)",
        &["::react", "::handle", "flows::", "react_", "emit"],
    ),
    (
        "engine loop (step, run_before, advance_to)",
        &["run_before", "step", "Simulation", "advance_to"],
    ),
    ("open-request map", &["hashbrown", "hash_one", "sip::"]),
    (
        "allocation",
        &["malloc", "_int_free", "realloc", "cfree", "alloc::"],
    ),
    ("kernel", &["[k]"]),
];

/// `cargo xtask profile [--days D] [--scale K] [--truth]`.
pub fn profile(args: &[String]) -> Result<(), String> {
    let mut days = "30".to_string();
    let mut scale = "1".to_string();
    let mut truth = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--days" => days = rest.next().ok_or("--days needs a number")?.clone(),
            "--scale" => scale = rest.next().ok_or("--scale needs a number")?.clone(),
            "--truth" => truth = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`; write `cargo xtask profile [--days D] [--scale K] [--truth]`"
                ))
            }
        }
    }
    for (tool, install) in [
        ("perf", "apt-get install linux-perf"),
        ("inferno-collapse-perf", "cargo install inferno --locked"),
        ("inferno-flamegraph", "cargo install inferno --locked"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Err(format!("`{tool}` is not installed: {install}"));
        }
    }
    let root = project_root();
    let binary = release_binary(&root)?;
    let folder = root.join("reports/profile");
    std::fs::create_dir_all(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let name = format!(
        "baseline-{days}d-x{scale}{}",
        if truth { "-truth" } else { "" }
    );
    let samples = folder.join(format!("{name}.perf.data"));
    let scratch = std::env::temp_dir().join(format!("marketsim-profile-{}", std::process::id()));

    let mut record = Command::new("perf");
    record
        .current_dir(&root)
        .args([
            "record",
            "-F",
            "1999",
            "-g",
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(&samples)
        .arg("--");
    let simulated = on_one_core(&binary);
    record
        .arg(simulated.get_program())
        .args(simulated.get_args());
    record.args([
        "run",
        "scenarios/baseline.yaml",
        "--quiet",
        "--force",
        "--days",
        &days,
        "--scale",
        &scale,
        "--out",
    ]);
    record.arg(&scratch);
    if !truth {
        record.arg("--no-truth");
    }
    run(record)?;
    let _ = std::fs::remove_dir_all(&scratch);

    // perf script | inferno-collapse-perf > NAME.folded; inferno-flamegraph < folded > NAME.svg
    let folded = folder.join(format!("{name}.folded"));
    let svg = folder.join(format!("{name}.svg"));
    let pipeline = format!(
        "perf script -i '{}' 2>/dev/null | inferno-collapse-perf > '{}' && inferno-flamegraph --title 'marketsim run baseline --days {days} --scale {scale}{}' < '{}' > '{}'",
        samples.display(),
        folded.display(),
        if truth { "" } else { " --no-truth" },
        folded.display(),
        svg.display()
    );
    let mut draw = Command::new("sh");
    draw.current_dir(&root).args(["-c", &pipeline]);
    run(draw)?;
    let _ = std::fs::remove_file(&samples);

    let text = std::fs::read_to_string(&folded)
        .map_err(|e| format!("cannot read {}: {e}", folded.display()))?;
    let (shares, total) = shares_by_part(&text);
    println!();
    println!(
        "{:<62} {:>8}",
        "where a run's time goes (by leaf function)", "share"
    );
    for (part, samples) in shares {
        println!(
            "{part:<62} {:>7.1}%",
            100.0 * samples as f64 / total.max(1) as f64
        );
    }
    println!("\nflame graph: {}", svg.display());
    Ok(())
}

/// Samples per part of the folded stacks (`frame;frame;leaf COUNT` lines), largest first, and
/// the total.
fn shares_by_part(folded: &str) -> (Vec<(String, u64)>, u64) {
    let mut by_part: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0;
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let leaf = without_generics(stack.rsplit(';').next().unwrap_or(stack));
        let part = PARTS
            .iter()
            .find(|(_, patterns)| patterns.iter().any(|p| leaf.contains(p)))
            .map_or_else(|| "other".to_string(), |(name, _)| name.to_string());
        *by_part.entry(part).or_default() += count;
        total += count;
    }
    let mut shares: Vec<_> = by_part.into_iter().collect();
    shares.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (shares, total)
}

/// A symbol without its generic arguments, so `step<Marketplace, Tee<&mut RunCollector, …>>`
/// is the engine's `step`, not the collector.
fn without_generics(symbol: &str) -> String {
    let mut depth = 0usize;
    symbol
        .chars()
        .filter(|&c| match c {
            '<' => {
                depth += 1;
                false
            }
            '>' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_counted_by_the_leaf_without_its_generic_arguments() {
        let folded = "main;run;step<marketsim::Tee<&mut RunCollector>> 5\n\
                      main;run;marketsim::engine::queue::EventQueue<E>::settle 3\n\
                      main;run;<RunCollector as Sink<StreamEvent>>::accept 2\n\
                      main;mystery 1\n\
                      not a folded line\n";
        let (shares, total) = shares_by_part(folded);
        assert_eq!(total, 11);
        assert_eq!(
            shares,
            vec![
                ("engine loop (step, run_before, advance_to)".to_string(), 5),
                ("event queue (settle, schedule, pop)".to_string(), 3),
                (
                    "bucket counts and fingerprints (RunCollector, encode, XXH3)".to_string(),
                    2
                ),
                ("other".to_string(), 1),
            ]
        );
    }
}
