//! The command line's arguments (clap): one `Args` struct per verb.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use marketsim::app::analyst_choice::AnalystChoice as Choice;
use marketsim::diagnostics::{parse_days, parse_seed};
use marketsim::output::diff;
use marketsim::scenario::script::check_scale;

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the live simulation: simulates the history up to now, then paces the same
    /// session to the wall clock behind a REST API and a WebSocket hub. Prints the URL.
    Serve(ServeArgs),
    /// Run a script headless and write a run directory.
    Run(RunArgs),
    /// Score the recommendations of analyzed runs against their ground truth; prints a table
    /// and writes eval.json.
    Eval(EvalArgs),
    /// Describe a stream: definition, what feeds it, and with --run its statistics.
    Inspect(InspectArgs),
    /// List the scenario library (id, name, duration, what each touches) and the bundled run
    /// scripts that `run` and `validate` accept by name.
    Scenarios(ScenariosArgs),
    /// Check input files without running anything. Each file's kind — run script, catalog,
    /// event library or scenario definition — is told from its top-level keys; a run script is
    /// checked with its catalog and library, library files against the embedded catalog.
    Validate(ValidateArgs),
    /// Write random run scripts for measuring generalization: DIR/random-SEED-INDEX.yaml,
    /// each drawn from the seed and its index alone (any month, hour and weekday; library
    /// scenarios, overlaps, stops, resets, overrides, inline variants, events, red herrings,
    /// backdating; some quiet runs). Seeds 1000-1999 are for tuning, seeds from 5000 for
    /// reporting.
    Generate(GenerateArgs),
    /// List the catalog's streams by domain.
    Streams(StreamsArgs),
    /// Compare two run directories: metadata, per-stream totals, fingerprints and bucket
    /// series, external events. Exit code 0 when the runs are the same (within the tolerance),
    /// 1 when they differ, 2 on error.
    Diff(DiffArgs),
    /// Render a run directory as one self-contained HTML report that works offline.
    Report(ReportArgs),
    /// Export a run's bucket series (or, with --events, its events) as CSV or JSON Lines.
    Export(ExportArgs),
    /// Watch a live server: subscribe over its WebSocket and print each stream event as a JSON
    /// line (or a table), answering pings, until --count events or --seconds pass.
    WsClient(WsClientArgs),
    /// Ask a running `marketsim serve` over its REST API and print the JSON answer. Exit code
    /// 0 on success, 1 when the server refuses (its error is printed), 2 when it cannot be
    /// reached.
    Api(ApiArgs),
}

/// Arguments of `marketsim api`.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The server.
    #[arg(long, default_value = marketsim::live::api_client::DEFAULT_URL)]
    pub url: String,
    /// The server's token: the admin token for calls that change the simulation, the read (or
    /// admin) token for reads of a server started with --read-token.
    #[arg(long, env = "MARKETSIM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub call: ApiCommand,
}

