//! Access control of the live server: the admin token that every state-changing request needs
//! when one is set (`--admin-token`, `MARKETSIM_ADMIN_TOKEN`), compared in constant time; the
//! same-origin rule for changes and the WebSocket; and the security headers every answer carries.
//!
//! Reads (every `GET`, the WebSocket, the pages) stay open: the dashboard is meant to be watched.
//! What changes the simulation — every other method under `/api/` — needs
//! `Authorization: Bearer <token>` when the server has a token, and is refused with 401 and a
//! sentence saying so otherwise. Without a token the API is open, as the seed's demo wants, and
//! `serve` warns when it listens beyond the machine. Either way, a change or a WebSocket
//! handshake from another site's page (its `Origin` header) is refused with 403.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;

/// Who may change the simulation, and from which pages.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// SHA-256 of the admin token, when one is set. Comparing digests keeps the comparison's
    /// time independent of the token's length as well as of its bytes.
    admin_token_digest: Option<[u8; 32]>,
    /// Origins (`http://host:port`, lower case, no trailing slash) whose pages may change the
    /// simulation and open the WebSocket besides the server's own (`--allow-origin`).
    allowed_origins: Vec<String>,
}

/// What a request from another site's page is told.
const CROSS_ORIGIN_MESSAGE: &str = "this request comes from a page of another origin (its Origin header names neither this server nor an origin allowed with --allow-origin); changes and the WebSocket are same-origin";

/// What a refused request is told.
const UNAUTHORIZED_MESSAGE: &str = "this request changes the simulation and the server was started with an admin token (--admin-token or MARKETSIM_ADMIN_TOKEN): send it as `Authorization: Bearer <token>`";

impl AccessPolicy {
    /// No token: every request is allowed.
    pub fn open() -> AccessPolicy {
        AccessPolicy::default()
    }

    /// State-changing requests need `token`. An empty token is no token.
    pub fn with_admin_token(token: Option<&str>) -> AccessPolicy {
        AccessPolicy {
            admin_token_digest: token.filter(|t| !t.is_empty()).map(digest),
            allowed_origins: Vec::new(),
        }
    }

    /// Pages of these origins may also change the simulation and open the WebSocket.
    pub fn allowing_origins(mut self, origins: &[String]) -> AccessPolicy {
        self.allowed_origins = origins
            .iter()
            .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        self
    }

    /// Whether a request may come from the page that sent it: no `Origin` header (not a
    /// browser, or a same-origin GET), an `Origin` naming this server's own `Host`, or an
    /// allowed origin. A browser sends `Origin` with every cross-site POST and WebSocket
    /// handshake, and a page can post JSON as `text/plain` without a preflight, so without this
    /// check any site the operator visits could reset an open server on 127.0.0.1.
    pub fn allows_origin(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.allowed_origins.contains(&origin) {
            return true;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(str::to_ascii_lowercase);
        match (origin.split_once("://"), host) {
            (Some((scheme, authority)), Some(host)) => {
                matches!(scheme, "http" | "https") && authority == host
            }
            _ => false,
        }
    }

    pub fn admin_token_required(&self) -> bool {
        self.admin_token_digest.is_some()
    }

    /// Whether `headers` carry the admin token (always, when none is set).
    pub fn allows_admin(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.admin_token_digest else {
            return true;
        };
        let Some(given) = bearer_token(headers) else {
            return false;
        };
        bool::from(digest(given).ct_eq(expected))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer …` header (the scheme's case ignored, as RFC 9110 says).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Whether a request changes the simulation: every method but GET, HEAD and OPTIONS under
/// `/api/` (all of them `POST` today).
pub fn changes_state(method: &Method, path: &str) -> bool {
    path.starts_with("/api/") && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a state-changing request without the admin token: 401 with the error body every
/// refusal of the API has, and `WWW-Authenticate: Bearer`.
pub async fn require_admin_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let guarded = changes_state(request.method(), path) || path == "/ws";
    if guarded && !state.access.allows_origin(request.headers()) {
        let body = serde_json::json!({
            "error": "cross_origin",
            "message": CROSS_ORIGIN_MESSAGE,
        });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    if changes_state(request.method(), path) && !state.access.allows_admin(request.headers()) {
        let body = serde_json::json!({
            "error": "unauthorized",
            "message": UNAUTHORIZED_MESSAGE,
        });
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"marketsim\""),
            )],
            axum::Json(body),
        )
            .into_response();
    }
    next.run(request).await
}

/// The content security policy of every answer: the pages run only their own scripts (no inline
/// script, no eval), load styles, images and data only from this server (the WebSocket
/// included), and may not be framed. Inline style attributes are allowed: ECharts writes its
/// tooltips' markup with them and the views set widths and swatch colours so; a style cannot run
/// code, and scripts stay strict.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Adds the security headers to every answer (pages, assets, API alike; harmless on JSON).
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ] {
        headers.entry(name).or_insert(value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_allowed_when_one_is_set() {
        let policy = AccessPolicy::with_admin_token(Some("s3cret"));
        assert!(policy.allows_admin(&with_authorization("Bearer s3cret")));
        assert!(policy.allows_admin(&with_authorization("bearer s3cret")));
        for refused in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
        ] {
            assert!(
                !policy.allows_admin(&with_authorization(refused)),
                "{refused:?}"
            );
        }
        assert!(!policy.allows_admin(&HeaderMap::new()));
    }

    #[test]
    fn without_a_token_everything_is_allowed_and_an_empty_token_is_none() {
        assert!(AccessPolicy::open().allows_admin(&HeaderMap::new()));
        assert!(!AccessPolicy::with_admin_token(Some("")).admin_token_required());
    }

    fn with_origin(origin: &str, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [(header::ORIGIN, origin), (header::HOST, host)] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        headers
    }

    #[test]
    fn a_page_of_the_server_itself_or_an_allowed_origin_may_change_it_and_another_site_may_not() {
        let policy = AccessPolicy::open();
        assert!(
            policy.allows_origin(&HeaderMap::new()),
            "no Origin: not a browser"
        );
        assert!(policy.allows_origin(&with_origin("http://127.0.0.1:8080", "127.0.0.1:8080")));
        assert!(policy.allows_origin(&with_origin("HTTP://LOCALHOST:8080/", "localhost:8080")));
        for (origin, host) in [
            ("http://evil.example", "127.0.0.1:8080"),
            ("http://127.0.0.1:9090", "127.0.0.1:8080"),
            ("null", "127.0.0.1:8080"),
            ("file://", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080", ""),
        ] {
            assert!(
                !policy.allows_origin(&with_origin(origin, host)),
                "{origin} on {host}"
            );
        }
        let allowing = AccessPolicy::open().allowing_origins(&["https://ops.example/".to_string()]);
        assert!(allowing.allows_origin(&with_origin("https://ops.example", "127.0.0.1:8080")));
        assert!(!allowing.allows_origin(&with_origin("https://other.example", "127.0.0.1:8080")));
    }

    #[test]
    fn only_api_requests_that_are_not_reads_change_state() {
        assert!(changes_state(&Method::POST, "/api/simulation/scenario"));
        assert!(changes_state(&Method::DELETE, "/api/anything"));
        assert!(!changes_state(&Method::GET, "/api/simulation/state"));
        assert!(!changes_state(&Method::OPTIONS, "/api/simulation/scenario"));
        assert!(!changes_state(&Method::POST, "/dashboard"));
    }
}
