//! The stepping core that headless runs and live sessions both drive.
//!
//! A [`Session`] owns the simulation, the commands waiting for their time, the bucket
//! accumulator, the counterfactual twins of ground truth and the recording. It has two
//! operations:
//!
//! - [`Session::advance_to`] moves virtual time forward and says what happened (buckets closed,
//!   lifecycle records, items that took effect);
//! - [`Session::apply`] applies a [`Command`] now (or backdated) and says what it did, or why
//!   not ([`CommandError`]).
//!
//! A headless run feeds its script's timeline into the session and advances it to the end as
//! fast as it can; a live runner advances it frame by frame to the wall clock's virtual time and
//! applies commands as clients send them. The model sees no difference: every command, scripted
//! or live, enters through the same queue at the start of its millisecond (see [`core`] for the
//! order), and every applied command is recorded, so [`Session::recording`] is a run script that
//! replays the session byte-identically.

pub mod analysis;
pub mod buckets;
pub mod command;
pub(crate) mod core;
pub mod recording;
pub mod twins;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use self::analysis::SessionAnalysis;
use self::core::{Core, FeedEntry};
pub use buckets::RunCollector;
pub use command::{Applied, Command, CommandError};
use recording::RecordedCommand;
pub use twins::TwinMeasurement;

use crate::engine::{NoSink, Simulation, Sink, Tee, VirtualTimeMs, MS_PER_DAY};
use crate::market::director::TimelineRecord;
use crate::market::{Catalog, Epoch, Marketplace, StreamEvent};
use crate::scenario::definition::{Library, RawScenario, ScenarioDefinition};
use crate::scenario::script::CatalogSource;
use crate::scenario::timeline::{BackgroundEvents, PlanItem};
use crate::scenario::RunPlan;

/// What a session is made of: the world, its epoch and seed, and how it is measured.
#[derive(Debug, Clone)]
pub struct SessionSetup {
    pub catalog: Arc<Catalog>,
    pub library: Arc<Library>,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub bucket_ms: u64,
    /// The seed's policy: a scenario that starts stops the one running.
    pub one_at_a_time: bool,
    pub background_events: bool,
    /// No academic calendar and no growth (the history a baseline is fitted on).
    pub neutral_season: bool,
    /// Measure ground truth with counterfactual twins of the items scheduled ahead, up to this
    /// time (a headless run's end). `None`: no twins (a live session's truth comes from
    /// replaying its recording).
    pub truth_until_ms: Option<VirtualTimeMs>,
    /// How far past an item's window its twins may run to find where its effect ends.
    pub truth_horizon_ms: VirtualTimeMs,
    /// How many buckets to make room for at once (the run's length, when known).
    pub expected_buckets: usize,
    /// Inline scenario definitions the session may activate by id (a script's `scenarios:`).
    pub inline_scenarios: Vec<(RawScenario, ScenarioDefinition)>,
    /// The catalog file, when not the embedded one (absolute, for recordings).
    pub catalog_file: Option<PathBuf>,
    /// The library folder, when not the embedded one (absolute, for recordings).
    pub library_folder: Option<PathBuf>,
}

impl SessionSetup {
    /// The setup of a headless run of `plan`.
    pub fn for_run(plan: &RunPlan, measure_truth: bool) -> SessionSetup {
        SessionSetup {
            catalog: Arc::clone(&plan.catalog),
            library: Arc::clone(&plan.library),
            seed: plan.seed,
            start: plan.script.start,
            bucket_ms: plan.script.bucket_ms,
            one_at_a_time: plan.timeline.one_at_a_time,
            background_events: plan.script.background_events,
            neutral_season: false,
            truth_until_ms: measure_truth.then_some(plan.duration_ms),
            truth_horizon_ms: plan.truth_horizon_ms,
            expected_buckets: plan.bucket_count(),
            inline_scenarios: plan.timeline.inline_scenarios.clone(),
            catalog_file: match &plan.script.catalog {
                CatalogSource::Embedded => None,
                CatalogSource::File(path) => Some(absolute(path)),
            },
            library_folder: plan.script.library_folder().map(|path| absolute(&path)),
        }
    }

