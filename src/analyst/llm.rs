//! The LLM analyst: an OpenAI-compatible chat-completions endpoint reads the shared context and
//! answers with recommendations; every reply is validated and any failure falls back to the
//! rules analyst, visibly.
//!
//! Main types: [`LlmSettings`] (read from the environment; no API key means no LLM and no
//! network at all), [`LlmAnalyst`] (the [`Analyst`] that asks the model) and [`LlmError`] (why
//! an answer was not used — it becomes the `fallbackReason` of the rules recommendations that
//! stand in for it).
//!
//! The endpoint can be OpenAI itself or any server that speaks the same wire format (ollama,
//! vLLM, the llama.cpp server): the request asks for structured output with a strict JSON
//! schema, and asks once more without it when the server answers 400, because many local
//! servers do not implement `json_schema`. Whatever the server says, the reply is checked
//! against the context — known stream names, known event ids — before a single recommendation
//! is accepted, so a model cannot put invented streams or events into the book.
//!
//! Limits: one call, retries and back-off included, never takes longer than
//! [`LlmSettings::timeout`]; at most [`LlmSettings::max_retries`] retries, only for rate limits,
//! server errors and connection failures; replies longer than [`MAX_REPLY_BYTES`] are refused.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use async_openai::config::{OpenAIConfig, OPENAI_API_BASE};
use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError};
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, CreateChatCompletionRequest,
    CreateChatCompletionResponse, FinishReason, ResponseFormat, ResponseFormatJsonSchema,
};
use async_openai::Client;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::context::AnalysisContext;
use super::eval::EVIDENCE_REJECTION;
use super::recommendation::{Priority, Recommendation, RecommendedAction, Status};
use super::rules::{analyze_with_rules, check_cause, CauseRejection};
use super::{Analyst, AnalystCall};

/// A run asks the model at most this many times; later analyses are answered by the rules
/// analyst (marked `rules-fallback`), so the cap limits model calls, never the analysis.
/// The default of `MARKETSIM_LLM_MAX_CALLS` (see [`LlmSettings::max_calls`]).
pub const MAX_CALLS_PER_RUN: usize = 24;

/// The default of `MARKETSIM_LLM_MAX_CALLS_PER_MINUTE` (see [`LlmSettings::max_calls_per_minute`]):
/// a live server at 600× closes an hour's bucket every 6 s, ten analyses a minute; a paid API
/// should not see more than this from one session however fast it runs.
pub const MAX_CALLS_PER_MINUTE: usize = 12;
/// The model used when `MARKETSIM_LLM_MODEL` is not set.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The reply budget (`max_completion_tokens`): ten recommendations of a few sentences fit; a
/// model that rambles is cut by the server instead of running to its own cap.
pub const MAX_REPLY_TOKENS: u32 = 2_048;
/// The context window assumed when `MARKETSIM_LLM_CONTEXT_TOKENS` is not set: what local
/// servers commonly give a model (set 4096 for llama.cpp's default window).
pub const DEFAULT_CONTEXT_TOKENS: u32 = 8_192;
/// Below this the instructions and the answer schema (about 1,600 tokens with the catalog's 50
/// stream names) leave no room for a context and a reply.
pub const MIN_CONTEXT_TOKENS: u32 = 3_072;
/// The prompt budget never goes below this (see [`prompt_tokens`]): the instructions and the
/// answer schema take about 1,600 tokens of it.
const MIN_PROMPT_TOKENS: u32 = 2_048;
/// Bytes of JSON per token, on the low side, so estimates err towards "too long": numbers,
/// stream names and punctuation tokenize densely.
const BYTES_PER_TOKEN: usize = 3;

/// The circuit breaker: after this many failed calls in a row (or one call that spent half the
/// timeout budget and failed, as a black-holed endpoint does) the model is not asked for
/// [`CIRCUIT_COOLDOWN_ANALYSES`] analyses, answered by rules meanwhile; then one call probes it.
pub const CIRCUIT_FAILURES: u32 = 2;
/// Analyses answered by rules while the circuit is open; doubled each time a probe fails.
pub const CIRCUIT_COOLDOWN_ANALYSES: u32 = 16;
/// The failed-calls budget used when `MARKETSIM_LLM_FAILURE_BUDGET_MS` is not set (see
/// [`LlmSettings::failure_budget`]).
pub const DEFAULT_FAILURE_BUDGET_MS: u64 = 60_000;
/// The whole-call budget used when `MARKETSIM_LLM_TIMEOUT_MS` is not set.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Retries used when `MARKETSIM_LLM_RETRIES` is not set.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// More retries than this only delay the fallback; the setting is refused above it.
pub const MAX_RETRIES_LIMIT: u32 = 10;
/// Back-off before retry number `n` is `n` times this.
pub const RETRY_BACKOFF_STEP_MS: u64 = 200;
/// A reply (the message content) longer than this is refused without being parsed.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;
/// A response body longer than this is not read further: the call fails as
/// [`LlmError::ReplyTooLong`] after reading at most this much (a misbehaving server cannot make
/// the analyst buffer hundreds of megabytes). Room for the content's JSON escaping and the
/// completion's other fields.
pub const MAX_RESPONSE_BODY_BYTES: usize = 4 * MAX_REPLY_BYTES;
/// Marks the transport's "body too long" error so [`LlmError::from_client`] can tell it from
/// other client errors (the client's error type has no variant for it).
const BODY_TOO_LONG_MARKER: &str = "marketsim: response body longer than";
/// Recommendations kept from one reply; a model that rambles past this is cut, not refused,
/// because the first ones are the ones it ranked highest.
pub const MAX_RECOMMENDATIONS_PER_REPLY: usize = 10;
/// Error bodies and other server text are cut to this many characters in reasons.
const MAX_DETAIL_CHARS: usize = 160;

/// The seed's "Dashboard AI Contextualizer" prompt, followed by the answer format the
/// validator enforces.
pub const SYSTEM_PROMPT: &str = "\
You are an AI analyzing marketplace operations data to provide insights.
You identify patterns, explain causation, and recommend actions.
You reference specific data points and external events in your analysis.

The marketplace connects students with tutors. The user message is a JSON snapshot of what the \
operations team sees at `now`: the current anomalies (streams flagged against their baseline, \
with z-score, value, expected value, percent change and since when), the external events of the \
last seven days, baseline statistics and recent values of the anomalous streams, and \
correlations between events and the streams that moved after them. `causeEvidence` says, \
for each external event, which anomalous streams it can explain (`explains`: the event declared \
the stream, the stream moved in the declared direction, and its flags began after the event \
within the declared duration) and why it cannot explain the others it declared.

