//! A small client of the REST API for `marketsim api` and the tests: one HTTP/1.1 request per
//! connection over a tokio `TcpStream` (`Connection: close`, body by `Content-Length`, response
//! read to the end, chunked or not), and [`ApiCall`], the CLI's verbs as requests.
//!
//! Plain `http://` only: the live server does not speak TLS, and a proxy in front of it is
//! reached by its own URL.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the client connects when no `--url` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Longest a request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response read, in bytes (a week of every stream's history is a few MB).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host[:port][/prefix]`.
    #[error("`{url}` is not a server URL ({reason}); write e.g. {DEFAULT_URL}")]
    BadUrl { url: String, reason: String },
    /// Nothing answers at the address (refused, unresolvable, timed out).
    #[error("cannot reach the server at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// The connection broke, or the answer is not HTTP.
    #[error("bad response from {address}: {reason}")]
    BadResponse { address: String, reason: String },
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The body pretty-printed when it is JSON, as it is otherwise.
    pub fn pretty_body(&self) -> String {
        match self.json() {
            Some(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
            None => self.body.clone(),
        }
    }
}

/// A server's address and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    /// `host:port`.
    authority: String,
    /// The URL's path without a trailing slash ("" for the root).
    prefix: String,
    /// Sent as `Authorization: Bearer …` when set (a server started with `--admin-token`).
    bearer_token: Option<String>,
}

impl ApiClient {
    /// Parses `http://host[:port][/prefix]` (port 80 by default).
    pub fn new(url: &str) -> Result<ApiClient, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let authority = match authority.rsplit_once(':') {
            // An IPv6 literal without a port, `[::1]`, has colons but ends in `]`.
            Some((_, port)) if !authority.ends_with(']') => {
                port.parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
                authority.to_string()
            }
            _ => format!("{authority}:80"),
        };
        Ok(ApiClient {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
            bearer_token: None,
        })
    }

    /// A client of `http://127.0.0.1:{port}`.
    pub fn local(port: u16) -> ApiClient {
        ApiClient {
            authority: format!("127.0.0.1:{port}"),
            prefix: String::new(),
            bearer_token: None,
        }
    }

    /// The client sending `token` as `Authorization: Bearer …` with every request (no header
    /// for `None` or an empty token, or one with a line break, which a header cannot hold).
    pub fn with_bearer_token(mut self, token: Option<&str>) -> ApiClient {
        self.bearer_token = token
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.contains(['\r', '\n']))
            .map(str::to_string);
        self
    }

    pub async fn get(&self, path: &str) -> Result<ApiResponse, ClientError> {
        self.request("GET", path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<ApiResponse, ClientError> {
        self.request("POST", path, Some(body.to_string().as_bytes()))
            .await
    }

    /// Sends one request with `body` as `application/json` and reads the whole response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<ApiResponse, ClientError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Unreachable {
                address: self.authority.clone(),
                reason: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            }),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<ApiResponse, ClientError> {
        let mut stream = TcpStream::connect(&self.authority).await.map_err(|error| {
            ClientError::Unreachable {
                address: self.authority.clone(),
                reason: error.to_string(),
            }
        })?;
        let broken = |error: std::io::Error| ClientError::BadResponse {
            address: self.authority.clone(),
            reason: error.to_string(),
        };
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\n",
            self.prefix, self.authority
        );
        if let Some(token) = &self.bearer_token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.map_err(broken)?;
        if let Some(body) = body {
            // A server that refuses a large body may answer and close before reading all of
            // it; the answer is still read below.
            if let Err(error) = stream.write_all(body).await {
                tracing::debug!(%error, "the server closed before the whole body was sent");
            }
        }
        let mut raw = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&chunk[..n]);
                    if raw.len() > MAX_RESPONSE_BYTES {
                        return Err(ClientError::BadResponse {
                            address: self.authority.clone(),
                            reason: format!("the response is over {MAX_RESPONSE_BYTES} bytes"),
                        });
                    }
                }
                // A reset after a complete answer (the server closed with unread body bytes)
                // still leaves a usable response.
                Err(error) if !raw.is_empty() => {
                    tracing::debug!(%error, "the connection was reset after the answer");
                    break;
                }
                Err(error) => return Err(broken(error)),
            }
        }
        parse_response(&raw).map_err(|reason| ClientError::BadResponse {
            address: self.authority.clone(),
            reason,
        })
    }
}

/// Splits a raw HTTP/1.1 response into status, content type and body.
fn parse_response(raw: &[u8]) -> Result<ApiResponse, String> {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let mut content_type = None;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.to_string()),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-length" => content_length = value.parse::<usize>().ok(),
            _ => {}
        }
    }
    let decoded;
    if chunked {
        decoded = decode_chunked(body)?;
        body = &decoded;
    } else if let Some(length) = content_length {
        body = &body[..length.min(body.len())];
    }
    Ok(ApiResponse {
        status,
        content_type,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line is cut off")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("a chunk is cut off".to_string());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// What `marketsim api` can ask.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    State,
    Scenarios,
    Activate {
        scenario_id: String,
    },
    /// Stop one scenario, or every active one.
    Stop {
        scenario_id: Option<String>,
    },
    Reset,
    Inject {
        event_id: String,
        at: Option<String>,
    },
    Speed(f64),
    Pause,
    Resume,
    Recording,
}

impl ApiCall {
    /// The method, path and JSON body of the call.
    pub fn request(&self) -> (&'static str, &'static str, Option<serde_json::Value>) {
        use serde_json::json;
        match self {
            ApiCall::State => ("GET", "/api/simulation/state", None),
            ApiCall::Scenarios => ("GET", "/api/simulation/scenarios", None),
            ApiCall::Activate { scenario_id } => (
                "POST",
                "/api/simulation/scenario",
                Some(json!({ "scenarioId": scenario_id })),
            ),
            ApiCall::Stop { scenario_id } => (
                "POST",
                "/api/simulation/stop",
                Some(match scenario_id {
                    Some(id) => json!({ "scenarioId": id }),
                    None => json!({}),
                }),
            ),
            ApiCall::Reset => ("POST", "/api/simulation/reset", Some(json!({}))),
            ApiCall::Inject { event_id, at } => {
                let mut body = json!({ "eventId": event_id });
                if let Some(at) = at {
                    body["at"] = json!(at);
                }
                ("POST", "/api/simulation/events", Some(body))
            }
            ApiCall::Speed(speed) => (
                "POST",
                "/api/simulation/control",
                Some(json!({ "speed": speed })),
            ),
            ApiCall::Pause => (
                "POST",
                "/api/simulation/control",
                Some(json!({ "action": "pause" })),
            ),
            ApiCall::Resume => (
                "POST",
                "/api/simulation/control",
                Some(json!({ "action": "resume" })),
            ),
            ApiCall::Recording => ("GET", "/api/simulation/recording", None),
        }
    }

    /// Sends the call.
    pub async fn send(&self, client: &ApiClient) -> Result<ApiResponse, ClientError> {
        let (method, path, body) = self.request();
        let body = body.map(|value| value.to_string());
        client
            .request(method, path, body.as_deref().map(str::as_bytes))
            .await
    }
}
