//! The LLM analyst against an in-process fake OpenAI-compatible server (axum on 127.0.0.1):
//! good replies, every failure the analyst falls back on (with the reason it records), retries,
//! the timeout budget, the `json_schema` downgrade, and the settings read from variables.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use marketsim::analyst::context::{
    AnalysisContext, ContextAnomaly, ContextCorrelations, ContextEvent,
};
use marketsim::analyst::llm::{
    validate_reply, LlmAnalyst, LlmError, LlmSettings, CIRCUIT_COOLDOWN_ANALYSES,
    DEFAULT_CONTEXT_TOKENS, DEFAULT_FAILURE_BUDGET_MS, MAX_CALLS_PER_RUN, MAX_REPLY_TOKENS,
    SYSTEM_PROMPT,
};
use marketsim::analyst::recommendation::{Priority, Recommendation, RecommendationBook, Status};
use marketsim::analyst::{Analyst, AnalystCall};
use marketsim::scenario::definition::{Direction, EventType, ExpectedImpact, Magnitude, Severity};
use marketsim::stats::correlation::{EventCorrelation, EventStreamShift};
use marketsim::stats::AnomalyFlag;

/// What the fake server answers to one request.
struct FakeReply {
    status: u16,
    body: String,
    delay: Duration,
}

impl FakeReply {
    fn completion(content: &str) -> FakeReply {
        FakeReply::chat_completion(json!([{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop",
        }]))
    }

