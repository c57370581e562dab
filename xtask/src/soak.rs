//! `cargo xtask soak [--minutes M] [--clients N]`: the live server under a long, mixed load, in
//! a release build. A server at 600× (an hour every 6 s) serves N WebSocket clients (200 by
//! default: most read everything, a fifth read one message a second and fall behind, a fifth
//! leave every 10–20 s, half of them without a close frame, and come back catching up) while a
//! REST driver activates, stops and resets scenarios, injects events and reads the history
//! every 4 s. The `live_load` example is the load; this task starts the server, runs it, and
//! reports memory over time (RSS and the heap in use), the engine's lag and stalls, dropped and
//! lagging clients and the answers' status codes, against the targets: flat memory after the
//! warm-up, no engine stall, no 5xx. The full report is `target/soak/soak.json`.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::live_bench::{histogram, http_get, raise_open_file_limit, sample, Server};
use crate::{cargo, project_root, run};

/// A frame that starts this late is a stall: a second of wall time is ten minutes at 600×.
const STALL_SECONDS: f64 = 1.0;

pub fn soak(args: &[String]) -> Result<(), String> {
    let mut minutes = 10.0_f64;
    let mut clients = 200_usize;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => {
                minutes = value
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m > 0.0)
                    .ok_or_else(|| format!("--minutes takes a positive number, not {value}"))?
            }
            "--clients" => {
                clients = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--clients takes a positive whole number, not {value}"))?
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: cargo xtask soak [--minutes M (10)] [--clients N (200)]"
                ))
            }
        }
    }
    let root = project_root();
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--bin",
        "marketsim",
        "--example",
        "live_load",
    ]);
    run(build)?;
    raise_open_file_limit();
    let binary = root.join("target/release/marketsim");
    let load = root.join("target/release/examples/live_load");
    let out = root.join("target/soak");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    let per_address = (clients * 2).to_string();
    let mut server = Server::start_in(
        &binary,
        "target/soak",
        "serve",
        &[
            "--speed",
            "600",
            "--max-connections-per-address",
            &per_address,
        ],
        &[],
    )?;
    server.wait_until_analyzed()?;
    let (_, metrics_before) = http_get(server.port, "/metrics")?;
    let seconds = (minutes * 60.0).round();
    let url = format!("http://127.0.0.1:{}", server.port);
    let mut command = Command::new(&load);
    command
        .args(["soak", "--url", &url])
        .args(["--clients", &clients.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--server-pid", &server.pid().to_string()])
        .stderr(Stdio::inherit());
    eprintln!("$ {command:?}");
    let output = command
        .output()
        .map_err(|e| format!("cannot start {}: {e}", load.display()))?;
    let (_, metrics_after) = http_get(server.port, "/metrics")?;
    server.stop();
    if !output.status.success() {
        return Err(format!("live_load soak failed with {}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .map_err(|e| format!("live_load printed no JSON ({e})"))?;
    let report_path = out.join("soak.json");
    std::fs::write(&report_path, format!("{report:#}\n"))
        .map_err(|e| format!("cannot write {}: {e}", report_path.display()))?;
    summarize(
        &report,
        &metrics_before,
        &metrics_after,
        minutes,
        &report_path,
    )
}

/// Frames that started more than [`STALL_SECONDS`] late between two scrapes.
fn stalls(before: &str, after: &str) -> f64 {
    let name = "marketsim_frame_lateness_seconds";
    let late = |metrics: &str| {
        let buckets = histogram(metrics, name);
        let total = buckets.last().map_or(0.0, |(_, count)| *count);
        let on_time = buckets
            .iter()
            .find(|(bound, _)| *bound >= STALL_SECONDS)
            .map_or(total, |(_, count)| *count);
        total - on_time
    };
    late(after) - late(before)
}

fn summarize(
    report: &Value,
    metrics_before: &str,
    metrics_after: &str,
    minutes: f64,
    report_path: &Path,
) -> Result<(), String> {
    let samples = report["samples"].as_array().cloned().unwrap_or_default();
    if samples.len() < 4 {
        return Err(format!("too few samples: {report}"));
    }
    let series = |key: &str, scale: f64| -> Vec<f64> {
        samples
            .iter()
            .map(|s| s[key].as_f64().unwrap_or(f64::NAN) / scale)
            .collect()
    };
    let rss = series("rssKib", 1024.0);
    let heap = series("heapBytes", 1024.0 * 1024.0);
    let lag = series("lagMs", 1.0);
    // The warm-up: the first fifth (at least a minute), while buffers and caches fill.
    let warm = (samples.len() / 5).max(12).min(samples.len() - 2);
    let max_of = |values: &[f64]| values.iter().copied().fold(f64::NAN, f64::max);
    let heap_warm = max_of(&heap[..=warm]);
    let heap_end = max_of(&heap[samples.len() - 3..]);
    let rss_warm = max_of(&rss[..=warm]);
    let rss_end = max_of(&rss[samples.len() - 3..]);
    let rss_max = max_of(&rss);
    let lag_max = max_of(&lag);
    let stall_count = stalls(metrics_before, metrics_after);
    let server_errors = sample(metrics_after, "marketsim_http_server_errors_total").unwrap_or(0.0)
        - sample(metrics_before, "marketsim_http_server_errors_total").unwrap_or(0.0);
    let dropped_by_server = sample(metrics_after, "marketsim_clients_dropped_total").unwrap_or(0.0)
        - sample(metrics_before, "marketsim_clients_dropped_total").unwrap_or(0.0);
    let lagging = sample(metrics_after, "marketsim_clients_lagging_total").unwrap_or(0.0)
        - sample(metrics_before, "marketsim_clients_lagging_total").unwrap_or(0.0);
    let number = |value: &Value| value.as_f64().unwrap_or(f64::NAN);
    let rest = &report["rest"];

    let heap_flat = heap_end <= heap_warm * 1.10 + 2.0;
    let verdict = |met: bool| if met { "met" } else { "**NOT met**" };
    println!(
        "\nSoak: {minutes} min at 600×, {} WebSocket clients, REST commands every 4 s (load {})\n",
        report["clients"],
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_string))
            .unwrap_or_default()
    );
    println!("| figure | value | target |\n|---|---|---|");
    println!(
        "| heap in use: end of warm-up → end (max) | {heap_warm:.1} → {heap_end:.1} MiB (max {:.1}) | flat (≤ +10 % + 2 MiB): {} |",
        max_of(&heap),
        verdict(heap_flat)
    );
    println!(
        "| RSS: end of warm-up → end (max) | {rss_warm:.1} → {rss_end:.1} MiB (max {rss_max:.1}) | reported |"
    );
    println!(
        "| engine stalls (frames > {STALL_SECONDS} s late) | {stall_count} | 0: {} |",
        verdict(stall_count == 0.0)
    );
    println!("| engine lag, largest sample | {lag_max:.0} ms | — |");
    println!(
        "| 5xx answers (server's count) | {server_errors} (REST driver saw {}) | 0: {} |",
        rest["serverErrors"],
        verdict(server_errors == 0.0 && number(&rest["serverErrors"]) == 0.0)
    );
    println!(
        "| REST commands and reads | {} ok, {} refused (4xx), {} failed to connect; statuses {} | — |",
        rest["ok"], rest["clientErrors"], rest["failures"], rest["statuses"]
    );
    println!(
        "| client connections / reconnects / connect failures | {} / {} / {} | — |",
        report["connects"], report["reconnects"], report["connectFailures"]
    );
    println!(
        "| connections the server ended (clients' count / server's) | {} / {dropped_by_server} | — |",
        report["dropped"]
    );
    println!(
        "| lagging: `lag` notices (messages skipped) / server's count | {} ({}) / {lagging} | — |",
        report["lagNotices"], report["skippedMessages"]
    );
    println!("| messages received | {} | — |", report["messages"]);
    println!(
        "\nMemory over time (every {} samples):",
        (samples.len() / 12).max(1)
    );
    println!("| wall s | RSS MiB | heap MiB | lag ms | clients |\n|---|---|---|---|---|");
    for (index, s) in samples.iter().enumerate() {
        if index % (samples.len() / 12).max(1) == 0 || index + 1 == samples.len() {
            println!(
                "| {} | {:.1} | {:.1} | {:.0} | {} |",
                s["seconds"], rss[index], heap[index], lag[index], s["clients"]
            );
        }
    }
    println!("\nFull report: {}", report_path.display());
    let failed = !heap_flat || stall_count > 0.0 || server_errors > 0.0;
    if failed {
        return Err("the soak missed a target (see the table)".to_string());
    }
    Ok(())
}
