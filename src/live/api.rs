//! The REST API: the seed's `/api/simulation/*` and `/api/dashboard/*` contracts in camelCase
//! JSON with ISO 8601 times, `/healthz`, `/metrics`, and the OpenAPI document generated from
//! the handlers (`/api/openapi.json`).
//!
//! Handlers hold no model logic: each turns a request into a [`Command`], a [`Control`] or a
//! query for the runner, and the runner's answer into the seed's shape. Every way a request can
//! be refused is one [`ApiError`] variant with its status code; bodies that are not JSON, or
//! JSON of the wrong shape, are refused by [`ApiJson`] with the field that was wrong.
//!
//! [`ROUTES`] is the one list of (method, path) pairs: [`router`] is built from it and a test
//! checks that the OpenAPI document lists each of them.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::frame::{ActiveScenario, LiveState};
use super::metrics::Metrics;
use super::runner::{
    CommandReply, Control, CurrentAnomaly, HistoryPoint, HistoryQuery, RunnerError, FRAME_MS,
};
use super::AppState;
use crate::analyst::recommendation::ResolveError;
use crate::diagnostics::{parse_duration_ms, suggestion};
use crate::engine::pace::{SPEED_MAX, SPEED_MIN};
use crate::engine::{VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
use crate::market::calendar::format_unix_ms;
use crate::market::director::StreamChange;
use crate::market::roles::FLOW_EDGES;
use crate::scenario::definition::{
    glob_matches, matching_streams, RawEventTemplate, RawScenario, ScenarioDefinition, SourceText,
};
use crate::scenario::script::parse_instant;
use crate::scenario::timeline::RawEventEntry;
use crate::session::{Command, CommandError};

/// History returned when a request names no range: this long before virtual now.
pub const DEFAULT_HISTORY_MS: u64 = 7 * MS_PER_DAY;

/// Every route of [`router`], as (method, path). The OpenAPI test walks this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/simulation/scenario"),
    ("GET", "/api/simulation/scenarios"),
    ("GET", "/api/simulation/event-library"),
    ("POST", "/api/simulation/reset"),
    ("POST", "/api/simulation/stop"),
    ("GET", "/api/simulation/state"),
    ("GET", "/api/simulation/history"),
    ("POST", "/api/simulation/control"),
    ("POST", "/api/simulation/events"),
    ("GET", "/api/simulation/recording"),
    ("GET", "/api/dashboard/recommendations"),
    ("POST", "/api/dashboard/recommendations/{id}/action"),
    ("GET", "/api/dashboard/anomalies"),
    ("GET", "/api/catalog/flows"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
];

/// The handler of one entry of [`ROUTES`]. A `match` rather than a second list, so a route
/// cannot be served without being listed (and so without being checked against the document).
fn handler_of(method: &str, path: &str) -> Option<MethodRouter<AppState>> {
    let handler = match (method, path) {
        ("POST", "/api/simulation/scenario") => post(activate_scenario),
        ("GET", "/api/simulation/scenarios") => get(list_scenarios),
        ("GET", "/api/simulation/event-library") => get(list_event_library),
        ("POST", "/api/simulation/reset") => post(reset_simulation),
        ("POST", "/api/simulation/stop") => post(stop_scenario),
        ("GET", "/api/simulation/state") => get(simulation_state),
        ("GET", "/api/simulation/history") => get(simulation_history),
        ("POST", "/api/simulation/control") => post(control_simulation),
        ("POST", "/api/simulation/events") => post(inject_event),
        ("GET", "/api/simulation/recording") => get(simulation_recording),
        ("GET", "/api/dashboard/recommendations") => get(list_recommendations),
        ("POST", "/api/dashboard/recommendations/{id}/action") => post(take_action),
        ("GET", "/api/dashboard/anomalies") => get(list_anomalies),
        ("GET", "/api/catalog/flows") => get(catalog_flows),
        ("GET", "/healthz") => get(health),
        ("GET", "/metrics") => get(prometheus_metrics),
        ("GET", "/api/openapi.json") => get(openapi_document),
        _ => return None,
    };
    Some(handler)
}

/// Every REST route.
pub fn router() -> Router<AppState> {
    ROUTES.iter().fold(Router::new(), |router, (method, path)| {
        match handler_of(method, path) {
            Some(handler) => router.route(path, handler),
            // Unreachable by construction: every listed route has a handler (a test
            // requests each one). Logged rather than panicking in a server.
            None => {
                tracing::error!(method, path, "a listed route has no handler");
                router
            }
        }
    })
}

/// The OpenAPI document of [`router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "marketsim live API",
        description = "A simulated tutoring marketplace paced to the wall clock: scenarios, \
                       external events, history, recommendations and anomalies."
    ),
    paths(
        activate_scenario,
        list_scenarios,
        list_event_library,
        reset_simulation,
        stop_scenario,
        simulation_state,
        simulation_history,
        control_simulation,
        inject_event,
        simulation_recording,
        list_recommendations,
        take_action,
        list_anomalies,
        catalog_flows,
        health,
        prometheus_metrics,
        openapi_document,
    ),
    components(schemas(ErrorBody, LiveState, CommandReply, HistoryPoint, CurrentAnomaly)),
    modifiers(&BearerTokens),
    tags(
        (name = "simulation", description = "Scenarios, events, pace and history."),
        (name = "dashboard", description = "Recommendations and anomalies."),
        (name = "catalog", description = "The marketplace's streams and the flows between them."),
        (name = "operations", description = "Health, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// The name of the bearer-token scheme in the document.
const BEARER_SCHEME: &str = "bearerToken";

/// Documents the tokens: a `bearerToken` scheme (HTTP bearer), and on every operation but the
/// health check and this document, security that is either nothing (a server started without
/// tokens) or that token (the admin token for changes; the read or admin token for reads when
/// the server has a read token). Which applies depends on how the server was started, which a
/// static document cannot say, so both alternatives are listed.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "The admin token (`serve --admin-token`) for every POST; the read or the admin \
             token (`serve --read-token`) for every GET of data when the server has a read \
             token. Without tokens the server asks for none."
                .to_string(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER_SCHEME, SecurityScheme::Http(scheme));
        let open_paths = ["/healthz", "/api/openapi.json"];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if open_paths.contains(&path.as_str()) {
                continue;
            }
            for operation in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                operation.security = Some(vec![
                    SecurityRequirement::default(),
                    SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new()),
                ]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a request was refused. Each variant has one status code; nothing changed in the
/// simulation when a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: a scenario, event, recommendation or action id that does not exist; `valid` lists
    /// the ids that do.
    #[error("{message}")]
    UnknownId {
        error: &'static str,
        message: String,
        valid: Vec<String>,
    },
    /// 400: the request is malformed or a value is out of range; `field` names the place.
    #[error("{message}")]
    BadRequest {
        error: &'static str,
        field: Option<String>,
        message: String,
    },
    /// 409: the request is well formed but the simulation's state refuses it (stopping a
    /// scenario that is not active, resolving a resolved recommendation).
    #[error("{message}")]
    Conflict {
        error: &'static str,
        message: String,
        active: Option<Vec<String>>,
    },
    /// 429: more commands in the last minute than `limits.max_commands_per_minute`.
    #[error("more than {limit} commands (activate, stop, reset, inject, take action) in the last minute (max_commands_per_minute); retry in {retry_after_s} s")]
    RateLimited { limit: usize, retry_after_s: u64 },
    /// 413: the body is larger than `limits.max_body_bytes`.
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// 503: the runner thread has stopped (the server is shutting down).
    #[error("the simulation has stopped")]
    Stopped,
    /// 500: the runner answered something the API cannot describe; a bug.
    #[error("{0}")]
    Internal(String),
}

/// Counts a command against `limits.max_commands_per_minute` (a sliding minute over all
/// clients), or refuses it with the seconds until the oldest counted one leaves the window.
fn admit_command(app: &AppState) -> Result<(), ApiError> {
    admit_at(
        &mut app
            .command_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        Instant::now(),
        app.limits.max_commands_per_minute,
    )
}

/// [`admit_command`]'s rule on a window of accepted times; pure, so its test passes the time.
fn admit_at(
    window: &mut std::collections::VecDeque<Instant>,
    now: Instant,
    limit: usize,
) -> Result<(), ApiError> {
    const MINUTE: Duration = Duration::from_secs(60);
    while window
        .front()
        .is_some_and(|&oldest| now.saturating_duration_since(oldest) >= MINUTE)
    {
        window.pop_front();
    }
    if window.len() >= limit {
        let oldest = window.front().copied().unwrap_or(now);
        let wait = MINUTE.saturating_sub(now.saturating_duration_since(oldest));
        return Err(ApiError::RateLimited {
            limit,
            retry_after_s: wait.as_secs().max(1),
        });
    }
    window.push_back(now);
    Ok(())
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A stable code, e.g. `unknown_scenario`, `invalid_field`, `not_active`.
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// The request field that was wrong, as a path (`definition.modifiers`, `streams[0]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For an unknown id: the ids that exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<Vec<String>>,
    /// For a scenario that is not active: the scenarios that are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<Vec<String>>,
}

impl ApiError {
    fn bad(error: &'static str, field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            error,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownId { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let message = self.to_string();
        let mut body = ErrorBody {
            error: String::new(),
            message,
            field: None,
            valid: None,
            active: None,
        };
        match self {
            ApiError::UnknownId { error, valid, .. } => {
                body.error = error.to_string();
                body.valid = Some(valid.clone());
            }
            ApiError::BadRequest { error, field, .. } => {
                body.error = error.to_string();
                body.field = field.clone();
            }
            ApiError::Conflict { error, active, .. } => {
                body.error = error.to_string();
                body.active = active.clone();
            }
            ApiError::PayloadTooLarge { .. } => body.error = "payload_too_large".to_string(),
            ApiError::RateLimited { .. } => body.error = "rate_limited".to_string(),
            ApiError::Stopped => body.error = "stopped".to_string(),
            ApiError::Internal(_) => body.error = "internal".to_string(),
        }
        body
    }

    /// A body axum could not read as the expected JSON.
    fn from_json_rejection(rejection: JsonRejection, limit_bytes: usize) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge { limit_bytes };
        }
        let located = located_serde_error(&rejection);
        match rejection {
            JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest {
                error: "malformed_json",
                field: None,
                message: match located {
                    Some((_, reason)) => format!("the body is not valid JSON: {reason}"),
                    None => format!("the body is not valid JSON: {}", rejection.body_text()),
                },
            },
            JsonRejection::JsonDataError(_) => match located {
                Some((field, reason)) => {
                    // A missing field is reported at its parent; name the field itself.
                    let field = match missing_field_name(&reason) {
                        Some(name) if field.is_empty() => name.to_string(),
                        Some(name) => format!("{field}.{name}"),
                        None => field,
                    };
                    ApiError::BadRequest {
                        error: "invalid_field",
                        message: if field.is_empty() {
                            reason
                        } else {
                            format!("`{field}`: {reason}")
                        },
                        field: (!field.is_empty()).then_some(field),
                    }
                }
                None => ApiError::BadRequest {
                    error: "invalid_field",
                    field: None,
                    message: rejection.body_text(),
                },
            },
            other => ApiError::BadRequest {
                error: "bad_body",
                field: None,
                message: other.body_text(),
            },
        }
    }
}

