//! API Gateway (HTTP API, payload format 2.0) for local runs, with no Docker: routes and the JWT
//! authorizer come from `template.yaml`; each request becomes a Lambda event sent to
//! `cargo lambda watch`'s Invoke API, and the function's answer becomes the HTTP response.
//! Where a client would notice, it answers as API Gateway does: `404 {"message":"Not Found"}`,
//! `401 {"message":"Unauthorized"}`, `429 {"message":"Too Many Requests"}` above the template's
//! route throttling, `500 {"message":"Internal Server Error"}`, and
//! `503 {"message":"Service Unavailable"}` when the integration times out.

pub mod authorizer;
pub mod cors;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::authorizer::Authorizer;
use crate::template::{match_route, Api};

pub struct Gateway {
    pub api: Api,
    pub lambda_url: String,
    authorizers: HashMap<String, Authorizer>,
    http: reqwest::Client,
    /// Token buckets of the throttled routes, by route key.
    buckets: std::sync::Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl Gateway {
    /// API Gateway's throttling: a token bucket per route holding up to `burst` requests,
    /// refilled at `rate` per second. Whether this request may pass.
    fn admit(&self, route_key: &str) -> bool {
        let Some(t) = self.api.throttle(route_key) else {
            return true;
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        let (tokens, last) = buckets
            .entry(route_key.to_owned())
            .or_insert((t.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * t.rate).min(t.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Gateway {
    pub fn new(api: Api, lambda_url: &str) -> Arc<Self> {
        let http = reqwest::Client::new();
        let authorizers = api
            .authorizers
            .iter()
            .map(|(name, cfg)| (name.clone(), Authorizer::new(cfg.clone(), http.clone())))
            .collect();
        Arc::new(Gateway {
            api,
            lambda_url: lambda_url.trim_end_matches('/').to_owned(),
            authorizers,
            http,
            buckets: std::sync::Mutex::new(HashMap::new()),
        })
    }
}

fn message(status: u16, text: &str) -> Response {
    let mut resp = Response::new(Body::from(json!({ "message": text }).to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(handle).with_state(gateway);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

fn is_text(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|c| {
        let c = c.to_ascii_lowercase();
        c.starts_with("text/")
            || c.contains("json")
            || c.contains("xml")
            || c.contains("javascript")
            || c.starts_with("application/x-www-form-urlencoded")
    })
}

/// `dd/Mon/yyyy:HH:mm:ss +0000`, as API Gateway writes `requestContext.time`.
fn clf_time(epoch_ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from_unix_timestamp(epoch_ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

async fn handle(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let Some(cors) = gw.api.cors.clone() else {
        return route(gw, request).await;
    };
    let method = request.method().as_str().to_owned();
    if let Some(answer) = cors.preflight(&method, request.headers()) {
        return answer;
    }
    let headers = request.headers().clone();
    cors.decorate(&headers, route(gw, request).await)
}

async fn route(gw: Arc<Gateway>, request: Request) -> Response {
    let source_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let Some((route, path_params)) = match_route(&gw.api, &method, &path) else {
        return message(404, "Not Found");
    };
    let route = route.clone();
    if !gw.admit(&route.key()) {
        return message(429, "Too Many Requests");
    }
    let Ok(body) = axum::body::to_bytes(body, 10 * 1024 * 1024).await else {
        return message(413, "Request Entity Too Large");
    };
    // Headers: names lowercased, repeated values joined with commas, cookies apart.
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let Ok(v) = value.to_str() else { continue };
        if name.as_str() == "cookie" {
            cookies.extend(
                v.split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|e| {
                e.push(',');
                e.push_str(v);
            })
            .or_insert_with(|| v.to_owned());
    }
    let mut authorizer_context = Value::Null;
    if let Some(name) = &route.authorizer {
        let Some(auth) = gw.authorizers.get(name) else {
            return message(500, "Internal Server Error");
        };
        match auth
            .authorize(headers.get("authorization").map(String::as_str))
            .await
        {
            Ok(claims) => authorizer_context = json!({"jwt": {"claims": claims, "scopes": null}}),
            Err(_) => {
                let mut resp = message(401, "Unauthorized");
                resp.headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static("Bearer"));
                return resp;
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        query
            .entry(k.into_owned())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let text_body = is_text(headers.get("content-type").map(String::as_str));
    let route_key = route.key();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let host = headers
        .get("host")
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or("local"),
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": user_agent},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": clf_time(now_ms),
            "timeEpoch": now_ms,
        },
        "isBase64Encoded": !text_body && !body.is_empty(),
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !path_params.is_empty() {
        event["pathParameters"] = json!(path_params);
    }
    if !authorizer_context.is_null() {
        event["requestContext"]["authorizer"] = authorizer_context;
    }
    if !body.is_empty() {
        event["body"] = if text_body {
            json!(String::from_utf8_lossy(&body))
        } else {
            json!(STANDARD.encode(&body))
        };
    }
    let url = format!(
        "{}/2015-03-31/functions/{}/invocations",
        gw.lambda_url, route.function
    );
    let invoked = gw
        .http
        .post(url)
        .timeout(Duration::from_secs(route.timeout_secs.max(1)))
        .json(&event)
        .send()
        .await;
    let resp = match invoked {
        Err(e) if e.is_timeout() => {
            eprintln!(
                "local-gateway: {route_key}: integration timed out after {} s",
                route.timeout_secs
            );
            return message(503, "Service Unavailable");
        }
        Err(e) => {
            eprintln!("local-gateway: {route_key}: invoke failed: {e}");
            return message(500, "Internal Server Error");
        }
        Ok(r) => r,
    };
    let failed = resp.headers().contains_key("x-amz-function-error") || !resp.status().is_success();
    let payload = resp.bytes().await.unwrap_or_default();
    if failed {
        eprintln!(
            "local-gateway: {route_key}: function error: {}",
            String::from_utf8_lossy(&payload)
        );
        return message(500, "Internal Server Error");
    }
    into_http(&payload)
}

/// The function's payload-2.0 answer as HTTP. A payload without `statusCode` is a 200 whose body
/// is the JSON returned, as API Gateway infers it.
fn into_http(payload: &[u8]) -> Response {
    let value: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let Some(status) = value.get("statusCode").and_then(Value::as_u64) else {
        let mut resp = Response::new(Body::from(payload.to_vec()));
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        return resp;
    };
    let body = value.get("body").and_then(Value::as_str).unwrap_or("");
    let body = if value
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        STANDARD.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() =
        StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(h) = value.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            if let (Ok(name), Some(Ok(val))) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(HeaderValue::from_str),
            ) {
                resp.headers_mut().insert(name, val);
            }
        }
    }
    if let Some(m) = value.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vs) in m {
            for v in vs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let (Ok(name), Ok(val)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    resp.headers_mut().append(name, val);
                }
            }
        }
    }
    for c in value
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append("set-cookie", v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_time_is_in_api_gateway_format() {
        assert_eq!(clf_time(1_735_000_000_123), "24/Dec/2024:00:26:40 +0000");
    }

    #[tokio::test]
    async fn function_answers_become_http_responses() {
        let r = into_http(br#"{"statusCode": 201, "headers": {"etag": "\"3\""}, "body": "{\"a\":1}", "cookies": ["s=1"]}"#);
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["etag"], "\"3\"");
        assert_eq!(r.headers()["set-cookie"], "s=1");
        let r = into_http(br#"{"plain": true}"#);
        assert_eq!(r.status(), 200);
    }

    #[test]
    fn binary_bodies_are_told_from_text() {
        assert!(is_text(Some("application/json; charset=utf-8")));
        assert!(is_text(None));
        assert!(!is_text(Some("image/png")));
    }
}
