//! `cargo xtask bench live`: benchmarks of the live server, `marketsim serve` in a release
//! build, measured from the outside: start-up to a ready `/healthz`, pacing (frame lateness
//! from the runner's histogram in `/metrics`, drift from `/api/simulation/state`), and
//! WebSocket fan-out with the `ws_fanout` example as a load generator in its own process.
//!
//! Each measurement starts its own server on 127.0.0.1 port 0 (the URL is read from the line
//! `serve` prints when ready), logs its stderr to `target/bench-live/NAME.log`, and stops it
//! with SIGTERM. Figures are reported with the target each has; a missed target does not fail
//! the task (the machine is shared, so figures move with its load, printed with them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, json_number, median, project_root, release_binary, run};

/// Wall seconds each pacing measurement covers.
const PACING_SECONDS: u64 = 60;
/// Wall seconds each fan-out measurement covers (after connecting and a warm-up).
const FANOUT_SECONDS: u64 = 30;
/// Longest a server may take to print its URL and answer `/healthz`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A `marketsim serve` child process.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    /// From launch to the first 200 of `/healthz`.
    ready_seconds: f64,
}

impl Server {
    /// Starts `marketsim serve ARGS --port 0` and waits until `/healthz` answers.
    fn start(binary: &Path, name: &str, args: &[&str]) -> Result<Server, String> {
        Server::start_in(binary, "target/bench-live", name, args, &[])
    }

