//! The runner: an OS thread that owns the session and paces it to the wall clock.
//!
//! Every frame (about [`FRAME_MS`] of wall time) it reads the wall clock, asks the
//! [`PaceSchedule`] which virtual time that stands for, advances the session there (at most
//! [`MAX_FRAMES_BEHIND`] frames' worth at once, so a slow machine reports lag and catches up
//! instead of stalling), and publishes a [`Frame`] and the latest [`LiveState`]. Between frames
//! it answers requests from handlers ([`RunnerHandle`]), each with a reply channel: the
//! session has one owner and no lock.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{oneshot, watch};
use utoipa::ToSchema;

use super::frame::{ActiveScenario, Frame, FrameEvent, LiveState, Notice, Topic};
use super::metrics::Metrics;
use crate::analyst::recommendation::Recommendation;
use crate::engine::{PaceSchedule, Sink, VirtualTimeMs};
use crate::market::director::{InstanceKind, Phase, RecordKind};
use crate::market::payload::{RenderContext, StreamEventView};
use crate::market::StreamEvent;
use crate::scenario::timeline::PlanSubject;
use crate::session::analysis::SessionAnalysis;
use crate::session::{Advance, Command, CommandError, Session};
use crate::stats::AnomalyFlag;

/// Wall time between frames.
pub const FRAME_MS: u64 = 100;
/// A frame advances at most this many frames' worth of virtual time; past that, lag.
pub const MAX_FRAMES_BEHIND: u64 = 10;

/// Pause, resume, or change speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Control {
    Speed(f64),
    Pause,
    Resume,
}

/// What applying a command did, as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandReply {
    /// When the command took effect (virtual time, ISO 8601).
    pub at: String,
    /// Scenarios and events that took effect, in the seed's shapes.
    pub items: Vec<ItemSummary>,
    /// For a backdated command: the buckets whose values the re-simulation changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten_buckets: Option<Vec<String>>,
}

/// A scenario or external event that took effect.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemSummary {
    /// `mod_001` or `evt_001`.
    pub id: String,
    /// `scenario` or `event`.
    pub kind: String,
    /// The scenario or event template id.
    #[serde(rename = "type")]
    pub reference: String,
    pub title: String,
    pub description: String,
    pub start_time: String,
    pub active_until: String,
    pub settled_at: String,
}

/// A history request: closed buckets in `[start_ms, end_ms)` of the listed streams.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub start_ms: VirtualTimeMs,
    pub end_ms: VirtualTimeMs,
    /// Catalog indices.
    pub streams: Vec<usize>,
}

/// One bucket of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPoint {
    pub timestamp: String,
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub flag: Option<AnomalyFlag>,
}

/// The buckets of a history request, per stream in request order, with their baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryAnswer {
    pub streams: Vec<(String, Vec<HistoryPoint>)>,
    /// (stream, mean, standard deviation) over the week, when the session is analyzed.
    pub baseline: Vec<(String, f64, f64)>,
    /// External events in the range, in the seed's `ExternalEvent` shape.
    pub events: Vec<serde_json::Value>,
    /// Scenarios and event effects whose window overlaps the range (red herrings left out).
    pub scenarios: Vec<ActiveScenario>,
}

/// A stream flagged in the last closed bucket.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentAnomaly {
    pub stream: String,
    pub timestamp: String,
    pub value: Option<f64>,
    pub expected: f64,
    pub z: f64,
    pub normalized: f64,
    /// `warning` or `critical`.
    #[schema(value_type = String)]
    pub flag: AnomalyFlag,
}

/// Why the runner could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the simulation has stopped")]
    Stopped,
}

/// What handlers can ask the runner.
pub enum Request {
    Command {
        command: Command,
        at_ms: Option<VirtualTimeMs>,
        reply: oneshot::Sender<Result<CommandReply, CommandError>>,
    },
    Control {
        control: Control,
        reply: oneshot::Sender<LiveState>,
    },
    History {
        query: HistoryQuery,
        reply: oneshot::Sender<HistoryAnswer>,
    },
    Recording {
        reply: oneshot::Sender<String>,
    },
    Recommendations {
        reply: oneshot::Sender<Vec<Recommendation>>,
    },
    Anomalies {
        reply: oneshot::Sender<Vec<CurrentAnomaly>>,
    },
    /// Stop the engine and hand the session back (to write the run directory).
    Shutdown {
        reply: oneshot::Sender<Box<Session>>,
    },
}

