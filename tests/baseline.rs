//! The bundled 30-day baseline: its summary is snapshotted, its flows conserve bookings, and
//! its rates look like a tutoring marketplace.

use std::collections::HashSet;
use std::path::Path;

use marketsim::engine::Sink;
use marketsim::market::payload::Payload;
use marketsim::market::roles::Role;
use marketsim::market::{Catalog, StreamEvent};
use marketsim::output::Summary;
use marketsim::scenario::{RunPlan, Script};
use marketsim::session::{RunCollector, Session};

/// Checks every event against the booking flow as it is emitted.
struct FlowChecker {
    roles: Vec<Role>,
    requested: HashSet<u64>,
    answered: HashSet<u64>,
    violations: Vec<String>,
    counts: Vec<u64>,
}

impl FlowChecker {
    fn new(catalog: &Catalog) -> Self {
        FlowChecker {
            roles: catalog.streams.iter().map(|s| s.role).collect(),
            requested: HashSet::new(),
            answered: HashSet::new(),
            violations: Vec::new(),
            counts: vec![0; catalog.streams.len()],
        }
    }

    fn count(&self, role: Role) -> u64 {
        self.roles
            .iter()
            .zip(&self.counts)
            .filter(|(r, _)| **r == role)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Sink<StreamEvent> for FlowChecker {
    fn accept(&mut self, event: &StreamEvent) {
        let role = self.roles[event.stream.index()];
        self.counts[event.stream.index()] += 1;
        let Some(booking) = event.payload.booking_id() else {
            return;
        };
        match role {
            Role::BookingRequested if !self.requested.insert(booking) => {
                self.violations
                    .push(format!("booking {booking} requested twice"));
            }
            Role::BookingRequested => {}
            _ if !self.requested.contains(&booking) => {
                self.violations.push(format!(
                    "{role:?} at {} names booking {booking}, never requested",
                    event.time
                ));
            }
            Role::BookingConfirmed | Role::BookingDeclined | Role::BookingExpired
                if !self.answered.insert(booking) =>
            {
                self.violations
                    .push(format!("booking {booking} answered twice ({role:?})"));
            }
            _ => {}
        }
        if let Payload::Booking(b) = &event.payload {
            if matches!(role, Role::SessionStarted) && b.start > event.time {
                self.violations
                    .push(format!("booking {booking} started before its start time"));
            }
        }
    }
}

struct BaselineRun {
    summary: Summary,
    checker: FlowChecker,
    collector: RunCollector,
    plan: RunPlan,
}

/// Runs the bundled baseline once for all tests here, then closes arrivals and drains every
/// flow still under way, so that conservation can be checked on complete bookings.
fn baseline() -> &'static BaselineRun {
    static RUN: std::sync::OnceLock<BaselineRun> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let script =
            Script::load(Path::new("scenarios/baseline.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let plan = RunPlan::from_script(script, None, None).unwrap_or_else(|e| panic!("{e}"));
        let mut checker = FlowChecker::new(&plan.catalog);
        let mut session = Session::for_run(&plan, false).unwrap_or_else(|e| panic!("{e}"));
        session.advance_to(plan.duration_ms, &mut checker);
        let collector = session.collector().clone();
        let summary = Summary::new(&plan, &collector, false);
        let pending = session.drain_flows(&mut checker);
        assert_eq!(pending, 0, "the queue did not drain");
        BaselineRun {
            summary,
            checker,
            collector,
            plan,
        }
    })
}

#[test]
fn baseline_summary_matches_its_snapshot() {
    insta::assert_json_snapshot!(baseline().summary);
}

#[test]
fn bookings_are_conserved_along_the_flow() {
    let c = &baseline().checker;
    assert!(
        c.violations.is_empty(),
        "{:#?}",
        &c.violations[..c.violations.len().min(10)]
    );
    let requested = c.count(Role::BookingRequested);
    let answered = c.count(Role::BookingConfirmed)
        + c.count(Role::BookingDeclined)
        + c.count(Role::BookingExpired);
    assert_eq!(
        requested, answered,
        "confirmed + declined + expired ≠ requested once drained"
    );
    let confirmed = c.count(Role::BookingConfirmed);
    let sessions = c.count(Role::SessionStarted);
    assert!(
        sessions <= confirmed,
        "{sessions} sessions > {confirmed} confirmed"
    );
    let outcomes = c.count(Role::SessionStarted)
        + c.count(Role::NoShowStudent)
        + c.count(Role::NoShowTutor)
        + c.count(Role::BookingCancelled);
    assert_eq!(
        outcomes, confirmed,
        "every confirmed booking ends as a lesson, a no-show or a cancellation"
    );
    assert_eq!(
        c.count(Role::SessionCompleted),
        sessions,
        "every started lesson completes"
    );
    assert_eq!(
        c.count(Role::ChargeAttempted),
        sessions,
        "every completed lesson is charged"
    );
    assert_eq!(
        c.count(Role::ChargeSucceeded) + c.count(Role::ChargeFailed),
        c.count(Role::ChargeAttempted)
    );
    assert!(c.count(Role::RatingSubmitted) <= c.count(Role::SessionCompleted));
    assert!(c.count(Role::ReviewFlagged) <= c.count(Role::RatingSubmitted));
    assert_eq!(
        c.count(Role::TicketResolved),
        c.count(Role::TicketCreated),
        "every ticket is resolved once drained"
    );
}

fn share(numerator: Role, denominator: Role) -> f64 {
    let c = &baseline().checker;
    c.count(numerator) as f64 / c.count(denominator) as f64
}

/// Values of one stream per bucket, with each bucket's start hour of day and day of week.
fn hourly(name: &str) -> Vec<(usize, usize, f64)> {
    let run = baseline();
    let stream = run
        .plan
        .catalog
        .stream(name)
        .unwrap_or_else(|| panic!("{name}"));
    let epoch = run.plan.epoch();
    let start_weekday = 2; // 2025-01-01 was a Wednesday.
    (0..run.collector.n_buckets())
        .map(|bucket| {
            let t = bucket as u64 * run.plan.script.bucket_ms;
            let day = bucket / 24;
            let value = run
                .collector
                .bucket_value(bucket, stream.id.index())
                .unwrap_or(0.0);
            (epoch.hour_of_day(t), (start_weekday + day) % 7, value)
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

#[test]
fn rates_look_like_a_tutoring_marketplace() {
    let confirmation = share(Role::BookingConfirmed, Role::BookingRequested);
    assert!(
        (0.70..=0.80).contains(&confirmation),
        "confirmation rate {confirmation:.3}"
    );
    let lessons = {
        let c = &baseline().checker;
        (c.count(Role::SessionStarted) + c.count(Role::NoShowStudent) + c.count(Role::NoShowTutor))
            as f64
    };
    let student_noshow = baseline().checker.count(Role::NoShowStudent) as f64 / lessons;
    let tutor_noshow = baseline().checker.count(Role::NoShowTutor) as f64 / lessons;
    assert!(
        (0.02..=0.05).contains(&student_noshow),
        "student no-show {student_noshow:.3}"
    );
    assert!(
        (0.01..=0.02).contains(&tutor_noshow),
        "tutor no-show {tutor_noshow:.3}"
    );
    let rated = share(Role::RatingSubmitted, Role::SessionCompleted);
    assert!((0.40..=0.60).contains(&rated), "rating share {rated:.3}");

    let searches = hourly("customer.tutor.search");
    let weekend = mean(searches.iter().filter(|(_, d, _)| *d >= 5).map(|x| x.2));
    let weekday = mean(searches.iter().filter(|(_, d, _)| *d < 5).map(|x| x.2));
    let lift = weekend / weekday;
    assert!((1.30..=1.50).contains(&lift), "weekend lift {lift:.3}");
    let night = mean(
        searches
            .iter()
            .filter(|(h, _, _)| *h >= 23 || *h < 7)
            .map(|x| x.2),
    );
    let day = mean(
        searches
            .iter()
            .filter(|(h, _, _)| (8..22).contains(h))
            .map(|x| x.2),
    );
    assert!(
        night / day < 0.35,
        "night/day search ratio {:.3}",
        night / day
    );
}

#[test]
fn peak_load_is_twenty_to_thirty_events_per_second() {
    let run = baseline();
    let per_second: Vec<f64> = (0..run.collector.n_buckets())
        .map(|bucket| {
            let events: f64 = run
                .plan
                .catalog
                .streams
                .iter()
                .filter(|s| !s.origin.is_gauge())
                .map(|s| {
                    run.collector
                        .bucket_value(bucket, s.id.index())
                        .unwrap_or(0.0)
                })
                .sum();
            events / (run.plan.script.bucket_ms as f64 / 1_000.0)
        })
        .collect();
    let peak = per_second.iter().copied().fold(0.0, f64::max);
    assert!((20.0..=30.0).contains(&peak), "peak {peak:.1} events/s");
}