Answer ONLY with one JSON object, without prose or markdown, of the form \
{\"recommendations\":[...]}. Each recommendation has exactly these fields:
- priority: \"critical\", \"warning\" or \"normal\"
- title: a short name for the problem
- description: what is happening, citing numbers from the context
- impact: what it costs the marketplace if nothing is done
- cause: the most likely cause, naming the external events (title and id) that explain it, or \
saying that none does
- actions: one or two objects {\"label\", \"description\", \"expectedImpact\", \"timeToEffect\"}
- affectedStreams: the stream names concerned, copied exactly from the context
- relatedEvents: the ids of the context's external events that caused it (may be empty)
- confidence: an integer from 0 to 100

Use only stream names and event ids that appear in the context; never invent one. Put an \
event in relatedEvents only when its `explains` includes one of the recommendation's \
affectedStreams; an event that happened near an anomaly does not necessarily explain it. \
Group anomalies that share a cause into one recommendation. When there are no anomalies, answer {\"recommendations\":[]}.";

/// Where and how to reach the model.
#[derive(Clone, PartialEq, Eq)]
pub struct LlmSettings {
    pub api_key: String,
    /// `None` means OpenAI itself; otherwise the `/v1` base of any OpenAI-compatible server,
    /// e.g. `http://127.0.0.1:11434/v1` for ollama.
    pub base_url: Option<String>,
    pub model: String,
    /// Budget for one whole analysis call, retries and back-off included.
    pub timeout: Duration,
    /// Retries after the first attempt, for 429, 5xx and connection failures only.
    pub max_retries: u32,
    /// The model's context window in tokens: prompt and reply must fit in it together.
    pub context_tokens: u32,
    /// The most time a run (or a live session) spends on calls the endpoint fails: each call's
    /// timeout is cut to what is left of it, and once it is spent the model is not asked
    /// again. A dead or black-holed endpoint adds at most this much to a run, however long.
    pub failure_budget: Duration,
    /// Model calls a run (or a live session) makes at most; the rules answer the analyses
    /// after them. A paid API costs per call; a local server costs only time.
    pub max_calls: usize,
    /// Model calls in any minute of wall time at most; the rules answer the analyses past it
    /// (the model is asked again once a minute has passed since the oldest of them).
    pub max_calls_per_minute: usize,
}

/// The API key stays out of debug output, which ends up in logs.
impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LlmSettings")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("context_tokens", &self.context_tokens)
            .field("failure_budget", &self.failure_budget)
            .field("max_calls", &self.max_calls)
            .field("max_calls_per_minute", &self.max_calls_per_minute)
            .finish()
    }
}

impl LlmSettings {
    /// Settings from the process environment: `None` when `OPENAI_API_KEY` is unset or empty
    /// (the caller then uses the rules analyst and makes no network call); a malformed setting
    /// is an error.
    pub fn try_from_env() -> Result<Option<LlmSettings>, LlmError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Settings from any variable lookup (the environment in [`LlmSettings::try_from_env`], a map in
    /// tests — the environment is process-global and tests run in parallel).
    ///
    /// Reads `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `MARKETSIM_LLM_MODEL` (default
    /// [`DEFAULT_MODEL`]), `MARKETSIM_LLM_TIMEOUT_MS` (default [`DEFAULT_TIMEOUT_MS`]),
    /// `MARKETSIM_LLM_RETRIES` (default [`DEFAULT_MAX_RETRIES`]) and
    /// `MARKETSIM_LLM_CONTEXT_TOKENS` (default [`DEFAULT_CONTEXT_TOKENS`]) and
    /// `MARKETSIM_LLM_FAILURE_BUDGET_MS` (default [`DEFAULT_FAILURE_BUDGET_MS`]) and
    /// `MARKETSIM_LLM_MAX_CALLS` (default [`MAX_CALLS_PER_RUN`]) and
    /// `MARKETSIM_LLM_MAX_CALLS_PER_MINUTE` (default [`MAX_CALLS_PER_MINUTE`]). Empty values
    /// count as unset.
    pub fn from_vars(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<LlmSettings>, LlmError> {
        let read = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let Some(api_key) = read("OPENAI_API_KEY") else {
            return Ok(None);
        };
        let base_url = match read("OPENAI_BASE_URL") {
            None => None,
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                // The client appends `/chat/completions`; a trailing slash would double it.
                Some(url.trim_end_matches('/').to_string())
            }
            Some(url) => {
                return Err(LlmError::InvalidSetting {
                    name: "OPENAI_BASE_URL",
                    detail: format!("`{url}` is not an http:// or https:// URL"),
                })
            }
        };
        let model = read("MARKETSIM_LLM_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_string());
        let timeout_ms = match read("MARKETSIM_LLM_TIMEOUT_MS") {
            None => DEFAULT_TIMEOUT_MS,
            Some(text) => parse_number(&text, "MARKETSIM_LLM_TIMEOUT_MS")?,
        };
        let max_retries = match read("MARKETSIM_LLM_RETRIES") {
            None => DEFAULT_MAX_RETRIES,
            Some(text) => parse_u32(&text, "MARKETSIM_LLM_RETRIES")?,
        };
        let context_tokens = match read("MARKETSIM_LLM_CONTEXT_TOKENS") {
            None => DEFAULT_CONTEXT_TOKENS,
            Some(text) => parse_u32(&text, "MARKETSIM_LLM_CONTEXT_TOKENS")?,
        };
        let failure_budget_ms = match read("MARKETSIM_LLM_FAILURE_BUDGET_MS") {
            None => DEFAULT_FAILURE_BUDGET_MS,
            Some(text) => parse_number(&text, "MARKETSIM_LLM_FAILURE_BUDGET_MS")?,
        };
        let max_calls = match read("MARKETSIM_LLM_MAX_CALLS") {
            None => MAX_CALLS_PER_RUN,
            Some(text) => parse_u32(&text, "MARKETSIM_LLM_MAX_CALLS")? as usize,
        };
        let max_calls_per_minute = match read("MARKETSIM_LLM_MAX_CALLS_PER_MINUTE") {
            None => MAX_CALLS_PER_MINUTE,
            Some(text) => parse_u32(&text, "MARKETSIM_LLM_MAX_CALLS_PER_MINUTE")? as usize,
        };
        let settings = LlmSettings {
            api_key,
            base_url,
            model,
            timeout: Duration::from_millis(timeout_ms),
            max_retries,
            context_tokens,
            failure_budget: Duration::from_millis(failure_budget_ms),
            max_calls,
            max_calls_per_minute,
        };
        settings.validate()?;
        Ok(Some(settings))
    }

    /// The checks that do not depend on where the settings came from.
    fn validate(&self) -> Result<(), LlmError> {
        if self.api_key.trim().is_empty() {
            return Err(LlmError::InvalidSetting {
                name: "OPENAI_API_KEY",
                detail: "is empty".to_string(),
            });
        }
        if self.model.trim().is_empty() {
            return Err(LlmError::InvalidSetting {
                name: "MARKETSIM_LLM_MODEL",
                detail: "is empty".to_string(),
            });
        }
        if self.timeout.is_zero() {
            return Err(LlmError::InvalidSetting {
                name: "MARKETSIM_LLM_TIMEOUT_MS",
                detail: "must be more than 0".to_string(),
            });
        }
        if self.failure_budget.is_zero() {
            return Err(LlmError::InvalidSetting {
                name: "MARKETSIM_LLM_FAILURE_BUDGET_MS",
                detail: "must be more than 0 (unset OPENAI_API_KEY to use the rules only)"
                    .to_string(),
            });
        }
        if self.max_calls == 0 {
            return Err(LlmError::InvalidSetting {
                name: "MARKETSIM_LLM_MAX_CALLS",
                detail: "must be more than 0 (use --analyst rules to ask no model)".to_string(),
            });
        }
        if self.max_calls_per_minute == 0 {
            return Err(LlmError::InvalidSetting {
                name: "MARKETSIM_LLM_MAX_CALLS_PER_MINUTE",
                detail: "must be more than 0 (use --analyst rules to ask no model)".to_string(),
            });
        }
        if self.context_tokens < MIN_CONTEXT_TOKENS {
            return Err(LlmError::InvalidSetting {
                name: "MARKETSIM_LLM_CONTEXT_TOKENS",
                detail: format!(
                    "{} is less than {MIN_CONTEXT_TOKENS}: the instructions and the answer schema alone take about 1,600",
                    self.context_tokens
                ),
            });
        }
        if self.max_retries > MAX_RETRIES_LIMIT {
            return Err(LlmError::InvalidSetting {
                name: "MARKETSIM_LLM_RETRIES",
                detail: format!("{} is more than {MAX_RETRIES_LIMIT}", self.max_retries),
            });
        }
        Ok(())
    }
}

/// [`parse_number`] for a setting held in a `u32`.
fn parse_u32(text: &str, name: &'static str) -> Result<u32, LlmError> {
    let number = parse_number(text, name)?;
    u32::try_from(number).map_err(|_| LlmError::InvalidSetting {
        name,
        detail: format!("{number} is too large"),
    })
}

fn parse_number(text: &str, name: &'static str) -> Result<u64, LlmError> {
    text.parse::<u64>().map_err(|_| LlmError::InvalidSetting {
        name,
        detail: format!("`{text}` is not a whole number"),
    })
}

/// Why the model's answer was not used (or why the analyst could not be built). The `Display`
/// text is the short human reason written into `fallbackReason` and the call record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// A setting is malformed; raised by [`LlmSettings::from_vars`] and [`LlmAnalyst::new`],
    /// before any call.
    #[error("invalid setting {name}: {detail}")]
    InvalidSetting { name: &'static str, detail: String },
    /// The analyst's own async runtime could not be started.
    #[error("cannot start the LLM client runtime: {0}")]
    Runtime(String),
    /// Nothing listens at the endpoint. Retried.
    #[error("connection refused")]
    ConnectionRefused,
    /// The connection could not be made for another reason (DNS, TLS, reset). Retried.
    #[error("connection failed: {0}")]
    ConnectionFailed(String),
    /// The request was sent but the exchange broke off. Retried.
    #[error("request failed: {0}")]
    Transport(String),
    /// The whole call, retries included, took longer than the budget. Not retried: the budget
    /// is spent.
    #[error("timed out after {budget_ms} ms")]
    TimedOut { budget_ms: u64 },
    /// The server answered with an error status; retried for 429 and 5xx only.
    #[error("HTTP {status} {reason}{}", colon_detail(message))]
    Http {
        status: u16,
        reason: String,
        message: String,
    },
    /// The prompt does not fit the model's context window: estimated before sending (the
    /// context could not be trimmed enough), or said by the server (a 400 about the context).
    #[error("the prompt does not fit the model's context ({detail})")]
    ContextTooLong { detail: String },
    /// The body of a 2xx answer is not a chat completion.
    #[error("reply is not a chat completion: {0}")]
    MalformedCompletion(String),
    /// No choices, or a message without content.
    #[error("empty reply")]
    EmptyReply,
    /// The model declined to answer.
    #[error("the model refused: {0}")]
    Refused(String),
    /// The content is larger than [`MAX_REPLY_BYTES`].
    #[error("reply is too long ({0} bytes)")]
    ReplyTooLong(usize),
    /// The content stopped at the token limit, so its JSON is cut.
    #[error("reply was cut off at the model's token limit")]
    Truncated,
    #[error("reply is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but a field is missing, has the wrong type or is out of range.
    #[error("reply does not match the schema: {0}")]
    SchemaMismatch(String),
    /// A recommendation names a stream that is not in the catalog.
    #[error("reply cites unknown stream `{0}`")]
    UnknownStream(String),
    /// A recommendation names an event that is not in the context.
    #[error("reply cites unknown event `{0}`")]
    UnknownEvent(String),
    /// Zero recommendations while something is flagged.
    #[error("reply has no recommendations although the context has {0} anomalies")]
    NoRecommendations(usize),
    /// The context could not be turned into the prompt.
    #[error("cannot serialize the context: {0}")]
    ContextNotSerializable(String),
}

fn colon_detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl LlmError {
    /// Whether asking again can help: rate limits, server errors and broken connections.
    /// The endpoint did not answer usefully (an error status, no connection, no answer in
    /// time): what the circuit breaker counts. A reply that fails validation is not.
    pub fn is_endpoint_failure(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                LlmError::Http { .. }
                    | LlmError::TimedOut { .. }
                    | LlmError::MalformedCompletion(_)
            )
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => *status == 429 || (500..=599).contains(status),
            LlmError::ConnectionRefused
            | LlmError::ConnectionFailed(_)
            | LlmError::Transport(_) => true,
            _ => false,
        }
    }