/// What `marketsim api` asks a running server.
#[derive(Subcommand)]
pub enum ApiCommand {
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

/// Arguments of `marketsim serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// A run script or a bundled script's name (default: baseline). Its catalog, library,
    /// seed, bucket, policy and timeline are used; its start becomes now − history.
    pub script: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port (default: $PORT when set, else 8080; 0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Virtual seconds per wall second (60: an hour a minute).
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Override the script's seed.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// The token every request that changes the simulation must carry as `Authorization:
    /// Bearer <token>` (401 without it); the admin page asks for it once per tab. Reads, the
    /// WebSocket and the pages stay open. Without one the API is open to whoever can reach it.
    #[arg(long, env = "MARKETSIM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The token every read of the simulation's data must carry (the API's reads, /metrics and
    /// the WebSocket, which also takes it as `?access_token=`); the admin token works too. The
    /// pages, /healthz and the OpenAPI document stay open; the pages ask for it once per tab.
    /// With no admin token, changes need this token.
    #[arg(long, env = "MARKETSIM_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// An origin (e.g. https://ops.example.com) whose pages may also change the simulation and
    /// open the WebSocket; repeatable. By default only the server's own pages may: a browser
    /// request from any other site is refused with 403.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// The marketplace's size, as a multiple of the catalog's (1 to 100): this many times the
    /// students, tutors and demand, at the same ratios. Overrides the script's `scale:`.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_scale)]
    pub scale: Option<u32>,
    /// Days of history simulated before now.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=180))]
    pub history_days: u64,
    /// The virtual "now" the live part starts at (default: the current UTC hour).
    #[arg(long)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// On shutdown, write the session's run directory (with its recording) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace OUT if it already holds a run.
    #[arg(long)]
    pub force: bool,
    /// Who writes the recommendations (`llm` runs beside the engine, never blocking it).
    #[arg(long, value_enum, default_value = "rules")]
    pub analyst: AnalystChoice,
    /// Most WebSocket connections from one IP address at once (429 past it); raise it for load
    /// tests from one machine. SECURITY.md lists every limit.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections_per_address: u32,
}

/// Arguments of `marketsim run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The run script (YAML), e.g. scenarios/baseline.yaml, or the name of a bundled script
    /// (see `marketsim scenarios`), e.g. supply-crisis. A file at that path wins.
    pub script: PathBuf,
    /// The run directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Override the script's seed (0 to 2^64 - 1).
    // Negative numbers are let through to the parser, which says what a seed is; clap would
    // take `-1` for a flag and suggest `-- -1`, which makes it the script.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: Option<u64>,
    /// The marketplace's size, as a multiple of the catalog's (1 to 100): this many times the
    /// students, tutors and demand, at the same ratios, so conversion, expiry and queue waits
    /// keep their levels while every count grows. Overrides the script's `scale:`.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_scale)]
    pub scale: Option<u32>,
    /// Override the script's duration, in days (1 to 366; 30, 30d and 30days all work).
    #[arg(long, value_parser = parse_days)]
    pub days: Option<u64>,
    /// Override the script's duration, e.g. 6h or 3d.
    #[arg(long, conflicts_with = "days", allow_hyphen_values = true)]
    pub duration: Option<String>,
    /// Also write events.jsonl with every stream event.
    #[arg(long)]
    pub events: bool,
    /// Also write the data sets as Parquet beside the text files, typed for pandas and DuckDB:
    /// series.parquet, labels.parquet and, with --events, events.parquet (one column per
    /// payload key).
    #[arg(long)]
    pub parquet: bool,
    /// Replace DIR if it already holds a run.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Skip the counterfactual twins that measure ground truth (truth.json lists the
    /// declared impacts only).
    #[arg(long)]
    pub no_truth: bool,
    /// How far past an item's window ground truth follows its effect: the twins run on until
    /// every stream the item moved is back inside its noise band for an hour, or this long
    /// (labels.csv then ends there; truth.json says which), e.g. 72h, 5d, 0h.
    #[arg(long, default_value = "72h", value_parser = parse_horizon, conflicts_with = "no_truth")]
    pub truth_horizon: u64,
    /// Simulate this many days (0 to 90) before the script's start, so the marketplace is full
    /// when the script begins and a detector has clean history: the run starts that much
    /// earlier, every timeline entry keeps its instant, and summary.json's warmupEnd marks where
    /// the history ends. Default: the script's `warmup:` (none).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=90))]
    pub warmup: Option<u64>,
    /// Score every bucket against a baseline (series.csv gains expected, z, normalized and
    /// flag; events get normalizedValue and anomalyFlag) and write baseline.json,
    /// anomalies.json and recommendations.json.
    #[arg(long)]
    pub analyze: bool,
    /// Who writes the recommendations: `rules` (offline, deterministic) or `llm` (an
    /// OpenAI-compatible endpoint from OPENAI_API_KEY, OPENAI_BASE_URL and
    /// MARKETSIM_LLM_MODEL; without a key the rules analyst is used).
    #[arg(long, value_enum, default_value = "rules", requires = "analyze")]
    pub analyst: AnalystChoice,
    /// Reuse the baseline.json of an earlier analyzed run instead of simulating four weeks
    /// of history before the epoch.
    #[arg(long, requires = "analyze")]
    pub baseline: Option<PathBuf>,
    /// Take the analyst's answers from an earlier session's analyst-replies.json instead of
    /// asking it (replaying a live session that used a language model, without the model).
    #[arg(long, requires = "analyze")]
    pub analyst_replies: Option<PathBuf>,
}

/// Arguments of `marketsim eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Run directories written with `run --analyze`.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Re-analyze each run with this analyst instead of reading its recommendations.json.
    #[arg(long, value_enum)]
    pub analyst: Option<AnalystChoice>,
    /// Where to write eval.json.
    #[arg(long, default_value = "eval.json")]
    pub out: PathBuf,
    /// Also print issue 13's targets for fresh random scripts beside the overall figures,
    /// each met or not met (the exit code does not change).
    #[arg(long)]
    pub targets: bool,
}