/// A cheap, cloneable handle that sends requests to the runner thread.
#[derive(Clone)]
pub struct RunnerHandle {
    sender: mpsc::Sender<Request>,
}

impl RunnerHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, RunnerError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(make(reply))
            .map_err(|_| RunnerError::Stopped)?;
        answer.await.map_err(|_| RunnerError::Stopped)
    }

    /// Applies `command` now, or backdated to `at_ms`.
    pub async fn command(
        &self,
        command: Command,
        at_ms: Option<VirtualTimeMs>,
    ) -> Result<CommandReply, RunnerError> {
        Ok(self
            .ask(|reply| Request::Command {
                command,
                at_ms,
                reply,
            })
            .await??)
    }

    pub async fn control(&self, control: Control) -> Result<LiveState, RunnerError> {
        self.ask(|reply| Request::Control { control, reply }).await
    }

    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryAnswer, RunnerError> {
        self.ask(|reply| Request::History { query, reply }).await
    }

    /// The session as a run script.
    pub async fn recording(&self) -> Result<String, RunnerError> {
        self.ask(|reply| Request::Recording { reply }).await
    }

    pub async fn recommendations(&self) -> Result<Vec<Recommendation>, RunnerError> {
        self.ask(|reply| Request::Recommendations { reply }).await
    }

    pub async fn anomalies(&self) -> Result<Vec<CurrentAnomaly>, RunnerError> {
        self.ask(|reply| Request::Anomalies { reply }).await
    }

    /// Stops the runner and returns the session.
    pub async fn shutdown(&self) -> Result<Box<Session>, RunnerError> {
        self.ask(|reply| Request::Shutdown { reply }).await
    }
}

/// Collects a frame's stream events.
struct FrameSink {
    events: Vec<StreamEvent>,
}

impl Sink<StreamEvent> for FrameSink {
    #[inline]
    fn accept(&mut self, event: &StreamEvent) {
        self.events.push(event.clone());
    }
}

/// Everything the runner thread owns.
pub struct Runner {
    session: Session,
    schedule: PaceSchedule,
    wall_origin: Instant,
    /// `wall_origin` read on the system clock (Unix ms), so the schedule can be published in
    /// a form other processes on this machine can use.
    wall_origin_unix_ms: f64,
    /// The system clock (Unix ms) read when the last frame computed its target, next to the
    /// monotonic reading the schedule used: published so drift can be checked against a clock
    /// the runner does not pace by.
    target_wall_unix_ms: f64,
    frames: tokio::sync::mpsc::Sender<Frame>,
    state: watch::Sender<LiveState>,
    metrics: Arc<Metrics>,
    /// The analysis, when the baseline is ready (fitted on another thread at start-up).
    pending_analysis: Option<mpsc::Receiver<SessionAnalysis>>,
    recording_name: String,
    lag_ms: f64,
    /// The analyst's answers already counted in `/metrics`.
    analyst_replies_counted: usize,
}

/// Starts the runner on its own thread; the session continues from where its history ended.
pub fn spawn(
    session: Session,
    speed: f64,
    frames: tokio::sync::mpsc::Sender<Frame>,
    metrics: Arc<Metrics>,
    pending_analysis: Option<mpsc::Receiver<SessionAnalysis>>,
    recording_name: String,
) -> (
    RunnerHandle,
    watch::Receiver<LiveState>,
    std::thread::JoinHandle<()>,
) {
    let (sender, requests) = mpsc::channel();
    let wall_origin = Instant::now();
    let wall_origin_unix_ms = unix_ms_now();
    let schedule = PaceSchedule::new(Duration::ZERO, session.now(), speed);
    let runner = Runner {
        schedule,
        wall_origin,
        wall_origin_unix_ms,
        target_wall_unix_ms: wall_origin_unix_ms,
        frames,
        state: watch::channel(LiveState {
            epoch: String::new(),
            now: String::new(),
            virtual_ms: 0,
            speed,
            paused: false,
            lag_ms: 0.0,
            scenarios: Vec::new(),
            buckets: 0,
            bucket_ms: session.bucket_ms(),
            analyzed: false,
            clients: 0,
            anchor_wall_unix_ms: wall_origin_unix_ms,
            anchor_virtual_ms: session.now(),
            wall_unix_ms: wall_origin_unix_ms,
        })
        .0,
        session,
        metrics,
        pending_analysis,
        recording_name,
        lag_ms: 0.0,
        analyst_replies_counted: 0,
    };
    runner.publish_state();
    let state = runner.state.subscribe();
    let thread = std::thread::Builder::new()
        .name("marketsim-runner".to_string())
        .spawn(move || runner.run(requests))
        .unwrap_or_else(|error| panic!("cannot start the runner thread: {error}"));
    (RunnerHandle { sender }, state, thread)
}