    fn from_client(error: OpenAIError) -> LlmError {
        match error {
            OpenAIError::ApiError(ApiErrorResponse {
                status_code,
                api_error,
            }) => LlmError::Http {
                status: status_code.as_u16(),
                reason: status_code.canonical_reason().unwrap_or("").to_string(),
                message: shorten(&api_error.message),
            },
            OpenAIError::Reqwest(error) => {
                if io_error_kind(&error) == Some(std::io::ErrorKind::ConnectionRefused) {
                    LlmError::ConnectionRefused
                } else if error.is_connect() {
                    LlmError::ConnectionFailed(shorten(&innermost_message(&error)))
                } else {
                    LlmError::Transport(shorten(&innermost_message(&error)))
                }
            }
            OpenAIError::InvalidArgument(message) if message.starts_with(BODY_TOO_LONG_MARKER) => {
                let bytes = message
                    .rsplit('(')
                    .next()
                    .and_then(|tail| tail.split(' ').next())
                    .and_then(|number| number.parse().ok())
                    .unwrap_or(MAX_RESPONSE_BODY_BYTES + 1);
                LlmError::ReplyTooLong(bytes)
            }
            OpenAIError::JSONDeserialize(error, _) => {
                LlmError::MalformedCompletion(shorten(&error.to_string()))
            }
            other => LlmError::Transport(shorten(&other.to_string())),
        }
    }
}

/// The kind of the I/O error at the bottom of `error`, if there is one.
fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(layer) = current {
        if let Some(io_error) = layer.downcast_ref::<std::io::Error>() {
            return Some(io_error.kind());
        }
        current = layer.source();
    }
    None
}

/// reqwest's own message only names the URL; the useful part ("dns error", "connection
/// reset") is at the bottom of the chain.
fn innermost_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Cuts server text to a length that fits in a reason, on a character boundary.
fn shorten(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

/// The message of an error body in any of the shapes servers use: OpenAI and llama.cpp
/// (`{"error":{"message":…}}`), ollama (`{"error":"…"}`), vLLM (`{"message":…}`), or plain
/// text.
fn error_body_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return text.trim().to_string();
    };
    let message = value
        .pointer("/error/message")
        .or_else(|| value.get("error"))
        .or_else(|| value.get("message"))
        .and_then(|message| message.as_str());
    match message {
        Some(message) => message.to_string(),
        None => text.trim().to_string(),
    }
}