/// Arguments of `marketsim generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The set's seed (0 to 2^64 - 1): 1000-1999 for tuning, 5000 and above for reporting.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: u64,
    /// How many scripts to write: indexes 0 to COUNT - 1 (scripts only; see --runs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), required_unless_present = "runs", conflicts_with = "runs")]
    pub count: Option<u32>,
    /// How many labelled runs to write: the scripts (in DIR/scripts), each run with ground
    /// truth and labels.csv (in DIR/runs), two at a time, and DIR/manifest.json.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub runs: Option<u32>,
    /// The folder to write them to; created when missing.
    #[arg(long)]
    pub out: PathBuf,
    /// Write into a folder that already holds files (generated scripts and runs of the same
    /// names are replaced; other files are left alone).
    #[arg(long)]
    pub force: bool,
    /// Cap every run at this many days (3 to 10; the draws are the same, only durations are
    /// clamped), to keep a set cheap.
    #[arg(long, value_parser = clap::value_parser!(u32).range(3..=10))]
    pub max_days: Option<u32>,
    /// Draw only this library scenario (at least once in every script, never a quiet run): a
    /// set about one kind of incident, e.g. payment-outage. Everything else is drawn as usual.
    #[arg(long, alias = "template")]
    pub scenario: Option<String>,
    /// With --runs: days simulated before each script's start (0 to 90), as `run --warmup`.
    #[arg(long, default_value_t = 0, requires = "runs", value_parser = clap::value_parser!(u64).range(0..=90))]
    pub warmup: u64,
    /// With --runs: how far past an item's window its labels follow the effect, as
    /// `run --truth-horizon`.
    #[arg(long, default_value = "72h", requires = "runs", value_parser = parse_horizon)]
    pub truth_horizon: u64,
    /// With --runs: also write each run's events.jsonl (about 150 MB per simulated day).
    #[arg(long, requires = "runs")]
    pub events: bool,
    /// With --runs: also write each run's data sets as Parquet, as `run --parquet`.
    #[arg(long, requires = "runs")]
    pub parquet: bool,
    /// With --runs: runs at once (default: the machine's cores).
    #[arg(long, requires = "runs", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
}

/// Arguments of `marketsim inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// Stream name, e.g. session.booking.requested.
    pub stream: String,
    /// A run directory to take statistics and sample events from.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A catalog file instead of the embedded one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

/// Arguments of `marketsim scenarios`.
#[derive(clap::Args)]
pub struct ScenariosArgs {
    /// A folder with events.yaml and library/ instead of the embedded library.
    #[arg(long)]
    pub library: Option<PathBuf>,
}

/// Arguments of `marketsim validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Files of any of the four kinds, or names of bundled scripts.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Arguments of `marketsim streams`.
#[derive(clap::Args)]
pub struct StreamsArgs {
    /// A catalog file instead of the embedded one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

/// Arguments of `marketsim diff`.
#[derive(clap::Args)]
pub struct DiffArgs {
    /// The reference run directory.
    pub a: PathBuf,
    /// The run directory compared with A.
    pub b: PathBuf,
    /// Ignore relative differences |a − b| / max(|a|, |b|) up to this, per bucket and in
    /// event totals, e.g. 0.05 or 5%; fingerprints then count only through the series.
    #[arg(long, default_value = "0", value_parser = diff::parse_tolerance)]
    pub tolerance: f64,
    /// Print one JSON document instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// With --json, include both runs' bucket series aligned by timestamp.
    #[arg(long, requires = "json")]
    pub series: bool,
    /// Also write a self-contained HTML diff report with both runs overlaid.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Inline this ECharts build in the HTML report instead of the one embedded in the
    /// binary.
    #[arg(long, requires = "html")]
    pub echarts: Option<PathBuf>,
}

/// Arguments of `marketsim report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run directory (analyzed runs show normalized charts, anomalies and
    /// recommendations).
    pub run: PathBuf,
    /// The HTML file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Inline this ECharts build instead of the one embedded in the binary.
    #[arg(long)]
    pub echarts: Option<PathBuf>,
}

/// Arguments of `marketsim export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The run directory.
    pub run: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Csv)]
    pub format: ExportFormatArg,
    /// Only streams matching these globs (comma-separated or repeated), e.g. customer.*
    #[arg(long, value_delimiter = ',')]
    pub streams: Vec<String>,
    /// Only rows at or after this RFC 3339 instant (a bucket's start for series rows).
    #[arg(long)]
    pub from: Option<String>,
    /// Only rows before this RFC 3339 instant.
    #[arg(long)]
    pub to: Option<String>,
    /// Export the events of events.jsonl instead of the bucket series.
    #[arg(long)]
    pub events: bool,
    /// Write to FILE (atomically) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Arguments of `marketsim ws-client`.
#[derive(clap::Args)]
pub struct WsClientArgs {
    /// The server's WebSocket address.
    #[arg(default_value = marketsim::live::ws_client::DEFAULT_URL)]
    pub url: String,
    /// Topics: stream names, globs (comma-separated or repeated) or named topics
    /// (anomalies, recommendations, scenarios, timeline).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub subscribe: Vec<String>,
    /// Stop after N stream events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after S seconds.
    #[arg(long, value_name = "S")]
    pub seconds: Option<f64>,
    /// Print a compact table (time, stream, normalized, flag) instead of JSON lines.
    #[arg(long)]
    pub table: bool,
    /// The server's read (or admin) token, for a server started with --read-token; sent as
    /// `Authorization: Bearer`.
    #[arg(long, env = "MARKETSIM_READ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormatArg {
    Csv,
    Jsonl,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnalystChoice {
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

/// `--truth-horizon`: a duration such as 72h or 5d (0h turns the tail off).
pub fn parse_horizon(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    marketsim::diagnostics::parse_duration_ms(text).map_err(|error| error.to_string())
}

/// `--scale`: a whole number in the range a script's `scale:` allows.
fn parse_scale(text: &str) -> Result<u32, String> {
    let scale: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    check_scale(scale)
}