/// The (field path, reason) of the serde error inside a JSON rejection; the path is empty for
/// the body as a whole.
fn located_serde_error(rejection: &JsonRejection) -> Option<(String, String)> {
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(rejection);
    while let Some(error) = source {
        if let Some(located) = error.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>()
        {
            let path = located.path().to_string();
            let path = if path == "." { String::new() } else { path };
            return Some((path, located.inner().to_string()));
        }
        source = error.source();
    }
    None
}

/// `x` of serde's "missing field `x` at line …".
fn missing_field_name(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix("missing field `")?;
    rest.split('`').next()
}

impl From<RunnerError> for ApiError {
    fn from(error: RunnerError) -> ApiError {
        match error {
            RunnerError::Stopped => ApiError::Stopped,
            RunnerError::Command(error) => error.into(),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> ApiError {
        let message = error.to_string();
        match error {
            CommandError::UnknownScenario { valid, .. } => ApiError::UnknownId {
                error: "unknown_scenario",
                message,
                valid,
            },
            CommandError::UnknownEvent { valid, .. } => ApiError::UnknownId {
                error: "unknown_event",
                message,
                valid,
            },
            CommandError::NotActive { active, .. } => ApiError::Conflict {
                error: "not_active",
                message,
                active: Some(active),
            },
            CommandError::AlreadyActive { active, .. } => ApiError::Conflict {
                error: "already_active",
                message,
                active: Some(active),
            },
            CommandError::Redefined { .. } => ApiError::Conflict {
                error: "redefined",
                message,
                active: None,
            },
            CommandError::InTheFuture { .. } | CommandError::TooFarBack { .. } => {
                ApiError::bad("bad_time", "at", message)
            }
            CommandError::NotAnalyzed => ApiError::Conflict {
                error: "not_analyzed",
                message,
                active: None,
            },
            CommandError::Resolve(ResolveError::UnknownRecommendation(_)) => ApiError::UnknownId {
                error: "unknown_recommendation",
                message,
                valid: Vec::new(),
            },
            CommandError::Resolve(ResolveError::AlreadyResolved(_)) => ApiError::Conflict {
                error: "already_resolved",
                message,
                active: None,
            },
            CommandError::Resolve(ResolveError::UnknownAction { available, .. }) => {
                ApiError::UnknownId {
                    error: "unknown_action",
                    message,
                    valid: available
                        .split(", ")
                        .filter(|id| !id.is_empty())
                        .map(str::to_string)
                        .collect(),
                }
            }
            CommandError::Invalid { .. } => ApiError::BadRequest {
                error: "invalid_command",
                field: None,
                // The session names its diagnostics' source `command`; here it is the request.
                message: message
                    .strip_prefix("command: ")
                    .unwrap_or(&message)
                    .to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::RateLimited { retry_after_s, .. } = self {
            if let Ok(value) = header::HeaderValue::from_str(&retry_after_s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

// ---------------------------------------------------------------------------------------------
// Extractors
// ---------------------------------------------------------------------------------------------

/// A JSON body of type `T`, refused with an [`ApiError`] naming the field. An empty body reads
/// as `{}`, so endpoints whose fields are all optional take a bare POST. The content type is
/// not checked: `curl -d` sends a form type with JSON in it.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit_bytes = state.limits.max_body_bytes;
        // `Bytes` honours the router's `DefaultBodyLimit` and fails with 413 past it.
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit_bytes }
                } else {
                    ApiError::BadRequest {
                        error: "bad_body",
                        field: None,
                        message: rejection.body_text(),
                    }
                }
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        Json::<T>::from_bytes(text)
            .map(|Json(value)| ApiJson(value))
            .map_err(|rejection| ApiError::from_json_rejection(rejection, limit_bytes))
    }
}

/// Query parameters of type `T`, refused with an [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(request.uri())
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| ApiError::BadRequest {
                error: "bad_query",
                field: None,
                message: rejection.body_text(),
            })
    }
}

/// `value` as a `T`, with the path of a wrong field below `field`.
fn from_json_value<T: DeserializeOwned>(
    value: serde_json::Value,
    field: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let inner_path = error.path().to_string();
        let path = if inner_path == "." {
            field.to_string()
        } else {
            format!("{field}.{inner_path}")
        };
        let reason = error.inner().to_string();
        let path = match missing_field_name(&reason) {
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        ApiError::BadRequest {
            error: "invalid_field",
            message: format!("`{path}`: {reason}"),
            field: Some(path),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------------------------

/// The session's epoch and virtual now, from the latest state.
fn epoch_and_now(app: &AppState) -> Result<(DateTime<Utc>, VirtualTimeMs), ApiError> {
    let state = app.state.borrow();
    let epoch = state
        .epoch
        .parse::<DateTime<Utc>>()
        .map_err(|error| ApiError::Internal(format!("the state's epoch is unreadable: {error}")))?;
    Ok((epoch, state.virtual_ms))
}

/// Virtual milliseconds of an ISO instant given in `field`; refused before the epoch and
/// after virtual now (the session checks again against its own clock, which may be ahead).
fn virtual_ms_of(app: &AppState, field: &str, text: &str) -> Result<VirtualTimeMs, ApiError> {
    let (epoch, now_ms) = epoch_and_now(app)?;
    let instant = parse_instant(text).map_err(|reason| ApiError::bad("bad_time", field, reason))?;
    let offset_ms = (instant - epoch).num_milliseconds();
    let at_ms = u64::try_from(offset_ms).map_err(|_| {
        ApiError::bad(
            "bad_time",
            field,
            format!(
                "`{text}` is before the session's epoch, {}",
                format_unix_ms(epoch.timestamp_millis())
            ),
        )
    })?;
    if at_ms > now_ms {
        return Err(ApiError::bad(
            "bad_time",
            field,
            format!(
                "`{text}` is in the future; virtual now is {} (a command can be backdated, not \
                 scheduled)",
                format_unix_ms(epoch.timestamp_millis() + now_ms as i64)
            ),
        ));
    }
    Ok(at_ms)
}

fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<DateTime<Utc>>().ok()
}

/// `3 hours`, `1 day`, `90 minutes`: the seed's human durations.
pub fn human_duration(ms: u64) -> String {
    let (count, unit) = if ms == 0 {
        (0, "second")
    } else if ms % MS_PER_DAY == 0 {
        (ms / MS_PER_DAY, "day")
    } else if ms % MS_PER_HOUR == 0 {
        (ms / MS_PER_HOUR, "hour")
    } else if ms % MS_PER_MINUTE == 0 {
        (ms / MS_PER_MINUTE, "minute")
    } else {
        (ms.div_ceil(MS_PER_SECOND), "second")
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

fn serialize_pairs_as_map<S: Serializer, V: Serialize>(
    pairs: &[(String, V)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(key, value)| (key, value)))
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// `POST /api/simulation/scenario`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivateRequest {
    /// A library scenario id, or the id of `definition`.
    pub scenario_id: String,
    /// 0 switches the scenario off, 1 is as defined, up to 10.
    #[serde(default)]
    pub intensity: Option<f64>,
    /// Overrides the scenario's duration, e.g. `3h`.
    #[serde(default)]
    pub duration: Option<String>,
    /// Overrides the scenario's settlement, e.g. `6h`.
    #[serde(default)]
    pub settlement: Option<String>,
    /// Only these streams (names or globs) keep the scenario's stream modifiers.
    #[serde(default)]
    pub streams: Option<Vec<String>>,
    /// An inline scenario definition (the library file's YAML shape, as JSON).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub definition: Option<serde_json::Value>,
    /// Backdate the activation to this ISO instant (history from then on is re-simulated).
    #[serde(default)]
    pub at: Option<String>,
}

/// The activated scenario, in the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivatedScenario {
    /// The instance id, `mod_001`.
    pub id: String,
    /// The scenario id, `exam-season-surge`.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub start_time: String,
    /// `3 hours`.
    pub duration: String,
    /// Stream name → `{"multiplier": 1.6}` (or `override`, `offset`), at the given intensity.
    #[schema(value_type = HashMap<String, Object>)]
    pub affected_streams: serde_json::Map<String, serde_json::Value>,
    /// `pending`, `active`, `settling` or `settled`.
    pub status: String,
    pub settlement_duration: String,
}

/// An external event the scenario injects.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioEvent {
    pub id: String,
    /// `academic`, `marketing`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub timestamp: String,
    #[serde(rename = "injectedByAI")]
    pub injected_by_ai: bool,
}

/// The seed's activation response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResponse {
    pub success: bool,
    pub scenario: ActivatedScenario,
    pub events: Vec<ScenarioEvent>,
    pub estimated_duration: String,
    /// For a backdated activation: the buckets the re-simulation changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten_buckets: Option<Vec<String>>,
}

/// Activate a scenario from the library, or an inline definition.
#[utoipa::path(
    post,
    path = "/api/simulation/scenario",
    tag = "simulation",
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "The scenario took effect", body = ScenarioResponse),
        (status = 401, description = "The server has an admin token and the request lacks it (`Authorization: Bearer`)", body = ErrorBody),
        (status = 403, description = "The request's Origin names another site", body = ErrorBody),
        (status = 429, description = "Over `max_commands_per_minute`; `Retry-After` says when to retry", body = ErrorBody),
        (status = 400, description = "Malformed body or a value out of range", body = ErrorBody),
        (status = 404, description = "Unknown scenario id; `valid` lists the ids", body = ErrorBody),
        (status = 409, description = "The scenario is already active, or an inline scenario redefined", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
    )
)]
async fn activate_scenario(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<ActivateRequest>,
) -> Result<Json<ScenarioResponse>, ApiError> {
    admit_command(&app)?;
    let raw_definition = request
        .definition
        .clone()
        .map(|value| from_json_value::<RawScenario>(value, "definition"))
        .transpose()?;
    let at_ms = request
        .at
        .as_deref()
        .map(|text| virtual_ms_of(&app, "at", text))
        .transpose()?;
    let command = Command::Activate {
        scenario: request.scenario_id.clone(),
        definition: raw_definition.clone().map(Box::new),
        intensity: request.intensity,
        duration: request.duration.clone(),
        settlement: request.settlement.clone(),
        streams: request.streams.clone(),
    };
    let reply = app.runner.command(command, at_ms).await?;
    let definition = match &raw_definition {
        Some(raw) => inline_definition(&app, raw),
        None => app.library.scenario(&request.scenario_id).cloned(),
    };
    scenario_response(&app, &request, definition.as_ref(), reply).map(Json)
}