/// `response` with its body read into memory, at most [`MAX_RESPONSE_BODY_BYTES`] of it: a
/// longer body (announced or not) fails the call without being read to its end.
async fn read_bounded(mut response: reqwest::Response) -> Result<HttpResponse, OpenAIError> {
    let too_long = |bytes: usize| {
        OpenAIError::InvalidArgument(format!(
            "{BODY_TOO_LONG_MARKER} {MAX_RESPONSE_BODY_BYTES} bytes ({bytes} or more)"
        ))
    };
    if let Some(announced) = response.content_length() {
        let announced = usize::try_from(announced).unwrap_or(usize::MAX);
        if announced > MAX_RESPONSE_BODY_BYTES {
            return Err(too_long(announced));
        }
    }
    let mut builder = http::Response::builder()
        .status(response.status())
        .version(response.version());
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers().clone();
    }
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(OpenAIError::Reqwest)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
            return Err(too_long(body.len() + chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    builder
        .body(body)
        .map(reqwest::Response::from)
        .map_err(|error| OpenAIError::InvalidArgument(error.to_string()))
}

type HttpResponse = <ReqwestService as tower::Service<HttpRequestFactory>>::Response;
type HttpResponseFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, OpenAIError>> + Send>>;

/// The HTTP transport under the client. It replaces the client's default stack for two
/// reasons: that stack retries on its own (with its own count and back-off, invisible to the
/// call record and the timeout budget), and its error parsing loses the status code when an
/// error body is not in OpenAI's shape — which ollama's and vLLM's are not, and the status
/// decides between retrying, asking without `json_schema`, and giving up.
#[derive(Clone, Default)]
struct StatusKeepingTransport {
    inner: ReqwestService,
}

impl tower::Service<HttpRequestFactory> for StatusKeepingTransport {
    type Response = HttpResponse;
    type Error = OpenAIError;
    type Future = HttpResponseFuture;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), OpenAIError>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: HttpRequestFactory) -> HttpResponseFuture {
        let pending = self.inner.call(request);
        Box::pin(async move {
            let response = pending.await?;
            let status = response.status();
            if status.is_success() {
                return read_bounded(response).await;
            }
            let body = response
                .bytes()
                .await
                .map(|bytes| bytes.to_vec())
                .unwrap_or_default();
            Err(OpenAIError::ApiError(ApiErrorResponse {
                status_code: status,
                api_error: ApiError {
                    message: error_body_message(&body),
                    ..ApiError::default()
                },
            }))
        })
    }
}

/// What happened during one call besides its outcome, kept even when the call is cut short
/// by the timeout.
#[derive(Debug, Default)]
struct CallProgress {
    attempts: u32,
    /// The prompt's estimated tokens, replaced by the server's count when it answers.
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    /// Set when the server refused `json_schema` and the question was asked again without it.
    note: Option<String>,
    schema_refused: bool,
}

/// The analyst backed by a chat-completions endpoint. Every call is recorded (see
/// [`Analyst::calls`]); a failed call yields the rules analyst's recommendations marked
/// `rules-fallback` with the reason.
pub struct LlmAnalyst {
    settings: LlmSettings,
    client: Client<OpenAIConfig>,
    /// The trait is synchronous; this runtime drives the HTTP call inside `analyze`.
    runtime: tokio::runtime::Runtime,
    calls: Vec<AnalystCall>,
    /// Model calls made (the cap counts these, not analyses).
    model_calls: usize,
    /// Failed calls in a row, analyses left to answer by rules while the circuit is open, and
    /// the cool-down the next opening gets.
    consecutive_failures: u32,
    open_for: u32,
    next_cooldown: u32,
    /// The server refused `json_schema` once: later calls ask without it straight away.
    schema_refused: bool,
    /// Time spent on calls the endpoint failed (see [`FAILED_CALLS_BUDGET`]).
    failed_calls_time: Duration,
    /// When the model calls of the last minute started (`max_calls_per_minute`).
    recent_call_starts: std::collections::VecDeque<std::time::Instant>,
}

impl std::fmt::Debug for LlmAnalyst {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LlmAnalyst")
            .field("settings", &self.settings)
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

impl LlmAnalyst {
    /// Builds the client and its runtime; makes no network call.
    pub fn new(settings: LlmSettings) -> Result<LlmAnalyst, LlmError> {
        settings.validate()?;
        // reqwest is built without a TLS crypto provider (see Cargo.toml); install ring as the
        // process default before any client exists. A second install (another analyst in the
        // same process) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| LlmError::Runtime(error.to_string()))?;
        let config = OpenAIConfig::new()
            .with_api_key(settings.api_key.clone())
            .with_api_base(
                settings
                    .base_url
                    .clone()
                    .unwrap_or_else(|| OPENAI_API_BASE.to_string()),
            );
        let client =
            Client::with_config(config).with_http_service(StatusKeepingTransport::default());
        Ok(LlmAnalyst {
            settings,
            client,
            runtime,
            calls: Vec::new(),
            model_calls: 0,
            consecutive_failures: 0,
            open_for: 0,
            next_cooldown: CIRCUIT_COOLDOWN_ANALYSES,
            schema_refused: false,
            failed_calls_time: Duration::ZERO,
            recent_call_starts: std::collections::VecDeque::new(),
        })
    }

    /// Asks the model about `context`, retries included, within the timeout budget.
    fn ask(
        &self,
        context: &AnalysisContext,
        budget: Duration,
    ) -> (Result<Vec<Recommendation>, LlmError>, CallProgress) {
        let mut progress = CallProgress::default();
        let run = |progress: &mut CallProgress| {
            self.runtime.block_on(async {
                let asked =
                    tokio::time::timeout(budget, self.ask_with_retries(context, budget, progress))
                        .await;
                asked.unwrap_or(Err(LlmError::TimedOut {
                    budget_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                }))
            })
        };
        // `block_on` panics inside another runtime (a live server calling `analyze` from an
        // async task); a scoped thread has no runtime of its own, so the call works there too.
        let outcome = if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| run(&mut progress))
                    .join()
                    .unwrap_or_else(|_| {
                        Err(LlmError::Runtime(
                            "the LLM call thread panicked".to_string(),
                        ))
                    })
            })
        } else {
            run(&mut progress)
        };
        (outcome, progress)
    }

    async fn ask_with_retries(
        &self,
        context: &AnalysisContext,
        budget: Duration,
        progress: &mut CallProgress,
    ) -> Result<Vec<Recommendation>, LlmError> {
        let deadline = tokio::time::Instant::now() + budget;
        let reply_tokens = reply_tokens(self.settings.context_tokens);
        let prompt_tokens = prompt_tokens(self.settings.context_tokens, reply_tokens) as usize;
        // The model sees (and may cite) only what fits; the reply is checked against that.
        let (fitted, context_json, trimmed, estimate) =
            fit_context(context, prompt_tokens, reply_tokens)?;
        progress.note = trimmed;
        progress.prompt_tokens = u32::try_from(estimate).ok();
        let context = &fitted;
        let mut use_schema = !self.schema_refused;
        let mut retries = 0;
        loop {
            progress.attempts += 1;
            let request = build_request(
                &self.settings.model,
                &context_json,
                context,
                use_schema,
                reply_tokens,
            );
            let error = match self.client.chat().create(request).await {
                Ok(response) => {
                    if let Some(usage) = &response.usage {
                        progress.prompt_tokens = Some(usage.prompt_tokens);
                        progress.completion_tokens = Some(usage.completion_tokens);
                    }
                    return read_completion(response, context);
                }
                Err(error) => LlmError::from_client(error),
            };
            // A 400 about the context's length is not a refusal of json_schema: asking again
            // without the schema would send the same oversize prompt.
            if let LlmError::Http {
                status: 400,
                message,
                ..
            } = &error
            {
                if says_context_too_long(message) {
                    return Err(LlmError::ContextTooLong {
                        detail: format!("the server says: {message}"),
                    });
                }
            }
            if use_schema && matches!(error, LlmError::Http { status: 400, .. }) {
                use_schema = false;
                progress.schema_refused = true;
                let refused = format!(
                    "the server refused response_format json_schema ({error}); asked again without it"
                );
                progress.note = Some(match progress.note.take() {
                    Some(trimmed) => format!("{trimmed}; {refused}"),
                    None => refused,
                });
                continue;
            }
            if !error.is_retryable() || retries >= self.settings.max_retries {
                return Err(error);
            }
            retries += 1;
            let backoff = Duration::from_millis(RETRY_BACKOFF_STEP_MS * u64::from(retries));
            // Sleeping past the deadline would only turn a telling error into "timed out".
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
        }
    }
}

