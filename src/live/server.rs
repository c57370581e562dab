//! Start-up and shutdown of `marketsim serve`: the session's history simulated headless up to
//! "now", the baseline fitted beside it, the runner thread, the hub, the router; on shutdown,
//! close frames to every client, the engine stopped, and with `--out` the session's run
//! directory (with its recording) written atomically.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use chrono::{DateTime, DurationRound, Utc};
use tokio_util::sync::CancellationToken;

use super::access::{self, AccessPolicy};
use super::hub::Hub;
use super::metrics::Metrics;
use super::runner::{self, RunnerHandle};
use super::{api, pages, ws, AppState, Limits};
use crate::app::analyst_choice::{make_analyst, AnalystChoice};
use crate::app::history::simulate_baseline;
use crate::app::run::{write_run_directory, RunFiles};
use crate::app::AppError;
use crate::engine::{NoSink, MS_PER_DAY};
use crate::output::run_dir::PendingRunDirectory;
use crate::scenario::script::MAX_DURATION_MS;
use crate::scenario::{RunPlan, Script};
use crate::session::analysis::{AnalystRunner, SessionAnalysis};
use crate::session::Session;

/// The bundled script a server runs when none is named.
pub const DEFAULT_SCRIPT: &str = "baseline";
/// Days of history simulated before "now" by default.
pub const DEFAULT_HISTORY_DAYS: u64 = 30;
/// How far past "now" a served script's timeline may reach.
const LIVE_HORIZON_MS: u64 = 30 * MS_PER_DAY;
/// The run directory's copy of the session's recording.
pub const RECORDING_FILE: &str = "recording.yaml";

/// What `marketsim serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A script path or bundled name; [`DEFAULT_SCRIPT`] when absent. Its catalog, library,
    /// seed, bucket, policy and timeline are used; its start is replaced by `now − history`.
    pub script: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    /// Virtual seconds per wall second.
    pub speed: f64,
    pub seed: Option<u64>,
    /// The token every state-changing request needs (`--admin-token`); `None`: the API is open.
    pub admin_token: Option<String>,
    /// The token every read of the simulation's data needs (`--read-token`); `None`: reads are
    /// open.
    pub read_token: Option<String>,
    /// Origins besides the server's own whose pages may change the simulation and open the
    /// WebSocket (`--allow-origin`).
    pub allowed_origins: Vec<String>,
    /// The marketplace's size factor (`--scale`); `None`: the script's `scale:`.
    pub scale: Option<u32>,
    /// Write the session's run directory here on shutdown.
    pub out: Option<PathBuf>,
    pub force: bool,
    pub history_ms: u64,
    /// Virtual "now" when the server starts (default: the current UTC hour).
    pub now: Option<DateTime<Utc>>,
    pub analyst: AnalystChoice,
    pub limits: Limits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            script: None,
            host: "127.0.0.1".to_string(),
            port: 8080,
            speed: 60.0,
            seed: None,
            admin_token: None,
            read_token: None,
            allowed_origins: Vec::new(),
            scale: None,
            out: None,
            force: false,
            history_ms: DEFAULT_HISTORY_DAYS * MS_PER_DAY,
            now: None,
            analyst: AnalystChoice::Rules,
            limits: Limits::default(),
        }
    }
}

/// A started server.
pub struct RunningServer {
    pub address: SocketAddr,
    /// The session's epoch and the "now" its live part started at.
    pub epoch: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Seconds from start to ready.
    pub startup_seconds: f64,
    shutdown: CancellationToken,
    runner: RunnerHandle,
    state: tokio::sync::watch::Receiver<super::LiveState>,
    server: tokio::task::JoinHandle<()>,
    hub: tokio::task::JoinHandle<()>,
    plan_name: String,
    out: Option<PathBuf>,
    force: bool,
}

/// The plan a server runs: the script with its start moved to `now − history`.
fn live_plan(options: &ServeOptions, now: DateTime<Utc>) -> Result<RunPlan, AppError> {
    let path = options
        .script
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SCRIPT));
    let mut script = Script::open(&path)?;
    script.start = now - chrono::Duration::milliseconds(options.history_ms as i64);
    if let Some(scale) = options.scale {
        script.scale = scale;
    }
    let duration = (options.history_ms + LIVE_HORIZON_MS).min(MAX_DURATION_MS);
    Ok(RunPlan::from_script(script, options.seed, Some(duration))?)
}