impl Runner {
    fn run(mut self, requests: mpsc::Receiver<Request>) {
        let frame = Duration::from_millis(FRAME_MS);
        let mut next_frame = Instant::now();
        loop {
            let timeout = next_frame.saturating_duration_since(Instant::now());
            match requests.recv_timeout(timeout) {
                Ok(Request::Shutdown { reply }) => {
                    let now = self.session.now();
                    self.session.advance_to(now, &mut crate::engine::NoSink);
                    self.session.finish(&mut crate::engine::NoSink);
                    let _ = reply.send(Box::new(self.session));
                    return;
                }
                Ok(request) => self.answer(request),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // How late this frame starts against its due time: the thread's wake-up
                    // latency plus any request answered or frame overrun just before.
                    let lateness = Instant::now().saturating_duration_since(next_frame);
                    self.metrics.frame_lateness.record(lateness);
                    self.step();
                    next_frame += frame;
                    let now = Instant::now();
                    if next_frame < now {
                        // Behind: do not try to make up frames, just keep the cadence.
                        next_frame = now + frame;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn wall(&self) -> Duration {
        self.wall_origin.elapsed()
    }

    /// One frame: attach the analysis if it is ready, advance to the wall clock's virtual time
    /// (bounded), publish.
    fn step(&mut self) {
        let started = Instant::now();
        if let Some(receiver) = &self.pending_analysis {
            if let Ok(analysis) = receiver.try_recv() {
                let advance = self.session.attach_analysis(analysis);
                self.pending_analysis = None;
                tracing::info!(
                    buckets = self.session.closed_buckets(),
                    recommendations = advance.recommendations.len(),
                    "baseline ready: the session is analyzed from its start"
                );
            }
        }
        let target = self.schedule.virtual_at(self.wall());
        self.target_wall_unix_ms = unix_ms_now();
        let now = self.session.now();
        let budget = (self.schedule.speed() * (FRAME_MS * MAX_FRAMES_BEHIND) as f64) as u64;
        let reach = target.min(now.saturating_add(budget.max(1)));
        let mut frame = Frame::default();
        if reach > now {
            let mut sink = FrameSink { events: Vec::new() };
            let advance = self.session.advance_to(reach, &mut sink);
            frame = self.frame(sink.events, &advance);
        }
        self.lag_ms = (target.saturating_sub(self.session.now())) as f64 / self.schedule.speed();
        let elapsed = started.elapsed();
        Metrics::set(&self.metrics.frame_micros, elapsed.as_micros() as u64);
        Metrics::set(&self.metrics.lag_micros, (self.lag_ms * 1000.0) as u64);
        Metrics::add(&self.metrics.frames_total, 1);
        Metrics::set(&self.metrics.virtual_ms, self.session.now());
        Metrics::set(
            &self.metrics.queue_depth,
            self.session.engine_counts().1 as u64,
        );
        if self.lag_ms > 1_000.0 {
            tracing::warn!(lag_ms = self.lag_ms, "the engine is behind the wall clock");
        }
        self.count_analyst_replies();
        if !frame.events.is_empty() || !frame.notices.is_empty() {
            Metrics::add(&self.metrics.events_total, frame.events.len() as u64);
            // A full channel means the hub is behind; the frame is dropped rather than the
            // engine waiting (clients catch up from the next frames and the history API).
            if self.frames.try_send(frame).is_err() {
                tracing::warn!("the hub is behind; a frame was dropped");
            }
        }
        self.publish_state();
    }

    /// Counts the analyst's answers merged since the last frame into `/metrics` and the log: one
    /// call per answer, a fallback when the rules answered for a model. A backdate or reset
    /// restarts the analysis (fewer answers than counted); counting starts again from there, so
    /// the counters stay monotonic.
    fn count_analyst_replies(&mut self) {
        let Some(analysis) = self.session.analysis() else {
            return;
        };
        let replies = analysis.replies();
        if replies.len() < self.analyst_replies_counted {
            self.analyst_replies_counted = 0;
        }
        for reply in &replies[self.analyst_replies_counted..] {
            Metrics::add(&self.metrics.analyst_calls, 1);
            let fallback_reason = reply
                .call
                .as_ref()
                .filter(|call| call.source == "rules-fallback")
                .map(|call| call.reason.as_deref().unwrap_or("unknown"));
            match fallback_reason {
                Some(reason) => {
                    Metrics::add(&self.metrics.analyst_fallbacks, 1);
                    tracing::warn!(
                        asked_after = reply.asked_after,
                        reason,
                        "analyst call fell back to the rules"
                    );
                }
                None if reply.recommendations.is_empty() => tracing::debug!(
                    asked_after = reply.asked_after,
                    "analyst answered with no recommendation"
                ),
                None => tracing::info!(
                    asked_after = reply.asked_after,
                    recommendations = reply.recommendations.len(),
                    "analyst answered"
                ),
            }
        }
        self.analyst_replies_counted = replies.len();
    }

    /// The frame of one advance: events with their stream's latest score, and notices.
    fn frame(&self, events: Vec<StreamEvent>, advance: &Advance) -> Frame {
        let session = &self.session;
        let catalog = session.catalog();
        let epoch = session.epoch();
        let latest = self.latest_scores();
        let context = RenderContext {
            subjects: &catalog.subjects,
            epoch,
        };
        let events = events
            .iter()
            .map(|event| {
                let index = event.stream.index();
                let view = StreamEventView {
                    stream_name: &catalog.streams[index].name,
                    event,
                    context: RenderContext { ..context },
                    score: latest[index],
                };
                FrameEvent {
                    stream: index as u8,
                    time_ms: event.time,
                    json: serde_json::to_string(&view).unwrap_or_default().into(),
                }
            })
            .collect();
        let mut notices = self.notices(advance);
        notices.extend(self.anomaly_notices(advance));
        Frame {
            virtual_ms: session.now(),
            timestamp: epoch.format(session.now()),
            events,
            notices,
        }
    }

    /// Each stream's normalized value and flag in the last closed bucket.
    fn latest_scores(&self) -> Vec<Option<(f64, &'static str)>> {
        let n_streams = self.session.catalog().streams.len();
        let Some(analysis) = self.session.analysis() else {
            return vec![None; n_streams];
        };
        let scores = analysis.scores();
        let last = scores.n_buckets().checked_sub(1);
        (0..n_streams)
            .map(|stream| {
                let score = scores.get(last?, stream)?;
                Some((score.normalized, score.flag.as_str()))
            })
            .collect()
    }

    /// Scenario lifecycle, external events and recommendations of an advance, as messages.
    fn notices(&self, advance: &Advance) -> Vec<Notice> {
        let session = &self.session;
        let epoch = session.epoch();
        let mut notices = Vec::new();
        for record in &session.records()[advance.new_records.clone()] {
            let timestamp = epoch.format(record.time);
            match &record.kind {
                RecordKind::EventFired { instance } => {
                    if let Some(event) = self.external_event_json(*instance, record.time) {
                        notices.push(notice(
                            Topic::Timeline,
                            serde_json::json!({ "type": "timeline", "event": event }),
                        ));
                    }
                }
                RecordKind::Phase { instance, phase } => {
                    let Some(item) = session.items().get(*instance) else {
                        continue;
                    };
                    if item.is_red_herring() {
                        continue;
                    }
                    notices.push(notice(
                        Topic::Scenarios,
                        serde_json::json!({
                            "type": "scenario",
                            "id": item.instance_id,
                            "scenario": item.label(),
                            "kind": if item.kind() == InstanceKind::Scenario { "scenario" } else { "event" },
                            "status": phase.as_str(),
                            "timestamp": timestamp,
                        }),
                    ));
                }
                RecordKind::Stop { label } => notices.push(notice(
                    Topic::Scenarios,
                    serde_json::json!({ "type": "scenario", "scenario": label, "status": "stop", "timestamp": timestamp }),
                )),
                RecordKind::Reset => notices.push(notice(
                    Topic::Scenarios,
                    serde_json::json!({ "type": "scenario", "status": "reset", "timestamp": timestamp }),
                )),
            }
        }
        if let Some(analysis) = session.analysis() {
            for id in &advance.recommendations {
                if let Some(recommendation) =
                    analysis.recommendations().iter().find(|r| &r.id == id)
                {
                    notices.push(notice(
                        Topic::Recommendations,
                        serde_json::json!({ "type": "recommendation", "data": recommendation }),
                    ));
                }
            }
        }
        notices
    }

    /// Streams whose flag changed in the buckets that closed.
    fn anomaly_notices(&self, advance: &Advance) -> Vec<Notice> {
        let Some(analysis) = self.session.analysis() else {
            return Vec::new();
        };
        let scores = analysis.scores();
        let catalog = self.session.catalog();
        let epoch = self.session.epoch();
        let bucket_ms = self.session.bucket_ms();
        let mut notices = Vec::new();
        for bucket in advance.closed_buckets.clone() {
            for (index, stream) in catalog.streams.iter().enumerate() {
                let flag = scores.get(bucket, index).map(|s| s.flag);
                let previous = bucket
                    .checked_sub(1)
                    .and_then(|b| scores.get(b, index))
                    .map(|s| s.flag);
                if flag == previous || (flag.is_none() && previous == Some(AnomalyFlag::Normal)) {
                    continue;
                }
                let Some(score) = scores.get(bucket, index) else {
                    continue;
                };
                notices.push(notice(
                    Topic::Anomalies,
                    serde_json::json!({
                        "type": "anomaly",
                        "stream": stream.name,
                        "timestamp": epoch.format(bucket as u64 * bucket_ms),
                        "value": self.session.collector().bucket_value(bucket, index),
                        "expected": score.expected,
                        "z": score.z,
                        "normalized": score.normalized,
                        "flag": score.flag,
                    }),
                ));
            }
        }
        notices
    }

    /// The seed's `ExternalEvent` of item `instance`, fired at `time`.
    fn external_event_json(
        &self,
        instance: usize,
        time: VirtualTimeMs,
    ) -> Option<serde_json::Value> {
        let item = self.session.items().get(instance)?;
        let PlanSubject::Event(event) = &item.subject else {
            return None;
        };
        Some(serde_json::json!({
            "id": item.instance_id,
            "timestamp": self.session.epoch().format(time),
            "type": event.kind,
            "title": event.title,
            "description": event.description,
            "severity": event.severity,
            "expectedImpact": event.expected_impact,
            "icon": event.icon,
            "externalLink": event.external_link,
            "injectedByAI": false,
        }))
    }

    fn publish_state(&self) {
        let session = &self.session;
        let epoch = session.epoch();
        let now = session.now();
        let scenarios = self.scenario_summaries(|phase, _, _| phase != Phase::Settled);
        let clients = self.state.borrow().clients;
        let (anchor_wall, anchor_virtual_ms) = self.schedule.anchor();
        self.state.send_replace(LiveState {
            epoch: epoch.format(0),
            now: epoch.format(now),
            virtual_ms: now,
            speed: self.schedule.speed(),
            paused: self.schedule.is_paused(),
            lag_ms: self.lag_ms,
            scenarios,
            buckets: session.closed_buckets(),
            bucket_ms: session.bucket_ms(),
            analyzed: session.analysis().is_some(),
            clients,
            anchor_wall_unix_ms: self.wall_origin_unix_ms + anchor_wall.as_secs_f64() * 1_000.0,
            anchor_virtual_ms,
            wall_unix_ms: self.target_wall_unix_ms,
        });
    }

    /// The scenarios and event effects (red herrings left out: the operator cannot tell them
    /// apart) for which `keep(phase now, start, settled at)` holds, in the order they took effect.
    fn scenario_summaries(
        &self,
        keep: impl Fn(Phase, VirtualTimeMs, VirtualTimeMs) -> bool,
    ) -> Vec<ActiveScenario> {
        let session = &self.session;
        let epoch = session.epoch();
        let now = session.now();
        session
            .items()
            .iter()
            .zip(session.model().instances())
            .filter(|(item, _)| !item.is_red_herring())
            .filter_map(|(item, planned)| {
                let instance = &planned.instance;
                let phase = instance.phase(now);
                keep(phase, instance.start, instance.settled_at()).then(|| ActiveScenario {
                    id: item.instance_id.clone(),
                    kind: item.label().to_string(),
                    name: match &item.subject {
                        PlanSubject::Scenario(s) => s.name.clone(),
                        PlanSubject::Event(e) => e.title.clone(),
                    },
                    status: phase.as_str().to_string(),
                    start_time: epoch.format(instance.start),
                    active_until: epoch.format(instance.active_until),
                    settled_at: epoch.format(instance.settled_at()),
                })
            })
            .collect()
    }

    fn answer(&mut self, request: Request) {
        match request {
            Request::Command {
                command,
                at_ms,
                reply,
            } => {
                let result = self.apply(command, at_ms);
                let _ = reply.send(result);
            }
            Request::Control { control, reply } => {
                let wall = self.wall();
                match control {
                    Control::Speed(speed) => self.schedule.set_speed(wall, speed),
                    Control::Pause => self.schedule.pause(wall),
                    Control::Resume => self.schedule.resume(wall),
                }
                // Virtual time never jumps: re-anchor at where the session is now, so a
                // session that lagged does not leap ahead on a speed change.
                let now = self.session.now();
                let speed = self.schedule.speed();
                let paused = self.schedule.is_paused();
                self.schedule = PaceSchedule::new(wall, now, speed);
                if paused {
                    self.schedule.pause(wall);
                }
                tracing::info!(?control, speed, paused, "pace changed");
                self.publish_state();
                let _ = reply.send(self.state.borrow().clone());
            }
            Request::History { query, reply } => {
                let _ = reply.send(self.history(&query));
            }
            Request::Recording { reply } => {
                let _ = reply.send(self.session.recording(&self.recording_name).to_yaml());
            }
            Request::Recommendations { reply } => {
                let recommendations = self
                    .session
                    .analysis()
                    .map(|a| a.recommendations().to_vec())
                    .unwrap_or_default();
                let _ = reply.send(recommendations);
            }
            Request::Anomalies { reply } => {
                let _ = reply.send(self.current_anomalies());
            }
            Request::Shutdown { .. } => {}
        }
    }

    fn apply(
        &mut self,
        command: Command,
        at_ms: Option<VirtualTimeMs>,
    ) -> Result<CommandReply, CommandError> {
        let mut sink = FrameSink { events: Vec::new() };
        let items_before = self.session.items().len();
        let applied = self.session.apply(command.clone(), at_ms, &mut sink)?;
        tracing::info!(?command, at_ms = applied.at_ms, "command applied");
        let epoch = self.session.epoch();
        let bucket_ms = self.session.bucket_ms();
        let new_items = if applied.rewritten_buckets.is_some() {
            items_before.min(self.session.items().len())..self.session.items().len()
        } else {
            applied.advance.new_items.clone()
        };
        let items = self.session.items()[new_items]
            .iter()
            .map(|item| ItemSummary {
                id: item.instance_id.clone(),
                kind: match item.kind() {
                    InstanceKind::Scenario => "scenario".to_string(),
                    InstanceKind::Event => "event".to_string(),
                },
                reference: item.label().to_string(),
                title: match &item.subject {
                    PlanSubject::Scenario(s) => s.name.clone(),
                    PlanSubject::Event(e) => e.title.clone(),
                },
                description: match &item.subject {
                    PlanSubject::Scenario(s) => s.description.clone(),
                    PlanSubject::Event(e) => e.description.clone(),
                },
                start_time: epoch.format(item.instance.start),
                active_until: epoch.format(item.instance.active_until),
                settled_at: epoch.format(item.instance.settled_at()),
            })
            .collect();
        let rewritten = applied.rewritten_buckets.as_ref().map(|buckets| {
            buckets
                .iter()
                .map(|bucket| epoch.format(*bucket as u64 * bucket_ms))
                .collect::<Vec<_>>()
        });
        let mut frame = if rewritten.is_some() {
            Frame::default()
        } else {
            self.frame(sink.events, &applied.advance)
        };
        if let Some(buckets) = &rewritten {
            frame.notices.push(notice(
                Topic::History,
                serde_json::json!({
                    "type": "history_rewritten",
                    "from": epoch.format(applied.at_ms),
                    "buckets": buckets,
                }),
            ));
        }
        frame.virtual_ms = self.session.now();
        frame.timestamp = epoch.format(self.session.now());
        let _ = self.frames.try_send(frame);
        self.publish_state();
        Ok(CommandReply {
            at: epoch.format(applied.at_ms),
            items,
            rewritten_buckets: rewritten,
        })
    }

    fn history(&self, query: &HistoryQuery) -> HistoryAnswer {
        let session = &self.session;
        let catalog = session.catalog();
        let epoch = session.epoch();
        let bucket_ms = session.bucket_ms();
        let first = (query.start_ms / bucket_ms) as usize;
        let last = (query.end_ms.div_ceil(bucket_ms) as usize).min(session.closed_buckets());
        let scores = session.analysis().map(|a| a.scores());
        let streams = query
            .streams
            .iter()
            .map(|&index| {
                let points = (first..last.max(first))
                    .map(|bucket| {
                        let score = scores.and_then(|s| s.get(bucket, index));
                        HistoryPoint {
                            timestamp: epoch.format(bucket as u64 * bucket_ms),
                            value: session.collector().bucket_value(bucket, index),
                            normalized: score.map(|s| round(s.normalized, 1)),
                            expected: score.map(|s| round(s.expected, 3)),
                            z: score.map(|s| round(s.z, 3)),
                            flag: score.map(|s| s.flag),
                        }
                    })
                    .collect();
                (catalog.streams[index].name.clone(), points)
            })
            .collect();
        let baseline = session
            .analysis()
            .map(|analysis| {
                query
                    .streams
                    .iter()
                    .filter_map(|&index| {
                        let stream = analysis.baseline().stream(index)?;
                        let n = stream.mean.len().max(1) as f64;
                        let mean = stream.mean.iter().sum::<f64>() / n;
                        let std_dev = stream.std_dev.iter().sum::<f64>() / n;
                        Some((
                            catalog.streams[index].name.clone(),
                            round(mean, 3),
                            round(std_dev, 3),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let events = session
            .records()
            .iter()
            .filter(|r| r.time >= query.start_ms && r.time < query.end_ms)
            .filter_map(|record| match record.kind {
                RecordKind::EventFired { instance } => {
                    self.external_event_json(instance, record.time)
                }
                _ => None,
            })
            .collect();
        // Scenario windows that overlap the range, settled ones included, so a chart of the
        // past shades what was in effect then.
        let scenarios = self.scenario_summaries(|_, start, settled| {
            start < query.end_ms && settled >= query.start_ms
        });
        HistoryAnswer {
            streams,
            baseline,
            events,
            scenarios,
        }
    }

    fn current_anomalies(&self) -> Vec<CurrentAnomaly> {
        let Some(analysis) = self.session.analysis() else {
            return Vec::new();
        };
        let scores = analysis.scores();
        let Some(bucket) = scores.n_buckets().checked_sub(1) else {
            return Vec::new();
        };
        let epoch = self.session.epoch();
        self.session
            .catalog()
            .streams
            .iter()
            .enumerate()
            .filter_map(|(index, stream)| {
                let score = scores.get(bucket, index)?;
                (score.flag != AnomalyFlag::Normal).then(|| CurrentAnomaly {
                    stream: stream.name.clone(),
                    timestamp: epoch.format(bucket as u64 * self.session.bucket_ms()),
                    value: self.session.collector().bucket_value(bucket, index),
                    expected: round(score.expected, 3),
                    z: round(score.z, 3),
                    normalized: round(score.normalized, 1),
                    flag: score.flag,
                })
            })
            .collect()
    }
}

/// The system clock in Unix milliseconds (0 if it reads before 1970).
fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs_f64() * 1_000.0)
        .unwrap_or(0.0)
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

fn notice(topic: Topic, message: serde_json::Value) -> Notice {
    Notice {
        topic,
        json: message.to_string().into(),
    }
}