/// An inline definition resolved again for its stream modifiers (the session accepted it, so
/// this succeeds; `None` only if the library changed under it).
fn inline_definition(app: &AppState, raw: &RawScenario) -> Option<ScenarioDefinition> {
    let text = serde_yaml::to_string(raw).unwrap_or_default();
    let source = SourceText {
        path: std::path::Path::new("request"),
        text: &text,
    };
    ScenarioDefinition::resolve(&source, raw, &app.catalog, &app.library.events).ok()
}

/// The scenario instance an activation started.
struct ActivatedInstance {
    id: String,
    description: String,
    start: DateTime<Utc>,
    until: DateTime<Utc>,
    settled: DateTime<Utc>,
}

/// Finds the instance an activation started: among the reply's items (a live activation), or
/// in the state (a backdated one re-creates every later item, so the reply cannot tell which
/// is new), or, for a backdated scenario already settled, from its definition and overrides
/// (with no instance id).
fn activated_instance(
    app: &AppState,
    request: &ActivateRequest,
    definition: Option<&ScenarioDefinition>,
    reply: &CommandReply,
) -> Result<ActivatedInstance, ApiError> {
    let description = definition
        .map(|d| d.description.clone())
        .unwrap_or_default();
    let unreadable = |text: &str| ApiError::Internal(format!("unreadable time `{text}`"));
    let read = |text: &str| parse_iso(text).ok_or_else(|| unreadable(text));
    let from_reply = reply
        .items
        .iter()
        .filter(|item| item.kind == "scenario" && item.reference == request.scenario_id)
        .find(|item| item.start_time == reply.at);
    if let Some(item) = from_reply {
        return Ok(ActivatedInstance {
            id: item.id.clone(),
            description: item.description.clone(),
            start: read(&item.start_time)?,
            until: read(&item.active_until)?,
            settled: read(&item.settled_at)?,
        });
    }
    let from_state = app
        .state
        .borrow()
        .scenarios
        .iter()
        .find(|s| s.kind == request.scenario_id && s.start_time == reply.at)
        .cloned();
    if let Some(active) = from_state {
        return Ok(ActivatedInstance {
            id: active.id,
            description,
            start: read(&active.start_time)?,
            until: read(&active.active_until)?,
            settled: read(&active.settled_at)?,
        });
    }
    let Some(definition) = definition else {
        return Err(ApiError::Internal(format!(
            "the activation of `{}` started no instance",
            request.scenario_id
        )));
    };
    let override_ms = |text: &Option<String>, default_ms: u64| {
        text.as_deref()
            .and_then(|text| parse_duration_ms(text).ok())
            .unwrap_or(default_ms)
    };
    let start = read(&reply.at)?;
    let until = start
        + chrono::Duration::milliseconds(
            override_ms(&request.duration, definition.duration_ms) as i64
        );
    let settled = until
        + chrono::Duration::milliseconds(
            override_ms(&request.settlement, definition.settlement_ms) as i64,
        );
    Ok(ActivatedInstance {
        id: String::new(),
        description,
        start,
        until,
        settled,
    })
}

