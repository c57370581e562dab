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
//!
//! Layout: this file holds the state and the dispatch; `arrivals` the arrival processes and
//! their payloads; `control` the instances a session activates; `flows/` one file per flow family
//! (what follows from an emitted event, and the scheduled happenings that family owns).
//!
//! Nothing here does IO or reads the wall clock.

mod arrivals;
mod control;
mod flows;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use self::control::ControlState;
use super::calendar::{DayTable, Epoch};
use super::catalog::{Catalog, Origin, StreamId};
use super::director::StreamEffect;
use super::payload::{Booking, Payload, StreamEvent};
use super::roles::Role;
use crate::engine::{
    Context, Model, RandomStream, Sink, TimerHandle, VirtualTimeMs, MS_PER_MINUTE,
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

    /// Whether every lever is at 1.0: composed with others, these change nothing.
    pub fn is_neutral(&self) -> bool {
        self.demand_by_subject.iter().all(|&m| m == 1.0)
            && self.supply_by_subject.iter().all(|&m| m == 1.0)
            && [
                self.payment_failure,
                self.api_errors,
                self.app_crashes,
                self.support_staffing,
                self.ad_spend,
                self.low_ratings,
                self.tutor_accept,
            ]
            .iter()
            .all(|&m| m == 1.0)
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

/// The id of the first catalog stream with `role` (known roles belong to one stream each).
fn find_role(catalog: &Catalog, role: Role) -> Option<StreamId> {
    catalog
        .streams
        .iter()
        .find(|s| s.role == role)
        .map(|s| s.id)
}

impl FlowStreams {
    /// Resolves each flow stream from the catalog's roles (see `roles::KNOWN`).
    fn resolve(catalog: &Catalog) -> Result<Self, String> {
        let id_of = |role: Role| {
            find_role(catalog, role)
                .ok_or_else(|| format!("catalog lacks a stream with role `{role:?}`"))
        };
        Ok(FlowStreams {
            signup: id_of(Role::Signup)?,
            search: id_of(Role::Search)?,
            profile_viewed: id_of(Role::ProfileView)?,
            message: id_of(Role::Message)?,
            favorite: id_of(Role::Favorite)?,
            subscription: id_of(Role::Subscription)?,
            churn_risk: id_of(Role::ChurnRisk)?,
            account_deleted: id_of(Role::AccountDeleted)?,
            tutor_onboarded: id_of(Role::TutorOnboarded)?,
            availability_set: id_of(Role::AvailabilitySet)?,
            availability_cleared: id_of(Role::AvailabilityCleared)?,
            payout: id_of(Role::Payout)?,
            tutor_churned: id_of(Role::TutorChurned)?,
            requested: id_of(Role::BookingRequested)?,
            confirmed: id_of(Role::BookingConfirmed)?,
            declined: id_of(Role::BookingDeclined)?,
            expired: id_of(Role::BookingExpired)?,
            cancelled: id_of(Role::BookingCancelled)?,
            rescheduled: id_of(Role::BookingRescheduled)?,
            started: id_of(Role::SessionStarted)?,
            completed: id_of(Role::SessionCompleted)?,
            noshow_student: id_of(Role::NoShowStudent)?,
            noshow_tutor: id_of(Role::NoShowTutor)?,
            rating: id_of(Role::RatingSubmitted)?,
            review_flagged: id_of(Role::ReviewFlagged)?,
            charge_attempted: id_of(Role::ChargeAttempted)?,
            charge_succeeded: id_of(Role::ChargeSucceeded)?,
            charge_failed: id_of(Role::ChargeFailed)?,
            refund: id_of(Role::RefundIssued)?,
            chargeback: id_of(Role::ChargebackOpened)?,
            ticket_created: id_of(Role::TicketCreated)?,
            ticket_resolved: id_of(Role::TicketResolved)?,
            ticket_escalated: id_of(Role::TicketEscalated)?,
            csat: id_of(Role::CsatSubmitted)?,
            click: id_of(Role::Click)?,
            email_opened: id_of(Role::EmailOpened)?,
            referral: id_of(Role::ReferralSent)?,
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
    fn resalt(&mut self, salt: u64) {
        for (offset, stream) in [
            &mut self.search,
            &mut self.booking,
            &mut self.session,
            &mut self.payment,
            &mut self.support,
            &mut self.marketing,
            &mut self.tutor,
            &mut self.platform,
            &mut self.supply,
        ]
        .into_iter()
        .enumerate()
        {
            stream.resalt(salt.wrapping_add(offset as u64));
        }
    }

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

impl Marketplace {
    /// Puts every flow and arrival generator on another random path (see
    /// [`RandomStream::resalt`]). The day-level noise generators keep theirs: a day's mood is
    /// shared by a run and its twins, only the paths of single draws part.
    pub fn resalt_random_paths(&mut self, salt: u64) {
        self.random.resalt(salt);
        for (index, stream) in self.streams.iter_mut().enumerate() {
            stream
                .arrivals
                .resalt(salt ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
    }

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
            impression_stream: find_role(&catalog, Role::Impression),
            page_view_stream: find_role(&catalog, Role::PageView),
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

    /// Freezes the season: no academic calendar and no growth, so every week looks like the
    /// epoch's week in an ordinary period. Used for the history a baseline is fitted on; the
    /// scorer puts the calendar and growth back into its expectations.
    pub fn with_neutral_season(mut self) -> Self {
        self.days = DayTable::new(self.days.epoch(), &[]);
        self.neutral_season = true;
        self
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

    /// The flows: what follows from an event that has just been emitted, by the stream's role.
    fn react(
        &mut self,
        stream: StreamId,
        payload: &Payload,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let role = self.roles[stream.index()];
        match role {
            Role::Search | Role::ProfileView => self.react_search(role, payload, context),
            Role::BookingRequested | Role::BookingConfirmed | Role::BookingRescheduled => {
                self.react_booking(role, payload, context)
            }
            Role::SessionStarted
            | Role::SessionCompleted
            | Role::NoShowTutor
            | Role::RatingSubmitted
            | Role::ReviewFlagged
            | Role::ChurnRisk => self.react_lesson(role, payload, context),
            Role::ChargeAttempted | Role::ChargeSucceeded | Role::ChargeFailed => {
                self.react_payment(role, payload, context)
            }
            Role::TicketCreated | Role::TicketResolved | Role::ChatStarted => {
                self.react_support(role, payload, context)
            }
            Role::AppCrash | Role::ApiError => self.react_platform(role, context),
            Role::Impression | Role::Click | Role::Signup | Role::EmailSent | Role::EmailOpened => {
                self.react_marketing(role, payload, context)
            }
            Role::TutorSignup | Role::TutorChurned => self.react_supply(role, payload, context),
            _ => {}
        }
    }
}

impl Model for Marketplace {
    type Event = MarketEvent;
    type Output = StreamEvent;

    fn start(&mut self, context: &mut Context<'_, MarketEvent>) {
        let catalog = Arc::clone(&self.catalog);
        self.start_supply(context);
        let epoch = self.days.epoch();
        for stream in &catalog.streams {
            match stream.origin {
                Origin::Source { .. } => self.schedule_source(stream.id, context),
                Origin::Gauge { every_ms, .. } => {
                    // Readings fall on wall-clock multiples of the interval, the epoch included
                    // when it is one: otherwise the first bucket of a run that starts on the
                    // hour misses the reading every later bucket has at its start (an hourly
                    // gauge had none at all in bucket 0).
                    let into = epoch.absolute_ms(0).rem_euclid(every_ms as i64) as u64;
                    let first_reading = (every_ms - into) % every_ms;
                    context.schedule_at(first_reading, MarketEvent::Gauge { stream: stream.id });
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
        match event {
            MarketEvent::Source { stream, arrival } => {
                self.on_source(stream, arrival, context, sink)
            }
            MarketEvent::Gauge { stream } => self.on_gauge(stream, context, sink),
            MarketEvent::Emit { stream, payload } => {
                if stream == self.ids.tutor_onboarded {
                    if let Payload::Tutor { subject, .. } = payload {
                        let tutor = self.add_tutor(subject, false);
                        self.emit(stream, Payload::Tutor { tutor, subject }, context, sink);
                    }
                } else {
                    self.emit(stream, payload, context, sink);
                }
            }
            MarketEvent::SupplyOnline { subject, arrival } => {
                self.on_supply_online(subject, arrival, context, sink)
            }
            MarketEvent::TutorOffline { tutor } => self.on_tutor_offline(tutor, context, sink),
            MarketEvent::BookingResponse { booking, accept } => {
                self.on_booking_response(booking, accept, context, sink)
            }
            MarketEvent::BookingExpiry { booking } => {
                self.on_booking_expiry(booking, context, sink)
            }
            MarketEvent::SessionStart { booking } => self.on_session_start(booking, context, sink),
            MarketEvent::PayoutRun => self.on_payout_run(context, sink),
            MarketEvent::LeverTick => self.apply_control(context),
            MarketEvent::SupportShift => self.on_support_shift(context, sink),
        }
    }
}
