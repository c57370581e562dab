//! The REST API and its OpenAPI document (to be built).

use axum::Router;

use super::AppState;

/// Every REST route.
pub fn router() -> Router<AppState> {
    Router::new()
}
