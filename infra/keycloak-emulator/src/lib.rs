//! An in-memory Keycloak 26: the subset of its HTTP API that keycloak-user-sync uses, answering the
//! way a real server does (`shared/keycloak-contract.md` is the spec), plus a control API under
//! `/_emulator/` that lets tests inject faults, move the clock and clone realms.

// Handlers return `Result<_, Response>`: every failure here *is* the HTTP answer Keycloak would
// give, so `?` on a Response keeps each endpoint a straight line. The size of Response is irrelevant
// at this request rate.
#![allow(clippy::result_large_err)]

pub mod account;
pub mod admin;
pub mod brute_force;
pub mod control;
pub mod http;
pub mod jwt;
pub mod oidc;
pub mod profile;
pub mod realm;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::Router;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::http::{json_response, oauth_error, percent_decode, Req};
use crate::jwt::Keys;
use crate::realm::Realm;

/// Bodies above this are refused before any parsing.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub struct RealmEntry {
    pub realm: RwLock<Realm>,
    /// The export this realm was built from, for reset and clone.
    pub source: Arc<Value>,
    /// Imported at start (kept by a global reset) rather than cloned by a test.
    pub imported: bool,
}

pub struct Emulator {
    pub keys: Keys,
    realms: RwLock<HashMap<String, Arc<RealmEntry>>>,
    pub faults: Mutex<Vec<control::FaultRule>>,
    stats: Mutex<BTreeMap<String, u64>>,
}

impl Emulator {
    /// An emulator serving the given realm exports.
    pub fn new(exports: Vec<Value>) -> Result<Arc<Self>, String> {
        let emu = Emulator {
            keys: Keys::generate(),
            realms: RwLock::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            stats: Mutex::new(BTreeMap::new()),
        };
        for export in exports {
            emu.add_realm(Arc::new(export), None, true)?;
        }
        Ok(Arc::new(emu))
    }

    pub fn from_file(path: &str) -> Result<Arc<Self>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read realm file {path}: {e}"))?;
        let export: Value = serde_json::from_str(&text)
            .map_err(|e| format!("realm file {path} is not JSON: {e}"))?;
        Self::new(vec![export])
    }

    pub fn realm(&self, name: &str) -> Option<Arc<RealmEntry>> {
        self.realms.read().get(name).cloned()
    }

    pub fn realm_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.realms.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Build a realm from an export and register it; fails if the name is taken.
    pub fn add_realm(
        &self,
        source: Arc<Value>,
        name: Option<&str>,
        imported: bool,
    ) -> Result<String, String> {
        let realm = Realm::import(&source, name, &self.keys)?;
        let name = realm.name.clone();
        let mut realms = self.realms.write();
        if realms.contains_key(&name) {
            return Err(format!("realm {name} exists"));
        }
        realms.insert(
            name.clone(),
            Arc::new(RealmEntry {
                realm: RwLock::new(realm),
                source,
                imported,
            }),
        );
        Ok(name)
    }

    pub fn remove_realm(&self, name: &str) -> bool {
        self.realms.write().remove(name).is_some()
    }

    /// Back to the state right after start: imported realms rebuilt, clones and faults gone.
    pub fn reset(&self) -> Result<(), String> {
        let mut realms = self.realms.write();
        realms.retain(|_, e| e.imported);
        for entry in realms.values() {
            let fresh = Realm::import(&entry.source, None, &self.keys)?;
            *entry.realm.write() = fresh;
        }
        self.faults.lock().clear();
        self.stats.lock().clear();
        Ok(())
    }

    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.stats.lock().clone()
    }

    pub fn clear_stats(&self) {
        self.stats.lock().clear();
    }

    fn count(&self, req: &Req) {
        let route = route_key(&req.segments);
        let mut stats = self.stats.lock();
        *stats
            .entry(format!("{} {}", req.method, route))
            .or_default() += 1;
        *stats.entry("total".into()).or_default() += 1;
    }
}

/// The path with realm names and ids folded, so counts group by endpoint.
fn route_key(segments: &[String]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        out.push('/');
        let realm_slot = (i == 1 && segments[0] == "realms")
            || (i == 2 && segments[0] == "admin" && segments[1] == "realms");
        if realm_slot {
            out.push_str("{realm}");
        } else if s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4 {
            out.push_str("{id}");
        } else {
            out.push_str(s);
        }
    }
    out
}

/// The emulator's routes: the control API, the OIDC endpoints and the admin API of every realm.
pub fn router(emu: Arc<Emulator>) -> Router {
    Router::new()
        .nest("/_emulator", control::router())
        .nest(
            "/realms/{realm}",
            oidc::router().merge(admin::webhooks::router()),
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
    if !is_control {
        emu.count(&req);
        match control::apply_faults(&emu, &req) {
            control::FaultOutcome::Respond(resp, delay) => {
                tokio::time::sleep(delay).await;
                return resp;
            }
            control::FaultOutcome::Delay(delay) => tokio::time::sleep(delay).await,
            control::FaultOutcome::None => {}
        }
    }
    let mut request = Request::from_parts(parts, axum::body::Body::from(body));
    request.extensions_mut().insert(Arc::clone(&req));
    let started = Instant::now();
    let resp = next.run(request).await;
    let took = started.elapsed();
    if took > Duration::from_millis(250) {
        eprintln!(
            "keycloak-emulator: slow request {} {} took {took:?}",
            req.method, req.path
        );
    }
    http::with_header(
        resp,
        "server-timing",
        &format!("app;dur={:.3}", took.as_secs_f64() * 1000.0),
    )
}

/// What Keycloak (RESTEasy) answers for a path it has no resource for.
pub fn no_such_resource() -> Response {
    json_response(
        404,
        &serde_json::json!({"error": "Unable to find matching target resource method"}),
    )
}

pub fn method_not_allowed() -> Response {
    oauth_error(405, "HTTP 405 Method Not Allowed", None)
}
