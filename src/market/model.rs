//! The marketplace model: entity flows over supply state, driven by seasonal arrivals.
//!
//! Streams are linked by flows, not by independent counters. A search may become a booking
//! request; the request waits for a tutor and is confirmed, declined or expires on a timer that
//! a confirmation cancels; confirmed bookings become lessons that start, may be a no-show,
//! complete, are charged and rated; failures and poor lessons raise tickets, refunds and churn.
//! Tutor supply is state (who is online, per subject), so cutting supply raises expirations
//! downstream with no modifier on the expiry stream.
//!
//! Randomness: each source stream draws its arrival times from its own generator, and each flow
//! (search, booking, session, payment, support, marketing, tutor, platform, supply) draws its
//! decisions from its own, all keyed by name. A stream that the flows do not know adds its own
//! generator and leaves every other draw unchanged.
//!
//! Nothing here does IO or reads the wall clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::calendar::{growth_factor, DayTable, Epoch};
use super::catalog::{Catalog, GaugeMetric, Origin, StreamId};
use super::director::{
    compose, InstanceKind, Phase, PlannedInstance, RecordKind, StreamEffect, TimelineRecord,
    SETTLE_STEP_MS,
};
use super::payload::{
    Booking, GaugeDetail, Payload, Reason, StreamEvent, AD_CHANNELS, CAMPAIGNS, ENDPOINTS,
    HTTP_STATUSES, PAGES, SERVICES, SIGNUP_CHANNELS,
};
use super::roles::Role;
use crate::engine::{
    Context, Model, RandomStream, Sink, TimerHandle, VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR,
    MS_PER_MINUTE, MS_PER_SECOND,
};

/// Multipliers on the model's levers. All 1.0 means the catalog's baseline marketplace;
/// scenarios move them. Changing a lever never rebuilds the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Levers {
    /// Student demand per subject (catalog subject order).
    pub demand_by_subject: Vec<f64>,
    /// Rate at which tutors come online, per subject.
    pub supply_by_subject: Vec<f64>,
    pub payment_failure: f64,
    pub api_errors: f64,
    pub app_crashes: f64,
    pub support_staffing: f64,
    pub ad_spend: f64,
    /// Share of 1-2 star ratings.
    pub low_ratings: f64,
    /// Share of responses that accept.
    pub tutor_accept: f64,
}

impl Levers {
    pub fn neutral(n_subjects: usize) -> Self {
        Levers {
            demand_by_subject: vec![1.0; n_subjects],
            supply_by_subject: vec![1.0; n_subjects],
            payment_failure: 1.0,
            api_errors: 1.0,
            app_crashes: 1.0,
            support_staffing: 1.0,
            ad_spend: 1.0,
            low_ratings: 1.0,
            tutor_accept: 1.0,
        }
    }
}

/// Scheduled happenings inside the model. Only the model creates and reads these.
#[derive(Debug, Clone)]
pub enum MarketEvent {
    /// The arrival process of a source stream: an arrival, or an hour boundary where its
    /// piecewise-constant rate changes (exponential gaps are memoryless, so redrawing there
    /// is exact).
    Source {
        stream: StreamId,
        arrival: bool,
    },
    Gauge {
        stream: StreamId,
    },
    /// Emit a ready payload on a stream, then let the flows react to it.
    Emit {
        stream: StreamId,
        payload: Payload,
    },
    /// A tutor of `subject` comes online (or the rate's hour boundary, as for sources).
    SupplyOnline {
        subject: u8,
        arrival: bool,
    },
    TutorOffline {
        tutor: u32,
    },
    BookingResponse {
        booking: u64,
        accept: bool,
    },
    BookingExpiry {
        booking: u64,
    },
    SessionStart {
        booking: Booking,
    },
    PayoutRun,
    /// Every five minutes, the agents on shift resolve the oldest waiting tickets.
    SupportShift,
    /// Recompute levers while an instance settles, and record lifecycle transitions.
    LeverTick,
}

/// How often support agents take tickets from the queue.
const SUPPORT_SHIFT_MS: u64 = 5 * MS_PER_MINUTE;

/// Stream ids of the streams the flows emit into (present in every valid catalog).
#[derive(Debug, Clone, Copy)]
struct FlowStreams {
    signup: StreamId,
    search: StreamId,
    profile_viewed: StreamId,
    message: StreamId,
    favorite: StreamId,
    subscription: StreamId,
    churn_risk: StreamId,
    account_deleted: StreamId,
    tutor_onboarded: StreamId,
    availability_set: StreamId,
    availability_cleared: StreamId,
    payout: StreamId,
    tutor_churned: StreamId,
    requested: StreamId,
    confirmed: StreamId,
    declined: StreamId,
    expired: StreamId,
    cancelled: StreamId,
    rescheduled: StreamId,
    started: StreamId,
    completed: StreamId,
    noshow_student: StreamId,
    noshow_tutor: StreamId,
    rating: StreamId,
    review_flagged: StreamId,
    charge_attempted: StreamId,
    charge_succeeded: StreamId,
    charge_failed: StreamId,
    refund: StreamId,
    chargeback: StreamId,
    ticket_created: StreamId,
    ticket_resolved: StreamId,
    ticket_escalated: StreamId,
    csat: StreamId,
    click: StreamId,
    email_opened: StreamId,
    referral: StreamId,
}

impl FlowStreams {
    fn resolve(catalog: &Catalog) -> Result<Self, String> {
        let id = |name: &str| {
            catalog
                .stream(name)
                .map(|s| s.id)
                .ok_or_else(|| format!("catalog lacks stream `{name}`"))
        };
        Ok(FlowStreams {
            signup: id("customer.signup.completed")?,
            search: id("customer.tutor.search")?,
            profile_viewed: id("customer.profile.viewed")?,
            message: id("customer.message.sent")?,
            favorite: id("customer.favorite.added")?,
            subscription: id("customer.subscription.started")?,
            churn_risk: id("customer.churn.risk_flagged")?,
            account_deleted: id("customer.account.deleted")?,
            tutor_onboarded: id("tutor.onboarding.completed")?,
            availability_set: id("tutor.availability.set")?,
            availability_cleared: id("tutor.availability.cleared")?,
            payout: id("tutor.payout.sent")?,
            tutor_churned: id("tutor.churned")?,
            requested: id("session.booking.requested")?,
            confirmed: id("session.booking.confirmed")?,
            declined: id("session.booking.declined")?,
            expired: id("session.booking.expired")?,
            cancelled: id("session.booking.cancelled")?,
            rescheduled: id("session.booking.rescheduled")?,
            started: id("session.started")?,
            completed: id("session.completed")?,
            noshow_student: id("session.noshow.student")?,
            noshow_tutor: id("session.noshow.tutor")?,
            rating: id("session.rating.submitted")?,
            review_flagged: id("session.review.flagged")?,
            charge_attempted: id("payment.charge.attempted")?,
            charge_succeeded: id("payment.charge.succeeded")?,
            charge_failed: id("payment.charge.failed")?,
            refund: id("payment.refund.issued")?,
            chargeback: id("payment.chargeback.opened")?,
            ticket_created: id("support.ticket.created")?,
            ticket_resolved: id("support.ticket.resolved")?,
            ticket_escalated: id("support.ticket.escalated")?,
            csat: id("support.csat.submitted")?,
            click: id("marketing.campaign.click")?,
            email_opened: id("marketing.email.opened")?,
            referral: id("marketing.referral.sent")?,
        })
    }
}