    pub fn epoch(&self) -> Epoch {
        Epoch::from_datetime(self.start)
    }
}

/// `path` made absolute against the current directory (as given when that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What one call of [`Session::advance_to`] (or [`Session::apply`]) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advance {
    /// Buckets whose values are now final.
    pub closed_buckets: Range<usize>,
    /// New entries of [`Session::records`].
    pub new_records: Range<usize>,
    /// New entries of [`Session::items`].
    pub new_items: Range<usize>,
    /// Recommendations opened, merged into or resolved (ids), when the session is analyzed.
    pub recommendations: Vec<String>,
}

/// The twin fork of the current bucket: the core as it was at the bucket's start.
struct TwinFork {
    bucket_start: VirtualTimeMs,
    core: Core,
}

/// A copy of the session at a bucket boundary, to re-simulate from when a command is backdated.
struct Checkpoint {
    core: Core,
    collector: RunCollector,
}

/// How often a live session keeps a checkpoint, and how many it keeps.
const CHECKPOINT_EVERY_MS: VirtualTimeMs = MS_PER_DAY;
const CHECKPOINTS_KEPT: usize = 8;
/// Noise twins per item: two other rolls of the dice give, with the twin, three counterfactual
/// totals to measure drift from (one is too few for a queue, whose drift wanders).
const NOISE_TWINS: usize = 2;
/// Salt of the noise twins' random paths (mixed with the item's index and the twin's number):
/// fixed, so truth is reproducible.
const NOISE_TWIN_SALT: u64 = 0x6e6f_6973_6500_0000;

/// The stepping core of a run or a live session.
pub struct Session {
    setup: SessionSetup,
    core: Core,
    collector: RunCollector,
    closed_buckets: usize,
    recording: Vec<RecordedCommand>,
    /// Twins measured so far, and the fork of the current bucket when one is needed.
    twins: Vec<TwinMeasurement>,
    fork: Option<TwinFork>,
    /// The session at its start and at the last few day boundaries (live sessions only).
    initial: Option<Box<Checkpoint>>,
    checkpoints: Vec<Checkpoint>,
    keeps_checkpoints: bool,
    analysis: Option<SessionAnalysis>,
    /// Records already turned into the analysis's context events.
    events_seen: usize,
    /// Recommendations changed since the last report (see [`Advance::recommendations`]).
    changed_recommendations: Vec<String>,
    /// Take-action commands applied, in order: (time, recommendation, action); the analysis
    /// has seen the first `resolutions_applied`.
    resolutions: Vec<(VirtualTimeMs, String, String)>,
    resolutions_applied: usize,
}

impl Session {
    /// A session at virtual time 0 with nothing scheduled but the background.
    pub fn new(setup: SessionSetup) -> Result<Session, String> {
        let epoch = setup.epoch();
        let mut model = Marketplace::new(Arc::clone(&setup.catalog), setup.seed, epoch)?
            .with_policy(setup.one_at_a_time);
        if setup.neutral_season {
            model = model.with_neutral_season();
        }
        let background = if setup.background_events {
            BackgroundEvents::new(&setup.library, setup.start, setup.seed)
        } else {
            None
        };
        let core = Core::new(
            Simulation::new(model),
            Arc::clone(&setup.library),
            setup.catalog.subjects.len(),
            background,
        );
        let collector = RunCollector::new(&setup.catalog, setup.bucket_ms, setup.expected_buckets);
        Ok(Session {
            core,
            collector,
            closed_buckets: 0,
            recording: Vec::new(),
            twins: Vec::new(),
            fork: None,
            initial: None,
            checkpoints: Vec::new(),
            keeps_checkpoints: false,
            analysis: None,
            events_seen: 0,
            changed_recommendations: Vec::new(),
            resolutions: Vec::new(),
            resolutions_applied: 0,
            setup,
        })
    }