    fn chat_completion(choices: Value) -> FakeReply {
        let body = json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_736_000_000,
            "model": "fake-model",
            "choices": choices,
            "usage": { "prompt_tokens": 900, "completion_tokens": 300, "total_tokens": 1200 },
        });
        FakeReply {
            status: 200,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn status(status: u16, body: Value) -> FakeReply {
        FakeReply {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn openai_error(status: u16, message: &str) -> FakeReply {
        FakeReply::status(
            status,
            json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": null } }),
        )
    }
}

/// Decides the reply from the request's number (0-based) and its JSON body.
type Script = dyn Fn(usize, &Value) -> FakeReply + Send + Sync;

struct ServerState {
    script: Box<Script>,
    /// Every request seen: its `Authorization` header and its JSON body.
    requests: Mutex<Vec<(String, Value)>>,
}

async fn chat_completions(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let reply = {
        let mut requests = state
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let reply = (state.script)(requests.len(), &request);
        requests.push((authorization, request));
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        reply.body,
    )
        .into_response()
}

/// An OpenAI-compatible server on 127.0.0.1 with its own multi-thread runtime, whose worker
/// threads serve while the analyst blocks the test thread. Dropping it drops the runtime,
/// which cancels whatever handler is still sleeping.
struct FakeServer {
    base_url: String,
    state: Arc<ServerState>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeServer {
    fn start(script: impl Fn(usize, &Value) -> FakeReply + Send + Sync + 'static) -> FakeServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("fake server runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(ServerState {
            script: Box::new(script),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .with_state(Arc::clone(&state));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, app).await.expect("fake server");
        });
        FakeServer {
            base_url: format!("http://{address}/v1"),
            state,
            _runtime: runtime,
        }
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

fn settings(base_url: &str, timeout_ms: u64) -> LlmSettings {
    LlmSettings {
        api_key: "test-key".to_string(),
        base_url: Some(base_url.to_string()),
        model: "fake-model-7b".to_string(),
        timeout: Duration::from_millis(timeout_ms),
        max_retries: 2,
        context_tokens: DEFAULT_CONTEXT_TOKENS,
        failure_budget: Duration::from_millis(DEFAULT_FAILURE_BUDGET_MS),
        max_calls: MAX_CALLS_PER_RUN,
        // Tests make their calls within a second; the per-minute limit has its own test.
        max_calls_per_minute: MAX_CALLS_PER_RUN,
    }
}

fn anomaly(stream: &str, flag: AnomalyFlag, z: f64, value: f64, expected: f64) -> ContextAnomaly {
    ContextAnomaly {
        stream: stream.to_string(),
        domain: stream.split('.').next().unwrap_or("").to_string(),
        flag,
        direction: if z >= 0.0 { "up" } else { "down" }.to_string(),
        z,
        value,
        expected,
        normalized: (50.0 + 10.0 * z).clamp(0.0, 100.0),
        change_percent: 100.0 * (value - expected) / expected,
        since: "2025-01-16T11:00:00Z".to_string(),
        since_ms: 11 * 3_600_000,
        earlier_flags: 0,
        stream_index: 0,
    }
}

/// Two anomalies (fewer tutors online, more expired requests: the rules analyst's supply
/// shortfall) and one event.
fn context() -> AnalysisContext {
    AnalysisContext {
        rates: Vec::new(),
        bucket_ms: 3_600_000,
        now: "2025-01-16T14:00:00Z".to_string(),
        anomalies: vec![
            anomaly("tutor.online.count", AnomalyFlag::Critical, -4.5, 9.0, 15.0),
            anomaly(
                "session.booking.expired",
                AnomalyFlag::Warning,
                3.1,
                14.0,
                5.0,
            ),
        ],
        events: vec![ContextEvent {
            id: "evt_001".to_string(),
            timestamp: "2025-01-16T10:00:00Z".to_string(),
            kind: EventType::Competitive,
            title: "Competitor launches tutor bonus".to_string(),
            description: "A rival platform pays tutors a sign-up bonus.".to_string(),
            severity: Severity::Warning,
            expected_impact: ExpectedImpact {
                streams: vec!["tutor.online.count".to_string()],
                direction: Direction::Decrease,
                magnitude: Magnitude::High,
                duration: "3 days".to_string(),
            },
            time_ms: 10 * 3_600_000,
        }],
        baseline_stats: BTreeMap::new(),
        recent_values: BTreeMap::new(),
        // The drop began as a shift right after the event: the evidence rules accept evt_001
        // as the cause of tutor.online.count's anomaly (not of the expired requests', which it
        // did not declare).
        correlations: ContextCorrelations {
            events: vec![EventCorrelation {
                event_id: "evt_001".to_string(),
                streams: vec![EventStreamShift {
                    stream: "tutor.online.count".to_string(),
                    lag_ms: 3_600_000,
                    strength: -4.0,
                    direction: "down",
                }],
            }],
            streams: Vec::new(),
        },
        known_streams: [
            "customer.tutor.search",
            "session.booking.requested",
            "session.booking.expired",
            "tutor.online.count",
            "tutor.availability.set",
        ]
        .map(String::from)
        .to_vec(),
        now_ms: 14 * 3_600_000,
    }
}

fn good_reply_json() -> Value {
    json!({ "recommendations": [{
        "priority": "critical",
        "title": "Tutor Supply Shortfall",
        "description": "Online tutors are down 40 % (9 vs 15) while expired requests tripled (14 vs 5).",
        "impact": "Students who cannot book leave; expired requests are lost revenue.",
        "cause": "Competitor launches tutor bonus (evt_001) shortly before the drop.",
        "actions": [{
            "label": "Activate standby tutors",
            "description": "Offer a same-day bonus to tutors usually online at this hour.",
            "expectedImpact": "Online tutors back within 20 % of normal",
            "timeToEffect": "1-3 hours",
        }],
        "affectedStreams": ["tutor.online.count", "session.booking.expired"],
        "relatedEvents": ["evt_001"],
        "confidence": 82,
    }]})
}

fn good_reply() -> String {
    good_reply_json().to_string()
}

/// The good reply with one field of its recommendation replaced.
fn reply_with(field: &str, value: Value) -> String {
    let mut reply = good_reply_json();
    reply["recommendations"][0][field] = value;
    reply.to_string()
}

/// Runs one analysis against `base_url` and returns what it produced, its single call record
/// and how long it took.
fn analyze_once(settings: LlmSettings) -> (Vec<Recommendation>, AnalystCall, Duration) {
    let mut analyst = LlmAnalyst::new(settings).expect("analyst");
    let started = Instant::now();
    let recommendations = analyst.analyze(&context());
    let elapsed = started.elapsed();
    let calls = analyst.calls();
    assert_eq!(calls.len(), 1, "one call record per analysis: {calls:?}");
    (recommendations, calls[0].clone(), elapsed)
}

/// The analyst must fall back to the rules with a reason containing `reason`, after
/// `attempts` requests.
fn check_fallback(
    script: impl Fn(usize, &Value) -> FakeReply + Send + Sync + 'static,
    reason: &str,
    attempts: u32,
) {
    let server = FakeServer::start(script);
    let (recommendations, call) = fallback_outcome(settings(&server.base_url, 5_000));
    assert_eq!(call.attempts, attempts, "{call:?}");
    assert_eq!(server.requests().len() as u32, attempts);
    let recorded = call.reason.unwrap_or_default();
    assert!(
        recorded.contains(reason),
        "reason `{recorded}` should contain `{reason}`"
    );
    assert!(
        recommendations.iter().all(|r| r
            .fallback_reason
            .as_deref()
            .is_some_and(|f| f.contains(reason))),
        "{recommendations:#?}"
    );
}

fn fallback_outcome(settings: LlmSettings) -> (Vec<Recommendation>, AnalystCall) {
    let (recommendations, call, _) = analyze_once(settings);
    assert_eq!(call.source, "rules-fallback", "{call:?}");
    assert_eq!(call.at, "2025-01-16T14:00:00Z");
    assert!(
        !recommendations.is_empty(),
        "the rules analyst diagnoses the supply shortfall"
    );
    assert!(recommendations.iter().all(|r| r.source == "rules-fallback"));
    assert_eq!(recommendations[0].key, "supply-shortfall");
    (recommendations, call)
}

#[test]
fn a_good_reply_becomes_llm_recommendations_and_the_request_carries_model_prompt_and_context() {
    let server = FakeServer::start(|_, _| FakeReply::completion(&good_reply()));
    let (recommendations, call, _) = analyze_once(settings(&server.base_url, 5_000));
    assert_eq!(
        call,
        AnalystCall {
            at: "2025-01-16T14:00:00Z".to_string(),
            source: "llm".to_string(),
            reason: None,
            attempts: 1,
            // As the server counted them (its `usage`), not the analyst's estimate.
            prompt_tokens: Some(900),
            completion_tokens: Some(300),
            latency_ms: call.latency_ms,
        }
    );
    assert_eq!(recommendations.len(), 1);
    let recommendation = &recommendations[0];
    assert_eq!(recommendation.source, "llm");
    assert_eq!(recommendation.fallback_reason, None);
    assert_eq!(recommendation.priority, Priority::Critical);
    assert_eq!(recommendation.status, Status::Active);
    assert_eq!(recommendation.id, "");
    assert_eq!(recommendation.title, "Tutor Supply Shortfall");
    assert_eq!(
        recommendation.key,
        "tutor-supply-shortfall@session.booking.expired"
    );
    assert_eq!(
        recommendation.affected_streams,
        ["session.booking.expired", "tutor.online.count"]
    );
    assert_eq!(recommendation.related_events, ["evt_001"]);
    assert_eq!(recommendation.confidence, 82);
    assert_eq!(recommendation.timestamp, "2025-01-16T14:00:00Z");
    assert_eq!(recommendation.last_seen, "2025-01-16T14:00:00Z");
    assert_eq!(recommendation.actions.len(), 1);
    assert_eq!(recommendation.actions[0].time_to_effect, "1-3 hours");
    assert_eq!(recommendation.actions[0].id, "");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let (authorization, body) = &requests[0];
    assert_eq!(authorization, "Bearer test-key");
    assert_eq!(body["model"], "fake-model-7b");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], SYSTEM_PROMPT);
    assert!(SYSTEM_PROMPT.starts_with("You are an AI analyzing marketplace operations data"));
    assert_eq!(body["messages"][1]["role"], "user");
    let mut sent_context: Value =
        serde_json::from_str(body["messages"][1]["content"].as_str().unwrap_or(""))
            .expect("the user message is the context JSON");
    // The context, and the evidence rules' verdicts on its events (checked on their own below).
    let evidence = sent_context
        .as_object_mut()
        .and_then(|object| object.remove("causeEvidence"));
    assert!(evidence.is_some(), "the prompt carries causeEvidence");
    assert_eq!(
        sent_context,
        serde_json::to_value(context()).expect("context JSON")
    );
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    // Deterministic and bounded: temperature 0 and a reply budget.
    assert_eq!(body["temperature"], 0.0);
    // Three recommendations of the longest strings (600 tokens each) within the 2,048 budget.
    assert_eq!(body["max_completion_tokens"], 1_800);
    const { assert!(MAX_REPLY_TOKENS >= 1_800) };
    let stream_enum = &body["response_format"]["json_schema"]["schema"]["properties"]
        ["recommendations"]["items"]["properties"]["affectedStreams"]["items"]["enum"];
    assert_eq!(stream_enum, &json!(context().known_streams));
    // Every string and list is bounded, and anomalies call for at least one recommendation.
    let schema = &body["response_format"]["json_schema"]["schema"]["properties"]["recommendations"];
    assert_eq!(schema["minItems"], 1);
    assert!(schema["maxItems"].is_u64());
    assert!(schema["items"]["properties"]["title"]["maxLength"].is_u64());
    assert_eq!(schema["items"]["properties"]["actions"]["minItems"], 1);
}

