//! `cargo xtask eval-random`: how the analyst does on scripts it was never tuned on. Builds the
//! release binary, writes N random scripts (`marketsim generate`), runs each with `--analyze`
//! two at a time, scores them all with `marketsim eval --targets`, and prints the eval table
//! and issue 13's targets beside the overall figures.
//!
//! Seeds 1000–1999 are the tuning range; seeds from 5000 are for reporting and never tuned on.
//! The targets live in the library (`marketsim::analyst::targets`); `eval --targets` prints
//! them, so this task stays free of the library and compiles in seconds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Instant;

use crate::{marketsim, project_root, release_binary, run};

/// Runs at once: one per core of the 2-core machines this runs on (each run also fits its
/// baseline on a second thread, briefly).
const PARALLEL_RUNS: usize = 2;

struct Options {
    count: u32,
    seed: u64,
    keep: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        count: 50,
        seed: 5000,
        keep: None,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--count" => {
                options.count = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or("--count takes a whole number from 1")?;
            }
            "--seed" => {
                options.seed = value()?
                    .parse()
                    .map_err(|_| "--seed takes a whole number from 0 to 2^64 - 1")?;
            }
            "--keep" => options.keep = Some(PathBuf::from(value()?)),
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: cargo xtask eval-random [--count N] [--seed S] [--keep DIR]"
                ))
            }
        }
    }
    Ok(options)
}

/// `cargo xtask eval-random [--count N] [--seed S] [--keep DIR]`.
pub fn eval_random(args: &[String]) -> Result<(), String> {
    let options = parse_options(args)?;
    let root = project_root();
    let binary = release_binary(&root)?;
    // Without --keep the scripts and runs go to a folder of their own under target/ that is
    // removed at the end; with it they stay for reports and diffs.
    let work = match &options.keep {
        Some(dir) => std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?,
        None => root.join(format!("target/eval-random-{}", std::process::id())),
    };
    let result = generate_run_and_score(&binary, &work, &options);
    if options.keep.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn generate_run_and_score(binary: &Path, work: &Path, options: &Options) -> Result<(), String> {
    let scripts = work.join("scripts");
    let runs = work.join("runs");
    let mut generate = marketsim(binary);
    generate
        .args(["generate", "--force", "--seed"])
        .arg(options.seed.to_string())
        .arg("--count")
        .arg(options.count.to_string())
        .arg("--out")
        .arg(&scripts);
    run(generate)?;

    let names: Vec<String> = (0..options.count)
        .map(|index| format!("random-{}-{index}", options.seed))
        .collect();
    let started = Instant::now();
    let timings = run_all(binary, &names, &scripts, &runs)?;
    let wall = started.elapsed().as_secs_f64();

    let mut eval = marketsim(binary);
    eval.arg("eval")
        .args(names.iter().map(|name| runs.join(name)))
        .arg("--out")
        .arg(work.join("eval.json"))
        .arg("--targets");
    println!();
    run(eval)?;

    let mut seconds: Vec<f64> = timings.iter().map(|(_, s)| *s).collect();
    seconds.sort_by(|a, b| a.total_cmp(b));
    let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
    println!(
        "\n{} runs of seed {} in {wall:.0} s wall, {PARALLEL_RUNS} at a time: {mean:.1} s a run \
         on average, {:.1} s median, {:.1} s the longest (release, --analyze)",
        seconds.len(),
        options.seed,
        seconds[seconds.len() / 2],
        seconds[seconds.len() - 1]
    );
    if options.keep.is_some() {
        println!(
            "scripts in {}, runs in {}, eval.json in {}",
            scripts.display(),
            runs.display(),
            work.display()
        );
    }
    Ok(())
}

/// Runs every script with `--analyze`, [`PARALLEL_RUNS`] at a time; (name, seconds) per run.
/// The first failure stops handing out new runs, and is returned with the run's stderr.
fn run_all(
    binary: &Path,
    names: &[String],
    scripts: &Path,
    runs: &Path,
) -> Result<Vec<(String, f64)>, String> {
    let queue = Mutex::new(names.iter().rev().cloned().collect::<Vec<_>>());
    let results: Mutex<Vec<Result<(String, f64), String>>> = Mutex::new(Vec::new());
    let total = names.len();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_RUNS {
            scope.spawn(|| loop {
                let failed = results
                    .lock()
                    .map(|r| r.iter().any(Result::is_err))
                    .unwrap_or(true);
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let (Some(name), false) = (next, failed) else {
                    return;
                };
                let outcome = run_one(binary, &name, scripts, runs);
                if let Ok(mut results) = results.lock() {
                    if let Ok((_, seconds)) = &outcome {
                        eprintln!("[{}/{total}] {name}: {seconds:.1} s", results.len() + 1);
                    }
                    results.push(outcome);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| "a run thread panicked".to_string())?;
    let mut timings = Vec::new();
    for result in results {
        timings.push(result?);
    }
    if timings.len() != total {
        return Err(format!("only {} of {total} runs finished", timings.len()));
    }
    Ok(timings)
}

fn run_one(
    binary: &Path,
    name: &str,
    scripts: &Path,
    runs: &Path,
) -> Result<(String, f64), String> {
    let mut command = marketsim(binary);
    command
        .arg("run")
        .arg(scripts.join(format!("{name}.yaml")))
        .arg("--out")
        .arg(runs.join(name))
        .args(["--analyze", "--quiet", "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("$ {command:?}");
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "{name} failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok((name.to_string(), seconds))
}
