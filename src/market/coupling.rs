//! How each stream's level answers the academic calendar and growth, as the model makes it:
//! the one source the baseline's expectation reads, so that the statistics never guess from a
//! stream's name what the flows do.
//!
//! Sources follow their profile (`academic`) and growth (all but deploys and tutor-side
//! sources); flow streams inherit from the streams that feed them, except tutor supply, which
//! the calendar leaves alone, and streams bound by a capacity (tickets resolved, which agents
//! work through at a fixed rate whatever the load). Lessons start a booking lead after they
//! were booked, so they feel the calendar that much later. Gauges say what they read: ad spend
//! is proportional to the impression rate, API latency is affine in the page-view load, and the
//! support queue is a queue — its level is what arrivals add and agents take away.

use super::catalog::{Catalog, GaugeMetric, Origin};
use super::roles::{role_for_name, Role, FLOW_EDGES};

/// API latency's mean reading is `api_latency_ms × (LATENCY_FIXED_SHARE + LATENCY_LOAD_SHARE ×
/// load)`, with load the page-view rate over its catalog rate.
pub const LATENCY_FIXED_SHARE: f64 = 0.8;
pub const LATENCY_LOAD_SHARE: f64 = 0.25;

/// A backlog of this many hours of nominal capacity doubles the chance of escalation.
pub const ESCALATION_BACKLOG_HOURS: f64 = 8.0;
/// Escalation pressure is capped at this multiple.
pub const ESCALATION_MAX_PRESSURE: f64 = 3.0;

/// The escalation pressure of a queue of `backlog` tickets.
pub fn escalation_pressure(backlog: f64, backlog_scale: f64) -> f64 {
    (1.0 + backlog / backlog_scale.max(1.0)).min(ESCALATION_MAX_PRESSURE)
}

/// How a stream's level responds to the calendar and to growth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemandCoupling {
    /// Scaled by the academic calendar.
    pub seasonal: bool,
    /// Scaled by the marketplace's growth.
    pub grows: bool,
    /// Feels the calendar a booking lead later (lessons and what follows them).
    pub lagged: bool,
    pub shape: CouplingShape,
}

/// How the level depends on the load that the calendar and growth scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CouplingShape {
    /// Proportional to the load (counts, and gauges that read a rate).
    Proportional,
    /// A gauge reading `fixed + per_load × load`, load being the rate of stream `load_stream`
    /// relative to its catalog rate `load_per_hour`.
    Affine {
        load_stream: usize,
        load_per_hour: f64,
        fixed: f64,
        per_load: f64,
    },
    /// A queue's length: stream `arrivals` adds to it, agents take up to `capacity_per_hour`
    /// × the multiplier of profile `profile` an hour from it.
    Queue {
        arrivals: usize,
        capacity_per_hour: f64,
        profile: usize,
    },
    /// The service of queue gauge `queue`: the capacity while there is a backlog, otherwise
    /// what arrives.
    Served { queue: usize },
    /// A fixed share of what stream `feed` did in this bucket and the one before (a
    /// consequence of a capacity-bound stream, such as satisfaction surveys after resolutions).
    Follows {
        feed: usize,
        /// Scaled by `min(3, 1 + queue reading / backlog_scale)` of queue gauge `queue` (the
        /// model escalates more tickets when the queue is long).
        pressure: Option<(usize, f64)>,
    },
    /// Expiries: requests no tutor answered before the expiry timer. In the model a request
    /// expires with probability `exp(−T·effective/R)`, where the effective tutors fall as open
    /// requests pile up, so the share that expires is not proportional to demand: it rises
    /// steeply when requests outgrow the tutors online. Expected at the requests of the bucket
    /// (`feed`) times a share `exp(−exp(a + b·ln tutors + c·ln requests))` fitted on the history,
    /// with `tutors` the reading of gauge `supply`.
    Contended { feed: usize, supply: usize },
    /// Not scaled at all.
    Flat,
}