    /// [`Server::start`] logging to `LOG_DIR/NAME.log` (relative to the project), with `envs`
    /// added to the server's environment.
    pub(crate) fn start_in(
        binary: &Path,
        log_dir: &str,
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Server, String> {
        let log_dir = project_root().join(log_dir);
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
        let log = log_dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .current_dir(project_root())
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            // Info logs carry the start-up figures (history seconds); RUST_LOG may override.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .env_remove("PORT")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        eprintln!("$ {command:?} 2> {}", log.display());
        let launched = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            return Err("the server's stdout was not captured".to_string());
        };
        // A thread reads stdout, so a server that never prints its URL cannot hang the
        // benchmark; it then drains the pipe until the server exits.
        let (first_line, url_line) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next().and_then(Result::ok).unwrap_or_default());
            lines.for_each(drop);
        });
        let line = url_line.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let Some(port) = parse_port(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the server printed no URL within {READY_TIMEOUT:?} (first line: {line:?}); \
                 the end of {}:\n{}",
                log.display(),
                log_tail(&log)
            ));
        };
        let mut server = Server {
            child,
            port,
            log,
            ready_seconds: 0.0,
        };
        loop {
            if matches!(http_get(port, "/healthz"), Ok((200, _))) {
                break;
            }
            if launched.elapsed() > READY_TIMEOUT {
                server.stop();
                return Err(format!("/healthz did not answer within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        server.ready_seconds = launched.elapsed().as_secs_f64();
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the baseline is fitted and the session analyzed, so measurements see the
    /// steady state (scored events, recommendations), not start-up work.
    pub(crate) fn wait_until_analyzed(&self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            let (_, state) = http_get(self.port, "/api/simulation/state")?;
            if state.contains("\"analyzed\":true") {
                // A few frames more: the one that attached the analysis is behind us.
                std::thread::sleep(Duration::from_secs(2));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "the session was not analyzed within {READY_TIMEOUT:?}"
        ))
    }

    /// SIGTERM, then waits for the exit (SIGKILL past [`STOP_TIMEOUT`]).
    pub(crate) fn stop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill with a valid signal on our own child's pid has no memory effects.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("xtask bench: the server did not stop after SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The port of `marketsim is live at http://127.0.0.1:PORT/ (…)`.
pub(crate) fn parse_port(line: &str) -> Option<u16> {
    let url = line.split("http://").nth(1)?;
    let authority = url.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One HTTP/1.1 GET to 127.0.0.1:`port`; returns the status and the body (the server sends
/// bodies with a Content-Length and closes after `Connection: close`).
pub(crate) fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("GET {path} on port {port}: {e}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(fail)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(fail)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP response"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The cumulative buckets `(upper bound in seconds, count)` of a Prometheus histogram.
pub(crate) fn histogram(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// A plain Prometheus sample `name value`.
pub(crate) fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The `quantile` of the observations between two scrapes of a cumulative histogram, with
/// linear interpolation inside the bucket (as Prometheus' `histogram_quantile`); an
/// observation past the last finite bound reads as that bound. Seconds.
fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], quantile: f64) -> Option<f64> {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c);
            (bound, count - earlier)
        })
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = quantile * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(bound, cumulative) in &counts {
        if cumulative >= rank {
            if bound.is_infinite() {
                return Some(lower_bound);
            }
            let in_bucket = cumulative - lower_count;
            let fraction = if in_bucket > 0.0 {
                (rank - lower_count) / in_bucket
            } else {
                1.0
            };
            return Some(lower_bound + (bound - lower_bound) * fraction);
        }
        lower_bound = bound;
        lower_count = cumulative;
    }
    None
}

/// Raises this process's soft open-file limit to the hard one; the servers and the load
/// generator inherit it (10,000 clients need 10,000 descriptors on each side).
pub(crate) fn raise_open_file_limit() -> u64 {
    // SAFETY: rlimit is plain data that getrlimit fills in.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above; a refusal leaves the old limit, which the table then shows.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    limit.rlim_cur as u64
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// One start-up measurement.
struct Startup {
    ready_seconds: f64,
    /// The history simulation's own seconds, from the server's log.
    history_seconds: Option<f64>,
}

/// Launch to a ready `/healthz` with the default 30 days of history.
fn measure_startup(binary: &Path, attempt: usize) -> Result<Startup, String> {
    let mut server = Server::start(binary, &format!("startup-{attempt}"), &[])?;
    let ready_seconds = server.ready_seconds;
    server.stop();
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    let history_seconds = log
        .lines()
        .find(|line| line.contains("history simulated"))
        .and_then(|line| line.split("seconds=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok());
    Ok(Startup {
        ready_seconds,
        history_seconds,
    })
}

/// Pacing at one speed over [`PACING_SECONDS`].
struct Pacing {
    speed: f64,
    frames: f64,
    lateness_p50_ms: Option<f64>,
    lateness_p99_ms: Option<f64>,
    /// Virtual time advanced minus `speed` × wall time elapsed, in wall milliseconds.
    drift_wall_ms: Option<f64>,
    lag_end_ms: Option<f64>,
    events_per_second: f64,
}

fn measure_pacing(binary: &Path, speed: f64) -> Result<Pacing, String> {
    let speed_arg = format!("{speed}");
    let server = Server::start(
        binary,
        &format!("pacing-{speed}x"),
        &["--speed", &speed_arg],
    )?;
    server.wait_until_analyzed()?;
    let (_, metrics_before) = http_get(server.port, "/metrics")?;
    let (_, state_before) = http_get(server.port, "/api/simulation/state")?;
    eprintln!("xtask bench: pacing at {speed}× for {PACING_SECONDS} s");
    std::thread::sleep(Duration::from_secs(PACING_SECONDS));
    let (_, metrics_after) = http_get(server.port, "/metrics")?;
    let (_, state_after) = http_get(server.port, "/api/simulation/state")?;
    let lateness = "marketsim_frame_lateness_seconds";
    let before = histogram(&metrics_before, lateness);
    let after = histogram(&metrics_after, lateness);
    let count = |metrics: &str| sample(metrics, &format!("{lateness}_count")).unwrap_or(0.0);
    let drift_wall_ms = (|| {
        let virtual_ms =
            json_number(&state_after, "virtualMs")? - json_number(&state_before, "virtualMs")?;
        let wall_ms =
            json_number(&state_after, "wallUnixMs")? - json_number(&state_before, "wallUnixMs")?;
        Some(virtual_ms / speed - wall_ms)
    })();
    let events = |metrics: &str| sample(metrics, "marketsim_events_total").unwrap_or(0.0);
    Ok(Pacing {
        speed,
        frames: count(&metrics_after) - count(&metrics_before),
        lateness_p50_ms: histogram_quantile(&before, &after, 0.50).map(|s| s * 1e3),
        lateness_p99_ms: histogram_quantile(&before, &after, 0.99).map(|s| s * 1e3),
        drift_wall_ms,
        lag_end_ms: json_number(&state_after, "lagMs"),
        events_per_second: (events(&metrics_after) - events(&metrics_before))
            / PACING_SECONDS as f64,
    })
}

/// One fan-out measurement: the load generator's JSON summary and the server's frame
/// lateness meanwhile.
struct Fanout {
    label: String,
    summary: String,
    lateness_p99_ms: Option<f64>,
}

fn measure_fanout(
    binary: &Path,
    load_generator: &Path,
    label: &str,
    clients: usize,
    subscribe: &str,
) -> Result<Fanout, String> {
    // Every client comes from this machine: lift the per-address limit (256) to the count.
    let per_address = clients.to_string();
    let server = Server::start(
        binary,
        &format!("fanout-{clients}-{subscribe}"),
        &["--max-connections-per-address", &per_address],
    )?;
    server.wait_until_analyzed()?;
    let (_, metrics_before) = http_get(server.port, "/metrics")?;
    let mut generator = Command::new(load_generator);
    generator
        .current_dir(project_root())
        .args(["--url", &format!("http://127.0.0.1:{}", server.port)])
        .args(["--clients", &clients.to_string()])
        .args(["--subscribe", subscribe])
        .args(["--seconds", &FANOUT_SECONDS.to_string()])
        .args(["--server-pid", &server.pid().to_string()])
        .stderr(Stdio::inherit());
    eprintln!("$ {generator:?}");
    let output = generator
        .output()
        .map_err(|e| format!("cannot start {generator:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{generator:?} failed with {}", output.status));
    }
    let (_, metrics_after) = http_get(server.port, "/metrics")?;
    let lateness = "marketsim_frame_lateness_seconds";
    let lateness_p99_ms = histogram_quantile(
        &histogram(&metrics_before, lateness),
        &histogram(&metrics_after, lateness),
        0.99,
    )
    .map(|s| s * 1e3);
    Ok(Fanout {
        label: label.to_string(),
        summary: String::from_utf8_lossy(&output.stdout).into_owned(),
        lateness_p99_ms,
    })
}

fn format_ms(value: Option<f64>) -> String {
    match value {
        Some(ms) if ms < 1.0 => format!("{ms:.2}"),
        Some(ms) => format!("{ms:.1}"),
        None => "-".to_string(),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "unknown",
    }
}

/// The live rows: start-up, pacing at 60× and 3600×, fan-out to 1,000 and 10,000 clients.
pub fn bench_live() -> Result<(), String> {
    let root = project_root();
    let open_files = raise_open_file_limit();
    // Two builds, not one: the example brings the dev-dependencies' features (tokio's
    // test-util), and the server measured must be the binary `cargo install` builds. Each is
    // cached under its own features, so neither rebuilds the other.
    let binary = release_binary(&root)?;
    let mut build = cargo();
    build.args(["build", "--release", "--example", "ws_fanout"]);
    run(build)?;
    let load_generator = root.join("target/release/examples/ws_fanout");
    let load_at_start = load_average();
    let started = Instant::now();

    let mut startups = Vec::new();
    for attempt in 1..=3 {
        startups.push(measure_startup(&binary, attempt)?);
    }
    let mut pacings = Vec::new();
    for speed in [60.0, 3600.0] {
        pacings.push(measure_pacing(&binary, speed)?);
    }
    let fanouts = [
        measure_fanout(
            &binary,
            &load_generator,
            "1,000 clients, all on `*`",
            1_000,
            "all",
        )?,
        measure_fanout(
            &binary,
            &load_generator,
            "10,000 clients, one stream each",
            10_000,
            "spread",
        )?,
    ];
    let load_at_end = load_average();

    println!();
    println!(
        "live server, release build, 2-core machine (load average {load_at_start} at start, \
         {load_at_end} at end; open-file limit {open_files}; {:.0} s in all)",
        started.elapsed().as_secs_f64()
    );
    println!();
    let ready = median(startups.iter().map(|s| s.ready_seconds).collect());
    let history: Vec<f64> = startups.iter().filter_map(|s| s.history_seconds).collect();
    println!(
        "start-up, launch to a ready /healthz, 30 days of history (median of 3): {ready:.2} s \
         (runs: {}); the history simulation alone: {} s — target ≤ 3 s: {}",
        startups
            .iter()
            .map(|s| format!("{:.2}", s.ready_seconds))
            .collect::<Vec<_>>()
            .join(", "),
        if history.is_empty() {
            "?".to_string()
        } else {
            format!("{:.2}", median(history))
        },
        verdict(Some(ready <= 3.0))
    );
    println!();
    println!(
        "{:<8} {:>7} {:>15} {:>15} {:>20} {:>12} {:>10}",
        "pacing",
        "frames",
        "lateness p50 ms",
        "lateness p99 ms",
        "drift over 60 s ms",
        "lag at end ms",
        "events/s"
    );
    for pacing in &pacings {
        println!(
            "{:<8} {:>7.0} {:>15} {:>15} {:>20} {:>12} {:>10.0}",
            format!("{}×", pacing.speed),
            pacing.frames,
            format_ms(pacing.lateness_p50_ms),
            format_ms(pacing.lateness_p99_ms),
            pacing
                .drift_wall_ms
                .map_or("-".to_string(), |ms| format!("{ms:+.2}")),
            format_ms(pacing.lag_end_ms),
            pacing.events_per_second
        );
    }
    println!();
    println!(
        "{:<32} {:>9} {:>9} {:>10} {:>7} {:>17} {:>17} {:>13} {:>8} {:>8} {:>11}",
        "fan-out at 60×",
        "connected",
        "msgs/s",
        "events/s",
        "MB/s",
        "event p50/p99 ms",
        "msg p50/p99 ms",
        "RSS/client KB",
        "lag max",
        "skipped",
        "late p99 ms"
    );
    for fanout in &fanouts {
        let get = |key: &str| json_number(&fanout.summary, key);
        let pair = |a: &str, b: &str| format!("{}/{}", format_ms(get(a)), format_ms(get(b)));
        println!(
            "{:<32} {:>9} {:>9.0} {:>10.0} {:>7.1} {:>17} {:>17} {:>13} {:>8} {:>8} {:>11}",
            fanout.label,
            get("connected").map_or("?".to_string(), |n| format!("{n:.0}")),
            get("messagesPerSecond").unwrap_or(0.0),
            get("eventsPerSecond").unwrap_or(0.0),
            get("megabytesPerSecond").unwrap_or(0.0),
            pair("eventLatencyP50Ms", "eventLatencyP99Ms"),
            pair("messageLatencyP50Ms", "messageLatencyP99Ms"),
            get("rssPerIdleClientKib").map_or("-".to_string(), |kib| format!("{:.1}", kib * 1.024)),
            format_ms(get("lagMsMax")),
            get("skipped").map_or("-".to_string(), |n| format!("{n:.0}")),
            format_ms(fanout.lateness_p99_ms),
        );
    }
    println!();
    for fanout in &fanouts {
        let get = |key: &str| json_number(&fanout.summary, key);
        println!(
            "{}: delivery p99 ≤ 50 ms: {}; RSS ≤ 100 KB per idle client: {}; engine lag 0: {}",
            fanout.label,
            verdict(get("eventLatencyP99Ms").map(|ms| ms <= 50.0)),
            verdict(get("rssPerIdleClientKib").map(|kib| kib * 1.024 <= 100.0)),
            verdict(get("lagMsMax").map(|ms| ms == 0.0)),
        );
    }
    println!(
        "\nevent p50/p99: an event's due wall time (its virtual time through the pace schedule) \
         to its receipt; msg p50/p99: from the due time of the newest event a message carries, \
         i.e. without the wait for the next 100 ms frame. Server logs: target/bench-live/."
    );
    Ok(())
}