fn scenario_response(
    app: &AppState,
    request: &ActivateRequest,
    definition: Option<&ScenarioDefinition>,
    reply: CommandReply,
) -> Result<ScenarioResponse, ApiError> {
    let instance = activated_instance(app, request, definition, &reply)?;
    let (start, until, settled) = (instance.start, instance.until, instance.settled);
    let (epoch, now_ms) = epoch_and_now(app)?;
    let now = epoch + chrono::Duration::milliseconds(now_ms as i64);
    let status = if now < start {
        "pending"
    } else if now < until {
        "active"
    } else if now < settled {
        "settling"
    } else {
        "settled"
    };
    let duration = human_duration((until - start).num_milliseconds().max(0) as u64);
    let intensity = request.intensity.unwrap_or(1.0);
    let mut affected_streams = serde_json::Map::new();
    for (stream, change) in definition
        .map(|d| d.modifiers.streams.as_slice())
        .unwrap_or(&[])
    {
        let Some(name) = app
            .catalog
            .streams
            .get(stream.index())
            .map(|s| s.name.clone())
        else {
            continue;
        };
        if let Some(patterns) = &request.streams {
            if !patterns.iter().any(|pattern| glob_matches(pattern, &name)) {
                continue;
            }
        }
        // The same scaling as the director's: a multiplier m acts as 1 + (m − 1)·k.
        let round = |value: f64| (value * 1000.0).round() / 1000.0;
        let effect = match change {
            StreamChange::Multiplier(m) => {
                serde_json::json!({ "multiplier": round(1.0 + (m - 1.0) * intensity) })
            }
            StreamChange::Offset(offset) => {
                serde_json::json!({ "offset": round(offset * intensity) })
            }
            StreamChange::Override(value) => serde_json::json!({ "override": round(*value) }),
        };
        affected_streams.insert(name, effect);
    }
    // The scenario's own events: its definition's, each at its offset from the start.
    let own_events: Vec<(String, String)> = definition
        .map(|d| d.events.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|(template, offset_ms)| {
            let at = start + chrono::Duration::milliseconds(*offset_ms as i64);
            (template.clone(), format_unix_ms(at.timestamp_millis()))
        })
        .collect();
    let events = reply
        .items
        .iter()
        .filter(|event| {
            event.kind == "event"
                && own_events
                    .iter()
                    .any(|(id, at)| *id == event.reference && *at == event.start_time)
        })
        .map(|event| ScenarioEvent {
            id: event.id.clone(),
            kind: app
                .library
                .event(&event.reference)
                .and_then(|template| serde_json::to_value(template.kind).ok())
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_else(|| event.reference.clone()),
            title: event.title.clone(),
            timestamp: event.start_time.clone(),
            injected_by_ai: false,
        })
        .collect();
    Ok(ScenarioResponse {
        success: true,
        scenario: ActivatedScenario {
            id: instance.id,
            kind: request.scenario_id.clone(),
            description: instance.description,
            start_time: format_unix_ms(start.timestamp_millis()),
            duration: duration.clone(),
            affected_streams,
            status: status.to_string(),
            settlement_duration: human_duration((settled - until).num_milliseconds().max(0) as u64),
        },
        events,
        estimated_duration: duration,
        rewritten_buckets: reply.rewritten_buckets,
    })
}