impl Analyst for LlmAnalyst {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn analyze(&mut self, context: &AnalysisContext) -> Vec<Recommendation> {
        if self.model_calls >= self.settings.max_calls {
            return self.answer_with_rules(
                context,
                format!(
                    "the run's {} model calls are spent (MARKETSIM_LLM_MAX_CALLS)",
                    self.settings.max_calls
                ),
                0,
            );
        }
        let failure_budget_left = self
            .settings
            .failure_budget
            .saturating_sub(self.failed_calls_time);
        if failure_budget_left.is_zero() {
            return self.answer_with_rules(
                context,
                format!(
                    "not asked: failed calls took {} ms of this run, its budget for a failing endpoint (MARKETSIM_LLM_FAILURE_BUDGET_MS)",
                    millis(self.failed_calls_time)
                ),
                0,
            );
        }
        if self.open_for > 0 {
            self.open_for -= 1;
            return self.answer_with_rules(
                context,
                format!(
                    "not asked: the endpoint failed or hung ({} failed call{} in a row; circuit open)",
                    self.consecutive_failures,
                    if self.consecutive_failures == 1 { "" } else { "s" }
                ),
                0,
            );
        }
        let started = std::time::Instant::now();
        while self
            .recent_call_starts
            .front()
            .is_some_and(|&start| started.duration_since(start) >= Duration::from_secs(60))
        {
            self.recent_call_starts.pop_front();
        }
        if self.recent_call_starts.len() >= self.settings.max_calls_per_minute {
            return self.answer_with_rules(
                context,
                format!(
                    "not asked: the model was asked {} times in the last minute (MARKETSIM_LLM_MAX_CALLS_PER_MINUTE)",
                    self.recent_call_starts.len()
                ),
                0,
            );
        }
        self.recent_call_starts.push_back(started);
        self.model_calls += 1;
        let budget = self.settings.timeout.min(failure_budget_left);
        let (outcome, progress) = self.ask(context, budget);
        self.schema_refused |= progress.schema_refused;
        match outcome {
            Ok(recommendations) => {
                self.consecutive_failures = 0;
                self.next_cooldown = CIRCUIT_COOLDOWN_ANALYSES;
                let (recommendations, rejected) = self.hold_to_evidence(context, recommendations);
                let reason = match (progress.note, rejected) {
                    (note, None) => note,
                    (None, Some(rejected)) => Some(rejected),
                    (Some(note), Some(rejected)) => Some(format!("{note}; {rejected}")),
                };
                self.calls.push(AnalystCall {
                    at: context.now.clone(),
                    source: "llm".to_string(),
                    reason,
                    attempts: progress.attempts,
                    prompt_tokens: progress.prompt_tokens,
                    completion_tokens: progress.completion_tokens,
                    latency_ms: Some(millis(started.elapsed())),
                });
                recommendations
            }
            Err(error) if !error.is_endpoint_failure() => {
                // The endpoint answered (a reply that failed validation, a prompt too long):
                // the model is worth asking again, so the breaker does not count it.
                self.consecutive_failures = 0;
                self.answer_failed(context, error, progress, started)
            }
            Err(error) => {
                self.consecutive_failures += 1;
                let spent = started.elapsed();
                self.failed_calls_time += spent;
                // A call that hung for half the budget will hang again: open at once.
                let slow = spent >= budget / 2;
                if self.consecutive_failures >= CIRCUIT_FAILURES || slow {
                    self.open_for = self.next_cooldown;
                    self.next_cooldown = self.next_cooldown.saturating_mul(2);
                }
                self.answer_failed(context, error, progress, started)
            }
        }
    }

    fn calls(&self) -> Vec<AnalystCall> {
        self.calls.clone()
    }

    fn model(&self) -> Option<String> {
        Some(self.settings.model.clone())
    }

    /// Unlimited: the cap is on model calls ([`LlmSettings::max_calls`]), and the rules answer the
    /// analyses past it.
    fn max_analyses(&self) -> usize {
        usize::MAX
    }
}

impl LlmAnalyst {
    /// The model's recommendations whose causes the evidence rules accept, and for each one
    /// they reject, the rules' recommendations about its streams (marked `rules-fallback`)
    /// instead; with a note saying what was replaced and why.
    ///
    /// A cause is accepted when every event the recommendation names can explain at least one
    /// of its affected streams by [`check_cause`] — the same timing, direction and declared-impact
    /// rules the rules analyst applies to itself. A recommendation without events makes no claim
    /// about a cause and is kept.
    fn hold_to_evidence(
        &self,
        context: &AnalysisContext,
        recommendations: Vec<Recommendation>,
    ) -> (Vec<Recommendation>, Option<String>) {
        let mut kept = Vec::new();
        let mut replaced_streams: Vec<String> = Vec::new();
        let mut reasons = Vec::new();
        for recommendation in recommendations {
            let unsupported = recommendation.related_events.iter().find_map(|id| {
                let event = context.events.iter().find(|event| &event.id == id)?;
                let verdicts: Vec<Result<(), CauseRejection>> = recommendation
                    .affected_streams
                    .iter()
                    .map(|stream| check_cause(context, event, stream))
                    .collect();
                if verdicts.iter().any(Result::is_ok) {
                    return None;
                }
                let why = verdicts
                    .iter()
                    .find_map(|verdict| verdict.err())
                    .unwrap_or(CauseRejection::NotAnomalous);
                Some(format!("{id} ({why})"))
            });
            match unsupported {
                None => kept.push(recommendation),
                Some(why) => {
                    reasons.push(format!(
                        "\"{}\" {EVIDENCE_REJECTION}: {why}",
                        shorten(&recommendation.title)
                    ));
                    replaced_streams.extend(recommendation.affected_streams);
                }
            }
        }
        if reasons.is_empty() {
            return (kept, None);
        }
        let reason = format!("{}; the rules answer for its streams", reasons.join("; "));
        let kept_keys: Vec<String> = kept.iter().map(|r| r.key.clone()).collect();
        for mut stand_in in analyze_with_rules(context) {
            let about_replaced = stand_in
                .affected_streams
                .iter()
                .any(|stream| replaced_streams.contains(stream));
            if about_replaced && !kept_keys.contains(&stand_in.key) {
                stand_in.source = "rules-fallback".to_string();
                stand_in.fallback_reason = Some(reason.clone());
                kept.push(stand_in);
            }
        }
        (kept, Some(reason))
    }