/// Starts a server: history, baseline, runner, hub and router. Returns once it listens.
pub async fn start(options: ServeOptions) -> Result<RunningServer, AppError> {
    let started = Instant::now();
    let now = match options.now {
        Some(now) => now,
        None => Utc::now()
            .duration_trunc(chrono::Duration::hours(1))
            .unwrap_or_else(|_| Utc::now()),
    };
    if let Some(out) = &options.out {
        // Refuse a bad output directory before the history is simulated.
        drop(PendingRunDirectory::create(out, options.force)?);
    }
    let plan = live_plan(&options, now)?;
    let mut session = Session::for_run(&plan, false).map_err(AppError::Model)?;
    session.keep_checkpoints();
    // The baseline is fitted on the weeks before the epoch while the history runs.
    let (analysis_sender, analysis_receiver) = std::sync::mpsc::channel();
    let (analyst, note) = make_analyst(options.analyst)?;
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    let runner_of_analyst = if options.analyst == AnalystChoice::Llm {
        AnalystRunner::background(analyst)
    } else {
        AnalystRunner::InPlace(analyst)
    };
    let baseline_plan = plan.clone();
    std::thread::Builder::new()
        .name("marketsim-baseline".to_string())
        .spawn(move || match simulate_baseline(&baseline_plan) {
            Ok(baseline) => {
                let analysis = SessionAnalysis::new(
                    &baseline_plan.catalog,
                    Arc::new(baseline),
                    baseline_plan.epoch(),
                    baseline_plan.bucket_ms(),
                    runner_of_analyst,
                );
                let _ = analysis_sender.send(analysis);
            }
            Err(error) => tracing::error!(%error, "the baseline could not be fitted"),
        })
        .map_err(|source| AppError::Io {
            what: "starting the baseline thread".to_string(),
            source,
        })?;
    let history_ms = options.history_ms;
    let session = tokio::task::spawn_blocking(move || {
        session.advance_to(history_ms, &mut NoSink);
        session
    })
    .await
    .map_err(|_| AppError::Panicked {
        what: "the history simulation".to_string(),
    })?;
    tracing::info!(
        epoch = %plan.script.start,
        now = %now,
        events = session.collector().total_events(),
        seconds = started.elapsed().as_secs_f64(),
        "history simulated"
    );

    let metrics = Arc::new(Metrics::default());
    let limits = Arc::new(options.limits.clone());
    let (frame_sender, frame_receiver) = tokio::sync::mpsc::channel(256);
    let (runner, state, _thread) = runner::spawn(
        session,
        options.speed,
        frame_sender,
        Arc::clone(&metrics),
        Some(analysis_receiver),
        plan.script.name.clone(),
    );
    let hub = Arc::new(Hub::new(
        Arc::clone(&plan.catalog),
        Arc::clone(&limits),
        Arc::clone(&metrics),
    ));
    let shutdown = CancellationToken::new();
    let hub_task =
        tokio::spawn(Arc::clone(&hub).run(frame_receiver, state.clone(), shutdown.clone()));
    let app_state_state = state.clone();
    let app_state = AppState {
        runner: runner.clone(),
        hub,
        state,
        metrics,
        limits: Arc::clone(&limits),
        library: Arc::clone(&plan.library),
        catalog: Arc::clone(&plan.catalog),
        access: Arc::new(
            AccessPolicy::with_admin_token(options.admin_token.as_deref())
                .with_read_token(options.read_token.as_deref())
                .allowing_origins(&options.allowed_origins),
        ),
        command_times: Arc::default(),
    };
    let router = router(app_state, limits.max_body_bytes);
    let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
        .await
        .map_err(|source| AppError::Io {
            what: format!("listening on {}:{}", options.host, options.port),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| AppError::Io {
        what: "reading the bound address".to_string(),
        source,
    })?;
    let token = shutdown.clone();
    let server = tokio::spawn(async move {
        let serving = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { token.cancelled().await });
        if let Err(error) = serving.await {
            tracing::error!(%error, "the server stopped");
        }
    });
    Ok(RunningServer {
        address,
        epoch: plan.script.start,
        now,
        startup_seconds: started.elapsed().as_secs_f64(),
        shutdown,
        runner,
        state: app_state_state,
        server,
        hub: hub_task,
        plan_name: plan.script.name.clone(),
        out: options.out.clone(),
        force: options.force,
    })
}