#[test]
fn a_server_that_is_down_falls_back_with_connection_refused_after_retrying() {
    // Bind a port and free it again: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let (recommendations, call) =
        fallback_outcome(settings(&format!("http://{address}/v1"), 5_000));
    assert_eq!(call.reason.as_deref(), Some("connection refused"));
    assert_eq!(call.attempts, 3);
    assert_eq!(
        recommendations[0].fallback_reason.as_deref(),
        Some("connection refused")
    );
}

#[test]
fn a_slow_server_falls_back_when_the_timeout_budget_is_spent_and_the_call_returns_promptly() {
    let server = FakeServer::start(|_, _| FakeReply {
        delay: Duration::from_secs(10),
        ..FakeReply::completion(&good_reply())
    });
    let (recommendations, call, elapsed) = analyze_once(settings(&server.base_url, 300));
    assert_eq!(call.source, "rules-fallback");
    assert_eq!(call.reason.as_deref(), Some("timed out after 300 ms"));
    assert_eq!(call.attempts, 1);
    assert_eq!(
        recommendations[0].fallback_reason.as_deref(),
        Some("timed out after 300 ms")
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn unauthorized_falls_back_without_retrying() {
    check_fallback(
        |_, _| FakeReply::openai_error(401, "Incorrect API key provided"),
        "HTTP 401 Unauthorized: Incorrect API key provided",
        1,
    );
}

#[test]
fn rate_limited_twice_then_answered_is_an_llm_answer_after_three_attempts() {
    let server = FakeServer::start(|index, _| {
        if index < 2 {
            FakeReply::openai_error(429, "Rate limit reached")
        } else {
            FakeReply::completion(&good_reply())
        }
    });
    let (recommendations, call, _) = analyze_once(settings(&server.base_url, 5_000));
    assert_eq!(call.source, "llm");
    assert_eq!(call.attempts, 3);
    assert_eq!(call.reason, None);
    assert!(recommendations.iter().all(|r| r.source == "llm"));
}

#[test]
fn always_rate_limited_falls_back_after_max_retries_plus_one_attempts() {
    check_fallback(
        |_, _| FakeReply::openai_error(429, "Rate limit reached"),
        "HTTP 429 Too Many Requests",
        3,
    );
}

#[test]
fn a_server_error_is_retried_then_falls_back() {
    check_fallback(
        |_, _| FakeReply::status(500, json!({ "error": "model crashed" })),
        "HTTP 500 Internal Server Error: model crashed",
        3,
    );
}

#[test]
fn a_retry_that_would_outlast_the_budget_is_not_attempted() {
    let server = FakeServer::start(|_, _| FakeReply::openai_error(503, "overloaded"));
    let mut settings = settings(&server.base_url, 500);
    settings.max_retries = 10;
    let (_, call, elapsed) = analyze_once(settings);
    assert_eq!(
        call.reason.as_deref(),
        Some("HTTP 503 Service Unavailable: overloaded")
    );
    // Back-off 200 ms then 400 ms: the second retry would end after the 500 ms budget.
    assert_eq!(call.attempts, 2);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn content_that_is_not_json_falls_back() {
    check_fallback(
        |_, _| FakeReply::completion("Tutor supply is down; recruit more tutors."),
        "reply is not valid JSON: expected value at line 1 column 1",
        1,
    );
}

#[test]
fn a_reply_citing_an_unknown_stream_falls_back() {
    check_fallback(
        |_, _| {
            FakeReply::completion(&reply_with(
                "affectedStreams",
                json!(["tutor.online.count", "foo.bar"]),
            ))
        },
        "reply cites unknown stream `foo.bar`",
        1,
    );
}

#[test]
fn a_reply_citing_an_unknown_event_falls_back() {
    check_fallback(
        |_, _| FakeReply::completion(&reply_with("relatedEvents", json!(["evt_404"]))),
        "reply cites unknown event `evt_404`",
        1,
    );
}

#[test]
fn empty_content_and_empty_choices_fall_back() {
    check_fallback(|_, _| FakeReply::completion(""), "empty reply", 1);
    check_fallback(
        |_, _| FakeReply::chat_completion(json!([])),
        "empty reply",
        1,
    );
}

#[test]
fn a_reply_cut_at_the_token_limit_falls_back() {
    check_fallback(
        |_, _| {
            let cut = &good_reply()[..120];
            FakeReply::chat_completion(json!([{
                "index": 0,
                "message": { "role": "assistant", "content": cut },
                "finish_reason": "length",
            }]))
        },
        "reply was cut off at the model's token limit",
        1,
    );
}

#[test]
fn a_body_that_is_not_a_chat_completion_falls_back() {
    check_fallback(
        |_, _| FakeReply::status(200, json!({ "hello": "world" })),
        "reply is not a chat completion: missing field",
        1,
    );
}

#[test]
fn a_400_to_json_schema_is_asked_again_without_response_format() {
    // vLLM's error shape, which is not OpenAI's: the status must survive it.
    let server = FakeServer::start(|_, request| {
        if request.get("response_format").is_some() {
            FakeReply::status(
                400,
                json!({ "object": "error", "message": "json_schema is not supported", "type": "BadRequestError", "code": 400 }),
            )
        } else {
            FakeReply::completion(&format!("```json\n{}\n```", good_reply()))
        }
    });
    let (recommendations, call, _) = analyze_once(settings(&server.base_url, 5_000));
    assert_eq!(call.source, "llm");
    assert_eq!(call.attempts, 2);
    assert_eq!(
        call.reason.as_deref(),
        Some(
            "the server refused response_format json_schema (HTTP 400 Bad Request: json_schema is not \
             supported); asked again without it"
        )
    );
    assert_eq!(recommendations.len(), 1);
    assert_eq!(recommendations[0].source, "llm");
    let requests = server.requests();
    assert!(requests[0].1.get("response_format").is_some());
    assert!(requests[1].1.get("response_format").is_none());
    assert_eq!(requests[1].1["messages"][0]["content"], SYSTEM_PROMPT);
}

#[test]
fn a_400_without_schema_too_falls_back_after_two_attempts() {
    check_fallback(
        |_, _| FakeReply::openai_error(400, "model not loaded"),
        "HTTP 400 Bad Request: model not loaded",
        2,
    );
}

#[test]
fn analyze_called_from_inside_a_tokio_runtime_does_not_panic() {
    let server = FakeServer::start(|_, _| FakeReply::completion(&good_reply()));
    let mut analyst = LlmAnalyst::new(settings(&server.base_url, 5_000)).expect("analyst");
    let outer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("outer runtime");
    let recommendations = outer.block_on(async { analyst.analyze(&context()) });
    assert_eq!(recommendations.len(), 1);
    assert_eq!(recommendations[0].source, "llm");
}

#[test]
fn the_same_answer_twice_is_one_recommendation_in_the_book() {
    let server = FakeServer::start(|_, _| FakeReply::completion(&good_reply()));
    let mut analyst = LlmAnalyst::new(settings(&server.base_url, 5_000)).expect("analyst");
    let mut book = RecommendationBook::default();
    book.merge(analyst.analyze(&context()), "2025-01-16T14:00:00Z");
    book.merge(analyst.analyze(&context()), "2025-01-16T15:00:00Z");
    assert_eq!(book.recommendations.len(), 1);
    assert_eq!(book.recommendations[0].id, "rec_001");
    assert_eq!(book.recommendations[0].last_seen, "2025-01-16T15:00:00Z");
    assert_eq!(analyst.calls().len(), 2);
    assert_eq!(analyst.name(), "llm");
    assert_eq!(analyst.model().as_deref(), Some("fake-model-7b"));
}

/// Replies checked without a server: each content against the error it must produce.
#[test]
fn replies_are_validated_against_the_schema_and_the_context() {
    let cases: Vec<(String, &str)> = vec![
        (
            reply_with("priority", json!("urgent")),
            "reply does not match the schema: unknown variant `urgent`",
        ),
        (
            reply_with("confidence", json!(140)),
            "recommendation 1: confidence 140 is outside 0-100",
        ),
        (
            reply_with("confidence", json!(-1)),
            "confidence -1 is outside 0-100",
        ),
        (
            reply_with("actions", json!([])),
            "recommendation 1: no actions",
        ),
        (
            reply_with("affectedStreams", json!([])),
            "recommendation 1: no affected streams",
        ),
        (
            reply_with("title", json!("  ")),
            "recommendation 1: empty title",
        ),
        (
            reply_with("cause", Value::Null),
            "reply does not match the schema: invalid type: null",
        ),
        (
            json!({ "recommendations": [{ "priority": "warning" }] }).to_string(),
            "missing field `title`",
        ),
        (
            json!({ "recommendations": [] }).to_string(),
            "reply has no recommendations although the context has 2 anomalies",
        ),
        (json!([]).to_string(), "reply does not match the schema"),
        (
            "{\"recommendations\": [".to_string(),
            "reply is not valid JSON: EOF while parsing",
        ),
        ("   ".to_string(), "empty reply"),
    ];
    for (content, expected) in cases {
        let error = validate_reply(&content, &context()).expect_err(&content);
        assert!(
            error.to_string().contains(expected),
            "{content}\n  gave `{error}`, expected `{expected}`"
        );
    }
    let mut calm = context();
    calm.anomalies.clear();
    let no_recommendations =
        validate_reply("{\"recommendations\":[]}", &calm).expect("valid when calm");
    assert!(no_recommendations.is_empty());
    let fenced =
        validate_reply(&format!("```\n{}\n```", good_reply()), &context()).expect("fenced");
    assert_eq!(fenced.len(), 1);
    let fractional =
        validate_reply(&reply_with("confidence", json!(84.6)), &context()).expect("fractional");
    assert_eq!(fractional[0].confidence, 85);
    assert_eq!(
        validate_reply(&"x".repeat(300 * 1024), &context()),
        Err(LlmError::ReplyTooLong(300 * 1024))
    );
}

fn from_vars(pairs: &[(&str, &str)]) -> Result<Option<LlmSettings>, LlmError> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    LlmSettings::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn settings_come_from_variables_with_defaults_and_need_an_api_key() {
    assert_eq!(from_vars(&[]), Ok(None));
    assert_eq!(from_vars(&[("OPENAI_API_KEY", "  ")]), Ok(None));
    assert_eq!(
        from_vars(&[("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")]),
        Ok(None)
    );
    assert_eq!(
        from_vars(&[("OPENAI_API_KEY", "sk-test")]),
        Ok(Some(LlmSettings {
            api_key: "sk-test".to_string(),
            base_url: None,
            model: "gpt-4o-mini".to_string(),
            timeout: Duration::from_millis(30_000),
            max_retries: 2,
            context_tokens: 8_192,
            failure_budget: Duration::from_millis(60_000),
            max_calls: 24,
            max_calls_per_minute: 12,
        }))
    );
    assert_eq!(
        from_vars(&[
            ("OPENAI_API_KEY", "ollama"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"),
            ("MARKETSIM_LLM_MODEL", "llama3.1:8b"),
            ("MARKETSIM_LLM_TIMEOUT_MS", "120000"),
            ("MARKETSIM_LLM_RETRIES", "0"),
            ("MARKETSIM_LLM_CONTEXT_TOKENS", "4096"),
            ("MARKETSIM_LLM_FAILURE_BUDGET_MS", "90000"),
            ("MARKETSIM_LLM_MAX_CALLS", "64"),
            ("MARKETSIM_LLM_MAX_CALLS_PER_MINUTE", "30"),
        ]),
        Ok(Some(LlmSettings {
            api_key: "ollama".to_string(),
            base_url: Some("http://127.0.0.1:11434/v1".to_string()),
            model: "llama3.1:8b".to_string(),
            timeout: Duration::from_millis(120_000),
            max_retries: 0,
            context_tokens: 4_096,
            failure_budget: Duration::from_millis(90_000),
            max_calls: 64,
            max_calls_per_minute: 30,
        }))
    );
    let invalid = [
        (
            ("MARKETSIM_LLM_TIMEOUT_MS", "soon"),
            "invalid setting MARKETSIM_LLM_TIMEOUT_MS: `soon` is not a whole number",
        ),
        (
            ("MARKETSIM_LLM_TIMEOUT_MS", "0"),
            "invalid setting MARKETSIM_LLM_TIMEOUT_MS: must be more than 0",
        ),
        (
            ("MARKETSIM_LLM_CONTEXT_TOKENS", "1000"),
            "invalid setting MARKETSIM_LLM_CONTEXT_TOKENS: 1000 is less than 3072: the instructions and the answer schema alone take about 1,600",
        ),
        (
            ("MARKETSIM_LLM_RETRIES", "-1"),
            "invalid setting MARKETSIM_LLM_RETRIES: `-1` is not a whole number",
        ),
        (
            ("MARKETSIM_LLM_RETRIES", "50"),
            "invalid setting MARKETSIM_LLM_RETRIES: 50 is more than 10",
        ),
        (
            ("MARKETSIM_LLM_MAX_CALLS", "0"),
            "invalid setting MARKETSIM_LLM_MAX_CALLS: must be more than 0 (use --analyst rules to ask no model)",
        ),
        (
            ("MARKETSIM_LLM_MAX_CALLS_PER_MINUTE", "0"),
            "invalid setting MARKETSIM_LLM_MAX_CALLS_PER_MINUTE: must be more than 0 (use --analyst rules to ask no model)",
        ),
        (
            ("MARKETSIM_LLM_FAILURE_BUDGET_MS", "0"),
            "invalid setting MARKETSIM_LLM_FAILURE_BUDGET_MS: must be more than 0 (unset OPENAI_API_KEY to use the rules only)",
        ),
        (
            ("OPENAI_BASE_URL", "127.0.0.1:8080"),
            "invalid setting OPENAI_BASE_URL: `127.0.0.1:8080` is not an http:// or https:// URL",
        ),
    ];
    for ((name, value), expected) in invalid {
        let error = from_vars(&[("OPENAI_API_KEY", "sk-test"), (name, value)]).expect_err(value);
        assert_eq!(error.to_string(), expected);
    }
    let debug = format!("{:?}", from_vars(&[("OPENAI_API_KEY", "sk-secret")]));
    assert!(
        !debug.contains("sk-secret"),
        "the key leaks into debug output: {debug}"
    );
}

/// The sources of an analyst's call records, in order, with runs of the same source counted:
/// `llm×2, rules-fallback×16`.
fn call_sources(analyst: &LlmAnalyst) -> String {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for call in analyst.calls() {
        match runs.last_mut() {
            Some((source, count)) if *source == call.source => *count += 1,
            _ => runs.push((call.source.clone(), 1)),
        }
    }
    runs.iter()
        .map(|(source, count)| format!("{source}×{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn a_failing_endpoint_opens_the_circuit_and_is_probed_after_a_cool_down() {
    let server = FakeServer::start(|_, _| FakeReply::openai_error(500, "overloaded"));
    let mut analyst = LlmAnalyst::new(settings(&server.base_url, 5_000)).expect("analyst");
    let analyses = 2 + CIRCUIT_COOLDOWN_ANALYSES as usize + 2;
    for _ in 0..analyses {
        let recommendations = analyst.analyze(&context());
        // Every analysis is answered, by the rules while the model is not asked.
        assert!(!recommendations.is_empty());
    }
    // Two failed calls (3 attempts each: 2 retries) open the circuit; 16 analyses are answered
    // by rules without a request; the probe fails (3 attempts) and opens it for 32 more.
    assert_eq!(server.requests().len(), 9);
    let calls = analyst.calls();
    assert_eq!(calls.len(), analyses);
    let skipped = &calls[2];
    assert_eq!(skipped.attempts, 0);
    assert!(
        skipped
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("circuit open")),
        "{skipped:?}"
    );
    assert_eq!(calls[2 + CIRCUIT_COOLDOWN_ANALYSES as usize].attempts, 3);
    assert_eq!(calls[analyses - 1].attempts, 0);
}

#[test]
fn a_server_that_refused_json_schema_is_not_asked_with_it_again() {
    let server = FakeServer::start(|_, request| {
        if request.get("response_format").is_some() {
            FakeReply::openai_error(400, "response_format json_schema is not supported")
        } else {
            FakeReply::completion(&good_reply())
        }
    });
    let mut analyst = LlmAnalyst::new(settings(&server.base_url, 5_000)).expect("analyst");
    for _ in 0..3 {
        analyst.analyze(&context());
    }
    // 2 requests for the first analysis, then 1 each: the refusal is remembered.
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests[2..]
        .iter()
        .all(|(_, body)| body.get("response_format").is_none()));
    assert_eq!(call_sources(&analyst), "llm×3");
}

#[test]
fn past_the_call_cap_the_rules_answer_every_analysis() {
    let server = FakeServer::start(|_, _| FakeReply::completion(&good_reply()));
    let mut analyst = LlmAnalyst::new(settings(&server.base_url, 5_000)).expect("analyst");
    assert_eq!(analyst.max_analyses(), usize::MAX);
    for _ in 0..MAX_CALLS_PER_RUN + 3 {
        assert!(!analyst.analyze(&context()).is_empty());
    }
    assert_eq!(server.requests().len(), MAX_CALLS_PER_RUN);
    assert_eq!(
        call_sources(&analyst),
        format!("llm×{MAX_CALLS_PER_RUN}, rules-fallback×3")
    );
    let last = analyst.calls().pop().expect("calls");
    assert!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains("model calls are spent")),
        "{last:?}"
    );
}

#[test]
fn past_the_calls_a_minute_the_rules_answer_until_the_minute_has_passed() {
    let server = FakeServer::start(|_, _| FakeReply::completion(&good_reply()));
    let mut settings = settings(&server.base_url, 5_000);
    settings.max_calls_per_minute = 3;
    let mut analyst = LlmAnalyst::new(settings).expect("analyst");
    for _ in 0..5 {
        assert!(!analyst.analyze(&context()).is_empty());
    }
    assert_eq!(server.requests().len(), 3);
    assert_eq!(call_sources(&analyst), "llm×3, rules-fallback×2");
    let last = analyst.calls().pop().expect("calls");
    assert!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains("3 times in the last minute")),
        "{last:?}"
    );
}

