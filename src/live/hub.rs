//! The WebSocket hub: fan-out of runner frames to clients (to be built).

use std::sync::Arc;

use super::frame::{Frame, LiveState};
use super::metrics::Metrics;
use super::Limits;
use crate::market::Catalog;

/// Connected clients and their subscriptions.
pub struct Hub {
    pub catalog: Arc<Catalog>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(catalog: Arc<Catalog>, limits: Arc<Limits>, metrics: Arc<Metrics>) -> Hub {
        Hub {
            catalog,
            limits,
            metrics,
        }
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        0
    }

    /// Fans frames out to clients until `shutdown` is cancelled or the runner stops.
    pub async fn run(
        self: Arc<Self>,
        mut frames: tokio::sync::mpsc::Receiver<Frame>,
        _state: tokio::sync::watch::Receiver<LiveState>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                frame = frames.recv() => if frame.is_none() { return },
            }
        }
    }
}
