//! What each verb of the command line does: call the library, print, pick the exit code.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::args::*;
use super::progress::Progress;
use marketsim::analyst::eval;
use marketsim::analyst::targets::render_targets;
use marketsim::app::analyst_choice::make_analyst;
use marketsim::app::analyzed;
use marketsim::app::batch::{self, BatchOptions};
use marketsim::app::run::{run_to_directory, AnalysisOptions, RunOptions};
use marketsim::diagnostics::parse_duration_ms;
use marketsim::engine::MS_PER_DAY;
use marketsim::inspect;
use marketsim::live::ws_client;
use marketsim::market::Catalog;
use marketsim::output::PendingFile;
use marketsim::output::{diff, export, to_pretty_json};
use marketsim::report;
use marketsim::scenario::plan::load_catalog;
use marketsim::scenario::random::{random_script_file_name, RandomScriptOptions, RandomScripts};
use marketsim::scenario::Library;
use marketsim::validate::validate_input;

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        script,
        host,
        port,
        speed,
        seed,
        admin_token,
        read_token,
        allowed_origins,
        scale,
        history_days,
        now,
        out,
        force,
        analyst,
        max_connections_per_address,
    } = args;
    let options = marketsim::live::server::ServeOptions {
        script,
        host,
        port,
        speed,
        seed,
        admin_token,
        read_token,
        allowed_origins,
        scale,
        out,
        force,
        history_ms: history_days * MS_PER_DAY,
        now,
        analyst: analyst.into(),
        limits: marketsim::live::Limits {
            max_connections_per_address: max_connections_per_address as usize,
            ..Default::default()
        },
    };
    marketsim::live::server::serve_until_signal(options)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let RunArgs {
        script,
        out,
        seed,
        scale,
        days,
        duration,
        events,
        parquet,
        force,
        quiet,
        no_truth,
        truth_horizon,
        warmup,
        analyze,
        analyst,
        baseline,
        analyst_replies,
    } = args;
    let duration_ms = match (days, duration) {
        (Some(days), _) => Some(days * MS_PER_DAY),
        (None, Some(text)) => Some(parse_duration_ms(&text).map_err(anyhow::Error::msg)?),
        (None, None) => None,
    };
    let options = RunOptions {
        seed,
        scale,
        duration_ms,
        write_events: events,
        write_parquet: parquet,
        force,
        measure_truth: !no_truth,
        truth_horizon_ms: truth_horizon,
        warmup_days: warmup,
        analysis: analyze.then_some(AnalysisOptions {
            analyst: analyst.into(),
            baseline_file: baseline,
            replies_file: analyst_replies,
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
    Ok(ExitCode::SUCCESS)
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let EvalArgs {
        runs,
        analyst,
        out,
        targets,
    } = args;
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
    if targets {
        print!("\n{}", render_targets(&report.overall));
    }
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let InspectArgs {
        stream,
        run,
        catalog,
    } = args;
    let catalog = open_catalog(catalog.as_deref())?;
    print!("{}", inspect::describe(&catalog, &stream, run.as_deref())?);
    Ok(ExitCode::SUCCESS)
}

pub fn scenarios(args: ScenariosArgs) -> Result<ExitCode> {
    let ScenariosArgs { library } = args;
    let catalog = Catalog::embedded()?;
    let library = Library::load(library.as_deref(), &catalog)?;
    print!("{}", inspect::list_scenarios(&library));
    print!("{}", inspect::list_bundled_scripts()?);
    Ok(ExitCode::SUCCESS)
}

pub fn validate(args: ValidateArgs) -> Result<ExitCode> {
    let ValidateArgs { files } = args;
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
    Ok(ExitCode::SUCCESS)
}

pub fn generate(args: GenerateArgs) -> Result<ExitCode> {
    let GenerateArgs {
        seed,
        count,
        runs,
        out,
        force,
        max_days,
        warmup,
        truth_horizon,
        events,
        parquet,
        jobs,
        scenario,
    } = args;
    let only_scenario = match &scenario {
        Some(id) => Some(
            RandomScripts::embedded()?
                .scenario_index(id)
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let script_options = RandomScriptOptions {
        max_days: max_days.unwrap_or(RandomScriptOptions::default().max_days),
        only_scenario,
    };
    if let Some(runs) = runs {
        return generate_runs(
            &out,
            &BatchOptions {
                seed,
                runs,
                scripts: script_options,
                run: RunOptions {
                    write_events: events,
                    write_parquet: parquet,
                    truth_horizon_ms: truth_horizon,
                    warmup_days: Some(warmup),
                    ..RunOptions::with_truth()
                },
                workers: jobs.map_or_else(
                    || std::thread::available_parallelism().map_or(2, |n| n.get()),
                    |jobs| jobs as usize,
                ),
            },
            force,
        );
    }
    // Clap requires --count when --runs is absent.
    let count = count.unwrap_or(1);
    batch::refuse_folder_with_files(&out, force)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let scripts = RandomScripts::embedded()?;
    for index in 0..count {
        let text = scripts.generate(seed, index, script_options)?;
        let path = out.join(random_script_file_name(seed, index));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "wrote {count} scripts to {} ({} … {})",
        out.display(),
        random_script_file_name(seed, 0),
        random_script_file_name(seed, count - 1)
    );
    Ok(ExitCode::SUCCESS)
}

/// `generate --runs`: the labelled set, with a line per finished run on standard error.
fn generate_runs(out: &Path, options: &BatchOptions, force: bool) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let progress = |done: usize, total: usize| {
        eprintln!(
            "  {done}/{total} runs ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    };
    let manifest = batch::generate_runs(out, options, force, &progress)?;
    let items: usize = manifest.runs.iter().map(|run| run.items.len()).sum();
    eprintln!(
        "wrote {} labelled runs ({items} items) to {} in {:.0} s: scripts/, runs/ and {}",
        manifest.runs.len(),
        out.display(),
        started.elapsed().as_secs_f64(),
        batch::MANIFEST_FILE,
    );
    Ok(ExitCode::SUCCESS)
}

pub fn streams(args: StreamsArgs) -> Result<ExitCode> {
    let StreamsArgs { catalog } = args;
    let catalog = open_catalog(catalog.as_deref())?;
    print!("{}", inspect::list_streams(&catalog));
    Ok(ExitCode::SUCCESS)
}

pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    let DiffArgs {
        a,
        b,
        tolerance,
        json,
        series,
        html,
        echarts,
    } = args;
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
    Ok(ExitCode::SUCCESS)
}

pub fn report(args: ReportArgs) -> Result<ExitCode> {
    let ReportArgs {
        run,
        output,
        echarts,
    } = args;
    let echarts_script = report::echarts_script(echarts.as_deref())?;
    let data = report::build_report_data(&run)?;
    let page = report::render_run_report(&data, &echarts_script)?;
    report::write_atomically(&output, &page)?;
    eprintln!("wrote {} ({} KB)", output.display(), page.len() / 1024);
    Ok(ExitCode::SUCCESS)
}

pub fn export_rows(args: ExportArgs) -> Result<ExitCode> {
    let ExportArgs {
        run,
        format,
        streams,
        from,
        to,
        events,
        output,
    } = args;
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
    Ok(ExitCode::SUCCESS)
}

pub fn watch_websocket(args: WsClientArgs) -> Result<ExitCode> {
    let WsClientArgs {
        url,
        subscribe,
        count,
        seconds,
        table,
        token,
    } = args;
    let options = ws_client::ClientOptions {
        url,
        topics: subscribe,
        count,
        seconds,
        table,
        bearer_token: token,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut out = std::io::stdout().lock();
    match runtime.block_on(ws_client::run(&options, &mut out)) {
        // A reader that stopped early (`| head`) is not an error.
        Err(ws_client::ClientError::Output(error))
            if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        outcome => {
            outcome?;
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// `marketsim api`: one request, the answer printed; 1 when the server refuses.
pub fn call_api(args: ApiArgs) -> Result<ExitCode> {
    use marketsim::live::api_client::{ApiCall, ApiClient};
    let client = ApiClient::new(&args.url)?.with_bearer_token(args.token.as_deref());
    let call = match args.call {
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