/// A context too large for a small window is trimmed (oldest values, weakest correlations and
/// anomalies first) until the prompt fits; the request then fits and says so in the call.
#[test]
fn a_context_larger_than_the_window_is_trimmed_to_fit() {
    let server = FakeServer::start(|_, _| FakeReply::completion(&good_reply()));
    let mut big = context();
    let points: Vec<_> = (0..400)
        .map(|i| marketsim::analyst::context::ContextPoint {
            timestamp: format!("2025-01-{:02}T{:02}:00:00.000Z", 1 + i / 24 % 28, i % 24),
            value: f64::from(i),
            normalized: 50.0,
            bucket_start_ms: u64::from(i as u32) * 3_600_000,
        })
        .collect();
    for stream in big.known_streams.clone() {
        big.recent_values.insert(stream, points.clone());
    }
    let mut small = settings(&server.base_url, 5_000);
    small.context_tokens = 4_096;
    let mut analyst = LlmAnalyst::new(small).expect("analyst");
    let recommendations = analyst.analyze(&big);
    let call = analyst.calls().pop().expect("a call");
    assert_eq!(call.source, "llm", "{call:?}");
    assert!(
        call.reason
            .as_deref()
            .is_some_and(|r| r.contains("context trimmed")),
        "{call:?}"
    );
    assert!(!recommendations.is_empty());
    let requests = server.requests();
    let body = &requests[0].1;
    let sent = serde_json::to_string(body).expect("json").len();
    // Prompt plus reply within 4,096 tokens at 3 bytes a token.
    assert!(sent < (4_096 - 1_024) * 3 + 2_000, "{sent} bytes sent");
    // A quarter of the window for the reply, of which one recommendation's worth is asked for.
    assert_eq!(body["max_completion_tokens"], 600);
}

