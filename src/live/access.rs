//! Access control of the live server: the admin token that every state-changing request needs
//! when one is set (`--admin-token`, `MARKETSIM_ADMIN_TOKEN`), the read token that every read of
//! the simulation's data needs when one is set (`--read-token`, `MARKETSIM_READ_TOKEN`), both
//! compared in constant time; the same-origin rule for changes and the WebSocket; and the
//! security headers every answer carries.
//!
//! Without a read token, reads (every `GET`, the WebSocket, the pages) stay open: the dashboard
//! is meant to be watched. With one, every read of data — `GET` under `/api/` but the OpenAPI
//! document, `/metrics` and the WebSocket — needs `Authorization: Bearer <token>` (the read or
//! the admin token); a browser cannot set that header on a WebSocket, so `/ws` also takes it as
//! the `access_token` query parameter (RFC 6750 §2.3). The pages, their assets, `/healthz` and
//! the OpenAPI document stay open: they carry no data of the run.
//!
//! What changes the simulation — every other method under `/api/` — needs the admin token when
//! the server has one; with only a read token, the read token (whoever may watch may act, and no
//! stranger may do either). A refusal is a 401 with a sentence saying which token is missing.
//! Without any token the API is open, as the seed's demo wants, and `serve` warns when it listens
//! beyond the machine. Either way, a change or a WebSocket handshake from another site's page
//! (its `Origin` header) is refused with 403.

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
    /// SHA-256 of the read token, when one is set: reads then need it (or the admin token).
    read_token_digest: Option<[u8; 32]>,
    /// Origins (`http://host:port`, lower case, no trailing slash) whose pages may change the
    /// simulation and open the WebSocket besides the server's own (`--allow-origin`).
    allowed_origins: Vec<String>,
}

/// What a request from another site's page is told.
const CROSS_ORIGIN_MESSAGE: &str = "this request comes from a page of another origin (its Origin header names neither this server nor an origin allowed with --allow-origin); changes and the WebSocket are same-origin";

/// What a refused change is told when the server has an admin token.
const UNAUTHORIZED_CHANGE_MESSAGE: &str = "this request changes the simulation and the server was started with an admin token (--admin-token or MARKETSIM_ADMIN_TOKEN): send it as `Authorization: Bearer <token>`";

/// What a refused change is told when the server has only a read token.
const UNAUTHORIZED_CHANGE_READ_TOKEN_MESSAGE: &str = "this request changes the simulation and the server was started with a read token (--read-token or MARKETSIM_READ_TOKEN) and no admin token: send the read token as `Authorization: Bearer <token>`";

/// What a refused read is told.
const UNAUTHORIZED_READ_MESSAGE: &str = "this request reads the simulation and the server was started with a read token (--read-token or MARKETSIM_READ_TOKEN): send it (or the admin token) as `Authorization: Bearer <token>`, or on /ws as the `access_token` query parameter";

impl AccessPolicy {
    /// No token: every request is allowed.
    pub fn open() -> AccessPolicy {
        AccessPolicy::default()
    }

    /// State-changing requests need `token`. An empty token is no token.
    pub fn with_admin_token(token: Option<&str>) -> AccessPolicy {
        AccessPolicy {
            admin_token_digest: token.filter(|t| !t.is_empty()).map(digest),
            read_token_digest: None,
            allowed_origins: Vec::new(),
        }
    }

