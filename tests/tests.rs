//! The integration test suite: one binary, one module per area.

/// Helpers: run the CLI, run the library in-process, compare directories.
mod support;

/// `run --analyze`, `--baseline` and `eval` end to end.
mod analysis;
/// The bundled 30-day baseline: summary snapshot, flow conservation, realism.
mod baseline;
/// Catalog validation over `fixtures/invalid-catalog`; arbitrary YAML, huge numbers and long
/// inputs never panic the loaders, and what they accept stays within the limits.
mod catalog;
/// Exit codes and messages of the command line, including every `fixtures/invalid` script.
mod cli;
/// Any JSON command, applied now or backdated, is applied or refused, never a panic, and the
/// session advances afterwards (proptest).
mod commands;
/// Labelled data sets: labels.csv and its tail, --warmup, `generate --runs`, the pandas example.
mod dataset;
/// Same seed ⇒ byte-identical run directory; another seed ⇒ different; an extra stream leaves
/// the other streams' events untouched.
mod determinism;
/// `marketsim diff`: exit codes, the first divergence of a changed seed, the tolerance rule,
/// broken run directories refused with the file named.
mod diff;
/// Starts that are not on the hour run like starts on the hour.
mod epochs;
/// `marketsim export`: series and events by stream glob and time range, CSV and JSON Lines
/// (an analyzed run's event scores in both), to stdout or atomically to a file; refused globs,
/// times and runs.
mod export;
/// The analyst on random scripts it was not tuned on: CI's fixed set (`fixtures/random/`) run,
/// analyzed and scored; issue 13's targets enforced with `MARKETSIM_ENFORCE_TARGETS=1`.
mod generalization;
/// The stream inspector and the stream list.
mod inspect;
/// The live server's REST API over real sockets: every endpoint, every bad-input class with
/// its status and JSON error (snapshots), the OpenAPI document, and `marketsim api`.
mod live_api;
/// A served session stopped with `--out` replays into an identical run directory.
mod live_replay;
/// The live server's WebSocket over real sockets: glob and named-topic subscriptions, errors
/// that keep the connection, pings and the silence timeout, catch-up, lagging clients, the
/// connection limit, close frames on shutdown, `marketsim ws-client`; the message parser under
/// proptest.
mod live_ws;
/// The LLM analyst against a fake OpenAI-compatible server on 127.0.0.1: answers, fallbacks and
/// their reasons, retries, timeouts; settings from variables.
mod llm;
/// Every file a run writes has one timestamp format (RFC 3339 UTC with milliseconds), and runs
/// of earlier versions are still read; run directories, exports and `eval.json` get the
/// permissions of any new file.
mod outputs;
/// A live-style session and a headless run of its recording give byte-identical run
/// directories (proptest over random command sequences, steps and backdating).
mod replay;
/// `marketsim report` and `diff --html`: data block snapshot, offline page, errors.
mod report;
/// The marketplace's size factor: ×10 gives ten times the counts at the same ratios; `--scale`
/// is the header's `scale:`; the scale is in summary.json and compared by `diff`.
mod scale;
/// Scenario scripts: a snapshot of every bundled script's summary and ground truth, cascades,
/// red herrings, backdating.
mod scenarios;
/// Source hygiene checks that run as ordinary tests (rust-analyzer's "tidy").
mod tidy;
/// Ground truth equals the counterfactual run it stands for, for a scenario stopped early.
mod truth;
