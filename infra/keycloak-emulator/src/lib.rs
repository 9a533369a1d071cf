//! An in-memory Keycloak 26: the subset of its HTTP API that keycloak-user-sync uses, answering the
//! way a real server does (`shared/keycloak-contract.md` is the spec), plus a control API under
//! `/_emulator/` that lets tests inject faults, move the clock and clone realms.

// Handlers return `Result<_, Response>`: every failure here *is* the HTTP answer Keycloak would
// give, so `?` on a Response keeps each endpoint a straight line. The size of Response is irrelevant
// at this request rate.
#![allow(clippy::result_large_err)]

pub mod account;
pub mod admin;
pub mod backchannel;
pub mod brute_force;
pub mod control;
pub mod emulator;
pub mod endpoint;
pub mod faults;
pub mod http;
pub mod jwt;
pub mod login;
pub mod logins;
pub mod oidc;
pub mod profile;
pub mod realm;
pub mod standard_flow;
pub mod webhook_sender;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::Router;

use crate::http::{json_response, oauth_error, percent_decode, Req};

/// Bodies above this are refused before any parsing.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The emulator's routes: the control API, the OIDC endpoints and the admin API of every realm.
pub fn router(emu: Arc<Emulator>) -> Router {
    Router::new()
        .nest("/_emulator", control::router())
        .nest(
            "/realms/{realm}",
            oidc::router()
                .merge(standard_flow::router())
                .merge(account::router())
                .merge(admin::webhooks::router()),
        )
        .nest("/admin/realms/{realm}", admin::router())
        .fallback(|| async { no_such_resource() })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&emu),
            prepare,
        ))
        .with_state(emu)
}

/// Serve until the future resolves (or forever).
pub async fn serve(
    listener: tokio::net::TcpListener,
    emu: Arc<Emulator>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Keycloak (JAX-RS) takes `/users/` for `/users`, and clients send it so (the official admin
    // client does); the slash goes before routing, so it wraps the router.
    let app = tower_layer::Layer::layer(
        &axum::middleware::map_request(trim_trailing_slash),
        router(emu),
    );
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let rebuilt = match request.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = rebuilt.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Around every request: the body read (a huge one refused), the `Req` the handlers read built
/// once, the request counted and the fault rules applied (not for the control API), and a
/// `Server-Timing` header that lets benchmarks tell server time from the network.
async fn prepare(
    State(emu): State<Arc<Emulator>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let remote_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return oauth_error(413, "HTTP 413 Request Entity Too Large", None);
    };
    let path = parts.uri.path().to_owned();
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let query = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let req = Arc::new(Req {
        raw_query: parts.uri.query().unwrap_or("").to_owned(),
        method: parts.method.clone(),
        path,
        segments,
        query,
        headers: parts.headers.clone(),
        body: body.clone(),
        base_url: format!("http://{host}"),
        remote_ip,
    });
    let is_control = req.segments.first().is_some_and(|s| s == "_emulator");
    let outcome = if is_control {
        faults::FaultOutcome::None
    } else {
        emu.count(req.method.as_str(), &req.segments);
        let seen = faults::Request {
            method: req.method.as_str(),
            path: &req.path,
            body: &req.body,
            raw_query: &req.raw_query,
        };
        faults::apply_faults(&emu.faults, &seen)
    };
    let (before, after) = match outcome {
        faults::FaultOutcome::Respond(answer) => {
            tokio::time::sleep(answer.delay).await;
            return fault_answer(answer);
        }
        faults::FaultOutcome::Delay(delay) => (delay, None),
        faults::FaultOutcome::After {
            delay,
            answer,
            drop,
        } => (Duration::ZERO, Some((delay, answer, drop))),
        faults::FaultOutcome::None => (Duration::ZERO, None),
    };
    let mut request = Request::from_parts(parts, axum::body::Body::from(body));
    request.extensions_mut().insert(Arc::clone(&req));
    // Keycloak finishes a request whose caller hung up: the handling runs on its own task, so a
    // dropped connection (a client's timeout) does not cancel it, slow or not.
    let handled = tokio::spawn(async move {
        tokio::time::sleep(before).await;
        let started = Instant::now();
        let resp = next.run(request).await;
        (resp, started.elapsed())
    });
    let Ok((resp, took)) = handled.await else {
        return oauth_error(500, "unknown_error", None);
    };
    if took > Duration::from_millis(250) {
        eprintln!(
            "keycloak-emulator: slow request {} {} took {took:?}",
            req.method, req.path
        );
    }
    let resp = http::with_header(
        resp,
        "server-timing",
        &format!("app;dur={:.3}", took.as_secs_f64() * 1000.0),
    );
    match after {
        None => resp,
        // Done, and its answer lost: the caller waits until it gives up.
        Some((_, _, true)) => std::future::pending().await,
        Some((delay, answer, false)) => {
            tokio::time::sleep(delay).await;
            answer.map_or(resp, fault_answer)
        }
    }
}

fn fault_answer(answer: faults::FaultAnswer) -> Response {
    let resp = json_response(answer.status, &answer.body);
    match answer.retry_after {
        Some(secs) => http::with_header(resp, "retry-after", &secs.to_string()),
        None => resp,
    }
}

pub use emulator::{Emulator, RealmEntry};
pub use http::{method_not_allowed, no_such_resource};
