//! `cargo xtask`: the project's automation — the CI gate, browser tests of the HTML reports,
//! the bundled scenarios' reports, snapshot blessing, benchmarks and the analyst's evaluation
//! on random scripts.
//!
//! Kept to the standard library (plus `libc` for peak-memory measurement, signals and the
//! open-file limit) so it compiles in seconds. Every task prints the commands it runs.

mod eval_random;
mod faults;
mod live_bench;
mod llm_eval;
mod profile;
mod soak;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let result = match task {
        "ci" => ci(),
        "e2e" => e2e(),
        "reports" => reports(),
        "demo" => demo(),
        "bless" => bless(),
        "bench" => bench(args.get(1).map(String::as_str)),
        "eval-random" => eval_random::eval_random(&args[1..]),
        "llm-eval" => llm_eval::llm_eval(&args[1..]),
        "profile" => profile::profile(&args[1..]),
        "faults" => faults::faults(&args[1..]),
        "soak" => soak::soak(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 \x20 demo     the main job: release build (it runs npm ci for ECharts if web/node_modules\n\
                 \x20          lacks it), the 30-day baseline with --analyze into out/base and its report,\n\
                 \x20          reports/baseline.html\n\
                 \x20 ci       fmt check, clippy -D warnings, tests with snapshots checked, faults, then e2e\n\
                 \x20          (the whole gate)\n\
                 \x20 e2e      render a report and a diff report of two short runs, start `marketsim serve`, and\n\
                 \x20          test the reports, /dashboard and /admin in Debian's Chromium (node --test\n\
                 \x20          web/tests/); screenshots in target/e2e/. Installs\n\
                 \x20          chromium with apt-get (as root) and web/node_modules with npm ci when missing\n\
                 \x20 reports  run every bundled scenario script with --analyze (release build) and render\n\
                 \x20          reports/NAME.html\n\
                 \x20 eval-random  [--count N (50)] [--seed S (5000)] [--keep DIR]: N random scripts\n\
                 \x20          (`marketsim generate`), each run with --analyze (release build, two at a\n\
                 \x20          time), scored by `marketsim eval --targets`: the table and issue 13's targets.\n\
                 \x20          Seeds 1000-1999 are for tuning, seeds from 5000 for reporting\n\
                 \x20 llm-eval [--recipe DIR (../shared/llm)] [--scripts a,b|all] [--timeout-ms MS] [--keep DIR]:\n\
                 \x20          build and serve a small local model with the recipe (cached), run the scripts\n\
                 \x20          with --analyst llm and with rules, and print both evals with the model's\n\
                 \x20          answered share, fallback reasons, prompt tokens and latency\n\
                 \x20 bless    run the tests and accept every changed snapshot (review the diff first!)\n\
                 \x20 bench    benchmarks: engine throughput, 30-day runs (events, truth, analysis), then the\n\
                 \x20          live server (start-up, pacing, WebSocket fan-out; about 5 minutes)\n\
                 \x20          `bench model`: only the first two; `bench live`: only the live server\n\
                 \x20 profile  [--days D (30)] [--scale K (1)] [--truth]: perf-record a release run of the\n\
                 \x20          baseline on one core, draw reports/profile/NAME.svg (inferno) and print each\n\
                 \x20          part's share of the samples (needs linux-perf and `cargo install inferno`)\n\
                 \x20 faults   [--release]: the fault checks (kill -9 during run and serve --out, a full disk,\n\
                 \x20          a read-only folder, SIGTERM on serve, 1,000 vanishing clients, a black-holed LLM\n\
                 \x20          endpoint, host clock jumps) against the real binary, one table; logs in\n\
                 \x20          target/faults/. Part of ci\n\
                 \x20 soak     [--minutes M (10)] [--clients N (200)]: a release server at 600× under steady,\n\
                 \x20          slow and reconnecting WebSocket clients and REST commands; memory over time,\n\
                 \x20          engine stalls, dropped and lagging clients, 5xx; target/soak/soak.json"
            );
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task}: {message}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
    // `cargo run` sets these for xtask (its manifest, its package's name and version); passed
    // on, they would make build scripts that watch them (ring's watches CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME and CARGO_PKG_VERSION_*) rebuild whenever one switches between
    // `cargo xtask` and plain cargo.
    command.current_dir(project_root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

fn run(mut command: Command) -> Result<(), String> {
    eprintln!("$ {command:?}");
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    report_wall_time(started, &command);
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

/// Prints a step's wall time, so a slow CI run says where its minutes went.
fn report_wall_time(started: Instant, command: &Command) {
    let first_argument = command.get_args().next().unwrap_or_default();
    eprintln!(
        "xtask: {:.1} s for {} {}",
        started.elapsed().as_secs_f64(),
        command.get_program().to_string_lossy(),
        first_argument.to_string_lossy()
    );
}

/// Runs `command` like [`run`], returning what it printed on stdout (stderr goes through).
fn run_capturing_stdout(mut command: Command) -> Result<String, String> {
    eprintln!("$ {command:?}");
    let started = Instant::now();
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    report_wall_time(started, &command);
    if !output.status.success() {
        return Err(format!("{command:?} failed with {}", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The median throughput (items per second) divan printed for benchmark `name`: the line after
/// the one naming it holds the throughputs, fastest │ slowest │ median │ mean.
fn divan_median_throughput(output: &str, name: &str) -> Option<f64> {
    let mut lines = output.lines();
    lines.find(|line| line.split_whitespace().any(|word| word == name))?;
    let throughputs = lines.next()?;
    // The line starts with a tree branch (`│`) unless the benchmark is the group's last.
    let median = throughputs
        .split('│')
        .map(str::trim)
        .filter(|field| field.ends_with("item/s"))
        .nth(2)?;
    let (number, unit) = median.split_once(' ')?;
    let scale = match unit {
        "item/s" => 1.0,
        "Kitem/s" => 1e3,
        "Mitem/s" => 1e6,
        "Gitem/s" => 1e9,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

fn ci() -> Result<(), String> {
    // CI builds from a clean clone, where incremental compilation only costs: it writes caches
    // nobody reads again. Every cargo below inherits this, so e2e's `cargo test --no-run` finds
    // the test build's artifacts instead of rebuilding them.
    std::env::set_var("CARGO_INCREMENTAL", "0");
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    // The test build before clippy, which then checks on top of the built dependencies in about
    // a minute. On a cold 2-core machine the two orders cost about the same in all (clippy 213 s
    // + test build 338 s; test build 497 s + clippy 69 s); this one reports a broken build, the
    // commoner failure, before the lints.
    let mut build = cargo();
    build.args(["test", "--workspace", "--no-run"]);
    run(build)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;

    // Snapshots are checked, never written: a changed snapshot fails the run, and a snapshot
    // file that no test references fails it too (what `cargo insta test --check
    // --unreferenced=reject` does, without needing cargo-insta installed).
    let references = std::env::temp_dir().join(format!(
        "marketsim-snapshot-references-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&references);
    // The data-set example (tests/dataset.rs) runs in Python with pandas and DuckDB from
    // target/python, installed from the pinned tests/python/requirements.txt.
    let python = python_environment()?;
    let mut test = cargo();
    test.args(["test", "--workspace"])
        .env("MARKETSIM_PYTHON", &python)
        .env("MARKETSIM_REQUIRE_PYTHON", "1")
        .env("INSTA_UPDATE", "no")
        .env("INSTA_FORCE_PASS", "0")
        .env("CI", "true")
        .env("INSTA_SNAPSHOT_REFERENCES_FILE", &references);
    run(test)?;
    let referenced: BTreeSet<PathBuf> = std::fs::read_to_string(&references)
        .unwrap_or_default()
        .lines()
        .map(|line| std::fs::canonicalize(line).unwrap_or_else(|_| PathBuf::from(line)))
        .collect();
    let _ = std::fs::remove_file(&references);
    let mut unreferenced = Vec::new();
    for file in snapshot_files(&project_root()) {
        let canonical = std::fs::canonicalize(&file).unwrap_or(file.clone());
        if !referenced.contains(&canonical) {
            unreferenced.push(file.display().to_string());
        }
    }
    if !unreferenced.is_empty() {
        return Err(format!(
            "snapshots that no test references (delete them):\n  {}",
            unreferenced.join("\n  ")
        ));
    }
    // The fault checks against the debug binary the tests built (about two minutes).
    faults::faults(&[])?;
    e2e()?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

/// The Python of the data-set example: a virtual environment in target/python with exactly the
/// packages of tests/python/requirements.txt (from PyPI), made once and remade when that file
/// changes. Returns its interpreter.
fn python_environment() -> Result<PathBuf, String> {
    let root = project_root();
    let requirements = root.join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let environment = root.join("target/python");
    let interpreter = environment.join("bin/python");
    let stamp = environment.join("requirements.installed");
    if interpreter.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(interpreter);
    }
    eprintln!(
        "xtask: installing the Python packages of tests/python/requirements.txt into target/python (pip)"
    );
    let _ = std::fs::remove_dir_all(&environment);
    let python = std::env::var_os("MARKETSIM_HOST_PYTHON").unwrap_or_else(|| "python3".into());
    let mut venv = Command::new(&python);
    venv.args(["-m", "venv"]).arg(&environment);
    run(venv).map_err(|e| {
        format!("{e}\n(the data-set example needs Python 3 with venv: apt-get install python3 python3-venv)")
    })?;
    let log = root.join("target/xtask-pip.log");
    let output = Command::new(&interpreter)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .map_err(|e| format!("cannot start pip: {e}"))?;
    let _ = std::fs::write(
        &log,
        [output.stdout.as_slice(), output.stderr.as_slice()].concat(),
    );
    if !output.status.success() {
        return Err(format!(
            "pip install -r tests/python/requirements.txt failed; its output is in {}:\n{}",
            log.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(interpreter)
}

/// The browser the e2e tests drive: Debian's Chromium (never a downloaded one).
fn chromium_path() -> PathBuf {
    std::env::var_os("MARKETSIM_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// On a fresh Debian machine, as root, installs Debian's Chromium so the README's test command
/// sets itself up; anywhere else it does nothing and the caller explains what is missing.
/// apt's and dpkg's several hundred lines go to `target/xtask-apt.log`, shown only on failure.
fn install_debian_chromium() {
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root || !Path::new("/usr/bin/apt-get").exists() {
        return;
    }
    eprintln!(
        "xtask: installing Debian's chromium and fonts-liberation with apt-get, for the browser \
         tests (output in target/xtask-apt.log)"
    );
    let _ = std::fs::remove_file(project_root().join("target/xtask-apt.log"));
    for args in [
        vec!["update", "-qq"],
        vec!["install", "-y", "-qq", "chromium", "fonts-liberation"],
    ] {
        let mut apt = Command::new("/usr/bin/apt-get");
        apt.args(&args).env("DEBIAN_FRONTEND", "noninteractive");
        if let Err(message) = run_logged(apt, "xtask-apt.log") {
            eprintln!("{message}");
            return;
        }
    }
}

/// Runs a command with its output appended to `target/{log_name}` instead of the terminal,
/// for installers whose output matters only when they fail; then the error carries the log's
/// last lines.
fn run_logged(mut command: Command, log_name: &str) -> Result<(), String> {
    let log = project_root().join("target").join(log_name);
    let _ = std::fs::create_dir_all(project_root().join("target"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let file_for_stderr = file
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    command.stdout(file).stderr(file_for_stderr);
    let status = command
        .status()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    Err(format!(
        "{command:?} failed with {status}; the end of {}:\n{tail}",
        log.display()
    ))
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Installs `web/node_modules` with `npm ci` when it is missing or older than
/// `web/package-lock.json` (npm keeps its own copy of the lock in `node_modules`): the browser
/// tests need playwright-core. (Builds install ECharts themselves, see build.rs.)
fn ensure_web_modules(root: &Path) -> Result<(), String> {
    let lock = root.join("web/package-lock.json");
    let installed = root.join("web/node_modules/.package-lock.json");
    let stale = match (modified(&installed), modified(&lock)) {
        (Some(installed), Some(lock)) => installed < lock,
        _ => true,
    };
    if !stale {
        return Ok(());
    }
    eprintln!(
        "xtask: installing web/node_modules (ECharts, playwright-core) with `npm ci --prefix web`"
    );
    let mut npm = Command::new("npm");
    npm.current_dir(root).args([
        "ci",
        "--prefix",
        "web",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]);
    run(npm).map_err(|e| {
        format!("{e}\n  (the browser tests need Node.js and npm: `apt-get install nodejs npm`)")
    })
}

/// Builds the release binary and returns its path.
fn release_binary(root: &Path) -> Result<PathBuf, String> {
    let mut build = cargo();
    build.args(["build", "--release", "--bin", "marketsim"]);
    run(build)?;
    Ok(root.join("target/release/marketsim"))
}

/// A `marketsim` command run from the project root, so the paths the tasks give it (and it
/// prints) are short; the binary carries ECharts, so its reports depend on no folder.
fn marketsim(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    command.current_dir(project_root());
    command
}

/// The browser tests: two short analyzed runs, a report of one and an HTML diff of both, then
/// `node --test web/tests/` on them in Debian's Chromium.
fn e2e() -> Result<(), String> {
    let root = project_root();
    let chromium = chromium_path();
    if !chromium.exists() && std::env::var_os("MARKETSIM_CHROMIUM").is_none() {
        install_debian_chromium();
    }
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {}: the browser tests use Debian's, installed with \
             `apt-get install chromium` (as root); browsers are never downloaded \
             (set MARKETSIM_CHROMIUM to use another one)",
            chromium.display()
        ));
    }
    ensure_web_modules(&root)?;

    let mut build = cargo();
    // The binary the integration tests use: built with the dev-dependencies' features, so
    // after `cargo test` (as in `ci`) this is a no-op instead of a second build of every crate.
    build.args(["test", "--no-run", "--test", "tests"]);
    run(build)?;
    let binary = root.join("target/debug/marketsim");
    let out = Path::new("target/e2e");
    std::fs::create_dir_all(root.join(out))
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for (name, seed) in [("run", None), ("run-b", Some("8"))] {
        let mut simulate = marketsim(&binary);
        simulate
            .args(["run", "fixtures/scripts/short.yaml", "--out"])
            .arg(out.join(name))
            .args(["--force", "--quiet", "--analyze"]);
        if let Some(seed) = seed {
            simulate.args(["--seed", seed]);
        }
        run(simulate)?;
    }
    let report = out.join("report.html");
    let diff_report = out.join("diff.html");
    let mut render = marketsim(&binary);
    render
        .args(["report"])
        .arg(out.join("run"))
        .arg("-o")
        .arg(&report);
    run(render)?;
    // `diff` exits 1 when the runs differ, which two seeds always do; 2 is an error.
    let mut diff = marketsim(&binary);
    diff.arg("diff")
        .arg(out.join("run"))
        .arg(out.join("run-b"))
        .arg("--html")
        .arg(&diff_report)
        .stdout(std::process::Stdio::null());
    eprintln!("$ {diff:?}");
    let status = diff
        .status()
        .map_err(|e| format!("cannot start {diff:?}: {e}"))?;
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(format!("{diff:?} failed with {status}"));
    }

    // The test files are listed rather than the folder passed, which Node.js versions read
    // differently.
    let mut tests: Vec<PathBuf> = std::fs::read_dir(root.join("web/tests"))
        .map_err(|e| format!("cannot read web/tests: {e}"))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().ends_with(".test.mjs"))
        })
        .map(|path| {
            path.strip_prefix(&root)
                .map(Path::to_path_buf)
                .unwrap_or(path)
        })
        .collect();
    tests.sort();
    // The live pages are tested against a real server; the tests kill it and start another
    // on the same port (the dashboard must reconnect), so they get its pid, binary and flags.
    let server = LiveServer::start(&binary, &root.join(out))?;
    let mut node = Command::new("node");
    node.current_dir(&root)
        .arg("--test")
        .args(&tests)
        .env("MARKETSIM_REPORT", &report)
        .env("MARKETSIM_DIFF_REPORT", &diff_report)
        .env("MARKETSIM_CHROMIUM", &chromium)
        .env("MARKETSIM_E2E_OUT", out)
        .env("MARKETSIM_SERVE_URL", &server.url)
        .env("MARKETSIM_SERVE_PID", server.child.id().to_string())
        .env("MARKETSIM_BIN", &binary)
        .env("MARKETSIM_SERVE_ARGS", LIVE_SERVER_FLAGS.join("\t"));
    let tested = run(node);
    drop(server);
    tested?;
    eprintln!(
        "xtask e2e: browser tests passed; screenshots in {} (report, diff, dashboard-*, admin-*)",
        out.display()
    );
    Ok(())
}

/// The flags of the server the live browser tests run against (besides `--port`): a week of
/// history (what the dashboard loads first, 7 days × 50 streams) at 600×, so an hour's bucket
/// closes every 6 s and a scenario shows within a minute; with an admin token, so the pages'
/// changes go through the token prompt (the tests answer it) and the API calls carry it.
const LIVE_SERVER_FLAGS: [&str; 7] = [
    "serve",
    "--history-days",
    "7",
    "--speed",
    "600",
    "--admin-token",
    "e2e-admin-token",
];

/// How long the server may take to simulate its history and print its URL (a debug build).
const LIVE_SERVER_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// A `marketsim serve` on a free port, stopped (SIGTERM, then SIGKILL) when dropped. Its log
/// goes to `target/e2e/serve.log`.
struct LiveServer {
    child: std::process::Child,
    url: String,
}

impl LiveServer {
    fn start(binary: &Path, out: &Path) -> Result<LiveServer, String> {
        let log_path = out.join("serve.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut command = marketsim(binary);
        command
            .args(LIVE_SERVER_FLAGS)
            .args(["--port", "0"])
            .env_remove("PORT")
            .stdout(std::process::Stdio::piped())
            .stderr(log);
        eprintln!("$ {command:?} 2> {}", log_path.display());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err("the server's standard output was not captured".to_string());
        };
        // The URL is on the first line; the reader then keeps draining the pipe so the server
        // never blocks on a full one.
        let (url_sender, url_receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut url_sender = Some(url_sender);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(sender) = url_sender.take() {
                    let _ = sender.send(line);
                }
            }
        });
        let mut server = LiveServer {
            child,
            url: String::new(),
        };
        let first_line = url_receiver
            .recv_timeout(LIVE_SERVER_START_TIMEOUT)
            .map_err(|_| {
                format!(
                    "the server printed no URL within {} s; see {}",
                    LIVE_SERVER_START_TIMEOUT.as_secs(),
                    log_path.display()
                )
            })?;
        server.url = live_url_of(&first_line).ok_or_else(|| {
            format!(
                "the server's first line names no URL: {first_line:?}; see {}",
                log_path.display()
            )
        })?;
        eprintln!("xtask e2e: live server at {}", server.url);
        Ok(server)
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        // The tests may have killed it already (to test reconnection); then this only reaps it.
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `http://127.0.0.1:PORT` of "marketsim is live at http://127.0.0.1:PORT/ (…)".
fn live_url_of(line: &str) -> Option<String> {
    let start = line.find("http://")?;
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('/').to_string())
}

/// The bundled scenario scripts: every `scenarios/*.yaml` but the catalog and the event library.
fn scenario_scripts(root: &Path) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("scenarios"))
        .map_err(|e| format!("cannot read scenarios/: {e}"))?
        .flatten()
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix(".yaml")?.to_string();
            (name != "marketplace" && name != "events").then_some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The main job on a fresh clone: a release build (which embeds ECharts), the bundled 30-day
/// baseline run with analysis, and its report.
fn demo() -> Result<(), String> {
    let root = project_root();
    // The build embeds ECharts in the binary (build.rs runs `npm ci` when web/node_modules
    // lacks it), so the report needs nothing else.
    let binary = release_binary(&root)?;
    let mut simulate = marketsim(&binary);
    simulate.args([
        "run",
        "scenarios/baseline.yaml",
        "--out",
        "out/base",
        "--force",
        "--analyze",
    ]);
    run(simulate)?;
    let mut render = marketsim(&binary);
    render.args(["report", "out/base", "-o", "reports/baseline.html"]);
    run(render)?;
    println!(
        "\nThe run is in out/base/ (summary.json, series.csv, truth.json, anomalies.json, \
         recommendations.json, ...).\nOpen reports/baseline.html in a browser; it works offline."
    );
    Ok(())
}

/// Runs every bundled scenario script with `--analyze` into `target/reports-runs/NAME` and
/// renders `reports/NAME.html`.
fn reports() -> Result<(), String> {
    let root = project_root();
    let binary = release_binary(&root)?;
    let runs = Path::new("target/reports-runs");
    let reports = Path::new("reports");
    std::fs::create_dir_all(root.join(reports))
        .map_err(|e| format!("cannot create {}: {e}", reports.display()))?;
    let mut written = Vec::new();
    for name in scenario_scripts(&root)? {
        let mut simulate = marketsim(&binary);
        simulate
            .arg("run")
            .arg(format!("scenarios/{name}.yaml"))
            .arg("--out")
            .arg(runs.join(&name))
            .args(["--force", "--quiet", "--analyze"]);
        run(simulate)?;
        let report = reports.join(format!("{name}.html"));
        let mut render = marketsim(&binary);
        render
            .arg("report")
            .arg(runs.join(&name))
            .arg("-o")
            .arg(&report)
            .stdout(std::process::Stdio::null());
        run(render)?;
        let bytes = std::fs::metadata(root.join(&report))
            .map(|m| m.len())
            .map_err(|e| format!("cannot read {}: {e}", report.display()))?;
        written.push((report, bytes));
    }
    println!();
    for (report, bytes) in &written {
        println!(
            "{:<40} {:>8.0} KiB",
            report.display().to_string(),
            *bytes as f64 / 1024.0
        );
    }
    println!("xtask reports: {} reports written", written.len());
    Ok(())
}

/// Every `.snap` (and stray `.snap.new`) file under the project's snapshot folders.
fn snapshot_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.join("tests"), root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".snap") || name.ends_with(".snap.new") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn bless() -> Result<(), String> {
    for stale in snapshot_files(&project_root()) {
        if stale.to_string_lossy().ends_with(".snap.new") {
            let _ = std::fs::remove_file(stale);
        }
    }
    let mut test = cargo();
    test.args(["test", "--workspace"])
        .env("INSTA_UPDATE", "always")
        .env_remove("CI");
    run(test)?;
    eprintln!("xtask bless: snapshots written; review them with `git diff tests/snapshots` before committing");
    Ok(())
}

/// Wall time and peak resident memory of one child process.
struct Measured {
    seconds: f64,
    peak_rss_mib: f64,
}

/// Runs a command and measures it with wait4, which reports the child's own peak RSS.
fn measure(mut command: Command) -> Result<Measured, String> {
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills in; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{command:?} failed (status {status})"));
    }
    Ok(Measured {
        seconds,
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}

/// Writes `bytes` zero bytes to a fresh file in `folder` in 1 MiB writes, three times, and
/// returns the median MB/s: the disk speed `events.jsonl` is compared with.
fn disk_reference(folder: &Path, bytes: u64) -> Result<f64, String> {
    use std::io::Write;
    let path = folder.join("disk-reference.bin");
    let piece = vec![0u8; 1 << 20];
    let mut speeds = Vec::new();
    for _ in 0..3 {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(folder.join("events.jsonl"));
        let started = Instant::now();
        let mut file =
            std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut left = bytes;
        while left > 0 {
            let now = left.min(piece.len() as u64) as usize;
            file.write_all(&piece[..now])
                .map_err(|e| format!("{}: {e}", path.display()))?;
            left -= now as u64;
        }
        drop(file);
        speeds.push(bytes as f64 / 1e6 / started.elapsed().as_secs_f64().max(1e-9));
    }
    let _ = std::fs::remove_file(&path);
    Ok(median(speeds))
}

/// Pins a command to CPU 0 when `taskset` exists, so figures are for one core.
fn on_one_core(program: &Path) -> Command {
    if Path::new("/usr/bin/taskset").exists() {
        let mut command = Command::new("/usr/bin/taskset");
        command.arg("-c").arg("0").arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn json_number(text: &str, key: &str) -> Option<f64> {
    let start = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[start..].trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    rest[..end].parse().ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// `cargo xtask bench [model|live]`: both groups by default.
fn bench(group: Option<&str>) -> Result<(), String> {
    match group {
        None => {
            bench_model()?;
            live_bench::bench_live()
        }
        Some("model") => bench_model(),
        Some("live") => live_bench::bench_live(),
        Some(other) => Err(format!(
            "unknown benchmark group `{other}`; write `cargo xtask bench`, `bench model` or `bench live`"
        )),
    }
}

/// The engine alone (divan) and the full model over 30-day runs.
fn bench_model() -> Result<(), String> {
    let root = project_root();
    // (a) The engine alone, with divan (pinned to one core).
    let mut build = cargo();
    build.args(["bench", "--bench", "engine", "--no-run"]);
    run(build)?;
    let mut engine = cargo();
    engine.args(["bench", "--bench", "engine"]);
    let mut pinned = Command::new("/usr/bin/taskset");
    pinned
        .current_dir(&root)
        .arg("-c")
        .arg("0")
        .arg(engine.get_program())
        .args(engine.get_args());
    // The same environment as `cargo()` sets up: without its removals, the CARGO_PKG_*
    // variables of `cargo xtask` made this second cargo rebuild ring and everything above it.
    for (name, value) in engine.get_envs() {
        match value {
            Some(value) => pinned.env(name, value),
            None => pinned.env_remove(name),
        };
    }
    let divan_output = run_capturing_stdout(if Path::new("/usr/bin/taskset").exists() {
        pinned
    } else {
        engine
    })?;
    print!("{divan_output}");
    let bare_heap = divan_median_throughput(&divan_output, "bare_binary_heap_hold_loop");
    let ratio_to_bare = |events_per_second: f64| match bare_heap {
        Some(reference) if reference > 0.0 => format!("{:.2}", events_per_second / reference),
        _ => "-".to_string(),
    };
    println!();
    println!(
        "{:<34} {:>14} {:>10}",
        "divan (median)", "M events/s", "÷ bare heap"
    );
    for name in [
        "bare_binary_heap_hold_loop",
        "engine_50_exponential_streams",
        "full_model_one_day",
    ] {
        if let Some(throughput) = divan_median_throughput(&divan_output, name) {
            println!(
                "{name:<34} {:>14.2} {:>10}",
                throughput / 1e6,
                ratio_to_bare(throughput)
            );
        }
    }

    // (b) and (c): the full model over the bundled 30-day baseline, in a release build.
    let binary = release_binary(&root)?;
    let scratch = std::env::temp_dir().join(format!("marketsim-bench-{}", std::process::id()));
    let mut rows = Vec::new();
    // A baseline.json for the reuse row: the analysis of the same script.
    let reused_baseline =
        std::env::temp_dir().join(format!("marketsim-bench-baseline-{}", std::process::id()));
    let mut prepare = Command::new(&binary);
    prepare
        .current_dir(&root)
        .args([
            "run",
            "scenarios/baseline.yaml",
            "--quiet",
            "--force",
            "--no-truth",
            "--analyze",
            "--out",
        ])
        .arg(&reused_baseline);
    run(prepare)?;
    let baseline_file = reused_baseline.join("baseline.json");
    let baseline_arg = baseline_file.to_string_lossy().into_owned();
    // (label, --events, truth twins, one core only, extra arguments). Every row but the
    // 366-day and scale rows runs the bundled 30-day baseline; the scale rows are one
    // simulated day of a marketplace 1, 10 and 100 times as large (`--scale`), so cost per
    // event and peak memory can be read as the world grows.
    let variants: [(&str, bool, bool, bool, Vec<&str>); 12] = [
        ("30-day baseline (b)", false, false, true, vec![]),
        ("30-day baseline + truth twins", false, true, true, vec![]),
        ("30-day baseline, --events (c)", true, false, true, vec![]),
        ("--events, 2 cores", true, false, false, vec![]),
        ("+ truth, 2 cores", false, true, false, vec![]),
        (
            "+ truth, --analyze, 2 cores",
            false,
            true,
            false,
            vec!["--analyze"],
        ),
        (
            "+ truth, --analyze --baseline",
            false,
            true,
            true,
            vec!["--analyze", "--baseline", baseline_arg.as_str()],
        ),
        (
            "no truth, --analyze --baseline",
            false,
            false,
            true,
            vec!["--analyze", "--baseline", baseline_arg.as_str()],
        ),
        (
            "366-day baseline, no truth",
            false,
            false,
            true,
            vec!["--days", "366"],
        ),
        (
            "1 day ×1, no truth",
            false,
            false,
            true,
            vec!["--days", "1"],
        ),
        (
            "1 day ×10, no truth",
            false,
            false,
            true,
            vec!["--days", "1", "--scale", "10"],
        ),
        (
            "1 day ×100, no truth",
            false,
            false,
            true,
            vec!["--days", "1", "--scale", "100"],
        ),
    ];
    for (label, events, truth, one_core, extra) in variants {
        let mut seconds = Vec::new();
        let mut peak = 0.0f64;
        for _ in 0..3 {
            let mut command = if one_core {
                on_one_core(&binary)
            } else {
                Command::new(&binary)
            };
            command
                .current_dir(&root)
                .args([
                    "run",
                    "scenarios/baseline.yaml",
                    "--quiet",
                    "--force",
                    "--out",
                ])
                .arg(&scratch)
                .args(&extra);
            if events {
                command.arg("--events");
            }
            if !truth {
                command.arg("--no-truth");
            }
            let measured = measure(command)?;
            seconds.push(measured.seconds);
            peak = peak.max(measured.peak_rss_mib);
        }
        let summary =
            std::fs::read_to_string(scratch.join("summary.json")).map_err(|e| e.to_string())?;
        let total_events = json_number(&summary, "totalEvents").unwrap_or(0.0);
        let wall = median(seconds);
        let events_mb = std::fs::metadata(scratch.join("events.jsonl"))
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0);
        rows.push((label, wall, total_events, peak, events_mb));
    }
    // What this disk takes, in this invocation, for as many bytes as events.jsonl: the
    // same size matters, since the page cache's cost per byte grows once gigabytes are dirty.
    let events_bytes = (rows.iter().map(|row| row.4).fold(0.0f64, f64::max) * 1e6) as u64;
    let disk_mb_per_second = disk_reference(&scratch, events_bytes)?;
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_dir_all(&reused_baseline);
    println!();
    println!(
        "{:<34} {:>9} {:>12} {:>14} {:>10} {:>13} {:>12}",
        "full model (median of 3)",
        "wall s",
        "events",
        "M events/s",
        "÷ bare heap",
        "peak RSS MiB",
        "events MB/s"
    );
    for &(label, wall, total, peak, mb) in &rows {
        let throughput = if mb > 0.0 {
            format!("{:.1} ({:.0} MB)", mb / wall, mb)
        } else {
            "-".to_string()
        };
        println!(
            "{label:<34} {wall:>9.2} {total:>12.0} {:>14.2} {:>10} {peak:>13.1} {throughput:>12}",
            total / wall / 1e6,
            ratio_to_bare(total / wall)
        );
    }
    // Issue 16's targets are ratios to the plain run (twins ≤ 1.3 ×, analysis ≤ 1.5 ×), and
    // cost per event should stay flat as the world grows: both printed from the rows above.
    let wall_of = |label: &str| rows.iter().find(|row| row.0 == label).map(|row| row.1);
    let ns_per_event = |label: &str| {
        rows.iter()
            .find(|row| row.0 == label)
            .map(|row| row.1 / row.2.max(1.0) * 1e9)
    };
    if let Some(plain) = wall_of("30-day baseline (b)") {
        println!();
        for label in [
            "30-day baseline + truth twins",
            "+ truth, 2 cores",
            "+ truth, --analyze, 2 cores",
        ] {
            if let Some(wall) = wall_of(label) {
                println!("{label:<34} {:>9.2} × the plain run", wall / plain);
            }
        }
    }
    println!();
    println!(
        "disk reference: {:.0} MB in 1 MiB writes from one thread, median of 3: {disk_mb_per_second:.0} MB/s",
        events_bytes as f64 / 1e6
    );
    for label in ["30-day baseline, --events (c)", "--events, 2 cores"] {
        if let Some(&(_, wall, _, _, mb)) = rows.iter().find(|row| row.0 == label) {
            println!(
                "{label:<34} {:>9.2} × disk speed",
                mb / wall / disk_mb_per_second.max(1e-9)
            );
        }
    }
    println!();
    for label in [
        "1 day ×1, no truth",
        "1 day ×10, no truth",
        "1 day ×100, no truth",
    ] {
        if let Some(cost) = ns_per_event(label) {
            println!("{label:<34} {cost:>9.0} ns per event");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::divan_median_throughput;

    #[test]
    fn the_median_throughput_is_read_from_divans_table() {
        // The shape divan 0.1 prints: a benchmark's line, then its throughputs (fastest,
        // slowest, median, mean); the group's last benchmark has no leading branch.
        let output = "\
engine                            fastest       │ slowest       │ median        │ mean          │ samples │ iters
├─ bare_binary_heap_hold_loop     70 ms         │ 80 ms         │ 75 ms         │ 75 ms         │ 10      │ 10
│                                 28.5 Mitem/s  │ 25 Mitem/s    │ 26.66 Mitem/s │ 26.6 Mitem/s  │         │
╰─ full_model_one_day             109.1 ms      │ 119.3 ms      │ 116.8 ms      │ 116 ms        │ 5       │ 5
                                  8.164 Mitem/s │ 7.469 Mitem/s │ 7.626 Mitem/s │ 7.68 Mitem/s  │         │
";
        assert_eq!(
            divan_median_throughput(output, "bare_binary_heap_hold_loop"),
            Some(26.66e6)
        );
        assert_eq!(
            divan_median_throughput(output, "full_model_one_day"),
            Some(7.626e6)
        );
        assert_eq!(divan_median_throughput(output, "missing"), None);
    }
}