/// Every route: the API, the WebSocket, and the pages; every request is logged and
/// counted.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    api::router()
        .merge(ws::router())
        .merge(pages::router())
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_tokens,
        ))
        .layer(axum::middleware::from_fn(access::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::log_requests,
        ))
        .with_state(state)
}

impl RunningServer {
    pub fn runner(&self) -> &RunnerHandle {
        &self.runner
    }

    /// The latest live state.
    pub fn state(&self) -> super::LiveState {
        self.state.borrow().clone()
    }

    /// Closes every WebSocket with a close frame, stops the engine, and with `--out` writes the
    /// session's run directory and its recording. Returns the directory written, if any.
    pub async fn shutdown(self) -> Result<Option<PathBuf>, AppError> {
        self.shutdown.cancel();
        let _ = self.hub.await;
        let _ = self.server.await;
        let session = self
            .runner
            .shutdown()
            .await
            .map_err(|_| AppError::Panicked {
                what: "the runner".to_string(),
            })?;
        let Some(out) = &self.out else {
            return Ok(None);
        };
        let session = *session;
        let plan_name = self.plan_name.clone();
        let force = self.force;
        let out = out.clone();
        tokio::task::spawn_blocking(move || write_session(&session, &plan_name, &out, force))
            .await
            .map_err(|_| AppError::Panicked {
                what: "writing the run directory".to_string(),
            })?
            .map(Some)
    }
}

/// Writes a live session's run directory: the files `marketsim run --analyze` writes, from
/// the session itself, plus `recording.yaml`; `marketsim run` of the recording replays it.
pub fn write_session(
    session: &Session,
    name: &str,
    out: &Path,
    force: bool,
) -> Result<PathBuf, AppError> {
    let text = session.recording(name).to_yaml();
    let script = Script::parse(Path::new(RECORDING_FILE), &text)?;
    let plan = RunPlan::from_script(script, None, None)?;
    let pending = PendingRunDirectory::create(out, force)?;
    pending.add_file(RECORDING_FILE, &text)?;
    write_run_directory(pending, &plan, session, RunFiles::default())?;
    Ok(out.to_path_buf())
}

/// `marketsim serve`: logs to stderr (`RUST_LOG`, default info), starts the server, prints its
/// URL, and on SIGINT or SIGTERM shuts down cleanly (writing `--out`).
pub fn serve_until_signal(options: ServeOptions) -> Result<(), AppError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| AppError::Io {
            what: "starting the async runtime".to_string(),
            source,
        })?;
    runtime.block_on(async move {
        let policy = AccessPolicy::with_admin_token(options.admin_token.as_deref())
            .with_read_token(options.read_token.as_deref());
        let loopback = ["127.0.0.1", "localhost", "::1"].contains(&options.host.as_str());
        if !loopback && !policy.admin_token_required() && !policy.read_token_required() {
            tracing::warn!(host = %options.host, "listening beyond this machine without an admin token: anyone who can reach this address can change the simulation; set --admin-token or MARKETSIM_ADMIN_TOKEN");
        }
        let server = start(options).await?;
        println!(
            "marketsim is live at http://{}/ (history from {} to {}, ready in {:.1} s; Ctrl-C stops it)",
            server.address,
            server.epoch.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            server.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            server.startup_seconds
        );
        println!(
            "  dashboard: http://{address}/dashboard   admin: http://{address}/admin",
            address = server.address
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        if let Some(path) = server.shutdown().await? {
            println!("wrote {}", path.display());
        }
        Ok(())
    })
}

/// Returns on Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