/// One library scenario.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioListing {
    pub id: String,
    pub name: String,
    pub description: String,
    /// `3 hours`.
    pub duration: String,
    /// The streams and levers it moves.
    pub touches: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScenarioList {
    pub scenarios: Vec<ScenarioListing>,
}

/// The scenario library.
#[utoipa::path(
    get,
    path = "/api/simulation/scenarios",
    tag = "simulation",
    responses((status = 200, description = "Every library scenario", body = ScenarioList))
)]
async fn list_scenarios(State(app): State<AppState>) -> Json<ScenarioList> {
    Json(ScenarioList {
        scenarios: app
            .library
            .scenarios
            .iter()
            .map(|scenario| ScenarioListing {
                id: scenario.id.clone(),
                name: scenario.name.clone(),
                description: scenario.description.clone(),
                duration: human_duration(scenario.duration_ms),
                touches: scenario.touches.clone(),
            })
            .collect(),
    })
}

/// One external-event template of the library, as the admin page offers it for injection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTemplateListing {
    pub id: String,
    /// `academic`, `marketing`, `product`, `infrastructure`, `competitive` or `operational`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub description: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The streams people expect it to move (the seed's `expectedImpact.streams`).
    pub expected_streams: Vec<String>,
    /// Whether it changes the marketplace at all; `false` for a red herring. The admin page
    /// drives the simulation and may know this; the dashboard never shows it.
    pub has_effect: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventLibraryList {
    pub events: Vec<EventTemplateListing>,
}

/// The external-event library: the templates `POST /api/simulation/events` takes as `eventId`.
#[utoipa::path(
    get,
    path = "/api/simulation/event-library",
    tag = "simulation",
    responses((status = 200, description = "Every event template of the library", body = EventLibraryList))
)]
async fn list_event_library(State(app): State<AppState>) -> Json<EventLibraryList> {
    // The enums serialize to their snake_case names; a failure cannot happen for a unit
    // variant, and would show as an empty string rather than fail the listing.
    let name_of = |value: serde_json::Result<serde_json::Value>| {
        value
            .ok()
            .and_then(|value| value.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    Json(EventLibraryList {
        events: app
            .library
            .events
            .iter()
            .map(|template| EventTemplateListing {
                id: template.id.clone(),
                kind: name_of(serde_json::to_value(template.kind)),
                title: template.title.clone(),
                description: template.description.clone(),
                severity: name_of(serde_json::to_value(template.severity)),
                expected_streams: template.expected_impact.streams.clone(),
                has_effect: template.effect.is_some(),
            })
            .collect(),
    })
}

/// Reset to the baseline: cancel every scenario and event effect.
#[utoipa::path(
    post,
    path = "/api/simulation/reset",
    tag = "simulation",
    responses(
        (status = 200, description = "Everything was cancelled", body = CommandReply),
        (status = 401, description = "The server has an admin token and the request lacks it (`Authorization: Bearer`)", body = ErrorBody),
        (status = 403, description = "The request's Origin names another site", body = ErrorBody),
        (status = 429, description = "Over `max_commands_per_minute`; `Retry-After` says when to retry", body = ErrorBody),
        (status = 503, description = "The simulation has stopped", body = ErrorBody),
    )
)]
async fn reset_simulation(State(app): State<AppState>) -> Result<Json<CommandReply>, ApiError> {
    admit_command(&app)?;
    Ok(Json(app.runner.command(Command::Reset, None).await?))
}

/// `POST /api/simulation/stop`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopRequest {
    /// The scenario to stop; every active scenario when absent.
    #[serde(default)]
    pub scenario_id: Option<String>,
    /// Backdate the stop to this ISO instant.
    #[serde(default)]
    pub at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StopResponse {
    /// The scenario ids stopped.
    pub stopped: Vec<String>,
    /// What each stop did.
    pub replies: Vec<CommandReply>,
}

