//! The gateway over HTTP, in front of a stand-in Lambda Invoke API that records the events it gets:
//! the payload 2.0 event a function would see, API Gateway's error answers, the integration timeout.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{json, Value};

const TEMPLATE: &str = r#"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function: {Timeout: 1}
Parameters:
  EchoRate: {Type: Number, Default: 2}
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      DefaultRouteSettings: {ThrottlingRateLimit: 1000, ThrottlingBurstLimit: 1000}
      RouteSettings:
        "ANY /items/{id}": {ThrottlingRateLimit: !Ref EchoRate, ThrottlingBurstLimit: 5}
      Auth:
        Authorizers:
          Jwt:
            JwtConfiguration: {issuer: "http://127.0.0.1:9/realms/nowhere", audience: [x]}
  Echo:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: echo}}
    Properties:
      Events:
        Item: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/items/{id}", Method: ANY}}
        Files: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/files/{proxy+}", Method: PUT}}
  Slow:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: slow}}
    Properties:
      Events:
        Slow: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /slow, Method: GET}}
  Guarded:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: echo}}
    Properties:
      Events:
        Guarded: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /guarded, Method: GET, Auth: {Authorizer: Jwt}}}
  Broken:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: broken}}
    Properties:
      Events:
        Broken: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /broken, Method: GET}}
"#;

type Seen = Arc<Mutex<Vec<Value>>>;

/// A JSON answer, as Lambda's Invoke API gives it. (Built by hand: axum's `json` feature here
/// alone would compile axum, and every crate above it, a second time for the tests.)
fn json_answer(headers: &[(&'static str, &'static str)], body: Value) -> axum::response::Response {
    let mut answer = axum::response::Response::new(axum::body::Body::from(body.to_string()));
    answer.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        answer
            .headers_mut()
            .insert(*name, axum::http::HeaderValue::from_static(value));
    }
    answer
}

async fn invoke(
    State(seen): State<Seen>,
    Path(function): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    let event: Value = serde_json::from_slice(&body).unwrap();
    seen.lock().unwrap().push(event);
    match function.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json_answer(&[], json!({"statusCode": 200, "body": "late"}))
        }
        "broken" => json_answer(
            &[("x-amz-function-error", "Unhandled")],
            json!({"errorType": "Panic", "errorMessage": "boom"}),
        ),
        _ => json_answer(
            &[],
            json!({"statusCode": 202, "headers": {"x-echo": "yes"}, "body": "{\"ok\":true}"}),
        ),
    }
}

async fn start() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let lambda = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lambda_url = format!("http://{}", lambda.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            axum::routing::post(invoke),
        )
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(lambda, app).await.unwrap() });
    let api = local_gateway::template::load(TEMPLATE, &HashMap::new()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gw = local_gateway::Gateway::new(api, &lambda_url);
    tokio::spawn(async move { local_gateway::serve(listener, gw).await.unwrap() });
    (base, seen)
}

#[tokio::test]
async fn requests_become_payload_2_events_and_answers_become_http() {
    let (base, seen) = start().await;
    let r = reqwest::Client::new()
        .post(format!("{base}/items/42?a=1&a=2&b=x"))
        .header("X-Custom", "one")
        .header("cookie", "s=1; t=2")
        .header("content-type", "application/json")
        .body(r#"{"hello":"world"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-echo"], "yes");
    assert_eq!(r.text().await.unwrap(), r#"{"ok":true}"#);
    let event = seen.lock().unwrap()[0].clone();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "ANY /items/{id}");
    assert_eq!(event["rawPath"], "/items/42");
    assert_eq!(event["rawQueryString"], "a=1&a=2&b=x");
    assert_eq!(
        event["queryStringParameters"],
        json!({"a": "1,2", "b": "x"})
    );
    assert_eq!(event["pathParameters"], json!({"id": "42"}));
    assert_eq!(
        event["headers"]["x-custom"], "one",
        "header names lowercased"
    );
    assert_eq!(event["cookies"], json!(["s=1", "t=2"]));
    assert_eq!(event["body"], r#"{"hello":"world"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(event["requestContext"]["stage"], "$default");
    assert!(event["requestContext"]["requestId"].is_string());
}

#[tokio::test]
async fn binary_bodies_travel_base64_and_greedy_paths_match() {
    let (base, seen) = start().await;
    let r = reqwest::Client::new()
        .put(format!("{base}/files/a/b/c.png"))
        .header("content-type", "image/png")
        .body(vec![0u8, 159, 146, 150])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let event = seen.lock().unwrap()[0].clone();
    assert_eq!(event["pathParameters"], json!({"proxy": "a/b/c.png"}));
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "AJ+Slg==");
}

#[tokio::test]
async fn unknown_routes_are_404_not_found() {
    let (base, seen) = start().await;
    for (method, path) in [("GET", "/nothing"), ("GET", "/files/x")] {
        let r = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"message": "Not Found"})
        );
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_integration_timeout_is_503_service_unavailable() {
    let (base, _) = start().await;
    let r = reqwest::get(format!("{base}/slow")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Service Unavailable"})
    );
}

#[tokio::test]
async fn a_function_error_is_500_internal_server_error() {
    let (base, _) = start().await;
    let r = reqwest::get(format!("{base}/broken")).await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Internal Server Error"})
    );
}

#[tokio::test]
async fn above_the_routes_throttling_the_answer_is_429_too_many_requests() {
    let (base, seen) = start().await;
    let client = reqwest::Client::new();
    let answers = futures_join(
        (0..12)
            .map(|_| client.get(format!("{base}/items/1")).send())
            .collect(),
    )
    .await;
    let throttled: Vec<_> = answers.iter().filter(|s| **s == 429).collect();
    assert!(
        (6..=7).contains(&throttled.len()),
        "a burst of 5 (plus what refills meanwhile) passes: {answers:?}"
    );
    assert!(
        seen.lock().unwrap().len() <= 6,
        "throttled requests never reach the function"
    );
    let r = client.get(format!("{base}/items/1")).send().await.unwrap();
    if r.status() == 429 {
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"message": "Too Many Requests"})
        );
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = client.get(format!("{base}/items/1")).send().await.unwrap();
    assert_eq!(r.status(), 202, "the bucket refills at the route's rate");
}

async fn futures_join(
    requests: Vec<
        impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
    >,
) -> Vec<u16> {
    let mut out = Vec::new();
    let handles: Vec<_> = requests.into_iter().map(tokio::spawn).collect();
    for h in handles {
        out.push(h.await.unwrap().unwrap().status().as_u16());
    }
    out
}

#[tokio::test]
async fn an_unreachable_issuer_holds_no_request_hostage() {
    let (base, seen) = start().await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let req = client
                .get(format!("{base}/guarded"))
                .bearer_auth("eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vbmUifQ.e30.c2ln")
                .send();
            tokio::spawn(req)
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().status(), 401);
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "one bounded key fetch, not one per request in turn: {:?}",
        started.elapsed()
    );
    assert!(seen.lock().unwrap().is_empty());
}