    /// A session of a headless run: the script's timeline is fed in (each entry takes effect
    /// when its time comes) and recorded.
    pub fn for_run(plan: &RunPlan, measure_truth: bool) -> Result<Session, String> {
        let mut session = Session::new(SessionSetup::for_run(plan, measure_truth))?;
        for action in &plan.timeline.actions {
            session.core.feed(action.at_ms, action.action.clone());
            if let Some(raw) = &action.raw {
                session.recording.push(RecordedCommand {
                    at_ms: action.at_ms,
                    entry: raw.clone(),
                });
            }
        }
        session.recording.sort_by_key(|recorded| recorded.at_ms);
        Ok(session)
    }

    /// Keeps checkpoints so commands can be backdated (a live session).
    pub fn keep_checkpoints(&mut self) {
        self.keeps_checkpoints = true;
        if self.initial.is_none() && self.now() == 0 {
            self.initial = Some(Box::new(Checkpoint {
                core: self.core.clone(),
                collector: self.collector.clone(),
            }));
        }
    }

    pub fn setup(&self) -> &SessionSetup {
        &self.setup
    }
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.setup.catalog
    }
    pub fn epoch(&self) -> Epoch {
        self.setup.epoch()
    }
    pub fn bucket_ms(&self) -> u64 {
        self.setup.bucket_ms
    }
    /// Virtual time: every event before it has been handled.
    pub fn now(&self) -> VirtualTimeMs {
        self.core.now()
    }
    /// Buckets whose values are final.
    pub fn closed_buckets(&self) -> usize {
        self.closed_buckets
    }
    pub fn collector(&self) -> &RunCollector {
        &self.collector
    }
    /// Everything that took effect, in order (ids `evt_NNN`, `mod_NNN` in that order).
    pub fn items(&self) -> &[PlanItem] {
        &self.core.items
    }
    /// Lifecycle transitions, injected events, stops and resets, in order.
    pub fn records(&self) -> &[TimelineRecord] {
        self.core.records()
    }
    /// Scores, walk and recommendations, once [`Session::attach_analysis`] was called.
    pub fn analysis(&self) -> Option<&SessionAnalysis> {
        self.analysis.as_ref()
    }

    /// Scores every bucket from now on (and those closed so far, at once) and walks them with
    /// the analyst: the analysis a run or a live session starts when its baseline is ready.
    pub fn attach_analysis(&mut self, analysis: SessionAnalysis) -> Advance {
        let before = self.marks();
        let closed = self.closed_buckets;
        self.events_seen = 0;
        self.resolutions_applied = 0;
        self.closed_buckets = 0;
        self.analysis = Some(analysis);
        // Walk the buckets closed so far, with take-action commands where they fell.
        self.close_buckets(closed);
        self.apply_resolutions();
        self.since(before)
    }

    /// Adds the external events fired before `until` to the analysis's context.
    fn feed_events(&mut self, analysis: &mut SessionAnalysis, until: VirtualTimeMs) {
        let records = self.core.records();
        let mut end = self.events_seen;
        while end < records.len() && records[end].time < until {
            end += 1;
        }
        let events = crate::analyst::context_events(
            self.setup.epoch(),
            &self.core.items,
            &records[self.events_seen..end],
        );
        analysis.add_events(events);
        self.events_seen = end;
    }

    /// Scores and walks the buckets that closed since the last call. A take-action command at
    /// `t` acts after every bucket that ended by `t` and before the bucket it fell in.
    fn close_buckets(&mut self, closed: usize) {
        let Some(mut analysis) = self.analysis.take() else {
            self.closed_buckets = self.closed_buckets.max(closed);
            return;
        };
        while self.closed_buckets < closed {
            let bucket = self.closed_buckets;
            let bucket_end = (bucket as u64 + 1) * self.setup.bucket_ms;
            self.resolve_before(&mut analysis, bucket_end);
            self.feed_events(&mut analysis, bucket_end);
            let changes = analysis.close_bucket(&self.collector.bucket_values(bucket));
            self.changed_recommendations.extend(changes.changed);
            self.closed_buckets += 1;
        }
        self.analysis = Some(analysis);
    }

    /// Logs the take-action commands the core applied, and hands them to the analysis.
    fn apply_resolutions(&mut self) {
        self.resolutions.append(&mut self.core.resolutions);
        if let Some(mut analysis) = self.analysis.take() {
            self.resolve_before(&mut analysis, VirtualTimeMs::MAX);
            self.analysis = Some(analysis);
        }
    }

    /// Applies the logged take-action commands before `until` that the analysis has not seen.
    fn resolve_before(&mut self, analysis: &mut SessionAnalysis, until: VirtualTimeMs) {
        while let Some((at, recommendation, action)) =
            self.resolutions.get(self.resolutions_applied)
        {
            if *at >= until {
                break;
            }
            let timestamp = self.setup.epoch().format(*at);
            if analysis.resolve(recommendation, action, &timestamp).is_ok() {
                self.changed_recommendations.push(recommendation.clone());
            }
            self.resolutions_applied += 1;
        }
    }

    /// Whether the session measures ground truth with twins (a headless run unless
    /// `--no-truth`).
    pub fn measures_truth(&self) -> bool {
        self.setup.truth_until_ms.is_some()
    }

    pub fn twins(&self) -> &[TwinMeasurement] {
        &self.twins
    }
    pub fn model(&self) -> &Marketplace {
        self.core.simulation.model()
    }
    /// Queue events handled so far, and events still scheduled.
    pub fn engine_counts(&self) -> (u64, usize) {
        (
            self.core.simulation.handled_count(),
            self.core.simulation.pending_count(),
        )
    }

    /// Applies the commands due now (those at the very end of a run, which no further step
    /// reaches): a run and a live session end the same way, so a recording replays exactly.
    pub fn finish<S: Sink<StreamEvent>>(&mut self, sink: &mut S) -> Advance {
        let before = self.marks();
        let now = self.now();
        if now % self.setup.bucket_ms == 0 {
            self.at_bucket_boundary(now);
        }
        let mut activated = Vec::new();
        self.core
            .apply_due(&mut Tee(&mut self.collector, &mut *sink), &mut activated);
        self.measure_twins(&activated);
        self.apply_resolutions();
        // The last bucket is final even when the run ends inside it.
        self.close_buckets(now.div_ceil(self.setup.bucket_ms) as usize);
        for twin in &mut self.twins {
            twin.end_with_run(&self.collector, self.closed_buckets);
        }
        self.since(before)
    }

    /// Stops every arrival process and lets the flows under way run to their end (for tests
    /// that check conservation on complete flows); returns the events still pending after.
    pub fn drain_flows<S: Sink<StreamEvent>>(&mut self, sink: &mut S) -> usize {
        self.core.simulation.model_mut().close_arrivals();
        self.core.simulation.run_until(VirtualTimeMs::MAX, sink);
        self.core.simulation.pending_count()
    }

    /// Advances virtual time to `target`, feeding every stream event to `sink` as well as to
    /// the session's own accumulator. Commands and events due at `target` wait for the next
    /// step (or command).
    pub fn advance_to<S: Sink<StreamEvent>>(
        &mut self,
        target: VirtualTimeMs,
        sink: &mut S,
    ) -> Advance {
        let before = self.marks();
        let bucket_ms = self.setup.bucket_ms;
        while self.now() < target {
            let now = self.now();
            if now % bucket_ms == 0 {
                self.at_bucket_boundary(now);
            }
            let next_boundary = (now / bucket_ms + 1) * bucket_ms;
            let stop = target.min(next_boundary);
            let mut activated = Vec::new();
            self.core.advance_to(
                stop,
                &mut Tee(&mut self.collector, &mut *sink),
                &mut activated,
            );
            self.measure_twins(&activated);
            self.apply_resolutions();
            self.close_buckets((self.now() / bucket_ms) as usize);
            self.follow_twins();
        }
        self.since(before)
    }

    /// Applies `command` now, or at `at_ms` when it is backdated (the history from there on
    /// is re-simulated with it). Stream events it causes go to `sink`.
    pub fn apply<S: Sink<StreamEvent>>(
        &mut self,
        command: Command,
        at_ms: Option<VirtualTimeMs>,
        sink: &mut S,
    ) -> Result<Applied, CommandError> {
        let now = self.now();
        let at_ms = at_ms.unwrap_or(now);
        if at_ms > now {
            return Err(CommandError::InTheFuture { at_ms, now });
        }
        let (entry, action) = command::resolve(&command, self, at_ms)?;
        let recorded = RecordedCommand { at_ms, entry };
        if at_ms < now {
            // Validated above; re-resolved from the recording with everything after it.
            return self.backdate(recorded);
        }
        let before = self.marks();
        if now % self.setup.bucket_ms == 0 {
            self.at_bucket_boundary(now);
        }
        self.core.feed(now, action);
        let mut activated = Vec::new();
        self.core
            .apply_due(&mut Tee(&mut self.collector, &mut *sink), &mut activated);
        self.measure_twins(&activated);
        self.apply_resolutions();
        self.record(recorded);
        Ok(Applied {
            at_ms,
            advance: self.since(before),
            rewritten_buckets: None,
        })
    }

    /// The session as a run script: header, inline scenarios it used, and every command at its
    /// absolute time; `marketsim run` of it gives the same run directory.
    pub fn recording(&self, name: &str) -> recording::RecordingScript {
        recording::RecordingScript::new(self, name, &self.recording)
    }

    fn record(&mut self, recorded: RecordedCommand) {
        let position = self
            .recording
            .partition_point(|entry| entry.at_ms <= recorded.at_ms);
        self.recording.insert(position, recorded);
    }

    fn marks(&self) -> (usize, usize, usize) {
        (
            self.closed_buckets,
            self.records().len(),
            self.items().len(),
        )
    }

    fn since(&mut self, (buckets, records, items): (usize, usize, usize)) -> Advance {
        let mut recommendations = std::mem::take(&mut self.changed_recommendations);
        recommendations.sort();
        recommendations.dedup();
        Advance {
            closed_buckets: buckets..self.closed_buckets,
            new_records: records..self.records().len(),
            new_items: items..self.items().len(),
            recommendations,
        }
    }

    /// At a bucket boundary: fork the twins' starting point when something will start in this
    /// bucket, and keep a checkpoint on day boundaries.
    fn at_bucket_boundary(&mut self, now: VirtualTimeMs) {
        self.core.draw_background(now);
        if let Some(until) = self.setup.truth_until_ms {
            let already = self.fork.as_ref().is_some_and(|f| f.bucket_start == now);
            if !already && now < until {
                let bucket_end = now + self.setup.bucket_ms;
                self.fork = self
                    .core
                    .activation_due_in(now, bucket_end)
                    .then(|| TwinFork {
                        bucket_start: now,
                        core: self.core.clone(),
                    });
            }
        }
        if self.keeps_checkpoints && now > 0 && now % CHECKPOINT_EVERY_MS == 0 {
            let last = self.checkpoints.last().map(|c| c.core.now());
            if last != Some(now) {
                self.checkpoints.push(Checkpoint {
                    core: self.core.clone(),
                    collector: self.collector.clone(),
                });
                if self.checkpoints.len() > CHECKPOINTS_KEPT {
                    self.checkpoints.remove(0);
                }
            }
        }
    }

    /// Lets every twin whose tail is open compare the buckets the run has closed, and run on.
    fn follow_twins(&mut self) {
        for twin in &mut self.twins {
            twin.follow_run(&self.collector, self.closed_buckets);
        }
    }

    /// Runs the twin of each item that just took effect, from the fork of its bucket.
    fn measure_twins(&mut self, activated: &[usize]) {
        let (Some(until), Some(fork)) = (self.setup.truth_until_ms, &self.fork) else {
            return;
        };
        for &index in activated {
            let item = &self.core.items[index];
            if item.start_ms < fork.bucket_start
                || item.start_ms >= fork.bucket_start + self.setup.bucket_ms
            {
                continue;
            }
            if item.changes_nothing_the_model_reads(self.setup.one_at_a_time) {
                self.twins.push(twins::identical_twin(
                    fork.bucket_start,
                    index,
                    item,
                    until,
                    &self.setup,
                ));
                continue;
            }
            let command = self.core.item_commands[index];
            let twin = fork.core.twin_without(command);
            let noise_twins = (0..NOISE_TWINS)
                .map(|k| {
                    let salt = NOISE_TWIN_SALT ^ ((index as u64) << 8) ^ k as u64;
                    fork.core.noise_twin_without(command, salt)
                })
                .collect();
            self.twins.push(twins::run_twin(
                twin,
                noise_twins,
                index,
                item,
                until,
                &self.setup,
            ));
        }
    }

    /// Re-simulates from the last checkpoint before `at_ms` with `action` fed in at its time,
    /// back to where the session was; says which buckets changed.
    fn backdate(&mut self, recorded: RecordedCommand) -> Result<Applied, CommandError> {
        let now = self.now();
        let at_ms = recorded.at_ms;
        let earliest = self
            .initial
            .as_ref()
            .map(|c| c.core.now())
            .or_else(|| self.checkpoints.first().map(|c| c.core.now()));
        let checkpoint = self
            .checkpoints
            .iter()
            .rev()
            .find(|c| c.core.now() <= at_ms)
            .or(self.initial.as_deref().filter(|c| c.core.now() <= at_ms));
        let Some(checkpoint) = checkpoint else {
            return Err(CommandError::TooFarBack {
                at_ms,
                earliest_ms: earliest,
            });
        };
        let from = checkpoint.core.now();
        let mut core = checkpoint.core.clone();
        let collector = checkpoint.collector.clone();
        // Every script or live command from the checkpoint on, the new one in its place.
        self.record(recorded);
        let replayed: Vec<FeedEntry> = self
            .recording
            .iter()
            .filter(|entry| entry.at_ms >= from)
            .map(|entry| command::resolve_recorded(entry, self))
            .collect::<Result<_, _>>()?;
        core.replace_feed(replayed);
        self.resolutions.retain(|(at, _, _)| *at < from);
        let old = std::mem::replace(&mut self.collector, collector);
        self.core = core;
        self.checkpoints.retain(|c| c.core.now() <= from);
        let first_bucket = (from / self.setup.bucket_ms) as usize;
        self.closed_buckets = first_bucket;
        // The analysis walks the rewritten history again from its start.
        let analysis = self.analysis.take();
        // Live clients get the re-simulated history as buckets, not event by event again.
        self.advance_to(now, &mut NoSink);
        // Commands recorded at exactly `now` had taken effect before the backdated one came.
        let mut activated = Vec::new();
        self.core
            .apply_due(&mut Tee(&mut self.collector, &mut NoSink), &mut activated);
        self.apply_resolutions();
        if let Some(mut analysis) = analysis {
            analysis.restart();
            self.attach_analysis(analysis);
        }
        let rewritten: Vec<usize> = (first_bucket..self.closed_buckets)
            .filter(|&bucket| {
                (0..self.collector.n_streams()).any(|stream| {
                    old.bucket_value(bucket, stream) != self.collector.bucket_value(bucket, stream)
                })
            })
            .collect();
        let mut recommendations = std::mem::take(&mut self.changed_recommendations);
        recommendations.sort();
        recommendations.dedup();
        let advance = Advance {
            closed_buckets: first_bucket..self.closed_buckets,
            new_records: 0..self.records().len(),
            new_items: 0..self.items().len(),
            recommendations,
        };
        Ok(Applied {
            at_ms,
            advance,
            rewritten_buckets: Some(rewritten),
        })
    }
}
