//! A progress bar on stderr, for runs longer than a second, on a terminal only.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress bar on stderr that appears only for runs longer than a second, and only on a
/// terminal.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    total_ms: u64,
    enabled: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            bar: None,
            started: Instant::now(),
            total_ms: 0,
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    pub fn update(&mut self, virtual_ms: u64, total_ms: u64) {
        self.total_ms = total_ms;
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() > Duration::from_secs(1) {
            let bar = indicatif::ProgressBar::new(self.total_ms / 3_600_000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} simulated hours ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(virtual_ms / 3_600_000);
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