/// One generator per flow, keyed by the flow's name.
#[derive(Debug, Clone)]
struct FlowRandom {
    search: RandomStream,
    booking: RandomStream,
    session: RandomStream,
    payment: RandomStream,
    support: RandomStream,
    marketing: RandomStream,
    tutor: RandomStream,
    platform: RandomStream,
    supply: RandomStream,
}

impl FlowRandom {
    fn new(seed: u64) -> Self {
        let stream = |name: &str| RandomStream::for_name(seed, &format!("flow:{name}"));
        FlowRandom {
            search: stream("search"),
            booking: stream("booking"),
            session: stream("session"),
            payment: stream("payment"),
            support: stream("support"),
            marketing: stream("marketing"),
            tutor: stream("tutor"),
            platform: stream("platform"),
            supply: stream("supply"),
        }
    }
}

/// Arrival state of one stream (used by sources and gauges).
#[derive(Debug, Clone)]
struct StreamState {
    arrivals: RandomStream,
    noise: RandomStream,
    /// Per-day noise factors, drawn in day order so a day's factor never depends on run length.
    day_noise: Vec<f64>,
    generic_count: u64,
    /// The source rate for the current wall hour, valid before `rate_valid_until`.
    rate_per_hour: f64,
    rate_valid_until: VirtualTimeMs,
    /// The scheduled next arrival (or hour boundary), so a scenario can redraw it at once.
    pending: Option<TimerHandle>,
}

#[derive(Debug, Clone)]
struct Tutor {
    subject: u8,
    online: bool,
    active: bool,
    /// Position in its subject's online or offline list.
    list_index: u32,
    unpaid_cents: u64,
    unpaid_sessions: u32,
}

#[derive(Debug, Clone, Default)]
struct SubjectSupply {
    online: Vec<u32>,
    offline: Vec<u32>,
    open_requests: u32,
    /// The scheduled next come-online arrival (or hour boundary).
    pending: Option<TimerHandle>,
}

#[derive(Debug, Clone)]
struct OpenRequest {
    booking: Booking,
    expiry: TimerHandle,
}

/// Aggregate counters the model keeps for gauges, tests and the inspector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCounters {
    pub open_requests: u64,
    pub open_tickets: u64,
    pub tutors_online: u64,
    pub tutors_active: u64,
    pub customers: u64,
}

/// The marketplace world: state plus the flows that change it.
#[derive(Clone)]
pub struct Marketplace {
    catalog: Arc<Catalog>,
    days: DayTable,
    /// Calendar and growth switched off (see [`Marketplace::with_neutral_season`]).
    neutral_season: bool,
    ids: FlowStreams,
    roles: Vec<Role>,
    streams: Vec<StreamState>,
    random: FlowRandom,
    levers: Levers,
    /// Subject choice weights: demand share × demand lever.
    subject_weights: Vec<f64>,
    tutors: Vec<Tutor>,
    supply: Vec<SubjectSupply>,
    open_requests: HashMap<u64, OpenRequest>,
    customers: u32,
    next_booking: u64,
    next_payment: u64,
    next_ticket: u64,
    /// Tickets waiting for an agent, oldest first.
    ticket_queue: VecDeque<Payload>,
    /// Whether a `SupportShift` is pending (it stops when arrivals close and the queue is empty).
    support_shift_scheduled: bool,
    deploy_version: u32,
    /// When false, arrival processes and periodic jobs stop rescheduling, so the queue drains.
    arrivals_open: bool,
    impression_stream: Option<StreamId>,
    page_view_stream: Option<StreamId>,
    /// Scenario effects on each stream (neutral unless a scenario modifies it).
    stream_effects: Vec<StreamEffect>,
    control: ControlState,
}

/// The instances that took effect, in order, and what happened to them. Instances change as
/// the run goes (a stop brings `active_until` forward, a reset cancels).
#[derive(Debug, Clone, Default)]
struct ControlState {
    instances: Vec<PlannedInstance>,
    last_phase: Vec<Phase>,
    records: Vec<TimelineRecord>,
    /// The seed's policy: starting a scenario stops the one running.
    one_at_a_time: bool,
}

