//! Arrival processes: source streams (piecewise-constant Poisson rates with the seasonal
//! profile, growth, day noise and levers), gauge readings, the tutors' come-online process,
//! and the payloads of source arrivals and gauge readings.

use super::{MarketEvent, Marketplace};
use crate::engine::{Context, RandomStream, Sink, VirtualTimeMs, MS_PER_HOUR};
use crate::market::calendar::{growth_factor, Epoch};
use crate::market::catalog::{GaugeMetric, Origin, StreamId};
use crate::market::coupling::{LATENCY_FIXED_SHARE, LATENCY_LOAD_SHARE};
use crate::market::payload::{
    GaugeDetail, Payload, StreamEvent, AD_CHANNELS, CAMPAIGNS, ENDPOINTS, HTTP_STATUSES, PAGES,
    SERVICES, SIGNUP_CHANNELS,
};
use crate::market::roles::Role;

/// The salt that moves a gauge's generator onto the path its reading at the epoch draws from.
const EPOCH_READING_SALT: u64 = 0x6570_6f63_6872_6561;

impl Marketplace {
    /// An arrival (or hour boundary) of a source stream.
    pub(super) fn on_source<S: Sink<StreamEvent>>(
        &mut self,
        stream: StreamId,
        arrival: bool,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
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

    /// A gauge reading falls due.
    pub(super) fn on_gauge<S: Sink<StreamEvent>>(
        &mut self,
        stream: StreamId,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        if !self.arrivals_open {
            return;
        }
        if let Origin::Gauge { every_ms, metric } = self.catalog.streams[stream.index()].origin {
            let payload = if context.now() == 0 {
                // The reading at the epoch came after the others were in place: it draws its
                // noise from a path of its own, so every later reading draws what it drew before.
                let own_path = self.streams[stream.index()].arrivals.clone();
                self.streams[stream.index()]
                    .arrivals
                    .resalt(EPOCH_READING_SALT);
                let payload = self.gauge_payload(metric, 0, stream);
                self.streams[stream.index()].arrivals = own_path;
                payload
            } else {
                self.gauge_payload(metric, context.now(), stream)
            };
            self.emit(stream, payload, context, sink);
            context.schedule_after(every_ms, MarketEvent::Gauge { stream });
        }
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
    pub(super) fn profile_multiplier(&mut self, profile: usize, t: VirtualTimeMs) -> f64 {
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

    pub(super) fn schedule_source(
        &mut self,
        stream: StreamId,
        context: &mut Context<'_, MarketEvent>,
    ) {
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

    pub(super) fn schedule_supply(&mut self, subject: u8, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        let rate = self.supply_rate_per_hour(subject, now);
        let epoch = self.days.epoch();
        let (time, arrival) = Self::next_arrival(epoch, &mut self.random.supply, now, rate);
        self.supply[subject as usize].pending =
            Some(context.schedule_at(time, MarketEvent::SupplyOnline { subject, arrival }));
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

    /// A gauge's reading with the stream modifiers of running scenarios and events applied (a
    /// CDN slowdown's `platform.api.latency: ×1.12`); the detail scales with the value.
    fn gauge_payload(
        &mut self,
        metric: GaugeMetric,
        now: VirtualTimeMs,
        stream: StreamId,
    ) -> Payload {
        let reading = self.unmodified_gauge_payload(metric, now, stream);
        let effect = &self.stream_effects[stream.index()];
        match reading {
            Payload::Gauge { value, detail } if !effect.is_neutral() => {
                let modified = effect.apply(value);
                let scale = if value > 0.0 { modified / value } else { 1.0 };
                Payload::Gauge {
                    value: modified,
                    detail: match detail {
                        GaugeDetail::P95(p95) => GaugeDetail::P95(p95 * scale),
                        other => other,
                    },
                }
            }
            other => other,
        }
    }

    fn unmodified_gauge_payload(
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
                    * (LATENCY_FIXED_SHARE + LATENCY_LOAD_SHARE * load)
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
}
