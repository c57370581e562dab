//! Clocks: when the engine may hand over the event due at a given virtual time.
//!
//! The same engine runs under two clocks. [`UnpacedClock`] never waits: a headless run goes as
//! fast as the CPU allows. [`PacedClock`] maps virtual time to wall time through a
//! [`PaceSchedule`] and sleeps until each event's wall deadline, so a live run plays at 1×, 60×
//! or 0.5× real time. The clock decides only *when* an event is processed, never *which*: outputs
//! of a paced run are identical to those of an unpaced one.
//!
//! The schedule is anchored: deadline = anchor_wall + (t − anchor_virtual) / speed. Each deadline
//! is computed from the anchor, not from the previous deadline, so rounding error never
//! accumulates over a long session. Changing speed or resuming after a pause re-anchors at the
//! current virtual time, so virtual time never jumps.

use std::time::{Duration, Instant};

use super::time::VirtualTimeMs;

/// Decides when the event due at virtual time `t` may be processed.
pub trait Clock {
    /// Returns once the event due at `t` may be processed (immediately for an unpaced clock).
    fn wait_until(&mut self, t: VirtualTimeMs);
}

/// The headless clock: every event may be processed at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpacedClock;

impl Clock for UnpacedClock {
    #[inline]
    fn wait_until(&mut self, _t: VirtualTimeMs) {}
}

/// The pure mapping between virtual time and wall time (as a duration since some wall origin).
///
/// It holds no clock of its own, so it is tested with made-up wall times.
#[derive(Debug, Clone, PartialEq)]
pub struct PaceSchedule {
    anchor_wall: Duration,
    anchor_virtual: VirtualTimeMs,
    speed: f64,
    paused: bool,
}

/// Speeds outside this range are refused: below it a live run would look frozen, above it the
/// pacer could not keep up with the model anyway.
pub const SPEED_MIN: f64 = 0.01;
pub const SPEED_MAX: f64 = 100_000.0;

