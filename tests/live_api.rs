//! The REST API over real sockets: a server started in-process on 127.0.0.1:0 with a fixed
//! "now", each endpoint called with the crate's own HTTP client, every bad-input class refused
//! with its status and a JSON body (snapshots), the OpenAPI document listing every route, and
//! `marketsim api` end to end.

use std::time::Duration;

use marketsim::live::api::{ApiDoc, ROUTES};
use marketsim::live::api_client::{ApiClient, ApiResponse};
use marketsim::live::server::{start, RunningServer, ServeOptions};
use serde_json::{json, Value};
use utoipa::OpenApi;

/// The virtual "now" of every test server: six hours of history before it.
const NOW: &str = "2025-01-16T14:00:00Z";
const EPOCH: &str = "2025-01-16T08:00:00.000Z";

async fn start_server() -> RunningServer {
    start_server_with_tokens(None, None).await
}

/// [`start_server`] with an admin token and a read token.
async fn start_server_with_tokens(
    admin_token: Option<&str>,
    read_token: Option<&str>,
) -> RunningServer {
    let now = NOW
        .parse()
        .unwrap_or_else(|error| panic!("bad test time {NOW}: {error}"));
    start(ServeOptions {
        port: 0,
        history_ms: 6 * 3_600_000,
        speed: 600.0,
        now: Some(now),
        admin_token: admin_token.map(str::to_string),
        read_token: read_token.map(str::to_string),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|error| panic!("the server did not start: {error}"))
}

fn client_of(server: &RunningServer) -> ApiClient {
    ApiClient::local(server.address.port())
}

async fn call(client: &ApiClient, method: &str, path: &str, body: Option<&str>) -> ApiResponse {
    client
        .request(method, path, body.map(str::as_bytes))
        .await
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// `(status, JSON body)` of a request; panics when the body is not JSON.
async fn json_call(
    client: &ApiClient,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let text = body.map(|value| value.to_string());
    let response = call(client, method, path, text.as_deref()).await;
    let json = response
        .json()
        .unwrap_or_else(|| panic!("{method} {path}: not JSON: {}", response.body));
    (response.status, json)
}

async fn ok_json(client: &ApiClient, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, json) = json_call(client, method, path, body).await;
    assert_eq!(status, 200, "{method} {path}: {json:#}");
    json
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_answers_in_the_seed_shapes() {
    let server = start_server().await;
    let client = client_of(&server);

    let health = ok_json(&client, "GET", "/healthz", None).await;
    assert_eq!(health, json!({ "status": "ok" }));

    let scenarios = ok_json(&client, "GET", "/api/simulation/scenarios", None).await;
    let exam = scenarios["scenarios"]
        .as_array()
        .and_then(|list| list.iter().find(|s| s["id"] == "exam-season-surge"))
        .unwrap_or_else(|| panic!("no exam-season-surge in {scenarios:#}"));
    for field in ["name", "description", "duration"] {
        assert!(exam[field].is_string(), "{field} of {exam:#}");
    }
    assert!(exam["touches"].as_array().is_some_and(|t| !t.is_empty()));

    // The flow view's data: every stream, and edges between streams only, the model's first
    // flow among them.
    let flows = ok_json(&client, "GET", "/api/catalog/flows", None).await;
    let names: Vec<&str> = flows["streams"]
        .as_array()
        .map(|streams| streams.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 50, "{flows:#}");
    let edges = flows["edges"].as_array().cloned().unwrap_or_default();
    assert!(edges.iter().all(|edge| {
        names.contains(&edge["from"].as_str().unwrap_or_default())
            && names.contains(&edge["to"].as_str().unwrap_or_default())
    }));
    assert!(edges
        .iter()
        .any(|edge| edge["from"] == "customer.tutor.search"
            && edge["to"] == "session.booking.requested"));

    let state = ok_json(&client, "GET", "/api/simulation/state", None).await;
    assert_eq!(state["epoch"], EPOCH);
    assert!(state["now"]
        .as_str()
        .is_some_and(|now| now >= "2025-01-16T14:00:00.000Z"));
    assert_eq!(state["clients"], 0);
    assert_eq!(state["speed"], 600.0);

    // The event library: what the admin page offers for injection, red herrings marked.
    let library = ok_json(&client, "GET", "/api/simulation/event-library", None).await;
    let template = |id: &str| {
        library["events"]
            .as_array()
            .and_then(|list| list.iter().find(|e| e["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {library:#}"))
    };
    let exam_event = template("ib-exam-season");
    assert_eq!(exam_event["type"], "academic");
    assert_eq!(exam_event["hasEffect"], true);
    assert!(exam_event["expectedStreams"]
        .as_array()
        .is_some_and(|streams| streams.contains(&json!("customer.tutor.search"))));
    assert_eq!(template("newspaper-feature")["hasEffect"], false);

    // Activation: the seed's response shape.
    let activated = ok_json(
        &client,
        "POST",
        "/api/simulation/scenario",
        Some(json!({ "scenarioId": "exam-season-surge" })),
    )
    .await;
    assert_eq!(activated["success"], true);
    let scenario = &activated["scenario"];
    assert!(scenario["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("mod_")));
    assert_eq!(scenario["type"], "exam-season-surge");
    assert_eq!(scenario["status"], "active");
    assert!(scenario["affectedStreams"]
        .as_object()
        .is_some_and(|m| !m.is_empty()));
    assert!(scenario["settlementDuration"].is_string());
    assert_eq!(activated["estimatedDuration"], scenario["duration"]);
    assert!(activated["events"].is_array());
    let state = ok_json(&client, "GET", "/api/simulation/state", None).await;
    assert!(
        state["scenarios"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["type"] == "exam-season-surge")),
        "{state:#}"
    );

    // An inline scenario with overrides: the affected streams are scaled by the intensity.
    let inline = ok_json(
        &client,
        "POST",
        "/api/simulation/scenario",
        Some(json!({
            "scenarioId": "test-surge",
            "intensity": 0.5,
            "duration": "2h",
            "definition": {
                "id": "test-surge",
                "name": "Test surge",
                "description": "Twice the searches",
                "duration": "1h",
                "settlement": "30m",
                "modifiers": { "streams": { "customer.tutor.search": { "multiplier": 2.0 } } }
            }
        })),
    )
    .await;
    assert_eq!(inline["scenario"]["duration"], "2 hours");
    assert_eq!(inline["scenario"]["settlementDuration"], "30 minutes");
    assert_eq!(
        inline["scenario"]["affectedStreams"],
        json!({ "customer.tutor.search": { "multiplier": 1.5 } })
    );

    // Events: now, and backdated (the history is re-simulated).
    let injected = ok_json(
        &client,
        "POST",
        "/api/simulation/events",
        Some(json!({ "eventId": "newspaper-feature" })),
    )
    .await;
    assert_eq!(injected["items"][0]["kind"], "event");
    assert_eq!(injected["items"][0]["type"], "newspaper-feature");
    let backdated = ok_json(
        &client,
        "POST",
        "/api/simulation/events",
        Some(json!({ "eventId": "cdn-slowdown", "at": "2025-01-16T11:00:00Z" })),
    )
    .await;
    assert_eq!(backdated["at"], "2025-01-16T11:00:00.000Z");
    assert!(backdated["rewrittenBuckets"].is_array(), "{backdated:#}");
    // Commands dated exactly "now" are fed in again at the next frame after a backdated one.
    wait_for_the_next_frame(&client).await;

    // Stop one, then the rest.
    let stopped = ok_json(
        &client,
        "POST",
        "/api/simulation/stop",
        Some(json!({ "scenarioId": "exam-season-surge" })),
    )
    .await;
    assert_eq!(stopped["stopped"], json!(["exam-season-surge"]));
    let stopped = ok_json(&client, "POST", "/api/simulation/stop", None).await;
    assert_eq!(stopped["stopped"], json!(["test-surge"]));

    // Pace.
    let fast = ok_json(
        &client,
        "POST",
        "/api/simulation/control",
        Some(json!({ "speed": 1200 })),
    )
    .await;
    assert_eq!(fast["speed"], 1200.0);
    let paused = ok_json(
        &client,
        "POST",
        "/api/simulation/control",
        Some(json!({ "action": "pause" })),
    )
    .await;
    assert_eq!(paused["paused"], true);
    let resumed = ok_json(
        &client,
        "POST",
        "/api/simulation/control",
        Some(json!({ "action": "resume", "speed": 600 })),
    )
    .await;
    assert_eq!(
        (resumed["paused"].clone(), resumed["speed"].clone()),
        (json!(false), json!(600.0))
    );

    // History: by default the week before now and every stream.
    let history = ok_json(&client, "GET", "/api/simulation/history", None).await;
    let streams = history["streams"].as_object().cloned().unwrap_or_default();
    assert!(streams.len() > 10, "{} streams", streams.len());
    let searches = &streams["customer.tutor.search"];
    assert!(
        searches.as_array().is_some_and(|points| points.len() >= 6),
        "{searches:#}"
    );
    assert!(searches[0]["timestamp"].is_string() && searches[0].get("value").is_some());
    assert!(history["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["title"].is_string())));
    assert!(history["baselineStats"].is_object());
    let history = ok_json(
        &client,
        "GET",
        "/api/simulation/history?start=2025-01-16T08:00:00Z&end=2025-01-16T12:00:00Z&streams=customer.*,session.booking.confirmed",
        None,
    )
    .await;
    assert_eq!(
        history["timeRange"],
        json!({ "start": EPOCH, "end": "2025-01-16T12:00:00.000Z" })
    );
    let names: Vec<&String> = history["streams"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert!(names
        .iter()
        .all(|n| n.starts_with("customer.") || *n == "session.booking.confirmed"));
    assert!(names.iter().any(|n| *n == "session.booking.confirmed"));
    assert_eq!(
        history["streams"]["customer.tutor.search"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    let recording = call(&client, "GET", "/api/simulation/recording", None).await;
    assert_eq!(recording.status, 200);
    assert!(recording
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("text/yaml")));
    assert!(
        recording.body.contains("exam-season-surge"),
        "{}",
        recording.body
    );
    assert!(recording.body.contains("cdn-slowdown"));

    let recommendations = ok_json(&client, "GET", "/api/dashboard/recommendations", None).await;
    assert!(recommendations["recommendations"].is_array());
    assert!(recommendations["analyzed"].is_boolean());
    let anomalies = ok_json(&client, "GET", "/api/dashboard/anomalies", None).await;
    assert!(anomalies["anomalies"].is_array());
    // A payment outage five hours ago: the analysis of the rewritten history recommends.
    let outage = ok_json(
        &client,
        "POST",
        "/api/simulation/scenario",
        Some(json!({ "scenarioId": "payment-outage", "at": "2025-01-16T09:00:00Z" })),
    )
    .await;
    assert_eq!(outage["scenario"]["startTime"], "2025-01-16T09:00:00.000Z");
    take_an_action_once_analyzed(&client).await;

    let reset = ok_json(&client, "POST", "/api/simulation/reset", None).await;
    assert!(reset["at"].is_string());

    let metrics = call(&client, "GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("text/plain")));
    let requests = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("marketsim_http_requests_total "))
        .and_then(|count| count.parse::<u64>().ok());
    assert!(requests.is_some_and(|count| count > 10), "{}", metrics.body);
    assert!(metrics.body.contains("marketsim_events_per_second "));

    // The served document lists every route.
    let document = ok_json(&client, "GET", "/api/openapi.json", None).await;
    for (method, path) in ROUTES {
        assert!(
            document["paths"][path][method.to_ascii_lowercase()].is_object(),
            "{method} {path} is not in the served document"
        );
    }
    let _ = server.shutdown().await;
}

/// Waits (bounded) until virtual time has moved on.
async fn wait_for_the_next_frame(client: &ApiClient) {
    let before = ok_json(client, "GET", "/api/simulation/state", None).await["virtualMs"].clone();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let state = ok_json(client, "GET", "/api/simulation/state", None).await;
        if state["virtualMs"] != before {
            return;
        }
    }
    panic!("virtual time did not move in 5 s");
}

/// Waits (bounded) for the session to be analyzed, then resolves the first active
/// recommendation (the backdated payment outage makes some), twice: the second is refused.
async fn take_an_action_once_analyzed(client: &ApiClient) {
    let mut analyzed = false;
    for _ in 0..600 {
        let state = ok_json(client, "GET", "/api/simulation/state", None).await;
        if state["analyzed"] == true {
            analyzed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(analyzed, "the baseline was not fitted within a minute");
    let (status, body) = json_call(
        client,
        "POST",
        "/api/dashboard/recommendations/rec_999/action",
        Some(json!({ "actionId": "act_001" })),
    )
    .await;
    assert_eq!(status, 404, "{body:#}");
    assert_eq!(body["error"], "unknown_recommendation");
    let list = ok_json(client, "GET", "/api/dashboard/recommendations", None).await;
    let active = list["recommendations"].as_array().and_then(|list| {
        list.iter()
            .find(|r| r["status"] == "active" && r["actions"][0]["id"].is_string())
    });
    let recommendation = active.unwrap_or_else(|| panic!("no active recommendation: {list:#}"));
    let id = recommendation["id"].as_str().unwrap_or_default();
    let path = format!("/api/dashboard/recommendations/{id}/action");
    let action = json!({ "actionId": recommendation["actions"][0]["id"] });
    let resolved = ok_json(client, "POST", &path, Some(action.clone())).await;
    assert_eq!(resolved["recommendation"]["status"], "resolved");
    let (status, body) = json_call(client, "POST", &path, Some(action)).await;
    assert_eq!(
        (status, body["error"].clone()),
        (409, json!("already_resolved"))
    );
}

/// One refused request: its name (the snapshot's), method, path, body, expected status.
struct Refusal {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<String>,
    status: u16,
}

fn refusal(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: &str,
    status: u16,
) -> Refusal {
    Refusal {
        name,
        method,
        path,
        body: (!body.is_empty()).then(|| body.to_string()),
        status,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_a_json_error() {
    let server = start_server().await;
    let client = client_of(&server);
    let too_large = format!(r#"{{"scenarioId":"{}"}}"#, "x".repeat(70 * 1024));
    let cases = [
        refusal(
            "unknown_scenario",
            "POST",
            "/api/simulation/scenario",
            r#"{"scenarioId":"no-such-scenario"}"#,
            404,
        ),
        refusal(
            "unknown_event",
            "POST",
            "/api/simulation/events",
            r#"{"eventId":"no-such-event"}"#,
            404,
        ),
        refusal(
            "malformed_json",
            "POST",
            "/api/simulation/scenario",
            r#"{"scenarioId":"#,
            400,
        ),
        refusal(
            "wrong_type",
            "POST",
            "/api/simulation/scenario",
            r#"{"scenarioId":7}"#,
            400,
        ),
        refusal(
            "missing_field",
            "POST",
            "/api/simulation/scenario",
            r#"{"intensity":2}"#,
            400,
        ),
        refusal(
            "unknown_field",
            "POST",
            "/api/simulation/scenario",
            r#"{"scenarioId":"exam-season-surge","intensty":2}"#,
            400,
        ),
        refusal(
            "inline_definition_missing_field",
            "POST",
            "/api/simulation/scenario",
            r#"{"scenarioId":"x","definition":{"id":"x"}}"#,
            400,
        ),
        refusal(
            "intensity_out_of_range",
            "POST",
            "/api/simulation/scenario",
            r#"{"scenarioId":"exam-season-surge","intensity":50}"#,
            400,
        ),
        refusal(
            "stop_not_active",
            "POST",
            "/api/simulation/stop",
            r#"{"scenarioId":"supply-crisis"}"#,
            409,
        ),
        refusal(
            "stop_all_none_active",
            "POST",
            "/api/simulation/stop",
            "",
            409,
        ),
        refusal(
            "control_nothing",
            "POST",
            "/api/simulation/control",
            "{}",
            400,
        ),
        refusal(
            "control_negative_speed",
            "POST",
            "/api/simulation/control",
            r#"{"speed":-1}"#,
            400,
        ),
        refusal(
            "control_unknown_action",
            "POST",
            "/api/simulation/control",
            r#"{"action":"jump"}"#,
            400,
        ),
        refusal(
            "event_id_and_template",
            "POST",
            "/api/simulation/events",
            r#"{"eventId":"cdn-slowdown","event":{}}"#,
            400,
        ),
        refusal(
            "event_in_the_future",
            "POST",
            "/api/simulation/events",
            r#"{"eventId":"cdn-slowdown","at":"2030-01-01T00:00:00Z"}"#,
            400,
        ),
        refusal(
            "event_before_the_epoch",
            "POST",
            "/api/simulation/events",
            r#"{"eventId":"cdn-slowdown","at":"2025-01-01T00:00:00Z"}"#,
            400,
        ),
        refusal(
            "event_at_not_a_time",
            "POST",
            "/api/simulation/events",
            r#"{"eventId":"cdn-slowdown","at":"yesterday"}"#,
            400,
        ),
        refusal(
            "history_not_a_time",
            "GET",
            "/api/simulation/history?start=yesterday",
            "",
            400,
        ),
        refusal(
            "history_reversed",
            "GET",
            "/api/simulation/history?start=2025-01-16T12:00:00Z&end=2025-01-16T10:00:00Z",
            "",
            400,
        ),
        refusal(
            "history_too_long",
            "GET",
            "/api/simulation/history?start=2024-11-01T00:00:00Z&end=2025-01-16T00:00:00Z",
            "",
            400,
        ),
        refusal(
            "history_unknown_stream",
            "GET",
            "/api/simulation/history?streams=customer.tutor.serch",
            "",
            400,
        ),
        refusal(
            "history_unknown_parameter",
            "GET",
            "/api/simulation/history?stream=customer.*",
            "",
            400,
        ),
        refusal(
            "action_missing_field",
            "POST",
            "/api/dashboard/recommendations/rec_001/action",
            "{}",
            400,
        ),
        refusal(
            "body_too_large",
            "POST",
            "/api/simulation/scenario",
            &too_large,
            413,
        ),
    ];
    for case in &cases {
        let response = call(&client, case.method, case.path, case.body.as_deref()).await;
        let body = response
            .json()
            .unwrap_or_else(|| panic!("{}: not JSON: {}", case.name, response.body));
        assert_eq!(response.status, case.status, "{}: {body:#}", case.name);
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{}: {body:#}",
            case.name
        );
        if case.name == "event_in_the_future" {
            // The message names virtual now, which depends on the wall clock.
            let mut body = body.clone();
            body["message"] = json!("[names virtual now]");
            insta::assert_json_snapshot!(case.name, body);
        } else {
            insta::assert_json_snapshot!(case.name, body);
        }
    }
    // Nothing was changed by the refused requests.
    let recording = call(&client, "GET", "/api/simulation/recording", None).await;
    assert!(
        !recording.body.contains("exam-season-surge"),
        "{}",
        recording.body
    );
    // A scenario activated twice at once: the second is a conflict, not a doubled effect.
    let body = r#"{"scenarioId":"supply-crisis"}"#;
    let first = call(&client, "POST", "/api/simulation/scenario", Some(body)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = call(&client, "POST", "/api/simulation/scenario", Some(body)).await;
    assert_eq!(second.status, 409, "{}", second.body);
    let second = second
        .json()
        .unwrap_or_else(|| panic!("not JSON: {}", second.body));
    insta::assert_json_snapshot!("activate_already_active", second);
    let _ = server.shutdown().await;
}

#[test]
fn every_route_is_in_the_openapi_document() {
    let document = ApiDoc::openapi();
    for (method, path) in ROUTES {
        let item = document
            .paths
            .paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"));
        let operation = match *method {
            "GET" => item.get.as_ref(),
            "POST" => item.post.as_ref(),
            other => panic!("no check for method {other}"),
        };
        assert!(
            operation.is_some(),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    assert_eq!(
        document.paths.paths.len(),
        ROUTES.len(),
        "the document has routes the router lacks"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_command_prints_answers_and_exits_by_status() {
    let server = start_server().await;
    let url = format!("http://127.0.0.1:{}", server.address.port());
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_marketsim"))
                .args(&args)
                .env("NO_COLOR", "1")
                .output()
                .unwrap_or_else(|error| panic!("cannot start marketsim: {error}"))
        })
    };
    let args = |rest: &[&str]| {
        let mut all = vec!["api".to_string(), "--url".to_string(), url.clone()];
        all.extend(rest.iter().map(|s| s.to_string()));
        all
    };
    let output = run(args(&["state"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let state: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(state["epoch"], EPOCH);
    assert!(stdout.contains("\n  \"epoch\""), "not pretty: {stdout}");

    let output = run(args(&[
        "inject",
        "cdn-slowdown",
        "--at",
        "2025-01-16T12:00:00Z",
    ]))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The activation comes after the backdated event, so it is in effect at once.
    let output = run(args(&["activate", "exam-season-surge"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output.status.code(), Some(0));
    for verb in [
        &["speed", "900"][..],
        &["pause"],
        &["resume"],
        &["stop"],
        &["scenarios"],
        &["reset"],
    ] {
        let output = run(args(verb)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{verb:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = run(args(&["recording"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("cdn-slowdown"));

    let output = run(args(&["activate", "no-such-scenario"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("\"unknown_scenario\""),
        "{stderr}"
    );

    // A port nothing listens on: the server cannot be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let output = run(vec![
        "api".to_string(),
        "--url".to_string(),
        format!("http://{closed}"),
        "state".to_string(),
    ])
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
    let _ = server.shutdown().await;
}

/// The head of a raw `GET path` answer (status line and headers), lower-cased.
async fn raw_head(port: u16, path: &str) -> String {
    raw_request(port, "GET", path, "").await
}

/// The head of a raw answer to `METHOD path` with `extra` header lines (each ending in CRLF),
/// lower-cased: what a browser sends that the crate's client does not (Origin).
async fn raw_request(port: u16, method: &str, path: &str, extra: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    // Read up to the end of the head: a WebSocket upgrade keeps the connection open.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream
            .read(&mut chunk)
            .await
            .unwrap_or_else(|e| panic!("read: {e}"));
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&raw).to_lowercase();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_admin_token_changes_need_it_and_reads_do_not() {
    let server = start_server_with_tokens(Some("correct horse"), None).await;
    let port = server.address.port();
    let pause = json!({ "action": "pause" });
    let anonymous = client_of(&server);
    let wrong = client_of(&server).with_bearer_token(Some("correct horsf"));
    let admin = client_of(&server).with_bearer_token(Some("correct horse"));

    // Every state-changing route refuses a request without the token, or with a wrong one.
    for (method, path) in ROUTES.iter().filter(|(method, _)| *method != "GET") {
        let path = path.replace("{id}", "rec_001");
        for client in [&anonymous, &wrong] {
            let (status, body) = json_call(client, method, &path, Some(pause.clone())).await;
            assert_eq!(status, 401, "{method} {path}: {body}");
            assert_eq!(body["error"], "unauthorized", "{method} {path}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Authorization: Bearer"),
                "{body}"
            );
        }
    }
    // With it, the change is made; reads need nothing.
    let (status, body) = json_call(&admin, "POST", "/api/simulation/control", Some(pause)).await;
    assert_eq!(status, 200, "{body}");
    let state = ok_json(&anonymous, "GET", "/api/simulation/state", None).await;
    assert_eq!(state["paused"], true, "{state}");

    // A page of another site is refused even with the token (a browser sends its Origin with
    // every cross-site POST and WebSocket handshake); the server's own pages are not.
    let bearer = "Authorization: Bearer correct horse\r\n";
    let foreign = format!("Origin: http://evil.example\r\n{bearer}");
    let head = raw_request(port, "POST", "/api/simulation/reset", &foreign).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    let own = format!("Origin: http://127.0.0.1:{port}\r\n{bearer}");
    let head = raw_request(port, "POST", "/api/simulation/reset", &own).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let handshake = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let head = raw_request(
        port,
        "GET",
        "/ws",
        &format!("Origin: http://evil.example\r\n{handshake}"),
    )
    .await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    let head = raw_request(port, "GET", "/ws", handshake).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");

    // A refusal says how to authenticate; the pages carry the security headers.
    let head = raw_head(port, "/dashboard").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    for expected in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(expected), "{expected} missing from {head}");
    }
    server
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("shutdown: {error}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_read_token_data_and_the_websocket_need_it_and_the_pages_do_not() {
    let server = start_server_with_tokens(Some("admin secret"), Some("watch secret")).await;
    let port = server.address.port();
    let anonymous = client_of(&server);
    let wrong = client_of(&server).with_bearer_token(Some("watch secreT"));
    let reader = client_of(&server).with_bearer_token(Some("watch secret"));
    let admin = client_of(&server).with_bearer_token(Some("admin secret"));

    // Every read of data refuses a request without a token or with a wrong one, and answers the
    // read token and the admin token; the document and the health check stay open.
    let open_paths = ["/api/openapi.json", "/healthz"];
    for (method, path) in ROUTES.iter().filter(|(method, _)| *method == "GET") {
        let response = call(&reader, method, path, None).await;
        assert_eq!(response.status, 200, "{path} with the read token");
        let response = call(&admin, method, path, None).await;
        assert_eq!(response.status, 200, "{path} with the admin token");
        for client in [&anonymous, &wrong] {
            let response = call(client, method, path, None).await;
            if open_paths.contains(path) {
                assert_eq!(response.status, 200, "{path} stays open");
            } else {
                assert_eq!(response.status, 401, "{path}: {}", response.body);
                assert!(response.body.contains("--read-token"), "{}", response.body);
            }
        }
    }
    // The read token does not change the simulation; the admin token does.
    let pause = json!({ "action": "pause" });
    let (status, body) = json_call(
        &reader,
        "POST",
        "/api/simulation/control",
        Some(pause.clone()),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = json_call(&admin, "POST", "/api/simulation/control", Some(pause)).await;
    assert_eq!(status, 200, "{body}");

    // The WebSocket takes the token as a header or as `access_token` (a browser cannot send the
    // header); without it the handshake is refused before the upgrade.
    let handshake = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (path, headers, expected) in [
        ("/ws", handshake.to_string(), "401"),
        ("/ws?access_token=nope", handshake.to_string(), "401"),
        (
            "/ws?access_token=watch%20secret",
            handshake.to_string(),
            "101",
        ),
        (
            "/ws",
            format!("Authorization: Bearer watch secret\r\n{handshake}"),
            "101",
        ),
    ] {
        let head = raw_request(port, "GET", path, &headers).await;
        assert!(
            head.starts_with(&format!("http/1.1 {expected}")),
            "{path}: {head}"
        );
    }
    // The command-line client sends its --token; without it, it says what is missing.
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut options = marketsim::live::ws_client::ClientOptions {
        url,
        topics: vec!["*".to_string()],
        count: Some(1),
        seconds: Some(20.0),
        table: false,
        bearer_token: None,
    };
    let refused = marketsim::live::ws_client::run(&options, &mut Vec::new()).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("--read-token"), "{message}");
    options.bearer_token = Some("watch secret".to_string());
    let (status, _) = json_call(
        &admin,
        "POST",
        "/api/simulation/control",
        Some(json!({ "action": "resume" })),
    )
    .await;
    assert_eq!(status, 200);
    let mut printed = Vec::new();
    let summary = marketsim::live::ws_client::run(&options, &mut printed)
        .await
        .unwrap_or_else(|error| panic!("the client with the read token: {error}"));
    assert_eq!(summary.events, 1, "{}", String::from_utf8_lossy(&printed));

    // The pages load without a token: they ask for it.
    for page in ["/dashboard", "/admin", "/assets/access-token.js"] {
        let head = raw_head(port, page).await;
        assert!(head.starts_with("http/1.1 200"), "{page}: {head}");
    }
    server
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("shutdown: {error}"));
}

/// API fuzzing: schemathesis (from tests/python/requirements.txt) generates requests from the
/// server's own OpenAPI document — examples, boundary values, wrong types, huge numbers, unicode —
/// and checks every answer: no 5xx, a documented status code and content type, and a body that
/// matches the documented schema. A bounded, seeded run, so it is the same in every CI.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let Some(python) = crate::support::python_with("schemathesis") else {
        return;
    };
    let server = start_server().await;
    let schema = format!(
        "http://127.0.0.1:{}/api/openapi.json",
        server.address.port()
    );
    let report = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-m", "schemathesis.cli", "run", &schema])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "10",
                "--seed",
                "42",
                "--generation-deterministic",
                "--workers",
                "1",
                "--no-color",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap_or_else(|e| panic!("cannot start schemathesis: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("schemathesis: {e}"));
    let out = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success(),
        "schemathesis found problems:\n{out}\n{}",
        String::from_utf8_lossy(&report.stderr)
    );
    // The summary says how many operations and test cases ran (printed for the CI log); a run
    // that tested nothing proves nothing.
    let summary: Vec<&str> = out
        .lines()
        .filter(|line| line.contains("Tested:") || line.contains("generated"))
        .collect();
    eprintln!("schemathesis: {}", summary.join("; "));
    assert!(
        summary.iter().any(|line| line.contains("generated")),
        "no test cases ran:\n{out}"
    );
    server
        .shutdown()
        .await
        .unwrap_or_else(|error| panic!("shutdown: {error}"));
}