    /// The rules' answer for a call that failed, its record saying why (and that the question
    /// was asked again without a schema, or trimmed, when it was).
    fn answer_failed(
        &mut self,
        context: &AnalysisContext,
        error: LlmError,
        progress: CallProgress,
        started: std::time::Instant,
    ) -> Vec<Recommendation> {
        let reason = error.to_string();
        let recommendations = self.answer_with_rules(context, reason.clone(), progress.attempts);
        if let Some(call) = self.calls.last_mut() {
            if let Some(note) = progress.note {
                call.reason = Some(format!("{reason} ({note})"));
            }
            call.prompt_tokens = progress.prompt_tokens;
            call.completion_tokens = progress.completion_tokens;
            call.latency_ms = Some(millis(started.elapsed()));
        }
        recommendations
    }

    /// The rules analyst's answer, marked `rules-fallback` with `reason`, and the call record.
    fn answer_with_rules(
        &mut self,
        context: &AnalysisContext,
        reason: String,
        attempts: u32,
    ) -> Vec<Recommendation> {
        self.calls.push(AnalystCall {
            at: context.now.clone(),
            source: "rules-fallback".to_string(),
            reason: Some(reason.clone()),
            attempts,
            prompt_tokens: None,
            completion_tokens: None,
            latency_ms: None,
        });
        analyze_with_rules(context)
            .into_iter()
            .map(|mut recommendation| {
                recommendation.source = "rules-fallback".to_string();
                recommendation.fallback_reason = Some(reason.clone());
                recommendation
            })
            .collect()
    }
}

/// Recommendations the schema allows in a reply of `reply_tokens`: one to
/// [`MAX_SCHEMA_RECOMMENDATIONS`].
fn max_schema_recommendations(reply_tokens: u32) -> u32 {
    (reply_tokens / TOKENS_PER_RECOMMENDATION).clamp(1, MAX_SCHEMA_RECOMMENDATIONS)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Tokens the prompt may use: what the reply leaves of the window, but at most half of it (and
/// at least [`MIN_PROMPT_TOKENS`]). A small local model reads a few hundred tokens a second, so
/// a prompt that fills its window costs ten seconds before the first word; the context is
/// trimmed by priority anyway, and the half that is kept is the telling half.
fn prompt_tokens(context_tokens: u32, reply_tokens: u32) -> u32 {
    (context_tokens - reply_tokens).min((context_tokens / 2).max(MIN_PROMPT_TOKENS))
}

/// Tokens a reply may use: [`MAX_REPLY_TOKENS`], or a quarter of a small window.
fn reply_tokens(context_tokens: u32) -> u32 {
    MAX_REPLY_TOKENS.min(context_tokens / 4)
}

/// Whether a 400's message is about the prompt's length (llama.cpp: "exceeds the available
/// context size"; OpenAI: "maximum context length"; vLLM: "longer than the maximum model length").
fn says_context_too_long(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    (message.contains("context") && (message.contains("exceed") || message.contains("length")))
        || message.contains("maximum model length")
        || message.contains("too many tokens")
}

/// The prompt's size in tokens, estimated from its bytes on the dense side: the instructions,
/// the context, the answer schema, and a little per message.
fn estimated_prompt_tokens(context_json: &str, schema_bytes: usize) -> usize {
    (SYSTEM_PROMPT.len() + context_json.len() + schema_bytes).div_ceil(BYTES_PER_TOKEN) + 16
}

/// `context` trimmed until the prompt fits `prompt_tokens`, least telling first: the oldest
/// recent values, the weakest correlations, the weakest anomalies (with their statistics and
/// values), then rates and the remaining values and statistics. Returns the context, its JSON
/// and, when anything was cut, a note saying so; an error when even the anomalies alone do not
/// fit.
fn fit_context(
    context: &AnalysisContext,
    prompt_tokens: usize,
    reply_tokens: u32,
) -> Result<(AnalysisContext, String, Option<String>, usize), LlmError> {
    let schema_bytes = reply_schema(context, reply_tokens).to_string().len();
    let to_json = |fitted: &AnalysisContext| {
        serde_json::to_string(&Prompt {
            cause_evidence: cause_evidence(fitted, context),
            context: fitted,
        })
        .map_err(|error| LlmError::ContextNotSerializable(error.to_string()))
    };
    // Events that explain none of the anomalies by the evidence rules go before any anomaly.
    let explaining: Vec<String> = cause_evidence(context, context)
        .into_iter()
        .filter(|evidence| !evidence.explains.is_empty())
        .map(|evidence| evidence.event_id)
        .collect();
    let mut fitted = context.clone();
    let mut json = to_json(&fitted)?;
    let first_estimate = estimated_prompt_tokens(&json, schema_bytes);
    let mut estimate = first_estimate;
    while estimate > prompt_tokens {
        if !trim_once(&mut fitted, &explaining) {
            return Err(LlmError::ContextTooLong {
                detail: format!(
                    "about {estimate} tokens with the context trimmed to its anomalies; the window leaves {prompt_tokens} for the prompt (MARKETSIM_LLM_CONTEXT_TOKENS)"
                ),
            });
        }
        json = to_json(&fitted)?;
        estimate = estimated_prompt_tokens(&json, schema_bytes);
    }
    let note = (estimate < first_estimate).then(|| {
        format!("context trimmed from about {first_estimate} to {estimate} prompt tokens to fit")
    });
    Ok((fitted, json, note, estimate))
}

/// The user message: the context, and what the evidence rules make of each event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Prompt<'a> {
    #[serde(flatten)]
    context: &'a AnalysisContext,
    cause_evidence: Vec<CauseEvidence>,
}

/// For one external event of the context: the anomalous streams it can explain by the evidence
/// rules (declared, right direction, flags starting as a shift after it within its declared
/// duration), and the anomalous streams it declared but cannot explain, with why. The model
/// gets the same evidence the rules analyst weighs, and validation holds it to it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CauseEvidence {
    event_id: String,
    explains: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    does_not_explain: BTreeMap<String, String>,
}