/// Start settling a scenario (or, without `scenarioId`, every active scenario).
#[utoipa::path(
    post,
    path = "/api/simulation/stop",
    tag = "simulation",
    request_body = StopRequest,
    responses(
        (status = 200, description = "The scenarios are settling", body = StopResponse),
        (status = 401, description = "The server has an admin token and the request lacks it (`Authorization: Bearer`)", body = ErrorBody),
        (status = 403, description = "The request's Origin names another site", body = ErrorBody),
        (status = 429, description = "Over `max_commands_per_minute`; `Retry-After` says when to retry", body = ErrorBody),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 409, description = "The scenario is not active (or none is)", body = ErrorBody),
    )
)]
async fn stop_scenario(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<StopRequest>,
) -> Result<Json<StopResponse>, ApiError> {
    admit_command(&app)?;
    let at_ms = request
        .at
        .as_deref()
        .map(|text| virtual_ms_of(&app, "at", text))
        .transpose()?;
    let targets = match request.scenario_id {
        Some(id) => vec![id],
        None => {
            let mut active: Vec<String> = app
                .state
                .borrow()
                .scenarios
                .iter()
                .filter(|s| s.id.starts_with("mod_") && s.status == "active")
                .map(|s| s.kind.clone())
                .collect();
            active.sort();
            active.dedup();
            if active.is_empty() {
                return Err(ApiError::Conflict {
                    error: "not_active",
                    message: "no scenario is active".to_string(),
                    active: Some(Vec::new()),
                });
            }
            active
        }
    };
    let mut replies = Vec::new();
    for scenario in &targets {
        let command = Command::Stop {
            scenario: scenario.clone(),
        };
        replies.push(app.runner.command(command, at_ms).await?);
    }
    Ok(Json(StopResponse {
        stopped: targets,
        replies,
    }))
}

/// The live state: virtual time, pace, scenarios in effect, clients.
#[utoipa::path(
    get,
    path = "/api/simulation/state",
    tag = "simulation",
    responses((status = 200, description = "The latest state", body = LiveState))
)]
async fn simulation_state(State(app): State<AppState>) -> Json<LiveState> {
    Json(current_state(&app))
}

fn current_state(app: &AppState) -> LiveState {
    let mut state = app.state.borrow().clone();
    state.clients = app.hub.client_count();
    state
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

/// `GET /api/simulation/history` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// ISO instant; default `end` − 7 days.
    pub start: Option<String>,
    /// ISO instant; default virtual now.
    pub end: Option<String>,
    /// Comma-separated stream names or globs (`customer.*`); default every stream.
    pub streams: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimeRange {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaselineStats {
    pub mean: f64,
    pub std_dev: f64,
}

/// The seed's history response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    pub time_range: TimeRange,
    /// Stream name → its closed buckets in the range.
    #[serde(serialize_with = "serialize_pairs_as_map")]
    #[schema(value_type = HashMap<String, Vec<HistoryPoint>>)]
    pub streams: Vec<(String, Vec<HistoryPoint>)>,
    /// External events in the range (the seed's `ExternalEvent`).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// Stream name → the baseline's mean and standard deviation (once the session is analyzed).
    #[serde(serialize_with = "serialize_pairs_as_map")]
    #[schema(value_type = HashMap<String, BaselineStats>)]
    pub baseline_stats: Vec<(String, BaselineStats)>,
    /// Scenarios and event effects whose window overlaps the range, settled ones included (as
    /// in the state's `scenarios`), so a chart of the past can shade them.
    pub scenarios: Vec<ActiveScenario>,
}

/// Closed buckets of the chosen streams, with scores, events and baselines.
#[utoipa::path(
    get,
    path = "/api/simulation/history",
    tag = "simulation",
    params(HistoryParams),
    responses(
        (status = 200, description = "The buckets in the range", body = HistoryResponse),
        (status = 400, description = "Bad or reversed times, a range over the limit, or an unknown stream", body = ErrorBody),
    )
)]
async fn simulation_history(
    State(app): State<AppState>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let (epoch, now_ms) = epoch_and_now(&app)?;
    let parse = |field: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| {
                parse_instant(text).map_err(|reason| ApiError::bad("bad_time", field, reason))
            })
            .transpose()
    };
    let now = epoch + chrono::Duration::milliseconds(now_ms as i64);
    let default_span = chrono::Duration::milliseconds(DEFAULT_HISTORY_MS as i64);
    let (start, end) = match (parse("start", &params.start)?, parse("end", &params.end)?) {
        (Some(start), Some(end)) => (start, end),
        (Some(start), None) => (start, now.max(start)),
        (None, Some(end)) => (end - default_span, end),
        (None, None) => (now - default_span, now),
    };
    if start >= end {
        return Err(ApiError::bad(
            "bad_range",
            "start",
            format!(
                "start {} is not before end {}",
                format_unix_ms(start.timestamp_millis()),
                format_unix_ms(end.timestamp_millis())
            ),
        ));
    }
    let max_days = app.limits.max_history_days;
    let span_ms = (end - start).num_milliseconds().max(0) as u64;
    if span_ms > max_days.saturating_mul(MS_PER_DAY) {
        return Err(ApiError::bad(
            "range_too_long",
            "end",
            format!(
                "the range is {:.1} days; the limit is {max_days} days (limits.max_history_days)",
                span_ms as f64 / MS_PER_DAY as f64
            ),
        ));
    }
    let streams = requested_streams(&app, params.streams.as_deref())?;
    let to_virtual = |instant: DateTime<Utc>| (instant - epoch).num_milliseconds().max(0) as u64;
    let answer = app
        .runner
        .history(HistoryQuery {
            start_ms: to_virtual(start),
            end_ms: to_virtual(end),
            streams,
        })
        .await?;
    Ok(Json(HistoryResponse {
        time_range: TimeRange {
            start: format_unix_ms(start.timestamp_millis()),
            end: format_unix_ms(end.timestamp_millis()),
        },
        streams: answer.streams,
        events: answer.events,
        baseline_stats: answer
            .baseline
            .into_iter()
            .map(|(name, mean, std_dev)| (name, BaselineStats { mean, std_dev }))
            .collect(),
        scenarios: answer.scenarios,
    }))
}

