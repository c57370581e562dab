//! The `marketsim` command line: parses arguments, calls the library, maps errors to exit codes
//! (0 success, 1 differences found, 2 error).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use marketsim::analyst::eval;
use marketsim::app::analyst_choice::{make_analyst, AnalystChoice as Choice};
use marketsim::app::analyzed;
use marketsim::app::run::{run_to_directory, AnalysisOptions, RunOptions};
use marketsim::diagnostics::{parse_days, parse_duration_ms, parse_seed};
use marketsim::engine::MS_PER_DAY;
use marketsim::inspect;
use marketsim::market::Catalog;
use marketsim::output::PendingFile;
use marketsim::output::{diff, export, to_pretty_json};
use marketsim::report;
use marketsim::scenario::plan::load_catalog;
use marketsim::scenario::Library;
use marketsim::validate::validate_input;

#[derive(Parser)]
#[command(
    name = "marketsim",
    version,
    long_version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (Apache ECharts ",
        env!("MARKETSIM_ECHARTS_VERSION"),
        " embedded)"
    ),
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
        /// The run script (YAML), e.g. scenarios/baseline.yaml, or the name of a bundled script
        /// (see `marketsim scenarios`), e.g. supply-crisis. A file at that path wins.
        script: PathBuf,
        /// The run directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Override the script's seed (0 to 2^64 - 1).
        // Negative numbers are let through to the parser, which says what a seed is; clap would
        // take `-1` for a flag and suggest `-- -1`, which makes it the script.
        #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Override the script's duration, in days (1 to 366; 30, 30d and 30days all work).
        #[arg(long, value_parser = parse_days)]
        days: Option<u64>,
        /// Override the script's duration, e.g. 6h or 3d.
        #[arg(long, conflicts_with = "days", allow_hyphen_values = true)]
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
        /// Score every bucket against a baseline (series.csv gains expected, z, normalized and
        /// flag; events get normalizedValue and anomalyFlag) and write baseline.json,
        /// anomalies.json and recommendations.json.
        #[arg(long)]
        analyze: bool,
        /// Who writes the recommendations: `rules` (offline, deterministic) or `llm` (an
        /// OpenAI-compatible endpoint from OPENAI_API_KEY, OPENAI_BASE_URL and
        /// MARKETSIM_LLM_MODEL; without a key the rules analyst is used).
        #[arg(long, value_enum, default_value = "rules", requires = "analyze")]
        analyst: AnalystChoice,
        /// Reuse the baseline.json of an earlier analyzed run instead of simulating four weeks
        /// of history before the epoch.
        #[arg(long, requires = "analyze")]
        baseline: Option<PathBuf>,
    },
    /// Score the recommendations of analyzed runs against their ground truth; prints a table
    /// and writes eval.json.
    Eval {
        /// Run directories written with `run --analyze`.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Re-analyze each run with this analyst instead of reading its recommendations.json.
        #[arg(long, value_enum)]
        analyst: Option<AnalystChoice>,
        /// Where to write eval.json.
        #[arg(long, default_value = "eval.json")]
        out: PathBuf,
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
    /// List the scenario library (id, name, duration, what each touches) and the bundled run
    /// scripts that `run` and `validate` accept by name.
    Scenarios {
        /// A folder with events.yaml and library/ instead of the embedded library.
        #[arg(long)]
        library: Option<PathBuf>,
    },
    /// Check input files without running anything. Each file's kind — run script, catalog,
    /// event library or scenario definition — is told from its top-level keys; a run script is
    /// checked with its catalog and library, library files against the embedded catalog.
    Validate {
        /// Files of any of the four kinds, or names of bundled scripts.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List the catalog's streams by domain.
    Streams {
        /// A catalog file instead of the embedded one.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Compare two run directories: metadata, per-stream totals, fingerprints and bucket
    /// series, external events. Exit code 0 when the runs are the same (within the tolerance),
    /// 1 when they differ, 2 on error.
    Diff {
        /// The reference run directory.
        a: PathBuf,
        /// The run directory compared with A.
        b: PathBuf,
        /// Ignore relative differences |a − b| / max(|a|, |b|) up to this, per bucket and in
        /// event totals, e.g. 0.05 or 5%; fingerprints then count only through the series.
        #[arg(long, default_value = "0", value_parser = diff::parse_tolerance)]
        tolerance: f64,
        /// Print one JSON document instead of the text summary.
        #[arg(long)]
        json: bool,
        /// With --json, include both runs' bucket series aligned by timestamp.
        #[arg(long, requires = "json")]
        series: bool,
        /// Also write a self-contained HTML diff report with both runs overlaid.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Inline this ECharts build in the HTML report instead of the one embedded in the
        /// binary.
        #[arg(long, requires = "html")]
        echarts: Option<PathBuf>,
    },
    /// Render a run directory as one self-contained HTML report that works offline.
    Report {
        /// The run directory (analyzed runs show normalized charts, anomalies and
        /// recommendations).
        run: PathBuf,
        /// The HTML file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Inline this ECharts build instead of the one embedded in the binary.
        #[arg(long)]
        echarts: Option<PathBuf>,
    },
    /// Export a run's bucket series (or, with --events, its events) as CSV or JSON Lines.
    Export {
        /// The run directory.
        run: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Csv)]
        format: ExportFormatArg,
        /// Only streams matching these globs (comma-separated or repeated), e.g. customer.*
        #[arg(long, value_delimiter = ',')]
        streams: Vec<String>,
        /// Only rows at or after this RFC 3339 instant (a bucket's start for series rows).
        #[arg(long)]
        from: Option<String>,
        /// Only rows before this RFC 3339 instant.
        #[arg(long)]
        to: Option<String>,
        /// Export the events of events.jsonl instead of the bucket series.
        #[arg(long)]
        events: bool,
        /// Write to FILE (atomically) instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Ask a running `marketsim serve` over its REST API and print the JSON answer. Exit code
    /// 0 on success, 1 when the server refuses (its error is printed), 2 when it cannot be
    /// reached.
    Api {
        /// The server.
        #[arg(long, default_value = marketsim::live::api_client::DEFAULT_URL)]
        url: String,
        #[command(subcommand)]
        call: ApiCommand,
    },
}

/// What `marketsim api` asks a running server.
#[derive(Subcommand)]
enum ApiCommand {
    /// Virtual time, pace, scenarios in effect.
    State,
    /// The scenario library.
    Scenarios,
    /// Activate a library scenario.
    Activate {
        /// Scenario id, e.g. exam-season-surge.
        id: String,
    },
    /// Stop a scenario (it settles), or every active scenario.
    Stop {
        /// Scenario id; all active scenarios when absent.
        id: Option<String>,
    },
    /// Cancel every scenario and event effect.
    Reset,
    /// Announce an external event of the library.
    Inject {
        /// Event template id.
        event: String,
        /// Backdate it to this RFC 3339 instant (the history from then on is re-simulated).
        #[arg(long)]
        at: Option<String>,
    },
    /// Set the speed in virtual seconds per wall second.
    Speed {
        #[arg(allow_negative_numbers = true)]
        speed: f64,
    },
    /// Pause virtual time.
    Pause,
    /// Resume virtual time.
    Resume,
    /// Print the session as a run script (YAML).
    Recording,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormatArg {
    Csv,
    Jsonl,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AnalystChoice {
    Rules,
    Llm,
}

impl From<AnalystChoice> for Choice {
    fn from(choice: AnalystChoice) -> Choice {
        match choice {
            AnalystChoice::Rules => Choice::Rules,
            AnalystChoice::Llm => Choice::Llm,
        }
    }
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
            analyze,
            analyst,
            baseline,
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
                measure_truth: !no_truth,
                analysis: analyze.then_some(AnalysisOptions {
                    analyst: analyst.into(),
                    baseline_file: baseline,
                }),
            };
            let mut progress = Progress::new(quiet);
            let outcome = run_to_directory(&script, &out, &options, &mut |t, total| {
                progress.update(t, total)
            });
            progress.finish();
            let outcome = outcome?;
            for note in &outcome.notes {
                eprintln!("note: {note}");
            }
            if !quiet {
                let summary = &outcome.summary;
                eprintln!(
                    "wrote {} ({} events over {}, seed {}, {:.2} s, {:.1} M events/s)",
                    outcome.path.display(),
                    summary.total_events,
                    summary.duration,
                    summary.seed,
                    outcome.run_seconds,
                    summary.total_events as f64 / outcome.run_seconds.max(1e-9) / 1e6,
                );
                if let Some(analysis) = &outcome.analysis {
                    eprintln!(
                        "analyzed: {} anomaly episodes, {} recommendations ({} analyst)",
                        analysis.episodes, analysis.recommendations, analysis.analyst,
                    );
                }
            }
        }
        Command::Eval { runs, analyst, out } => {
            // Everything that can fail is checked before anything is printed: first that
            // eval.json can be written at all, then every run.
            let eval_file = PendingFile::create(&out).with_context(|| {
                format!(
                    "cannot write {} (pass --out FILE to write it elsewhere)",
                    std::path::absolute(&out).unwrap_or(out.clone()).display()
                )
            })?;
            let mut evaluations = Vec::new();
            for run in &runs {
                let evaluation = match analyst {
                    Some(choice) => {
                        let (mut analyst, note) = make_analyst(choice.into())?;
                        if let Some(note) = note {
                            eprintln!("note: {note}");
                        }
                        analyzed::evaluate_directory(run, Some(analyst.as_mut()))?
                    }
                    None => analyzed::evaluate_directory(run, None)?,
                };
                evaluations.push(evaluation);
            }
            let report = eval::report(evaluations);
            eval_file
                .commit(&to_pretty_json(&report))
                .with_context(|| {
                    format!(
                        "cannot write {} (pass --out FILE to write it elsewhere)",
                        out.display()
                    )
                })?;
            print!("{}", eval::render_table(&report));
            eprintln!("wrote {}", out.display());
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
            print!("{}", inspect::list_bundled_scripts()?);
        }
        Command::Validate { files } => {
            let mut failures = 0;
            for path in &files {
                match validate_input(path) {
                    Ok(validated) => println!("{}: {validated}", path.display()),
                    Err(diagnostic) => {
                        failures += 1;
                        eprintln!("error: {diagnostic}");
                    }
                }
            }
            if failures > 0 {
                anyhow::bail!("{failures} of {} files failed validation", files.len());
            }
        }
        Command::Streams { catalog } => {
            let catalog = open_catalog(catalog.as_deref())?;
            print!("{}", inspect::list_streams(&catalog));
        }
        Command::Diff {
            a,
            b,
            tolerance,
            json,
            series,
            html,
            echarts,
        } => {
            // Read an --echarts file before the work, so a bad path fails fast.
            let echarts_script = match &html {
                Some(_) => Some(report::echarts_script(echarts.as_deref())?),
                None => None,
            };
            let options = diff::DiffOptions {
                tolerance,
                include_series: series || html.is_some(),
            };
            let report = diff::diff_runs(&a, &b, &options)?;
            if let (Some(path), Some(echarts_script)) = (&html, &echarts_script) {
                let page = report::render_diff_report(&report, echarts_script)?;
                report::write_atomically(path, &page)?;
                eprintln!("wrote {} ({} KB)", path.display(), page.len() / 1024);
            }
            let text = if json {
                to_pretty_json(&report)
            } else {
                report.render_text()
            };
            print_unless_closed(&text)?;
            if !report.is_same() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Report {
            run,
            output,
            echarts,
        } => {
            let echarts_script = report::echarts_script(echarts.as_deref())?;
            let data = report::build_report_data(&run)?;
            let page = report::render_run_report(&data, &echarts_script)?;
            report::write_atomically(&output, &page)?;
            eprintln!("wrote {} ({} KB)", output.display(), page.len() / 1024);
        }
        Command::Export {
            run,
            format,
            streams,
            from,
            to,
            events,
            output,
        } => {
            let request = export::ExportRequest {
                format: match format {
                    ExportFormatArg::Csv => export::ExportFormat::Csv,
                    ExportFormatArg::Jsonl => export::ExportFormat::Jsonl,
                },
                source: if events {
                    export::ExportSource::Events
                } else {
                    export::ExportSource::Series
                },
                stream_patterns: streams,
                from,
                to,
            };
            let target = match output {
                Some(path) => export::ExportTarget::File(path),
                None => export::ExportTarget::Stdout,
            };
            let outcome = export::export(&run, &request, &target)?;
            if outcome.rows == Some(0) {
                eprintln!(
                    "note: no rows matched; the run covers {} to {}",
                    outcome.run_start, outcome.run_end
                );
            }
        }
        Command::Api { url, call } => return call_api(&url, call),
    }
    Ok(ExitCode::SUCCESS)
}

/// `marketsim api`: one request, the answer printed; 1 when the server refuses.
fn call_api(url: &str, call: ApiCommand) -> Result<ExitCode> {
    use marketsim::live::api_client::{ApiCall, ApiClient};
    let client = ApiClient::new(url)?;
    let call = match call {
        ApiCommand::State => ApiCall::State,
        ApiCommand::Scenarios => ApiCall::Scenarios,
        ApiCommand::Activate { id } => ApiCall::Activate { scenario_id: id },
        ApiCommand::Stop { id } => ApiCall::Stop { scenario_id: id },
        ApiCommand::Reset => ApiCall::Reset,
        ApiCommand::Inject { event, at } => ApiCall::Inject {
            event_id: event,
            at,
        },
        ApiCommand::Speed { speed } => ApiCall::Speed(speed),
        ApiCommand::Pause => ApiCall::Pause,
        ApiCommand::Resume => ApiCall::Resume,
        ApiCommand::Recording => ApiCall::Recording,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Unreachable and broken connections are errors (exit 2); a refusal is an answer.
    let response = runtime.block_on(call.send(&client))?;
    let mut text = response.pretty_body();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if response.is_success() {
        print_unless_closed(&text)?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprint!("error: HTTP {}\n{text}", response.status);
        Ok(ExitCode::from(1))
    }
}

/// Prints `text`; a reader that stopped early (`| head`) is not an error.
fn print_unless_closed(text: &str) -> Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("writing to standard output"))
        }
        _ => Ok(()),
    }
}

fn open_catalog(path: Option<&Path>) -> Result<Catalog> {
    Ok(match path {
        Some(path) => load_catalog(path)?,
        None => Catalog::embedded()?,
    })
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
    fn new(quiet: bool) -> Self {
        Progress {
            bar: None,
            started: Instant::now(),
            total_ms: 0,
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, virtual_ms: u64, total_ms: u64) {
        self.total_ms = total_ms;
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