    /// Reads of data also need a token: `token` or the admin token. An empty token is no token.
    pub fn with_read_token(mut self, token: Option<&str>) -> AccessPolicy {
        self.read_token_digest = token.filter(|t| !t.is_empty()).map(digest);
        self
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

    pub fn read_token_required(&self) -> bool {
        self.read_token_digest.is_some()
    }

    /// Whether a change may be made with `headers`: it carries the admin token, or, when the
    /// server has only a read token, the read token; always, when the server has neither.
    pub fn allows_admin(&self, headers: &HeaderMap) -> bool {
        let expected = match (&self.admin_token_digest, &self.read_token_digest) {
            (Some(admin), _) => admin,
            (None, Some(read)) => read,
            (None, None) => return true,
        };
        let Some(given) = bearer_token(headers) else {
            return false;
        };
        bool::from(digest(given).ct_eq(expected))
    }

    /// Whether a read may be made with `headers` (or, for the WebSocket, the `access_token` of
    /// `query`): it carries the read or the admin token; always, when there is no read token.
    pub fn allows_read(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let Some(read) = &self.read_token_digest else {
            return true;
        };
        let given = bearer_token(headers).map(digest).or_else(|| {
            query
                .and_then(access_token_parameter)
                .map(|token| digest(&token))
        });
        let Some(given) = given else {
            return false;
        };
        // Both comparisons run whatever the first says, so the time says nothing about which
        // token was close.
        let matches_read = given.ct_eq(read);
        let matches_admin = self
            .admin_token_digest
            .as_ref()
            .map_or(subtle::Choice::from(0), |admin| given.ct_eq(admin));
        bool::from(matches_read | matches_admin)
    }
}

/// The `access_token` parameter of a query string, percent-decoded (RFC 6750 §2.3: how a client
/// that cannot set headers — a browser's WebSocket — sends a bearer token).
fn access_token_parameter(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "access_token")
        .map(|(_, value)| value.trim().to_string())
        .filter(|token| !token.is_empty())
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

/// Whether a request reads the simulation's data, which a read token guards: the API's reads
/// (not its OpenAPI document, which describes the API and holds no data), `/metrics` and the
/// WebSocket. Pages, assets and `/healthz` hold no data and stay open, so a browser can load the
/// page that asks for the token.
pub fn reads_data(method: &Method, path: &str) -> bool {
    let api_read = path.starts_with("/api/") && path != "/api/openapi.json";
    (api_read || path == "/metrics" || path == "/ws") && !changes_state(method, path)
}

/// Refuses a request from another site's page (403), a change without the token it needs and a
/// read of data without the read token when one is set (401).
pub async fn require_tokens(
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
        let message = if state.access.admin_token_required() {
            UNAUTHORIZED_CHANGE_MESSAGE
        } else {
            UNAUTHORIZED_CHANGE_READ_TOKEN_MESSAGE
        };
        return unauthorized(message);
    }
    if reads_data(request.method(), path)
        && !state
            .access
            .allows_read(request.headers(), request.uri().query())
    {
        return unauthorized(UNAUTHORIZED_READ_MESSAGE);
    }
    next.run(request).await
}

/// 401 with the error body every refusal of the API has, and `WWW-Authenticate: Bearer`.
fn unauthorized(message: &'static str) -> Response {
    let body = serde_json::json!({
        "error": "unauthorized",
        "message": message,
    });
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"marketsim\""),
        )],
        axum::Json(body),
    )
        .into_response()
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
    fn with_a_read_token_reads_need_it_or_the_admin_token_and_changes_need_the_admin_token() {
        let policy = AccessPolicy::with_admin_token(Some("admin")).with_read_token(Some("watch"));
        assert!(policy.read_token_required());
        assert!(policy.allows_read(&with_authorization("Bearer watch"), None));
        assert!(policy.allows_read(&with_authorization("Bearer admin"), None));
        assert!(!policy.allows_read(&with_authorization("Bearer wrong"), None));
        assert!(!policy.allows_read(&HeaderMap::new(), None));
        // The WebSocket's query parameter, percent-decoded, among others.
        assert!(policy.allows_read(&HeaderMap::new(), Some("access_token=watch")));
        assert!(policy.allows_read(&HeaderMap::new(), Some("x=1&access_token=adm%69n")));
        assert!(!policy.allows_read(&HeaderMap::new(), Some("access_token=")));
        assert!(!policy.allows_read(&HeaderMap::new(), Some("token=watch")));
        // The read token does not change the simulation when there is an admin token.
        assert!(!policy.allows_admin(&with_authorization("Bearer watch")));
        assert!(policy.allows_admin(&with_authorization("Bearer admin")));
        // With only a read token, it guards changes too: no stranger may act.
        let read_only = AccessPolicy::open().with_read_token(Some("watch"));
        assert!(read_only.allows_admin(&with_authorization("Bearer watch")));
        assert!(!read_only.allows_admin(&HeaderMap::new()));
        // Without one, reads are open.
        assert!(AccessPolicy::with_admin_token(Some("admin")).allows_read(&HeaderMap::new(), None));
    }

    #[test]
    fn a_read_token_guards_data_and_not_the_pages_the_document_or_health() {
        for (method, path) in [
            (Method::GET, "/api/simulation/state"),
            (Method::GET, "/api/simulation/history"),
            (Method::GET, "/metrics"),
            (Method::GET, "/ws"),
        ] {
            assert!(reads_data(&method, path), "{path}");
        }
        for (method, path) in [
            (Method::GET, "/api/openapi.json"),
            (Method::GET, "/dashboard"),
            (Method::GET, "/assets/dashboard.js"),
            (Method::GET, "/healthz"),
            (Method::POST, "/api/simulation/reset"),
        ] {
            assert!(!reads_data(&method, path), "{path}");
        }
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
