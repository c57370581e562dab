//! The `marketsim` command line: parses arguments, calls the library, maps errors to exit codes
//! (0 success, 1 differences found, 2 error).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use marketsim::diagnostics::parse_duration_ms;
use marketsim::engine::{Tee, MS_PER_DAY};
use marketsim::inspect;
use marketsim::market::Catalog;
use marketsim::output::events::EventsJsonlSink;
use marketsim::output::run_dir::PendingRunDirectory;
use marketsim::output::run_dir::{TIMELINE_FILE, TRUTH_FILE};
use marketsim::output::truth::{build_timeline, build_truth};
use marketsim::output::{to_pretty_json, RunCollector, Summary};
use marketsim::run::{load_catalog, run_measured, RunPlan};
use marketsim::scenario::Library;
use marketsim::script::Script;

#[derive(Parser)]
#[command(
    name = "marketsim",
    version,
    about = "Deterministic simulator of a tutoring marketplace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a script headless and write a run directory.
    Run {
        /// The run script (YAML), e.g. scenarios/baseline.yaml.
        script: PathBuf,
        /// The run directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Override the script's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the script's duration, in days.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=366))]
        days: Option<u64>,
        /// Override the script's duration, e.g. 6h or 3d.
        #[arg(long, conflicts_with = "days")]
        duration: Option<String>,
        /// Also write events.jsonl with every stream event.
        #[arg(long)]
        events: bool,
        /// Replace DIR if it already holds a run.
        #[arg(long)]
        force: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Skip the counterfactual twins that measure ground truth (truth.json lists the
        /// declared impacts only).
        #[arg(long)]
        no_truth: bool,
    },
    /// Describe a stream: definition, what feeds it, and with --run its statistics.
    Inspect {
        /// Stream name, e.g. session.booking.requested.
        stream: String,
        /// A run directory to take statistics and sample events from.
        #[arg(long)]
        run: Option<PathBuf>,
        /// A catalog file instead of the embedded one.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// List the scenario library: id, name, duration, what each touches.
    Scenarios {
        /// A folder with events.yaml and library/ instead of the embedded library.
        #[arg(long)]
        library: Option<PathBuf>,
    },
    /// Check run scripts (and the libraries they use) without running them.
    Validate {
        /// Script files; each is checked with its catalog and library.
        #[arg(required = true)]
        scripts: Vec<PathBuf>,
    },
    /// List the catalog's streams by domain.
    Streams {
        /// A catalog file instead of the embedded one.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn execute(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            script,
            out,
            seed,
            days,
            duration,
            events,
            force,
            quiet,
            no_truth,
        } => {
            let duration_ms = match (days, duration) {
                (Some(days), _) => Some(days * MS_PER_DAY),
                (None, Some(text)) => Some(parse_duration_ms(&text).map_err(anyhow::Error::msg)?),
                (None, None) => None,
            };
            let options = RunOptions {
                seed,
                duration_ms,
                write_events: events,
                force,
                quiet,
                measure_truth: !no_truth,
            };
            run_command(&script, &out, &options)?;
        }
        Command::Inspect {
            stream,
            run,
            catalog,
        } => {
            let catalog = open_catalog(catalog.as_deref())?;
            print!("{}", inspect::describe(&catalog, &stream, run.as_deref())?);
        }
        Command::Scenarios { library } => {
            let catalog = Catalog::embedded()?;
            let library = Library::load(library.as_deref(), &catalog)?;
            print!("{}", inspect::list_scenarios(&library));
        }
        Command::Validate { scripts } => {
            let mut failures = 0;
            for path in &scripts {
                let checked =
                    Script::load(path).and_then(|script| RunPlan::from_script(script, None, None));
                match checked {
                    Ok(plan) => println!(
                        "{}: ok ({} timeline items, {} scenarios and {} events in the library)",
                        path.display(),
                        plan.scenarios.items.len(),
                        plan.library.scenarios.len(),
                        plan.library.events.len()
                    ),
                    Err(diagnostic) => {
                        failures += 1;
                        eprintln!("error: {diagnostic}");
                    }
                }
            }
            if failures > 0 {
                anyhow::bail!("{failures} of {} scripts failed validation", scripts.len());
            }
        }
        Command::Streams { catalog } => {
            let catalog = open_catalog(catalog.as_deref())?;
            print!("{}", inspect::list_streams(&catalog));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_catalog(path: Option<&Path>) -> Result<Catalog> {
    Ok(match path {
        Some(path) => load_catalog(path)?,
        None => Catalog::embedded()?,
    })
}

struct RunOptions {
    seed: Option<u64>,
    duration_ms: Option<u64>,
    write_events: bool,
    force: bool,
    quiet: bool,
    measure_truth: bool,
}

fn run_command(script_path: &Path, out: &Path, options: &RunOptions) -> Result<()> {
    let script = Script::load(script_path)?;
    let plan = RunPlan::from_script(script, options.seed, options.duration_ms)?;
    let quiet = options.quiet;
    // Refuse a bad output directory before spending time on the run.
    let pending = PendingRunDirectory::create(out, options.force)?;
    let mut collector =
        RunCollector::new(&plan.catalog, plan.script.bucket_ms, plan.bucket_count());
    let mut progress = Progress::new(plan.duration_ms, quiet);
    let started = Instant::now();
    let mut on_progress = |t| progress.update(t);
    let result = if options.write_events {
        let writer = pending.events_writer()?;
        let mut events = EventsJsonlSink::new(writer, &plan.catalog, plan.epoch());
        let result = run_measured(
            &plan,
            &mut Tee(&mut collector, &mut events),
            &mut on_progress,
            options.measure_truth,
        )?;
        events.finish().context("writing events.jsonl")?;
        result
    } else {
        run_measured(
            &plan,
            &mut collector,
            &mut on_progress,
            options.measure_truth,
        )?
    };
    progress.finish();
    let summary = Summary::new(&plan, &collector, options.write_events);
    let truth = build_truth(&plan, &collector, &result.twins, &result.records);
    let timeline = build_timeline(&plan, &result.records);
    let extra = [
        (TRUTH_FILE, to_pretty_json(&truth)),
        (TIMELINE_FILE, to_pretty_json(&timeline)),
    ];
    let path = pending.commit(&plan, &collector, &summary, &extra)?;
    if !quiet {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "wrote {} ({} events over {}, seed {}, {:.2} s, {:.1} M events/s)",
            path.display(),
            summary.total_events,
            summary.duration,
            summary.seed,
            seconds,
            summary.total_events as f64 / seconds.max(1e-9) / 1e6,
        );
    }
    Ok(())
}

/// A progress bar on stderr that appears only for runs longer than a second, and only on a
/// terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    total_ms: u64,
    enabled: bool,
}

impl Progress {
    fn new(total_ms: u64, quiet: bool) -> Self {
        Progress {
            bar: None,
            started: Instant::now(),
            total_ms,
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, virtual_ms: u64) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() > Duration::from_secs(1) {
            let bar = indicatif::ProgressBar::new(self.total_ms / 3_600_000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} simulated hours ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(virtual_ms / 3_600_000);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