/// [`CauseEvidence`] for the events and anomalies `fitted` kept, judged on the whole `context`
/// (the rules read correlations and recent values that trimming may have cut).
fn cause_evidence(fitted: &AnalysisContext, context: &AnalysisContext) -> Vec<CauseEvidence> {
    fitted
        .events
        .iter()
        .map(|event| {
            let mut explains = Vec::new();
            let mut does_not_explain = BTreeMap::new();
            for anomaly in &fitted.anomalies {
                match check_cause(context, event, &anomaly.stream) {
                    Ok(()) => explains.push(anomaly.stream.clone()),
                    Err(CauseRejection::NotDeclared | CauseRejection::NotAnomalous) => {}
                    Err(rejection) => {
                        does_not_explain.insert(anomaly.stream.clone(), rejection.to_string());
                    }
                }
            }
            CauseEvidence {
                event_id: event.id.clone(),
                explains,
                does_not_explain,
            }
        })
        .collect()
}

/// One step of [`fit_context`]'s trimming; `false` when nothing is left to cut. `explaining`:
/// the events that explain at least one anomaly by the evidence rules.
fn trim_once(context: &mut AnalysisContext, explaining: &[String]) -> bool {
    // The oldest half of each stream's recent values (keeping the last two).
    if context
        .recent_values
        .values()
        .any(|points| points.len() > 2)
    {
        for points in context.recent_values.values_mut() {
            let keep = points.len().div_ceil(2).max(2).min(points.len());
            points.drain(..points.len() - keep);
        }
        return true;
    }
    // The weaker half of the correlations.
    let correlations = &mut context.correlations;
    if !correlations.streams.is_empty()
        || correlations
            .events
            .iter()
            .any(|event| event.streams.len() > 1)
    {
        correlations
            .streams
            .sort_by(|a, b| b.correlation.abs().total_cmp(&a.correlation.abs()));
        let keep = correlations.streams.len() / 2;
        correlations.streams.truncate(keep);
        for event in &mut correlations.events {
            event
                .streams
                .sort_by(|a, b| b.strength.abs().total_cmp(&a.strength.abs()));
            let keep = event.streams.len().div_ceil(2);
            event.streams.truncate(keep);
        }
        return true;
    }
    // The events that explain none of the anomalies (a week of background news): the model may
    // cite only what it sees, and these it should not cite.
    let events_before = context.events.len();
    context
        .events
        .retain(|event| explaining.contains(&event.id));
    if context.events.len() < events_before {
        return true;
    }
    // The weakest anomaly, with what the context says about its stream.
    if context.anomalies.len() > 1 {
        let weakest = context
            .anomalies
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| a.z.abs().total_cmp(&b.z.abs()))
            .map(|(index, _)| index)
            .unwrap_or(0);
        let removed = context.anomalies.remove(weakest);
        context.baseline_stats.remove(&removed.stream);
        context.recent_values.remove(&removed.stream);
        return true;
    }
    if !context.rates.is_empty() {
        context.rates.clear();
        return true;
    }
    if !context.recent_values.is_empty() || !context.baseline_stats.is_empty() {
        context.recent_values.clear();
        context.baseline_stats.clear();
        return true;
    }
    // Last, the oldest of the events that explain something.
    if !context.events.is_empty() {
        context.events.remove(0);
        return true;
    }
    false
}

fn build_request(
    model: &str,
    context_json: &str,
    context: &AnalysisContext,
    use_schema: bool,
    reply_tokens: u32,
) -> CreateChatCompletionRequest {
    let messages = vec![
        ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
            content: ChatCompletionRequestSystemMessageContent::Text(SYSTEM_PROMPT.to_string()),
            name: None,
        }),
        ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(context_json.to_string()),
            name: None,
        }),
    ];
    CreateChatCompletionRequest {
        model: model.to_string(),
        messages,
        response_format: use_schema.then(|| ResponseFormat::JsonSchema {
            json_schema: ResponseFormatJsonSchema {
                description: Some("Recommendations for the operations team".to_string()),
                name: "recommendations".to_string(),
                schema: reply_schema(context, reply_tokens),
                strict: Some(true),
            },
        }),
        // Deterministic and bounded: a small local model at its default temperature answers
        // differently every time, and without a budget it runs to the server's token cap.
        // (`seed` is deprecated in the API; temperature 0 is what makes llama.cpp repeatable.)
        temperature: Some(0.0),
        // With the schema, no more than its longest complete answer: a reply that would run
        // past it is cut by the server (and refused as cut off) instead of decoding on until
        // the timeout, which a slow local server would report as a failing endpoint.
        max_completion_tokens: Some(if use_schema {
            reply_tokens.min(max_schema_recommendations(reply_tokens) * TOKENS_PER_RECOMMENDATION)
        } else {
            reply_tokens
        }),
        ..CreateChatCompletionRequest::default()
    }
}

/// Longest strings and lists the schema allows: a model bound by a grammar (llama.cpp turns the
/// schema into one) cannot ramble inside a string until its token cap, and a complete reply of
/// the longest allowed recommendations fits [`MAX_REPLY_TOKENS`].
const MAX_TITLE_CHARS: u32 = 60;
const MAX_TEXT_CHARS: u32 = 160;
const MAX_IMPACT_CHARS: u32 = 120;
const MAX_LABEL_CHARS: u32 = 40;
const MAX_ACTION_TEXT_CHARS: u32 = 100;
const MAX_EXPECTED_IMPACT_CHARS: u32 = 60;
const MAX_TIME_TO_EFFECT_CHARS: u32 = 30;
const MAX_SCHEMA_RECOMMENDATIONS: u32 = 3;
/// Reply tokens one recommendation of the longest allowed strings takes, on the generous side
/// (about 1,400 characters of JSON; a small base model fills every string to its bound and
/// tokenizes its filler densely): the schema allows only as many recommendations as the reply
/// budget holds, so a grammar-bound model finishes its JSON instead of being cut off — and a
/// small window's model, decoding a few dozen tokens a second, answers one recommendation in
/// about ten seconds instead of two in thirty.
const TOKENS_PER_RECOMMENDATION: u32 = 600;
const MAX_ACTIONS: u32 = 2;
const MAX_CITED: u32 = 6;