impl Marketplace {
    pub fn new(catalog: Arc<Catalog>, seed: u64, epoch: Epoch) -> Result<Self, String> {
        let ids = FlowStreams::resolve(&catalog)?;
        let roles = catalog.streams.iter().map(|s| s.role).collect();
        let streams = catalog
            .streams
            .iter()
            .map(|s| StreamState {
                arrivals: RandomStream::for_name(seed, &format!("stream:{}", s.name)),
                noise: RandomStream::for_name(seed, &format!("noise:{}", s.name)),
                day_noise: Vec::new(),
                generic_count: 0,
                rate_per_hour: 0.0,
                rate_valid_until: 0,
                pending: None,
            })
            .collect();
        let levers = Levers::neutral(catalog.subjects.len());
        let find_role = |role: Role| {
            catalog
                .streams
                .iter()
                .find(|s| s.role == role)
                .map(|s| s.id)
        };
        let mut model = Marketplace {
            days: DayTable::new(epoch, &catalog.calendar),
            neutral_season: false,
            ids,
            roles,
            streams,
            random: FlowRandom::new(seed),
            subject_weights: Vec::new(),
            tutors: Vec::new(),
            supply: vec![SubjectSupply::default(); catalog.subjects.len()],
            open_requests: HashMap::new(),
            customers: catalog.flows.customers_initial.max(1),
            next_booking: 1,
            next_payment: 1,
            next_ticket: 1,
            ticket_queue: VecDeque::new(),
            support_shift_scheduled: false,
            deploy_version: 1000,
            arrivals_open: true,
            stream_effects: vec![StreamEffect::NEUTRAL; catalog.streams.len()],
            control: ControlState::default(),
            impression_stream: find_role(Role::Impression),
            page_view_stream: find_role(Role::PageView),
            levers,
            catalog,
        };
        model.refresh_subject_weights();
        Ok(model)
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
    pub fn epoch(&self) -> Epoch {
        self.days.epoch()
    }
    pub fn levers(&self) -> &Levers {
        &self.levers
    }

    /// Sets the seed's one-at-a-time policy: a scenario that starts stops the one running.
    pub fn with_policy(mut self, one_at_a_time: bool) -> Self {
        self.control.one_at_a_time = one_at_a_time;
        self
    }

    /// Freezes the season: no academic calendar and no growth, so every week looks like the
    /// epoch's week in an ordinary period. Used for the history a baseline is fitted on; the
    /// scorer puts the calendar and growth back into its expectations.
    pub fn with_neutral_season(mut self) -> Self {
        self.days = DayTable::new(self.days.epoch(), &[]);
        self.neutral_season = true;
        self
    }

    /// What happened to the instances so far.
    pub fn timeline_records(&self) -> &[TimelineRecord] {
        &self.control.records
    }

    /// The instances that took effect, in order, as the run changed them.
    pub fn instances(&self) -> &[PlannedInstance] {
        &self.control.instances
    }

    /// Recomputes levers and stream effects from the activated instances at `now`, redraws the
    /// pending arrivals of every process whose rate changed (exact: gaps are memoryless), and
    /// records lifecycle transitions. Streams a scenario does not touch keep their draws.
    fn apply_control(&mut self, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        let active = self
            .control
            .instances
            .iter()
            .map(|planned| &planned.instance);
        let (levers, effects) = compose(
            active,
            now,
            self.catalog.subjects.len(),
            self.catalog.streams.len(),
        );
        let old_supply = self.levers.supply_by_subject.clone();
        self.levers = levers;
        self.stream_effects = effects;
        self.refresh_subject_weights();
        for index in 0..self.catalog.streams.len() {
            let stream = StreamId(index as u16);
            if !matches!(self.catalog.streams[index].origin, Origin::Source { .. }) {
                continue;
            }
            let state = &self.streams[index];
            if state.rate_valid_until <= now || !self.arrivals_open {
                continue; // Recomputed at its next event anyway.
            }
            let cached = state.rate_per_hour;
            if self.source_rate_per_hour(stream, now) != cached {
                if let Some(pending) = self.streams[index].pending.take() {
                    context.cancel(pending);
                }
                self.streams[index].rate_valid_until = 0;
                self.schedule_source(stream, context);
            }
        }
        for (subject, old) in old_supply.iter().enumerate() {
            if *old != self.levers.supply_by_subject[subject] && self.arrivals_open {
                if let Some(pending) = self.supply[subject].pending.take() {
                    context.cancel(pending);
                }
                self.schedule_supply(subject as u8, context);
            }
        }
        let mut next_tick: Option<VirtualTimeMs> = None;
        for index in 0..self.control.instances.len() {
            let instance = &self.control.instances[index].instance;
            let phase = instance.phase(now);
            if phase != self.control.last_phase[index] {
                self.control.last_phase[index] = phase;
                self.control.records.push(TimelineRecord {
                    time: now,
                    kind: RecordKind::Phase {
                        instance: index,
                        phase,
                    },
                });
            }
            let due = match phase {
                Phase::Active => Some(instance.active_until),
                Phase::Settling => {
                    let steps_done = (now - instance.active_until) / SETTLE_STEP_MS;
                    Some(
                        (instance.active_until + (steps_done + 1) * SETTLE_STEP_MS)
                            .min(instance.settled_at()),
                    )
                }
                Phase::Pending | Phase::Settled => None,
            };
            next_tick = match (next_tick, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(time) = next_tick {
            context.schedule_at(time.max(now + 1), MarketEvent::LeverTick);
        }
    }

    /// Puts `planned` into effect now; returns its index (instances are numbered in the order
    /// they take effect). Under the one-at-a-time policy a scenario first stops the others.
    pub fn activate(
        &mut self,
        planned: PlannedInstance,
        context: &mut Context<'_, MarketEvent>,
    ) -> usize {
        let now = context.now();
        let kind = planned.kind;
        if kind == InstanceKind::Scenario && self.control.one_at_a_time {
            self.settle_active(now, |other| other.kind == InstanceKind::Scenario);
        }
        let index = self.control.instances.len();
        self.control.instances.push(planned);
        self.control.last_phase.push(Phase::Pending);
        if kind == InstanceKind::Event {
            self.control.records.push(TimelineRecord {
                time: now,
                kind: RecordKind::EventFired { instance: index },
            });
        }
        self.apply_control(context);
        index
    }

    /// Starts settling, now, every active instance labelled `label`.
    pub fn stop(&mut self, label: &str, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        self.control.records.push(TimelineRecord {
            time: now,
            kind: RecordKind::Stop {
                label: label.to_string(),
            },
        });
        self.settle_active(now, |other| other.label == label);
        self.apply_control(context);
    }

    /// Cancels every instance that took effect so far.
    pub fn reset(&mut self, context: &mut Context<'_, MarketEvent>) {
        self.control.records.push(TimelineRecord {
            time: context.now(),
            kind: RecordKind::Reset,
        });
        for planned in &mut self.control.instances {
            planned.instance.cancelled = true;
        }
        self.apply_control(context);
    }

    /// Starts settling, now, every instance that is active and matches `which`.
    fn settle_active(&mut self, now: VirtualTimeMs, which: impl Fn(&PlannedInstance) -> bool) {
        for planned in &mut self.control.instances {
            if which(planned) && planned.instance.phase(now) == Phase::Active {
                planned.instance.active_until = now;
            }
        }
    }

    /// Stops every arrival process and periodic job; flows already under way run to the end.
    pub fn close_arrivals(&mut self) {
        self.arrivals_open = false;
    }

    pub fn counters(&self) -> ModelCounters {
        ModelCounters {
            open_requests: self.open_requests.len() as u64,
            open_tickets: self.ticket_queue.len() as u64,
            tutors_online: self.supply.iter().map(|s| s.online.len() as u64).sum(),
            tutors_active: self.tutors.iter().filter(|t| t.active).count() as u64,
            customers: self.customers as u64,
        }
    }

    fn refresh_subject_weights(&mut self) {
        self.subject_weights = self
            .catalog
            .subjects
            .iter()
            .zip(&self.levers.demand_by_subject)
            .map(|(subject, lever)| subject.demand_share * lever)
            .collect();
    }

    /// Demand lever averaged over subjects by their shares.
    fn overall_demand_lever(&self) -> f64 {
        let total_share: f64 = self.catalog.subjects.iter().map(|s| s.demand_share).sum();
        if total_share <= 0.0 {
            return 1.0;
        }
        self.subject_weights.iter().sum::<f64>() / total_share
    }

    /// Seasonal multiplier of `profile` at `t`: hour of day × day of week × academic calendar.
    fn profile_multiplier(&mut self, profile: usize, t: VirtualTimeMs) -> f64 {
        let facts = self.days.facts(t);
        let hour = self.days.epoch().hour_of_day(t);
        let p = &self.catalog.profiles[profile];
        let academic = if p.academic {
            facts.academic_factor
        } else {
            1.0
        };
        p.hourly[hour] * p.weekly[facts.weekday] * academic
    }

    /// Compound growth at the start of `t`'s wall hour: rates stay constant within an hour, so
    /// recomputing a rate mid-hour gives the cached value unless a lever moved.
    fn growth(&self, t: VirtualTimeMs) -> f64 {
        if self.neutral_season {
            return 1.0;
        }
        growth_factor(self.catalog.growth_per_month, self.days.epoch(), t)
    }

    fn day_noise(&mut self, stream: StreamId, t: VirtualTimeMs) -> f64 {
        let day = self.days.day_index(t);
        let sigma = self.catalog.daily_noise;
        let state = &mut self.streams[stream.index()];
        while state.day_noise.len() <= day {
            let z = state.noise.standard_normal();
            // Mean-one log-normal factor.
            state
                .day_noise
                .push((sigma * z - sigma * sigma / 2.0).exp());
        }
        state.day_noise[day]
    }

    /// Expected events per hour of a source stream at `t` (constant within the wall hour),
    /// after scenario effects on the stream.
    pub fn source_rate_per_hour(&mut self, stream: StreamId, t: VirtualTimeMs) -> f64 {
        let base = self.base_source_rate_per_hour(stream, t);
        self.stream_effects[stream.index()].apply(base)
    }

    /// The rate before stream modifiers (levers included).
    fn base_source_rate_per_hour(&mut self, stream: StreamId, t: VirtualTimeMs) -> f64 {
        let Origin::Source { per_hour, profile } = self.catalog.streams[stream.index()].origin
        else {
            return 0.0;
        };
        let role = self.roles[stream.index()];
        let lever = match role {
            Role::Search | Role::PageView | Role::ChatStarted => self.overall_demand_lever(),
            Role::Impression => self.levers.ad_spend,
            Role::ApiError => self.levers.api_errors,
            Role::AppCrash => self.levers.app_crashes,
            _ => 1.0,
        };
        let growth = match role {
            Role::Deploy | Role::TutorSignup | Role::TutorProfileUpdated => 1.0,
            _ => self.growth(t),
        };
        per_hour * self.profile_multiplier(profile, t) * self.day_noise(stream, t) * growth * lever
    }

    /// Schedules the next event of a piecewise-constant Poisson process whose rate at `now`
    /// is `rate_per_hour`: an arrival if one falls inside the current wall hour, otherwise a
    /// boundary event at the hour's end where the caller redraws with the new rate.
    fn next_arrival(
        epoch: Epoch,
        random: &mut RandomStream,
        now: VirtualTimeMs,
        rate_per_hour: f64,
    ) -> (VirtualTimeMs, bool) {
        let hour_end = epoch.next_hour_start(now);
        if rate_per_hour <= 0.0 {
            return (hour_end, false);
        }
        let gap_ms = random.exponential(MS_PER_HOUR as f64 / rate_per_hour);
        let candidate = now as f64 + gap_ms;
        if candidate < hour_end as f64 {
            (candidate as VirtualTimeMs, true)
        } else {
            (hour_end, false)
        }
    }

    fn schedule_source(&mut self, stream: StreamId, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        let epoch = self.days.epoch();
        // The rate is piecewise constant per wall hour; compute it once per hour.
        let rate = if now < self.streams[stream.index()].rate_valid_until {
            self.streams[stream.index()].rate_per_hour
        } else {
            let rate = self.source_rate_per_hour(stream, now);
            let state = &mut self.streams[stream.index()];
            state.rate_per_hour = rate;
            state.rate_valid_until = epoch.next_hour_start(now);
            rate
        };
        // The invariant that keeps the queue bounded: a rate is finite and never negative (an
        // infinite rate draws zero gaps, so arrivals pile up at one instant without end).
        assert!(
            rate.is_finite() && rate >= 0.0,
            "source rate of stream {} at {now} ms is {rate}",
            stream.index()
        );
        let state = &mut self.streams[stream.index()];
        let (time, arrival) = Self::next_arrival(epoch, &mut state.arrivals, now, rate);
        state.pending = Some(context.schedule_at(time, MarketEvent::Source { stream, arrival }));
    }

    fn supply_rate_per_hour(&mut self, subject: u8, t: VirtualTimeMs) -> f64 {
        let offline = self.supply[subject as usize].offline.len() as f64;
        let profile = self.catalog.supply_profile;
        offline
            * self.catalog.flows.tutor_online_rate_per_hour
            * self.profile_multiplier(profile, t)
            * self.levers.supply_by_subject[subject as usize]
    }

    fn schedule_supply(&mut self, subject: u8, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        let rate = self.supply_rate_per_hour(subject, now);
        let epoch = self.days.epoch();
        let (time, arrival) = Self::next_arrival(epoch, &mut self.random.supply, now, rate);
        self.supply[subject as usize].pending =
            Some(context.schedule_at(time, MarketEvent::SupplyOnline { subject, arrival }));
    }

    fn emit<S: Sink<StreamEvent>>(
        &mut self,
        stream: StreamId,
        payload: Payload,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        self.react(stream, &payload, context);
        sink.accept(&StreamEvent {
            stream,
            time: context.now(),
            payload,
        });
    }

    fn emit_later(
        context: &mut Context<'_, MarketEvent>,
        delay_ms: u64,
        stream: StreamId,
        payload: Payload,
    ) {
        context.schedule_after(delay_ms, MarketEvent::Emit { stream, payload });
    }

    fn random_customer(random: &mut RandomStream, customers: u32) -> u32 {
        random.below(customers as u64) as u32
    }

    /// A tutor of `subject` to show or book: an online one when any is online.
    fn pick_tutor(&self, random: &mut RandomStream, subject: u8) -> u32 {
        let supply = &self.supply[subject as usize];
        let pool = if supply.online.is_empty() {
            &supply.offline
        } else {
            &supply.online
        };
        if pool.is_empty() {
            0
        } else {
            pool[random.below(pool.len() as u64) as usize]
        }
    }

    fn visibility(&self, subject: u8) -> f64 {
        let online = self.supply[subject as usize].online.len() as f64;
        online / (online + self.catalog.flows.supply_visibility_half)
    }

    fn new_search(&mut self, customer: u32, now: VirtualTimeMs) -> Payload {
        let random = &mut self.random.search;
        let subject = random.weighted_index(&self.subject_weights) as u8;
        let lead_hours = random.between(2, 72);
        let window_start = self.days.epoch().next_hour_start(now) + lead_hours * MS_PER_HOUR;
        Payload::Search {
            customer,
            subject,
            window_start,
            window_hours: random.between(2, 6) as u8,
        }
    }

    /// A payload for an arrival of a source stream.
    fn source_payload(&mut self, stream: StreamId, now: VirtualTimeMs) -> Payload {
        let customers = self.customers;
        match self.roles[stream.index()] {
            Role::Search => {
                let customer = Self::random_customer(&mut self.random.search, customers);
                self.new_search(customer, now)
            }
            Role::Signup => {
                self.customers += 1;
                let channel = self.random.marketing.below(SIGNUP_CHANNELS.len() as u64) as u8;
                Payload::Signup {
                    customer: self.customers - 1,
                    channel,
                }
            }
            Role::TutorSignup => {
                let random = &mut self.random.tutor;
                let subject = random.weighted_index(&self.subject_weights) as u8;
                // Applicants get their tutor id when they join the pool; until then they are
                // numbered from 9000 so the two never collide in a readable export.
                Payload::Tutor {
                    tutor: 9_000 + random.below(1_000) as u32,
                    subject,
                }
            }
            Role::TutorProfileUpdated => {
                let random = &mut self.random.tutor;
                let tutor = random.below(self.tutors.len().max(1) as u64) as u32;
                let subject = self.tutors.get(tutor as usize).map_or(0, |t| t.subject);
                Payload::Tutor { tutor, subject }
            }
            Role::ChatStarted => Payload::Chat {
                customer: Self::random_customer(&mut self.random.support, customers),
            },
            Role::Impression => {
                let random = &mut self.random.marketing;
                Payload::Campaign {
                    campaign: random.below(CAMPAIGNS.len() as u64) as u8,
                    channel: random.below(AD_CHANNELS.len() as u64) as u8,
                }
            }
            Role::EmailSent => {
                let random = &mut self.random.marketing;
                Payload::Email {
                    customer: Self::random_customer(random, customers),
                    campaign: random.below(CAMPAIGNS.len() as u64) as u8,
                }
            }
            Role::PageView => {
                let random = &mut self.random.platform;
                Payload::PageView {
                    customer: Self::random_customer(random, customers),
                    page: random.below(PAGES.len() as u64) as u8,
                }
            }
            Role::ApiError => {
                let random = &mut self.random.platform;
                Payload::ApiError {
                    endpoint: random.below(ENDPOINTS.len() as u64) as u8,
                    status: random.below(HTTP_STATUSES.len() as u64) as u8,
                }
            }
            Role::AppCrash => {
                let random = &mut self.random.platform;
                Payload::Crash {
                    platform: random.below(2) as u8,
                    version: 120 + random.below(5) as u16,
                }
            }
            Role::Deploy => {
                self.deploy_version += 1;
                Payload::Deploy {
                    service: self.random.platform.below(SERVICES.len() as u64) as u8,
                    version: self.deploy_version,
                }
            }
            _ => {
                // Streams the flows do not know draw nothing from the flow generators.
                let state = &mut self.streams[stream.index()];
                state.generic_count += 1;
                Payload::Generic {
                    id: state.generic_count,
                }
            }
        }
    }

    fn gauge_payload(
        &mut self,
        metric: GaugeMetric,
        now: VirtualTimeMs,
        stream: StreamId,
    ) -> Payload {
        match metric {
            GaugeMetric::TutorsOnline => {
                let counts: Box<[u32]> =
                    self.supply.iter().map(|s| s.online.len() as u32).collect();
                let total: u32 = counts.iter().sum();
                Payload::Gauge {
                    value: total as f64,
                    detail: GaugeDetail::BySubject(counts),
                }
            }
            GaugeMetric::SupportQueueDepth => Payload::Gauge {
                value: self.ticket_queue.len() as f64,
                detail: GaugeDetail::None,
            },
            GaugeMetric::ApiLatencyMs => {
                let load = match self.page_view_stream {
                    Some(page_views) => {
                        let base = match self.catalog.streams[page_views.index()].origin {
                            Origin::Source { per_hour, .. } if per_hour > 0.0 => per_hour,
                            _ => 1.0,
                        };
                        self.source_rate_per_hour(page_views, now) / base
                    }
                    None => 1.0,
                };
                let z = self.streams[stream.index()].arrivals.standard_normal();
                let error_pressure = 1.0 + 0.5 * (self.levers.api_errors - 1.0).max(0.0);
                let mean = self.catalog.flows.api_latency_ms
                    * (0.8 + 0.25 * load)
                    * error_pressure
                    * (0.08 * z).exp();
                let spread = 1.8 + 0.2 * self.streams[stream.index()].arrivals.uniform();
                Payload::Gauge {
                    value: mean,
                    detail: GaugeDetail::P95(mean * spread),
                }
            }
            GaugeMetric::AdSpend => {
                // Spend follows the impression rate at a $4 CPM, with a little pacing noise.
                let impressions = match self.impression_stream {
                    Some(stream) => self.source_rate_per_hour(stream, now),
                    None => 0.0,
                };
                let z = self.streams[stream.index()].arrivals.standard_normal();
                Payload::Gauge {
                    value: impressions * 4.0 / 1_000.0 * (1.0 + 0.05 * z).max(0.0),
                    detail: GaugeDetail::None,
                }
            }
        }
    }

    fn add_tutor(&mut self, subject: u8, online: bool) -> u32 {
        let id = self.tutors.len() as u32;
        let supply = &mut self.supply[subject as usize];
        let list = if online {
            &mut supply.online
        } else {
            &mut supply.offline
        };
        list.push(id);
        self.tutors.push(Tutor {
            subject,
            online,
            active: true,
            list_index: (list.len() - 1) as u32,
            unpaid_cents: 0,
            unpaid_sessions: 0,
        });
        id
    }

    /// Moves a tutor between its subject's online and offline lists in O(1).
    fn set_online(&mut self, tutor: u32, online: bool) {
        let (subject, was_online, index) = {
            let t = &self.tutors[tutor as usize];
            (t.subject as usize, t.online, t.list_index as usize)
        };
        if was_online == online {
            return;
        }
        let supply = &mut self.supply[subject];
        let (from, to) = if online {
            (&mut supply.offline, &mut supply.online)
        } else {
            (&mut supply.online, &mut supply.offline)
        };
        from.swap_remove(index);
        if let Some(&moved) = from.get(index) {
            self.tutors[moved as usize].list_index = index as u32;
        }
        to.push(tutor);
        let new_index = (to.len() - 1) as u32;
        let t = &mut self.tutors[tutor as usize];
        t.online = online;
        t.list_index = new_index;
    }

    /// Takes a tutor out of the pool (it finishes any online stint, then never returns).
    fn retire_tutor(&mut self, tutor: u32) {
        let Some(t) = self.tutors.get(tutor as usize) else {
            return;
        };
        if !t.active {
            return;
        }
        let (subject, online, index) = (t.subject as usize, t.online, t.list_index as usize);
        self.tutors[tutor as usize].active = false;
        if !online {
            let offline = &mut self.supply[subject].offline;
            offline.swap_remove(index);
            if let Some(&moved) = offline.get(index) {
                self.tutors[moved as usize].list_index = index as u32;
            }
        }
    }

    fn bring_online(&mut self, tutor: u32, context: &mut Context<'_, MarketEvent>) -> Payload {
        self.set_online(tutor, true);
        let stint = self
            .random
            .supply
            .exponential(self.catalog.flows.tutor_stint_mean as f64);
        context.schedule_after(
            stint as u64 + MS_PER_MINUTE,
            MarketEvent::TutorOffline { tutor },
        );
        Payload::Tutor {
            tutor,
            subject: self.tutors[tutor as usize].subject,
        }
    }

    /// A start time for a lesson booked now: after a lead time, between 08:00 and 22:00.
    fn lesson_start(&mut self, now: VirtualTimeMs) -> VirtualTimeMs {
        let epoch = self.days.epoch();
        let random = &mut self.random.booking;
        let lead =
            MS_PER_HOUR + random.exponential(self.catalog.flows.booking_lead_mean as f64) as u64;
        let mut start = now + lead;
        let hour = epoch.hour_of_day(start);
        if !(8..22).contains(&hour) {
            start = epoch.next_time_of_day(start, 8) + random.below(12) * MS_PER_HOUR;
        }
        // Lessons start on the quarter hour.
        let quarter = 15 * MS_PER_MINUTE;
        let absolute = epoch.absolute_ms(start);
        start + (quarter - absolute.rem_euclid(quarter as i64) as u64) % quarter
    }

    fn new_booking(&mut self, customer: u32, subject: u8, now: VirtualTimeMs) -> Booking {
        let mut random = self.random.booking.clone();
        let tutor = self.pick_tutor(&mut random, subject);
        let flows = &self.catalog.flows;
        let minutes = flows.session_minutes[random.weighted_index(&flows.session_minutes_weights)];
        let price_per_hour = self.catalog.subjects[subject as usize].price_per_hour;
        let price_cents = (price_per_hour * minutes as f64 / 60.0 * 100.0).round() as u32;
        self.random.booking = random;
        let start = self.lesson_start(now);
        let id = self.next_booking;
        self.next_booking += 1;
        Booking {
            id,
            customer,
            tutor,
            subject,
            start,
            minutes,
            price_cents,
        }
    }

    fn new_ticket(&mut self, customer: u32, reason: Reason) -> Payload {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        Payload::Ticket {
            ticket,
            customer,
            reason,
        }
    }

    /// The flows: what follows from an event that has just been emitted.
    fn react(
        &mut self,
        stream: StreamId,
        payload: &Payload,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let now = context.now();
        let ids = self.ids;
        let catalog = Arc::clone(&self.catalog);
        let flows = &catalog.flows;
        match (self.roles[stream.index()], payload) {
            (
                Role::Search,
                Payload::Search {
                    customer, subject, ..
                },
            ) => {
                let (customer, subject) = (*customer, *subject);
                let visibility = self.visibility(subject);
                let views_mean = flows.profile_views_per_search * visibility;
                let search_to_request = flows.search_to_request;
                let mut random = self.random.search.clone();
                let views = random.geometric(views_mean);
                for _ in 0..views {
                    let tutor = self.pick_tutor(&mut random, subject);
                    let delay = random.between(5, 120) * MS_PER_SECOND;
                    Self::emit_later(
                        context,
                        delay,
                        ids.profile_viewed,
                        Payload::CustomerTutor {
                            customer,
                            tutor,
                            subject,
                        },
                    );
                }
                let requests = random.chance(search_to_request * visibility);
                let delay =
                    (random.exponential(4.0 * MS_PER_MINUTE as f64)) as u64 + 30 * MS_PER_SECOND;
                self.random.search = random;
                if requests {
                    // The booking is created when the request is made, so its id and details
                    // are drawn now and carried along.
                    let booking = self.new_booking(customer, subject, now + delay);
                    Self::emit_later(context, delay, ids.requested, Payload::Booking(booking));
                }
            }
            (
                Role::ProfileView,
                Payload::CustomerTutor {
                    customer,
                    tutor,
                    subject,
                },
            ) => {
                let random = &mut self.random.search;
                if random.chance(flows.view_to_message) {
                    let delay = random.between(30, 600) * MS_PER_SECOND;
                    Self::emit_later(context, delay, ids.message, payload.clone());
                }
                if random.chance(flows.view_to_favorite) {
                    let delay = random.between(5, 60) * MS_PER_SECOND;
                    Self::emit_later(
                        context,
                        delay,
                        ids.favorite,
                        Payload::CustomerTutor {
                            customer: *customer,
                            tutor: *tutor,
                            subject: *subject,
                        },
                    );
                }
            }
            (Role::BookingRequested, Payload::Booking(booking)) => {
                let supply = &mut self.supply[booking.subject as usize];
                supply.open_requests += 1;
                let online = supply.online.len() as f64;
                let open = supply.open_requests as f64;
                let effective =
                    online / (1.0 + open / (online * flows.requests_per_tutor).max(1.0));
                let expiry = context.schedule_after(
                    flows.request_expiry,
                    MarketEvent::BookingExpiry {
                        booking: booking.id,
                    },
                );
                let random = &mut self.random.booking;
                if effective > 0.0 {
                    let mean_response_ms =
                        flows.response_tutor_minutes / effective * MS_PER_MINUTE as f64;
                    let response = random.exponential(mean_response_ms) as u64;
                    let accept = random.chance(flows.tutor_accept * self.levers.tutor_accept);
                    if response < flows.request_expiry {
                        context.schedule_after(
                            response,
                            MarketEvent::BookingResponse {
                                booking: booking.id,
                                accept,
                            },
                        );
                    }
                }
                self.open_requests.insert(
                    booking.id,
                    OpenRequest {
                        booking: *booking,
                        expiry,
                    },
                );
            }
            (Role::BookingConfirmed, Payload::Booking(booking)) => {
                let random = &mut self.random.session;
                let until_start = booking.start.saturating_sub(now);
                let roll = random.uniform();
                if roll < flows.cancel_before_start {
                    let at = random.below(until_start.max(1));
                    Self::emit_later(context, at, ids.cancelled, payload.clone());
                } else if roll < flows.cancel_before_start + flows.reschedule_before_start {
                    let at = random.below(until_start.max(1));
                    let moved = Booking {
                        start: booking.start + MS_PER_DAY,
                        ..*booking
                    };
                    Self::emit_later(context, at, ids.rescheduled, Payload::Booking(moved));
                } else {
                    context.schedule_at(
                        booking.start,
                        MarketEvent::SessionStart { booking: *booking },
                    );
                }
            }
            (Role::BookingRescheduled, Payload::Booking(booking)) => {
                context.schedule_at(
                    booking.start,
                    MarketEvent::SessionStart { booking: *booking },
                );
            }
            (Role::SessionStarted, Payload::Booking(booking)) => {
                let end = booking.start.max(now) + booking.minutes as u64 * MS_PER_MINUTE;
                context.schedule_at(
                    end,
                    MarketEvent::Emit {
                        stream: ids.completed,
                        payload: payload.clone(),
                    },
                );
            }
            (Role::SessionCompleted, Payload::Booking(booking)) => {
                let payment = self.next_payment;
                self.next_payment += 1;
                Self::emit_later(
                    context,
                    30 * MS_PER_SECOND,
                    ids.charge_attempted,
                    Payload::Payment {
                        payment,
                        booking: booking.id,
                        customer: booking.customer,
                        tutor: booking.tutor,
                        amount_cents: booking.price_cents,
                    },
                );
                let random = &mut self.random.session;
                if random.chance(flows.rating_share) {
                    let low_share = (flows.low_rating_share * self.levers.low_ratings).min(1.0);
                    let stars = if random.chance(low_share) {
                        1 + random.below(2) as u8
                    } else {
                        [3, 4, 4, 5, 5, 5, 5][random.below(7) as usize]
                    };
                    let delay = MS_PER_MINUTE + random.exponential(2.0 * MS_PER_HOUR as f64) as u64;
                    Self::emit_later(
                        context,
                        delay,
                        ids.rating,
                        Payload::Rating {
                            booking: booking.id,
                            customer: booking.customer,
                            tutor: booking.tutor,
                            subject: booking.subject,
                            stars,
                            price_cents: booking.price_cents,
                        },
                    );
                }
                if random.chance(flows.subscription_after_session) {
                    let delay = random.between(5, 120) * MS_PER_MINUTE;
                    Self::emit_later(
                        context,
                        delay,
                        ids.subscription,
                        Payload::CustomerTutor {
                            customer: booking.customer,
                            tutor: booking.tutor,
                            subject: booking.subject,
                        },
                    );
                }
            }
            (Role::NoShowTutor, Payload::Booking(booking)) => {
                let random = &mut self.random.session;
                let refund = random.chance(flows.refund_after_tutor_noshow);
                let ticket = random.chance(flows.ticket_after_tutor_noshow);
                let delay = MS_PER_MINUTE * random.between(10, 180);
                if refund {
                    let payment = self.next_payment;
                    self.next_payment += 1;
                    Self::emit_later(
                        context,
                        delay,
                        ids.refund,
                        Payload::Payment {
                            payment,
                            booking: booking.id,
                            customer: booking.customer,
                            tutor: booking.tutor,
                            amount_cents: booking.price_cents,
                        },
                    );
                }
                if ticket {
                    let ticket = self.new_ticket(booking.customer, Reason::TutorNoShow);
                    Self::emit_later(context, delay / 2, ids.ticket_created, ticket);
                }
            }
            (Role::ChargeAttempted, Payload::Payment { .. }) => {
                let fails = self
                    .random
                    .payment
                    .chance((flows.payment_failure * self.levers.payment_failure).min(1.0));
                let outcome = if fails {
                    ids.charge_failed
                } else {
                    ids.charge_succeeded
                };
                Self::emit_later(context, 2 * MS_PER_SECOND, outcome, payload.clone());
            }
            (
                Role::ChargeSucceeded,
                Payload::Payment {
                    tutor,
                    amount_cents,
                    ..
                },
            ) => {
                if let Some(t) = self.tutors.get_mut(*tutor as usize) {
                    t.unpaid_cents += *amount_cents as u64;
                    t.unpaid_sessions += 1;
                }
            }
            (Role::ChargeFailed, Payload::Payment { customer, .. }) => {
                let random = &mut self.random.payment;
                let ticket = random.chance(flows.ticket_after_payment_failure);
                let churn = random.chance(flows.churn_after_payment_failure);
                let ticket_delay = random.exponential(flows.ticket_delay_mean as f64) as u64;
                let churn_delay = random.exponential(MS_PER_HOUR as f64) as u64;
                if ticket {
                    let ticket = self.new_ticket(*customer, Reason::PaymentFailed);
                    Self::emit_later(context, ticket_delay, ids.ticket_created, ticket);
                }
                if churn {
                    Self::emit_later(
                        context,
                        churn_delay,
                        ids.churn_risk,
                        Payload::CustomerReason {
                            customer: *customer,
                            reason: Reason::PaymentFailed,
                        },
                    );
                }
            }
            (
                Role::RatingSubmitted,
                Payload::Rating {
                    stars,
                    customer,
                    tutor,
                    subject,
                    ..
                },
            ) => {
                let random = &mut self.random.session;
                if *stars <= 2 {
                    Self::emit_later(
                        context,
                        10 * MS_PER_MINUTE,
                        ids.review_flagged,
                        payload.clone(),
                    );
                } else if *stars == 5 && random.chance(flows.referral_after_top_rating) {
                    let delay = random.between(1, 48) * MS_PER_HOUR;
                    Self::emit_later(
                        context,
                        delay,
                        ids.referral,
                        Payload::CustomerTutor {
                            customer: *customer,
                            tutor: *tutor,
                            subject: *subject,
                        },
                    );
                }
            }
            (
                Role::ReviewFlagged,
                Payload::Rating {
                    booking,
                    customer,
                    tutor,
                    price_cents,
                    ..
                },
            ) => {
                let random = &mut self.random.session;
                let churn = random.chance(flows.churn_after_low_rating);
                let ticket = random.chance(flows.ticket_after_low_rating);
                let refund = random.chance(flows.refund_after_low_rating);
                let chargeback = random.chance(flows.chargeback_after_low_rating);
                let tutor_churn = random.chance(flows.tutor_churn_after_low_rating);
                let delay = random.between(30, 24 * 60) * MS_PER_MINUTE;
                let (customer, tutor, booking, amount_cents) =
                    (*customer, *tutor, *booking, *price_cents);
                if churn {
                    Self::emit_later(
                        context,
                        delay,
                        ids.churn_risk,
                        Payload::CustomerReason {
                            customer,
                            reason: Reason::LowRating,
                        },
                    );
                }
                if ticket {
                    let ticket = self.new_ticket(customer, Reason::LowRating);
                    Self::emit_later(context, delay / 3, ids.ticket_created, ticket);
                }
                if refund {
                    let payment = self.next_payment;
                    self.next_payment += 1;
                    Self::emit_later(
                        context,
                        delay,
                        ids.refund,
                        Payload::Payment {
                            payment,
                            booking,
                            customer,
                            tutor,
                            amount_cents,
                        },
                    );
                }
                if chargeback {
                    let payment = self.next_payment;
                    self.next_payment += 1;
                    Self::emit_later(
                        context,
                        delay * 5,
                        ids.chargeback,
                        Payload::Payment {
                            payment,
                            booking,
                            customer,
                            tutor,
                            amount_cents,
                        },
                    );
                }
                if tutor_churn {
                    if let Some(t) = self.tutors.get(tutor as usize) {
                        let subject = t.subject;
                        Self::emit_later(
                            context,
                            delay * 2,
                            ids.tutor_churned,
                            Payload::Tutor { tutor, subject },
                        );
                    }
                }
            }
            (Role::ChurnRisk, Payload::CustomerReason { customer, reason }) => {
                let random = &mut self.random.session;
                if random.chance(flows.churn_to_deletion) {
                    let delay = random.exponential(3.0 * MS_PER_DAY as f64) as u64;
                    Self::emit_later(
                        context,
                        delay,
                        ids.account_deleted,
                        Payload::CustomerReason {
                            customer: *customer,
                            reason: *reason,
                        },
                    );
                }
            }
            (Role::TicketCreated, Payload::Ticket { .. }) => {
                // Tickets wait in a first-in, first-out queue that staffed shifts work through
                // (see `SupportShift`); a long queue makes escalation more likely.
                self.ticket_queue.push_back(payload.clone());
                if !self.support_shift_scheduled {
                    self.support_shift_scheduled = true;
                    context.schedule_after(SUPPORT_SHIFT_MS, MarketEvent::SupportShift);
                }
                let pressure = 1.0
                    + self.ticket_queue.len() as f64
                        / (flows.support_capacity as f64 * 8.0).max(1.0);
                let random = &mut self.random.support;
                if random.chance((flows.escalation_share * pressure.min(3.0)).min(1.0)) {
                    let delay = random.exponential(2.0 * MS_PER_HOUR as f64) as u64;
                    Self::emit_later(context, delay, ids.ticket_escalated, payload.clone());
                }
            }
            (Role::TicketResolved, Payload::Ticket { .. }) => {
                let random = &mut self.random.support;
                if random.chance(flows.csat_after_resolution) {
                    let delay = random.exponential(MS_PER_HOUR as f64) as u64;
                    Self::emit_later(context, delay, ids.csat, payload.clone());
                }
            }
            (Role::ChatStarted, Payload::Chat { customer }) => {
                let random = &mut self.random.support;
                if random.chance(flows.chat_to_ticket) {
                    let delay = random.between(5, 30) * MS_PER_MINUTE;
                    let ticket = self.new_ticket(*customer, Reason::Question);
                    Self::emit_later(context, delay, ids.ticket_created, ticket);
                }
            }
            (Role::AppCrash, _) | (Role::ApiError, _) => {
                let (share, reason) = if self.roles[stream.index()] == Role::AppCrash {
                    (flows.crash_to_ticket, Reason::AppCrash)
                } else {
                    (flows.api_error_to_ticket, Reason::ApiError)
                };
                let random = &mut self.random.platform;
                if random.chance(share) {
                    let customer = Self::random_customer(random, self.customers);
                    let delay = random.between(5, 60) * MS_PER_MINUTE;
                    let ticket = self.new_ticket(customer, reason);
                    Self::emit_later(context, delay, ids.ticket_created, ticket);
                }
            }
            (Role::Impression, Payload::Campaign { .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.impression_to_click) {
                    let delay = random.between(1, 20) * MS_PER_SECOND;
                    Self::emit_later(context, delay, ids.click, payload.clone());
                }
            }
            (Role::Click, Payload::Campaign { .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.click_to_signup) {
                    let delay = random.between(2, 15) * MS_PER_MINUTE;
                    self.customers += 1;
                    let customer = self.customers - 1;
                    Self::emit_later(
                        context,
                        delay,
                        ids.signup,
                        Payload::Signup {
                            customer,
                            channel: 1,
                        },
                    );
                } else if random.chance(flows.click_to_search) {
                    let delay = random.between(20, 300) * MS_PER_SECOND;
                    let customer = Self::random_customer(random, self.customers);
                    let search = self.new_search(customer, now + delay);
                    Self::emit_later(context, delay, ids.search, search);
                }
            }
            (Role::Signup, Payload::Signup { customer, .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.signup_to_search) {
                    let delay = random.between(1, 30) * MS_PER_MINUTE;
                    let search = self.new_search(*customer, now + delay);
                    Self::emit_later(context, delay, ids.search, search);
                }
            }
            (Role::EmailSent, Payload::Email { .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.email_open) {
                    let delay = random.exponential(3.0 * MS_PER_HOUR as f64) as u64;
                    Self::emit_later(context, delay, ids.email_opened, payload.clone());
                }
            }
            (Role::EmailOpened, Payload::Email { customer, .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.open_to_search) {
                    let delay = random.between(1, 20) * MS_PER_MINUTE;
                    let search = self.new_search(*customer, now + delay);
                    Self::emit_later(context, delay, ids.search, search);
                }
            }
            (Role::TutorSignup, Payload::Tutor { subject, .. }) => {
                let random = &mut self.random.tutor;
                if random.chance(flows.tutor_onboarding_share) {
                    let delay = random.between(2 * 24, 7 * 24) * MS_PER_HOUR;
                    // The new tutor's id is assigned when it joins the pool (on emission).
                    Self::emit_later(
                        context,
                        delay,
                        ids.tutor_onboarded,
                        Payload::Tutor {
                            tutor: u32::MAX,
                            subject: *subject,
                        },
                    );
                }
            }
            (Role::TutorChurned, Payload::Tutor { tutor, .. }) => {
                self.retire_tutor(*tutor);
            }
            _ => {}
        }
    }
}

impl Model for Marketplace {
    type Event = MarketEvent;
    type Output = StreamEvent;

    fn start(&mut self, context: &mut Context<'_, MarketEvent>) {
        let catalog = Arc::clone(&self.catalog);
        // The tutor pool, with the share online that the supply process would hold at t = 0.
        let stint_hours = catalog.flows.tutor_stint_mean as f64 / MS_PER_HOUR as f64;
        for (index, subject) in catalog.subjects.iter().enumerate() {
            let rate = catalog.flows.tutor_online_rate_per_hour
                * self.profile_multiplier(catalog.supply_profile, 0)
                * self.levers.supply_by_subject[index];
            let online_share = rate * stint_hours / (1.0 + rate * stint_hours);
            for _ in 0..subject.tutors {
                let tutor = self.add_tutor(index as u8, false);
                if self.random.supply.chance(online_share) {
                    self.bring_online(tutor, context);
                }
            }
        }
        for index in 0..catalog.subjects.len() {
            self.schedule_supply(index as u8, context);
        }
        let epoch = self.days.epoch();
        for stream in &catalog.streams {
            match stream.origin {
                Origin::Source { .. } => self.schedule_source(stream.id, context),
                Origin::Gauge { every_ms, .. } => {
                    // Readings fall on wall-clock multiples of the interval.
                    let into = epoch.absolute_ms(0).rem_euclid(every_ms as i64) as u64;
                    context.schedule_at(every_ms - into, MarketEvent::Gauge { stream: stream.id });
                }
                Origin::Flow => {}
            }
        }
        let payout = epoch.next_time_of_day(0, catalog.flows.payout_hour);
        context.schedule_at(payout, MarketEvent::PayoutRun);
        context.schedule_at(SUPPORT_SHIFT_MS, MarketEvent::SupportShift);
        self.support_shift_scheduled = true;
    }

    fn handle<S: Sink<StreamEvent>>(
        &mut self,
        event: MarketEvent,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        match event {
            MarketEvent::Source { stream, arrival } => {
                self.streams[stream.index()].pending = None;
                if !self.arrivals_open {
                    return;
                }
                if arrival {
                    let payload = self.source_payload(stream, context.now());
                    self.emit(stream, payload, context, sink);
                }
                self.schedule_source(stream, context);
            }
            MarketEvent::Gauge { stream } => {
                if !self.arrivals_open {
                    return;
                }
                if let Origin::Gauge { every_ms, metric } =
                    self.catalog.streams[stream.index()].origin
                {
                    let payload = self.gauge_payload(metric, context.now(), stream);
                    self.emit(stream, payload, context, sink);
                    context.schedule_after(every_ms, MarketEvent::Gauge { stream });
                }
            }
            MarketEvent::Emit { stream, payload } => {
                if stream == ids.tutor_onboarded {
                    if let Payload::Tutor { subject, .. } = payload {
                        let tutor = self.add_tutor(subject, false);
                        self.emit(stream, Payload::Tutor { tutor, subject }, context, sink);
                    }
                } else {
                    self.emit(stream, payload, context, sink);
                }
            }
            MarketEvent::SupplyOnline { subject, arrival } => {
                self.supply[subject as usize].pending = None;
                if !self.arrivals_open {
                    return;
                }
                let offline = self.supply[subject as usize].offline.len();
                if arrival && offline > 0 {
                    let pick = self.random.supply.below(offline as u64) as usize;
                    let tutor = self.supply[subject as usize].offline[pick];
                    let payload = self.bring_online(tutor, context);
                    self.emit(ids.availability_set, payload, context, sink);
                }
                self.schedule_supply(subject, context);
            }
            MarketEvent::TutorOffline { tutor } => {
                let Some(t) = self.tutors.get(tutor as usize) else {
                    return;
                };
                let (subject, active, index) = (t.subject, t.active, t.list_index as usize);
                if active {
                    self.set_online(tutor, false);
                } else {
                    // A retired tutor leaves the online list and does not join the offline one.
                    let online = &mut self.supply[subject as usize].online;
                    online.swap_remove(index);
                    if let Some(&moved) = online.get(index) {
                        self.tutors[moved as usize].list_index = index as u32;
                    }
                    self.tutors[tutor as usize].online = false;
                }
                self.emit(
                    ids.availability_cleared,
                    Payload::Tutor { tutor, subject },
                    context,
                    sink,
                );
            }
            MarketEvent::BookingResponse { booking, accept } => {
                if let Some(open) = self.open_requests.remove(&booking) {
                    context.cancel(open.expiry);
                    let supply = &mut self.supply[open.booking.subject as usize];
                    supply.open_requests = supply.open_requests.saturating_sub(1);
                    let stream = if accept { ids.confirmed } else { ids.declined };
                    self.emit(stream, Payload::Booking(open.booking), context, sink);
                }
            }
            MarketEvent::BookingExpiry { booking } => {
                if let Some(open) = self.open_requests.remove(&booking) {
                    let supply = &mut self.supply[open.booking.subject as usize];
                    supply.open_requests = supply.open_requests.saturating_sub(1);
                    self.emit(ids.expired, Payload::Booking(open.booking), context, sink);
                }
            }
            MarketEvent::SessionStart { booking } => {
                let flows = &self.catalog.flows;
                let (student_absent, tutor_absent) = (flows.noshow_student, flows.noshow_tutor);
                let roll = self.random.session.uniform();
                let stream = if roll < student_absent {
                    ids.noshow_student
                } else if roll < student_absent + tutor_absent {
                    ids.noshow_tutor
                } else {
                    ids.started
                };
                self.emit(stream, Payload::Booking(booking), context, sink);
            }
            MarketEvent::PayoutRun => {
                if !self.arrivals_open {
                    return;
                }
                for tutor in 0..self.tutors.len() {
                    let t = &mut self.tutors[tutor];
                    if t.unpaid_cents > 0 {
                        let payload = Payload::Payout {
                            tutor: tutor as u32,
                            amount_cents: t.unpaid_cents,
                            sessions: t.unpaid_sessions,
                        };
                        t.unpaid_cents = 0;
                        t.unpaid_sessions = 0;
                        self.emit(ids.payout, payload, context, sink);
                    }
                }
                context.schedule_after(MS_PER_DAY, MarketEvent::PayoutRun);
            }
            MarketEvent::LeverTick => self.apply_control(context),
            MarketEvent::SupportShift => {
                if !self.arrivals_open && self.ticket_queue.is_empty() {
                    self.support_shift_scheduled = false;
                    return;
                }
                let now = context.now();
                let per_hour = self.catalog.flows.support_capacity as f64
                    * self.profile_multiplier(self.catalog.support_profile, now)
                    * self.levers.support_staffing;
                let capacity = per_hour * SUPPORT_SHIFT_MS as f64 / MS_PER_HOUR as f64;
                let mut resolvable = capacity.floor() as usize;
                if self.random.support.chance(capacity.fract()) {
                    resolvable += 1;
                }
                // When arrivals are closed the queue is drained regardless of staffing.
                if !self.arrivals_open {
                    resolvable = resolvable.max(1);
                }
                for _ in 0..resolvable {
                    let Some(ticket) = self.ticket_queue.pop_front() else {
                        break;
                    };
                    self.emit(ids.ticket_resolved, ticket, context, sink);
                }
                context.schedule_after(SUPPORT_SHIFT_MS, MarketEvent::SupportShift);
            }
        }
    }
}