/// A 400 about the context's length is read as such: no second request without the schema.
#[test]
fn a_400_about_the_context_size_is_not_taken_for_a_schema_refusal() {
    check_fallback(
        |_, _| {
            FakeReply::openai_error(
                400,
                "the request exceeds the available context size, try increasing it",
            )
        },
        "the prompt does not fit the model's context",
        1,
    );
}

/// The user message the analyst sent in `request`, parsed.
fn user_message(request: &Value) -> Value {
    let content = request["messages"][1]["content"].as_str().unwrap_or("null");
    serde_json::from_str(content).unwrap_or(Value::Null)
}

#[test]
fn the_prompt_carries_the_evidence_rules_verdicts_and_the_schema_enumerates_event_ids() {
    let server = FakeServer::start(|_, _| FakeReply::completion(&good_reply()));
    let mut small_window = settings(&server.base_url, 5_000);
    small_window.context_tokens = 4_096;
    for settings in [settings(&server.base_url, 5_000), small_window] {
        let mut analyst = LlmAnalyst::new(settings).expect("analyst");
        analyst.analyze(&context());
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let evidence = &user_message(&requests[0].1)["causeEvidence"];
    // evt_001 declared tutor.online.count down and the drop began as a shift after it; it did
    // not declare the expired requests, so they are neither explained nor listed as rejected.
    assert_eq!(
        evidence,
        &json!([{ "eventId": "evt_001", "explains": ["tutor.online.count"] }])
    );
    let schema_of = |request: &Value| {
        request["response_format"]["json_schema"]["schema"]["properties"]["recommendations"].clone()
    };
    let recommendations = schema_of(&requests[0].1);
    assert_eq!(
        recommendations["items"]["properties"]["relatedEvents"]["items"]["enum"],
        json!(["evt_001"])
    );
    // 2,048 reply tokens hold three recommendations of the longest strings; 1,024 (a quarter
    // of a 4,096 window) one.
    assert_eq!(recommendations["maxItems"], json!(3));
    assert_eq!(schema_of(&requests[1].1)["maxItems"], json!(1));
    // The reply budget is 1,024 tokens; with the schema, what one recommendation can take.
    assert_eq!(requests[1].1["max_completion_tokens"], json!(600));
    assert_eq!(requests[0].1["max_completion_tokens"], json!(1_800));
}

#[test]
fn a_cause_the_evidence_rules_reject_is_replaced_by_the_rules_answer_for_its_streams() {
    // The model blames evt_001 for the expired requests alone, which it never declared.
    let reply = json!({ "recommendations": [{
        "priority": "warning",
        "title": "Bookings expire",
        "description": "Expired requests are up.",
        "impact": "Lost lessons.",
        "cause": "The competitor's bonus.",
        "actions": [{ "label": "Watch", "description": "Watch it.", "expectedImpact": "None", "timeToEffect": "now" }],
        "affectedStreams": ["session.booking.expired"],
        "relatedEvents": ["evt_001"],
        "confidence": 60,
    }]})
    .to_string();
    let server = FakeServer::start(move |_, _| FakeReply::completion(&reply));
    let (recommendations, call, _) = analyze_once(settings(&server.base_url, 5_000));
    assert_eq!(call.source, "llm", "the model answered: {call:?}");
    let reason = call.reason.unwrap_or_default();
    assert!(
        reason.contains("evt_001 (the event did not declare the stream)"),
        "{reason}"
    );
    assert!(
        recommendations.iter().all(|r| r.source == "rules-fallback"),
        "{recommendations:#?}"
    );
    assert_eq!(recommendations[0].key, "supply-shortfall");
    assert!(recommendations[0]
        .affected_streams
        .contains(&"session.booking.expired".to_string()));
}

#[test]
fn a_response_body_over_the_limit_is_not_read_to_its_end() {
    let huge = "x".repeat(2 * 1024 * 1024);
    check_fallback(
        move |_, _| FakeReply::completion(&huge),
        "reply is too long",
        1,
    );
}

#[test]
fn a_black_holed_endpoint_costs_at_most_the_failure_budget_then_is_not_asked() {
    let server = FakeServer::start(|_, _| FakeReply {
        delay: Duration::from_secs(30),
        ..FakeReply::completion(&good_reply())
    });
    let mut settings = settings(&server.base_url, 400);
    settings.failure_budget = Duration::from_millis(600);
    let mut analyst = LlmAnalyst::new(settings).expect("analyst");
    let analyses = CIRCUIT_COOLDOWN_ANALYSES as usize + 10;
    for _ in 0..analyses {
        analyst.analyze(&context());
    }
    // The first call hangs for its whole 400 ms (the circuit opens), the probe after the
    // cool-down gets only what is left of the budget (200 ms or less), and then the model is never asked.
    assert_eq!(server.requests().len(), 2);
    let calls = analyst.calls();
    assert_eq!(calls.len(), analyses);
    assert!(calls.iter().all(|call| call.source == "rules-fallback"));
    let last = calls
        .last()
        .and_then(|call| call.reason.clone())
        .unwrap_or_default();
    assert!(last.contains("its budget for a failing endpoint"), "{last}");
    let probe = &calls[CIRCUIT_COOLDOWN_ANALYSES as usize + 1];
    let budget_ms: Option<u64> = probe
        .reason
        .as_deref()
        .and_then(|reason| reason.strip_prefix("timed out after "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok());
    assert!(
        budget_ms.is_some_and(|ms| ms <= 200),
        "the probe gets what the first call left of the budget: {probe:?}"
    );
}

/// A reply valid in any context with anomalies: one recommendation, no cause named.
fn reply_without_cause() -> String {
    json!({ "recommendations": [{
        "priority": "warning",
        "title": "Requests expire unanswered",
        "description": "More booking requests expire than expected.",
        "impact": "Students who cannot book leave.",
        "cause": "No external event explains it.",
        "actions": [{ "label": "Page on-call tutors", "description": "Ask tutors online to accept.", "expectedImpact": "Fewer expiries", "timeToEffect": "1 hour" }],
        "affectedStreams": ["session.booking.expired"],
        "relatedEvents": [],
        "confidence": 55,
    }]})
    .to_string()
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `marketsim run --analyze --analyst llm` with the fake server's address in the environment.
fn run_with_llm(base_url: &str, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_marketsim"))
        .args([
            "run",
            "fixtures/analysis/llm-incident.yaml",
            "--quiet",
            "--analyze",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .current_dir(crate::support::root())
        .env("OPENAI_API_KEY", "test-key")
        .env("OPENAI_BASE_URL", base_url)
        .env("MARKETSIM_LLM_TIMEOUT_MS", "5000")
        .output()
        .unwrap_or_else(|e| panic!("cannot start marketsim: {e}"))
}

#[test]
fn an_llm_run_is_labelled_by_what_answered_replays_without_the_model_and_diffs_its_recommendations()
{
    // The model answers every other call; the others get a 400 (not retried, no breaker).
    let server = FakeServer::start(|number, _| {
        if number % 2 == 0 {
            FakeReply::completion(&reply_without_cause())
        } else {
            FakeReply::openai_error(400, "bad request")
        }
    });
    let dir = crate::support::temp_dir();
    let llm = dir.path().join("llm");
    let output = run_with_llm(&server.base_url, &llm, &["--analyst", "llm"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    let file = read_json(&llm.join("recommendations.json"));
    let answered = &file["answeredBy"];
    let (by_model, by_rules) = (
        answered["llm"].as_u64().unwrap_or(0),
        answered["rules-fallback"].as_u64().unwrap_or(0),
    );
    assert!(by_model >= 1 && by_rules >= 1, "{answered}");
    assert_eq!(file["analyst"], "llm+rules-fallback");
    assert_eq!(
        by_model + by_rules,
        file["analyses"].as_u64().unwrap_or(0),
        "every analysis is answered by one source"
    );

    // A replay from the recorded replies makes the same recommendations.json, byte for byte,
    // with no model at all.
    let replay = dir.path().join("replay");
    let replies = llm.join("analyst-replies.json");
    let output = crate::support::run_script(
        "fixtures/analysis/llm-incident.yaml",
        &replay,
        &["--analyze", "--analyst-replies", &replies.to_string_lossy()],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    for name in [
        "recommendations.json",
        "series.csv",
        "anomalies.json",
        "truth.json",
    ] {
        let read = |dir: &std::path::Path| std::fs::read_to_string(dir.join(name)).ok();
        let (original, replayed) = (
            read(&llm).unwrap_or_default(),
            read(&replay).unwrap_or_default(),
        );
        let first_difference = original
            .lines()
            .zip(replayed.lines())
            .position(|(a, b)| a != b)
            .map(|line| {
                format!(
                    "line {}: `{}` vs `{}`",
                    line + 1,
                    original.lines().nth(line).unwrap_or(""),
                    replayed.lines().nth(line).unwrap_or("")
                )
            });
        assert!(
            original == replayed,
            "{name} differs in the replay: {first_difference:?}"
        );
    }
    let (llm_arg, replay_arg) = (llm.to_string_lossy(), replay.to_string_lossy());
    let output = crate::support::marketsim(&["diff", &llm_arg, &replay_arg]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stdout(&output)
    );
    assert!(
        crate::support::stdout(&output).contains("recommendations: ")
            && crate::support::stdout(&output).contains("all the same"),
        "{}",
        crate::support::stdout(&output)
    );

    // Against the rules, the recommendations differ and diff says so (exit 1).
    let rules = dir.path().join("rules");
    let output = crate::support::run_script(
        "fixtures/analysis/llm-incident.yaml",
        &rules,
        &["--analyze"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    let rules_arg = rules.to_string_lossy();
    let output = crate::support::marketsim(&["diff", &llm_arg, &rules_arg, "--json"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        crate::support::stderr(&output)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("diff --json");
    assert_eq!(report["verdict"], "different");
    assert_eq!(report["counts"]["different"], 0, "the series are the same");
    let recommendations = &report["recommendations"];
    assert_eq!(recommendations["analystA"], "llm+rules-fallback");
    assert_eq!(recommendations["analystB"], "rules");
    assert!(
        recommendations["added"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            || recommendations["removed"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            || recommendations["changed"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
        "{recommendations}"
    );

    // eval reports the share of each source and how the model's calls went.
    let eval_out = dir.path().join("eval.json");
    let output =
        crate::support::marketsim(&["eval", &llm_arg, "--out", &eval_out.to_string_lossy()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&output)
    );
    let table = crate::support::stdout(&output);
    assert!(table.contains("by source: llm "), "{table}");
    assert!(table.contains("model calls"), "{table}");
    assert!(table.contains("HTTP N Bad Request"), "{table}");
    let eval = read_json(&eval_out);
    let calls = &eval["runs"][0]["calls"];
    assert_eq!(calls["answeredByModel"].as_u64(), Some(by_model));
    assert!(calls["promptTokensP50"].as_u64().is_some(), "{calls}");
    assert!(calls["latencyMsP99"].as_u64().is_some(), "{calls}");
}
