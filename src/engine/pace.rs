//! Pacing: the pure mapping between virtual time and wall time that a live runner paces by.
//!
//! The engine itself never waits: [`crate::engine::Simulation`] handles events as fast as it is
//! asked to. A live runner reads the wall clock once per frame, asks a [`PaceSchedule`] which
//! virtual time that wall time stands for, and advances the session to it. A headless run simply
//! never asks. The schedule decides only *how far* to advance, never *what* happens, so a paced
//! run's outputs are identical to an unpaced one's.
//!
//! The schedule is anchored: wall = anchor_wall + (t − anchor_virtual) / speed. Each mapping is
//! computed from the anchor, not from the previous frame, so rounding error never accumulates
//! over a long session. Changing speed or resuming after a pause re-anchors at the current
//! virtual time, so virtual time never jumps.

use std::time::Duration;

use super::time::VirtualTimeMs;

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

    /// The anchor `(wall, virtual)`: the wall time (since the caller's origin) at which virtual
    /// time stood at the anchor's virtual time. With the speed it is the whole mapping, so a
    /// client that knows it (and the origin as a clock reading) can compute any event's due
    /// wall time itself.
    pub fn anchor(&self) -> (Duration, VirtualTimeMs) {
        (self.anchor_wall, self.anchor_virtual)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