/// Catalog indices of comma-separated names or globs, in catalog order; every stream when
/// absent. A name or glob that matches nothing is refused.
fn requested_streams(app: &AppState, list: Option<&str>) -> Result<Vec<usize>, ApiError> {
    let catalog = &app.catalog;
    let Some(list) = list else {
        return Ok((0..catalog.streams.len()).collect());
    };
    let mut chosen = vec![false; catalog.streams.len()];
    let mut any = false;
    for pattern in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        any = true;
        let matches = matching_streams(catalog, pattern);
        if matches.is_empty() {
            return Err(ApiError::bad(
                "unknown_stream",
                "streams",
                format!(
                    "no stream matches `{pattern}`; {}",
                    suggestion(pattern, catalog.stream_names())
                ),
            ));
        }
        for (index, stream) in catalog.streams.iter().enumerate() {
            if matches.contains(&stream.name.as_str()) {
                chosen[index] = true;
            }
        }
    }
    if !any {
        return Err(ApiError::bad(
            "unknown_stream",
            "streams",
            "`streams` is empty; name streams or globs, comma-separated",
        ));
    }
    Ok(chosen
        .iter()
        .enumerate()
        .filter_map(|(index, &on)| on.then_some(index))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Pace, events, recording
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaceAction {
    Pause,
    Resume,
}

/// `POST /api/simulation/control`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlRequest {
    /// Virtual seconds per wall second.
    #[serde(default)]
    pub speed: Option<f64>,
    #[serde(default)]
    pub action: Option<PaceAction>,
}

/// Change the speed, pause or resume.
#[utoipa::path(
    post,
    path = "/api/simulation/control",
    tag = "simulation",
    request_body = ControlRequest,
    responses(
        (status = 200, description = "The state after the change", body = LiveState),
        (status = 401, description = "The server has an admin token and the request lacks it (`Authorization: Bearer`)", body = ErrorBody),
        (status = 403, description = "The request's Origin names another site", body = ErrorBody),
        (status = 400, description = "No change asked for, or a speed out of range", body = ErrorBody),
    )
)]
async fn control_simulation(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<ControlRequest>,
) -> Result<Json<LiveState>, ApiError> {
    if request.speed.is_none() && request.action.is_none() {
        return Err(ApiError::BadRequest {
            error: "invalid_field",
            field: None,
            message: "ask for `speed` (a number) or `action` (`pause` or `resume`)".to_string(),
        });
    }
    if let Some(speed) = request.speed {
        if !speed.is_finite() || !(SPEED_MIN..=SPEED_MAX).contains(&speed) {
            return Err(ApiError::bad(
                "invalid_field",
                "speed",
                format!("speed {speed} is outside the limit; allowed: {SPEED_MIN} to {SPEED_MAX}"),
            ));
        }
        app.runner.control(Control::Speed(speed)).await?;
    }
    match request.action {
        Some(PaceAction::Pause) => app.runner.control(Control::Pause).await?,
        Some(PaceAction::Resume) => app.runner.control(Control::Resume).await?,
        None => current_state(&app),
    };
    Ok(Json(current_state(&app)))
}

/// `POST /api/simulation/events`: exactly one of `eventId` and `event`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectRequest {
    /// An event template id of the library.
    #[serde(default)]
    pub event_id: Option<String>,
    /// An inline event template (the seed's `ExternalEvent` with an optional `effect`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub event: Option<serde_json::Value>,
    /// Backdate the event to this ISO instant (history from then on is re-simulated).
    #[serde(default)]
    pub at: Option<String>,
    /// Announce it without any effect.
    #[serde(default)]
    pub red_herring: Option<bool>,
}

/// Announce an external event.
#[utoipa::path(
    post,
    path = "/api/simulation/events",
    tag = "simulation",
    request_body = InjectRequest,
    responses(
        (status = 200, description = "The event took effect", body = CommandReply),
        (status = 401, description = "The server has an admin token and the request lacks it (`Authorization: Bearer`)", body = ErrorBody),
        (status = 403, description = "The request's Origin names another site", body = ErrorBody),
        (status = 429, description = "Over `max_commands_per_minute`; `Retry-After` says when to retry", body = ErrorBody),
        (status = 400, description = "Malformed body, bad template or time", body = ErrorBody),
        (status = 404, description = "Unknown event id; `valid` lists the ids", body = ErrorBody),
    )
)]
async fn inject_event(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<InjectRequest>,
) -> Result<Json<CommandReply>, ApiError> {
    admit_command(&app)?;
    let event = match (request.event_id, request.event) {
        (Some(id), None) => RawEventEntry::Id(id),
        (None, Some(value)) => RawEventEntry::Inline(Box::new(
            from_json_value::<RawEventTemplate>(value, "event")?,
        )),
        _ => {
            return Err(ApiError::BadRequest {
                error: "invalid_field",
                field: None,
                message: "give exactly one of `eventId` (a library id) and `event` (a template)"
                    .to_string(),
            })
        }
    };
    let at_ms = request
        .at
        .as_deref()
        .map(|text| virtual_ms_of(&app, "at", text))
        .transpose()?;
    let command = Command::Inject {
        event,
        red_herring: request.red_herring,
    };
    Ok(Json(app.runner.command(command, at_ms).await?))
}

/// The session so far as a run script: `marketsim run` of it replays the session.
#[utoipa::path(
    get,
    path = "/api/simulation/recording",
    tag = "simulation",
    // A YAML document whose top level is a mapping (the run script's keys), so the schema
    // says object: schemathesis reads YAML answers and checked them against `string`.
    responses((status = 200, description = "The recording: a run script (YAML mapping)", body = Object, content_type = "text/yaml"))
)]
async fn simulation_recording(State(app): State<AppState>) -> Result<Response, ApiError> {
    let yaml = app.runner.recording().await?;
    Ok(([(header::CONTENT_TYPE, "text/yaml; charset=utf-8")], yaml).into_response())
}

// ---------------------------------------------------------------------------------------------
// Dashboard
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationList {
    /// Whether the session is analyzed yet (the baseline is fitted in the background).
    pub analyzed: bool,
    /// The seed's `Recommendation`s, newest last.
    #[schema(value_type = Vec<Object>)]
    pub recommendations: Vec<crate::analyst::recommendation::Recommendation>,
}