fn is_tutor_supply(role: Role) -> bool {
    matches!(
        role,
        Role::TutorSignup
            | Role::TutorOnboarded
            | Role::AvailabilitySet
            | Role::AvailabilityCleared
            | Role::TutorProfileUpdated
            | Role::TutorChurned
    )
}

/// Source roles whose rate the model does not grow (see the model's source rates).
fn source_grows(role: Role) -> bool {
    !matches!(
        role,
        Role::Deploy | Role::TutorSignup | Role::TutorProfileUpdated
    )
}

/// Flow streams bound by a capacity rather than by what feeds them.
fn capacity_bound(role: Role) -> bool {
    matches!(role, Role::TicketResolved | Role::CsatSubmitted)
}

/// Lessons begin a booking lead after the booking.
fn starts_a_lead_later(role: Role) -> bool {
    matches!(
        role,
        Role::SessionStarted | Role::NoShowStudent | Role::NoShowTutor
    )
}

/// The coupling of every stream of `catalog`, in catalog order.
pub fn demand_couplings(catalog: &Catalog) -> Vec<DemandCoupling> {
    let n = catalog.streams.len();
    let roles: Vec<Role> = catalog
        .streams
        .iter()
        .map(|s| role_for_name(&s.name))
        .collect();
    let index_of = |name: &str| catalog.streams.iter().position(|s| s.name == name);
    let mut seasonal = vec![false; n];
    let mut grows = vec![false; n];
    let mut lagged = vec![false; n];
    for (index, stream) in catalog.streams.iter().enumerate() {
        if let Origin::Source { profile, .. } = stream.origin {
            seasonal[index] = catalog.profiles[profile].academic;
            grows[index] = source_grows(roles[index]);
        }
        lagged[index] = starts_a_lead_later(roles[index]);
    }
    let edges: Vec<(usize, usize)> = FLOW_EDGES
        .iter()
        .filter_map(|(from, to, _)| Some((index_of(from)?, index_of(to)?)))
        .collect();
    let inherits = |to: usize| {
        !catalog.streams[to].origin.is_gauge()
            && !is_tutor_supply(roles[to])
            && !capacity_bound(roles[to])
            && !matches!(catalog.streams[to].origin, Origin::Source { .. })
    };
    // Flow streams inherit from what feeds them, to a fixed point.
    loop {
        let mut changed = false;
        for &(from, to) in &edges {
            if !inherits(to) {
                continue;
            }
            for (flag, value) in [(&mut seasonal, true), (&mut grows, true)] {
                if flag[from] && !flag[to] {
                    flag[to] = value;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Lagged: every seasonal feed of the stream is lagged (lessons and what follows them;
    // tickets also come from chats, so they are not).
    loop {
        let mut changed = false;
        for to in 0..n {
            if lagged[to] || !inherits(to) || !seasonal[to] {
                continue;
            }
            let mut feeds = edges
                .iter()
                .filter(|(from, t)| *t == to && seasonal[*from])
                .peekable();
            if feeds.peek().is_some() && feeds.all(|(from, _)| lagged[*from]) {
                lagged[to] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let by_role = |role: Role| roles.iter().position(|r| *r == role);
    let queue_gauge = catalog.streams.iter().position(|s| {
        matches!(
            s.origin,
            Origin::Gauge {
                metric: GaugeMetric::SupportQueueDepth,
                ..
            }
        )
    });
    let tutors_gauge = catalog.streams.iter().position(|s| {
        matches!(
            s.origin,
            Origin::Gauge {
                metric: GaugeMetric::TutorsOnline,
                ..
            }
        )
    });
    (0..n)
        .map(|index| {
            let mut coupling = DemandCoupling {
                seasonal: seasonal[index],
                grows: grows[index],
                lagged: lagged[index],
                shape: CouplingShape::Proportional,
            };
            let Origin::Gauge { metric, .. } = catalog.streams[index].origin else {
                let resolved = by_role(Role::TicketResolved);
                let created = by_role(Role::TicketCreated);
                match (roles[index], queue_gauge) {
                    (Role::TicketResolved, Some(queue)) => {
                        coupling.shape = CouplingShape::Served { queue };
                    }
                    (Role::CsatSubmitted, Some(_)) => {
                        if let Some(feed) = resolved {
                            coupling.shape = CouplingShape::Follows {
                                feed,
                                pressure: None,
                            };
                        }
                    }
                    (Role::BookingExpired, _) => {
                        if let (Some(feed), Some(supply)) =
                            (by_role(Role::BookingRequested), tutors_gauge)
                        {
                            coupling.shape = CouplingShape::Contended { feed, supply };
                        }
                    }
                    (Role::TicketEscalated, Some(queue)) => {
                        if let Some(feed) = created {
                            coupling.shape = CouplingShape::Follows {
                                feed,
                                pressure: Some((
                                    queue,
                                    f64::from(catalog.flows.support_capacity)
                                        * ESCALATION_BACKLOG_HOURS,
                                )),
                            };
                        }
                    }
                    _ => {}
                }
                return coupling;
            };
            coupling.lagged = false;
            match metric {
                GaugeMetric::AdSpend => match by_role(Role::Impression) {
                    Some(impressions) => {
                        coupling.seasonal = seasonal[impressions];
                        coupling.grows = grows[impressions];
                    }
                    None => coupling.shape = CouplingShape::Flat,
                },
                GaugeMetric::ApiLatencyMs => {
                    let page_views = by_role(Role::PageView).and_then(|stream| {
                        match catalog.streams[stream].origin {
                            Origin::Source { per_hour, .. } if per_hour > 0.0 => {
                                Some((stream, per_hour))
                            }
                            _ => None,
                        }
                    });
                    match page_views {
                        Some((stream, per_hour)) => {
                            coupling.seasonal = seasonal[stream];
                            coupling.grows = grows[stream];
                            coupling.shape = CouplingShape::Affine {
                                load_stream: stream,
                                load_per_hour: per_hour,
                                fixed: LATENCY_FIXED_SHARE,
                                per_load: LATENCY_LOAD_SHARE,
                            };
                        }
                        None => coupling.shape = CouplingShape::Flat,
                    }
                }
                GaugeMetric::SupportQueueDepth => match by_role(Role::TicketCreated) {
                    Some(arrivals) => {
                        coupling.seasonal = seasonal[arrivals];
                        coupling.grows = grows[arrivals];
                        coupling.shape = CouplingShape::Queue {
                            arrivals,
                            capacity_per_hour: f64::from(catalog.flows.support_capacity),
                            profile: catalog.support_profile,
                        };
                    }
                    None => coupling.shape = CouplingShape::Flat,
                },
                GaugeMetric::TutorsOnline => {
                    coupling.seasonal = false;
                    coupling.grows = false;
                    coupling.shape = CouplingShape::Flat;
                }
            }
            coupling
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coupling_of(name: &str) -> DemandCoupling {
        let catalog = Catalog::embedded().expect("the embedded catalog parses");
        let couplings = demand_couplings(&catalog);
        let index = catalog
            .streams
            .iter()
            .position(|s| s.name == name)
            .expect("stream exists");
        couplings[index]
    }

    #[test]
    fn couplings_follow_the_flows() {
        let table: Vec<(String, DemandCoupling)> = {
            let catalog = Catalog::embedded().expect("the embedded catalog parses");
            catalog
                .streams
                .iter()
                .map(|s| s.name.clone())
                .zip(demand_couplings(&catalog))
                .collect()
        };
        let lines: Vec<String> = table
            .iter()
            .map(|(name, c)| {
                format!(
                    "{name:34} seasonal={:5} grows={:5} lagged={:5} {:?}",
                    c.seasonal, c.grows, c.lagged, c.shape
                )
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
        assert!(coupling_of("session.started").lagged);
        assert!(!coupling_of("support.ticket.resolved").seasonal);
        assert!(coupling_of("marketing.ad.spend").seasonal);
    }
}
