//! The WebSocket endpoint `/ws` and its protocol (to be built).

use axum::Router;

use super::AppState;

/// The `/ws` route.
pub fn router() -> Router<AppState> {
    Router::new()
}