/// Every recommendation of the session, active and resolved.
#[utoipa::path(
    get,
    path = "/api/dashboard/recommendations",
    tag = "dashboard",
    responses((status = 200, description = "The recommendations", body = RecommendationList))
)]
async fn list_recommendations(
    State(app): State<AppState>,
) -> Result<Json<RecommendationList>, ApiError> {
    let recommendations = app.runner.recommendations().await?;
    Ok(Json(RecommendationList {
        analyzed: app.state.borrow().analyzed,
        recommendations,
    }))
}

/// `POST /api/dashboard/recommendations/{id}/action`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionRequest {
    /// One of the recommendation's `actions[].id`.
    pub action_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResponse {
    /// When the action was taken.
    pub at: String,
    /// The recommendation, now resolved.
    #[schema(value_type = Object)]
    pub recommendation: Option<crate::analyst::recommendation::Recommendation>,
}

/// Take a recommended action: the recommendation is resolved (the execution is simulated).
#[utoipa::path(
    post,
    path = "/api/dashboard/recommendations/{id}/action",
    tag = "dashboard",
    params(("id" = String, Path, description = "The recommendation id")),
    request_body = ActionRequest,
    responses(
        (status = 200, description = "The recommendation is resolved", body = ActionResponse),
        (status = 401, description = "The server has an admin token and the request lacks it (`Authorization: Bearer`)", body = ErrorBody),
        (status = 403, description = "The request's Origin names another site", body = ErrorBody),
        (status = 429, description = "Over `max_commands_per_minute`; `Retry-After` says when to retry", body = ErrorBody),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "Unknown recommendation or action", body = ErrorBody),
        (status = 409, description = "Already resolved, or the session is not analyzed yet", body = ErrorBody),
    )
)]
async fn take_action(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ActionRequest>,
) -> Result<Json<ActionResponse>, ApiError> {
    admit_command(&app)?;
    let command = Command::Resolve {
        recommendation: id.clone(),
        action: request.action_id,
    };
    let reply = app.runner.command(command, None).await?;
    let recommendation = app
        .runner
        .recommendations()
        .await?
        .into_iter()
        .find(|r| r.id == id);
    Ok(Json(ActionResponse {
        at: reply.at,
        recommendation,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyList {
    /// Streams flagged in the last closed bucket.
    pub anomalies: Vec<CurrentAnomaly>,
}

/// Streams flagged `warning` or `critical` in the last closed bucket.
#[utoipa::path(
    get,
    path = "/api/dashboard/anomalies",
    tag = "dashboard",
    responses((status = 200, description = "The current anomalies", body = AnomalyList))
)]
async fn list_anomalies(State(app): State<AppState>) -> Result<Json<AnomalyList>, ApiError> {
    Ok(Json(AnomalyList {
        anomalies: app.runner.anomalies().await?,
    }))
}

// ---------------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------------

/// One stream of the catalog, as the dashboard's flow view and heatmap label it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogStream {
    /// `customer.tutor.search`.
    pub name: String,
    /// `customer`, `session`, … (the name's first part).
    pub domain: String,
    pub description: String,
    /// What the stream counts or measures, e.g. `searches`.
    pub unit: String,
}

/// One flow of the model: events of `from` cause (or feed) events of `to`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowEdge {
    pub from: String,
    pub to: String,
    /// How `from` feeds `to`, in a sentence.
    pub description: String,
}

/// The streams in catalog order and the model's edge table.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogFlows {
    pub streams: Vec<CatalogStream>,
    pub edges: Vec<FlowEdge>,
}

/// The streams and the model's flows between them (who feeds whom), for the flow view.
#[utoipa::path(
    get,
    path = "/api/catalog/flows",
    tag = "catalog",
    responses((status = 200, description = "Streams in catalog order and the flow edges", body = CatalogFlows))
)]
async fn catalog_flows(State(app): State<AppState>) -> Json<CatalogFlows> {
    let catalog = &app.catalog;
    let known = |name: &str| catalog.streams.iter().any(|stream| stream.name == name);
    Json(CatalogFlows {
        streams: catalog
            .streams
            .iter()
            .map(|stream| CatalogStream {
                name: stream.name.clone(),
                domain: stream.domain.clone(),
                description: stream.description.clone(),
                unit: stream.unit.clone(),
            })
            .collect(),
        // A catalog edited to drop a stream keeps the edge table's other flows.
        edges: FLOW_EDGES
            .iter()
            .filter(|(from, to, _)| known(from) && known(to))
            .map(|(from, to, description)| FlowEdge {
                from: from.to_string(),
                to: to.to_string(),
                description: description.to_string(),
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Liveness.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The server is up", body = Health))
)]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
    })
}

/// Wall time between the two samples of the event counter `/metrics` takes for its rate.
const RATE_WINDOW: Duration = Duration::from_millis(3 * FRAME_MS);

/// Prometheus text. `events_per_second` is measured over a few runner frames while the
/// request waits: a rate needs two samples, and the server keeps no scrape history.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
async fn prometheus_metrics(State(app): State<AppState>) -> Response {
    let events = || {
        app.metrics
            .events_total
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let (first, started) = (events(), Instant::now());
    tokio::time::sleep(RATE_WINDOW).await;
    let per_second = events().saturating_sub(first) as f64 / started.elapsed().as_secs_f64();
    Metrics::set(&app.metrics.clients, app.hub.client_count() as u64);
    Metrics::set(
        &app.metrics.runtime_tasks,
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as u64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(per_second),
    )
        .into_response()
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Logs every request (method, path, status, latency) at info and counts it.
pub async fn log_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    Metrics::add(&app.metrics.http_requests, 1);
    if response.status().is_server_error() {
        Metrics::add(&app.metrics.http_server_errors, 1);
    }
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_window_admits_its_limit_a_minute_and_says_when_to_retry() {
        let start = Instant::now();
        let mut window = std::collections::VecDeque::new();
        for second in 0..3 {
            let at = start + Duration::from_secs(second);
            assert!(admit_at(&mut window, at, 3).is_ok(), "command {second}");
        }
        let refused = admit_at(&mut window, start + Duration::from_secs(20), 3);
        match refused {
            Err(ApiError::RateLimited {
                limit,
                retry_after_s,
            }) => assert_eq!((limit, retry_after_s), (3, 40)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A refusal is not counted; once the first command is a minute old, one more fits.
        assert!(admit_at(&mut window, start + Duration::from_secs(60), 3).is_ok());
        assert!(admit_at(&mut window, start + Duration::from_secs(60), 3).is_err());
    }
}