impl PaceSchedule {
    /// A schedule where virtual time `start_virtual` corresponds to wall time `start_wall`.
    pub fn new(start_wall: Duration, start_virtual: VirtualTimeMs, speed: f64) -> Self {
        PaceSchedule {
            anchor_wall: start_wall,
            anchor_virtual: start_virtual,
            speed: speed.clamp(SPEED_MIN, SPEED_MAX),
            paused: false,
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The wall time at which virtual time `t` is due, or `None` while paused.
    pub fn wall_deadline(&self, t: VirtualTimeMs) -> Option<Duration> {
        if self.paused {
            return None;
        }
        let virtual_ahead_ms = t.saturating_sub(self.anchor_virtual) as f64;
        Some(self.anchor_wall + Duration::from_secs_f64(virtual_ahead_ms / 1_000.0 / self.speed))
    }

    /// The virtual time that corresponds to wall time `wall` (frozen at the anchor while paused).
    pub fn virtual_at(&self, wall: Duration) -> VirtualTimeMs {
        if self.paused {
            return self.anchor_virtual;
        }
        let wall_elapsed = wall.saturating_sub(self.anchor_wall).as_secs_f64();
        self.anchor_virtual + (wall_elapsed * self.speed * 1_000.0).floor() as u64
    }

    /// Changes speed from wall time `wall` on, keeping virtual time continuous.
    pub fn set_speed(&mut self, wall: Duration, speed: f64) {
        let current_virtual = self.virtual_at(wall);
        if !self.paused {
            self.anchor_wall = wall;
            self.anchor_virtual = current_virtual;
        }
        self.speed = speed.clamp(SPEED_MIN, SPEED_MAX);
    }

    /// Freezes virtual time at its value at wall time `wall`.
    pub fn pause(&mut self, wall: Duration) {
        if !self.paused {
            self.anchor_virtual = self.virtual_at(wall);
            self.anchor_wall = wall;
            self.paused = true;
        }
    }

    /// Lets virtual time run again from where it was frozen.
    pub fn resume(&mut self, wall: Duration) {
        if self.paused {
            self.anchor_wall = wall;
            self.paused = false;
        }
    }
}

/// A source of wall time that can also sleep. Real time in production, a fake one in tests.
pub trait WallSource {
    /// Wall time elapsed since this source's origin.
    fn now(&self) -> Duration;
    /// Blocks until `now()` reaches `deadline`.
    fn sleep_until(&mut self, deadline: Duration);
}

/// The process's monotonic clock.
#[derive(Debug, Clone)]
pub struct SystemWall {
    origin: Instant,
}

impl Default for SystemWall {
    fn default() -> Self {
        SystemWall {
            origin: Instant::now(),
        }
    }
}

impl WallSource for SystemWall {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep_until(&mut self, deadline: Duration) {
        let now = self.now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }
}

/// A clock paced to a wall source at an adjustable speed.
pub struct PacedClock<W: WallSource> {
    wall: W,
    schedule: PaceSchedule,
    /// While paused, `wait_until` polls at this interval for a resume.
    pause_poll: Duration,
}

impl<W: WallSource> PacedClock<W> {
    /// Starts pacing now: the current wall time corresponds to `start_virtual`.
    pub fn new(wall: W, start_virtual: VirtualTimeMs, speed: f64) -> Self {
        let schedule = PaceSchedule::new(wall.now(), start_virtual, speed);
        PacedClock {
            wall,
            schedule,
            pause_poll: Duration::from_millis(50),
        }
    }

    pub fn schedule(&self) -> &PaceSchedule {
        &self.schedule
    }
    pub fn wall(&self) -> &W {
        &self.wall
    }
    pub fn set_speed(&mut self, speed: f64) {
        let now = self.wall.now();
        self.schedule.set_speed(now, speed);
    }
    pub fn pause(&mut self) {
        let now = self.wall.now();
        self.schedule.pause(now);
    }
    pub fn resume(&mut self) {
        let now = self.wall.now();
        self.schedule.resume(now);
    }
    /// The virtual time that corresponds to the present wall time.
    pub fn virtual_now(&self) -> VirtualTimeMs {
        self.schedule.virtual_at(self.wall.now())
    }
}

impl<W: WallSource> Clock for PacedClock<W> {
    fn wait_until(&mut self, t: VirtualTimeMs) {
        loop {
            match self.schedule.wall_deadline(t) {
                Some(deadline) => {
                    self.wall.sleep_until(deadline);
                    return;
                }
                None => {
                    let next_poll = self.wall.now() + self.pause_poll;
                    self.wall.sleep_until(next_poll);
                }
            }
        }
    }
}

/// Sleeps on the tokio timer until virtual time `t` is due under `schedule`, where
/// `wall_origin` is the instant the schedule's wall durations are measured from.
/// Returns `false` without sleeping when the schedule is paused (the caller waits for a resume).
pub async fn sleep_until_due(
    schedule: &PaceSchedule,
    wall_origin: tokio::time::Instant,
    t: VirtualTimeMs,
) -> bool {
    match schedule.wall_deadline(t) {
        Some(deadline) => {
            tokio::time::sleep_until(wall_origin + deadline).await;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wall clock that only moves when someone sleeps on it.
    struct FakeWall {
        now: Duration,
        sleeps: Vec<Duration>,
    }

    impl WallSource for FakeWall {
        fn now(&self) -> Duration {
            self.now
        }
        fn sleep_until(&mut self, deadline: Duration) {
            if deadline > self.now {
                self.now = deadline;
            }
            self.sleeps.push(self.now);
        }
    }

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn deadlines_follow_speed_from_the_anchor() {
        let schedule = PaceSchedule::new(ms(1_000), 5_000, 60.0);
        assert_eq!(schedule.wall_deadline(5_000), Some(ms(1_000)));
        assert_eq!(schedule.wall_deadline(65_000), Some(ms(2_000)));
        assert_eq!(schedule.virtual_at(ms(2_000)), 65_000);
        // Past events are due at the anchor, never before it.
        assert_eq!(schedule.wall_deadline(0), Some(ms(1_000)));
    }

    #[test]
    fn error_does_not_accumulate_over_many_steps() {
        // One virtual millisecond at speed 3 is not a whole number of nanoseconds; a clock that
        // added per-step durations would drift. An anchored one lands exactly.
        let schedule = PaceSchedule::new(Duration::ZERO, 0, 3.0);
        let deadline = schedule.wall_deadline(3_000_000_000).unwrap_or_default();
        assert_eq!(deadline, Duration::from_secs(1_000_000));
    }

    #[test]
    fn speed_change_keeps_virtual_time_continuous() {
        let mut schedule = PaceSchedule::new(Duration::ZERO, 0, 10.0);
        schedule.set_speed(ms(1_000), 100.0);
        assert_eq!(schedule.virtual_at(ms(1_000)), 10_000);
        assert_eq!(schedule.virtual_at(ms(2_000)), 110_000);
        assert_eq!(schedule.wall_deadline(110_000), Some(ms(2_000)));
    }

    #[test]
    fn pause_freezes_and_resume_continues_without_a_jump() {
        let mut schedule = PaceSchedule::new(Duration::ZERO, 0, 1.0);
        schedule.pause(ms(500));
        assert_eq!(schedule.virtual_at(ms(10_000)), 500);
        assert_eq!(schedule.wall_deadline(600), None);
        schedule.resume(ms(10_000));
        assert_eq!(schedule.virtual_at(ms(10_000)), 500);
        assert_eq!(schedule.wall_deadline(600), Some(ms(10_100)));
        // Changing speed while paused takes effect on resume, still without a jump.
        schedule.pause(ms(10_100));
        schedule.set_speed(ms(11_000), 2.0);
        schedule.resume(ms(12_000));
        assert_eq!(schedule.virtual_at(ms(13_000)), 600 + 2_000);
    }

    #[test]
    fn paced_clock_sleeps_to_each_deadline() {
        let wall = FakeWall {
            now: ms(0),
            sleeps: Vec::new(),
        };
        let mut clock = PacedClock::new(wall, 0, 2.0);
        clock.wait_until(1_000);
        clock.wait_until(1_000);
        clock.wait_until(4_000);
        assert_eq!(clock.wall().sleeps, vec![ms(500), ms(500), ms(2_000)]);
        assert_eq!(clock.virtual_now(), 4_000);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_pacing_waits_for_the_deadline() {
        let origin = tokio::time::Instant::now();
        let schedule = PaceSchedule::new(Duration::ZERO, 0, 10.0);
        assert!(sleep_until_due(&schedule, origin, 20_000).await);
        assert_eq!(origin.elapsed(), Duration::from_secs(2));
        let mut paused = schedule.clone();
        paused.pause(Duration::from_secs(2));
        assert!(!sleep_until_due(&paused, origin, 30_000).await);
    }
}