/// The answer's JSON schema: every property required, no extra properties, and every string
/// and list bounded. At least one recommendation when the context has anomalies (an empty
/// answer to anomalies is refused anyway), one or two actions each, and no more
/// recommendations than the reply budget holds. Stream names and event ids are enums of what
/// the context holds, so a model cannot misspell or invent one (a small model otherwise puts
/// stream names and titles among the event ids). The bounds fit a dashboard card (title, a few
/// sentences, two actions) and keep a small model's reply to a few hundred tokens.
fn reply_schema(context: &AnalysisContext, reply_tokens: u32) -> serde_json::Value {
    let text = |max: u32| json!({ "type": "string", "maxLength": max });
    let stream_name = if context.known_streams.is_empty() {
        text(MAX_TEXT_CHARS)
    } else {
        json!({ "type": "string", "enum": context.known_streams })
    };
    let event_ids: Vec<&str> = context
        .events
        .iter()
        .map(|event| event.id.as_str())
        .collect();
    let (event_id, max_events) = if event_ids.is_empty() {
        (text(MAX_TITLE_CHARS), 0)
    } else {
        (json!({ "type": "string", "enum": event_ids }), MAX_CITED)
    };
    let has_anomalies = !context.anomalies.is_empty();
    let max_recommendations = max_schema_recommendations(reply_tokens);
    json!({
        "type": "object",
        "properties": {
            "recommendations": {
                "type": "array",
                "minItems": u32::from(has_anomalies),
                "maxItems": max_recommendations,
                "items": {
                    "type": "object",
                    "properties": {
                        "priority": { "type": "string", "enum": ["critical", "warning", "normal"] },
                        "title": text(MAX_TITLE_CHARS),
                        "description": text(MAX_TEXT_CHARS),
                        "impact": text(MAX_IMPACT_CHARS),
                        "cause": text(MAX_TEXT_CHARS),
                        "actions": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_ACTIONS,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "label": text(MAX_LABEL_CHARS),
                                    "description": text(MAX_ACTION_TEXT_CHARS),
                                    "expectedImpact": text(MAX_EXPECTED_IMPACT_CHARS),
                                    "timeToEffect": text(MAX_TIME_TO_EFFECT_CHARS),
                                },
                                "required": ["label", "description", "expectedImpact", "timeToEffect"],
                                "additionalProperties": false,
                            },
                        },
                        "affectedStreams": { "type": "array", "minItems": 1, "maxItems": MAX_CITED, "items": stream_name },
                        "relatedEvents": { "type": "array", "maxItems": max_events, "items": event_id },
                        "confidence": { "type": "integer", "minimum": 0, "maximum": 100 },
                    },
                    "required": [
                        "priority", "title", "description", "impact", "cause", "actions",
                        "affectedStreams", "relatedEvents", "confidence",
                    ],
                    "additionalProperties": false,
                },
            },
        },
        "required": ["recommendations"],
        "additionalProperties": false,
    })
}

/// The answer as the model writes it: the seed's `Recommendation` without what the book
/// assigns (ids, timestamps, status).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    recommendations: Vec<ReplyRecommendation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyRecommendation {
    priority: Priority,
    title: String,
    description: String,
    impact: String,
    cause: String,
    actions: Vec<ReplyAction>,
    affected_streams: Vec<String>,
    related_events: Vec<String>,
    /// A number rather than an integer: without a schema, models write `85.0` as often as `85`.
    confidence: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyAction {
    label: String,
    description: String,
    expected_impact: String,
    time_to_effect: String,
}

fn read_completion(
    response: CreateChatCompletionResponse,
    context: &AnalysisContext,
) -> Result<Vec<Recommendation>, LlmError> {
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(LlmError::EmptyReply);
    };
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(LlmError::Refused(shorten(&refusal)));
    }
    let content = choice.message.content.unwrap_or_default();
    match validate_reply(&content, context) {
        Err(LlmError::InvalidJson(_)) if choice.finish_reason == Some(FinishReason::Length) => {
            Err(LlmError::Truncated)
        }
        other => other,
    }
}

/// Checks a model's answer (the message content) against the schema and the context, and
/// turns it into recommendations for the book: source `llm`, status active, ids empty, times
/// set to `context.now`.
///
/// A markdown code fence around the JSON is tolerated — servers without structured output
/// often add one. Everything else is checked: required fields, enums, confidence in 0–100,
/// every stream in `context.known_streams`, every event id among `context.events`, at least
/// one action and one stream per recommendation, and at least one recommendation while
/// anything is anomalous.
pub fn validate_reply(
    content: &str,
    context: &AnalysisContext,
) -> Result<Vec<Recommendation>, LlmError> {
    if content.len() > MAX_REPLY_BYTES {
        return Err(LlmError::ReplyTooLong(content.len()));
    }
    let json_text = strip_code_fence(content);
    if json_text.is_empty() {
        return Err(LlmError::EmptyReply);
    }
    let reply: Reply = serde_json::from_str(json_text).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => LlmError::SchemaMismatch(shorten(&error.to_string())),
        _ => LlmError::InvalidJson(shorten(&error.to_string())),
    })?;
    if reply.recommendations.is_empty() && !context.anomalies.is_empty() {
        return Err(LlmError::NoRecommendations(context.anomalies.len()));
    }
    reply
        .recommendations
        .into_iter()
        .take(MAX_RECOMMENDATIONS_PER_REPLY)
        .enumerate()
        .map(|(index, item)| to_recommendation(index + 1, item, context))
        .collect()
}

fn strip_code_fence(content: &str) -> &str {
    let trimmed = content.trim();
    let Some(inner) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let inner = inner
        .strip_prefix("json")
        .or_else(|| inner.strip_prefix("JSON"))
        .unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

fn to_recommendation(
    number: usize,
    item: ReplyRecommendation,
    context: &AnalysisContext,
) -> Result<Recommendation, LlmError> {
    let mismatch =
        |detail: String| LlmError::SchemaMismatch(format!("recommendation {number}: {detail}"));
    if item.title.trim().is_empty() {
        return Err(mismatch("empty title".to_string()));
    }
    if !(0.0..=100.0).contains(&item.confidence) {
        return Err(mismatch(format!(
            "confidence {} is outside 0-100",
            item.confidence
        )));
    }
    if item.actions.is_empty() {
        return Err(mismatch("no actions".to_string()));
    }
    if item.affected_streams.is_empty() {
        return Err(mismatch("no affected streams".to_string()));
    }
    if let Some(unknown) = item
        .affected_streams
        .iter()
        .find(|stream| !context.known_streams.contains(stream))
    {
        return Err(LlmError::UnknownStream(shorten(unknown)));
    }
    if let Some(unknown) = item
        .related_events
        .iter()
        .find(|id| !context.events.iter().any(|event| &event.id == *id))
    {
        return Err(LlmError::UnknownEvent(shorten(unknown)));
    }
    let mut affected_streams = item.affected_streams;
    affected_streams.sort();
    affected_streams.dedup();
    let mut related_events: Vec<String> = Vec::new();
    for event in item.related_events {
        if !related_events.contains(&event) {
            related_events.push(event);
        }
    }
    // The title slug alone would merge unrelated problems a model names alike; the first
    // stream alone would merge distinct diagnoses of one stream.
    let key = format!("{}@{}", slug(&item.title), affected_streams[0]);
    Ok(Recommendation {
        id: String::new(),
        priority: item.priority,
        title: item.title.trim().to_string(),
        description: item.description,
        impact: item.impact,
        cause: item.cause,
        actions: item
            .actions
            .into_iter()
            .map(|action| RecommendedAction {
                id: String::new(),
                label: action.label,
                description: action.description,
                expected_impact: action.expected_impact,
                time_to_effect: action.time_to_effect,
            })
            .collect(),
        affected_streams,
        related_events,
        confidence: item.confidence.round() as u8,
        timestamp: context.now.clone(),
        status: Status::Active,
        resolved_at: None,
        resolution: None,
        source: "llm".to_string(),
        fallback_reason: None,
        key,
        last_seen: context.now.clone(),
    })
}

/// `Math Tutor Supply Crisis!` → `math-tutor-supply-crisis`, at most 60 characters.
fn slug(title: &str) -> String {
    let mut slug = String::new();
    for character in title.chars() {
        if character.is_ascii_alphanumeric() {
            slug.push(character.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let mut slug: String = slug.trim_end_matches('-').chars().take(60).collect();
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        "untitled".to_string()
    } else {
        slug
    }
}
