//! Request and response plumbing, and Keycloak's three error body shapes (contract §0.1).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::emulator::Emulator;

/// What a handler gets: the emulator, the request as the middleware prepared it (body read,
/// query parsed), and the route's path parameters.
pub struct Call {
    pub emu: Arc<Emulator>,
    pub req: Arc<Req>,
    params: HashMap<String, String>,
}

impl Call {
    /// A path parameter of the route (empty if the route has none by that name).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
}

impl FromRequestParts<Arc<Emulator>> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, emu: &Arc<Emulator>) -> Result<Self, Response> {
        let req = parts
            .extensions
            .get::<Arc<Req>>()
            .cloned()
            .ok_or_else(no_such_resource)?;
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, emu)
            .await
            .map(|Path(p)| p)
            .unwrap_or_default();
        Ok(Call {
            emu: Arc::clone(emu),
            req,
            params,
        })
    }
}

/// A request with its body read and its query parsed (the middleware builds it once).
pub struct Req {
    pub method: Method,
    pub path: String,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: axum::body::Bytes,
    /// `http://host:port`, from the Host header: Keycloak derives `iss` from the request.
    pub base_url: String,
    pub remote_ip: String,
}

impl Req {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn bool_param(&self, name: &str) -> Option<bool> {
        self.param(name).map(|v| v.eq_ignore_ascii_case("true"))
    }

    pub fn int_param(&self, name: &str) -> Option<i64> {
        self.param(name).and_then(|v| v.trim().parse().ok())
    }

    /// Form body as (key, value) pairs, keeping duplicates so the caller can refuse them.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn is_form(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    }

    /// A JSON admin body. Keycloak keeps Jackson's FAIL_ON_UNKNOWN_PROPERTIES, so unknown fields
    /// are a 400 like a parse error (the exact body for that case is unconfirmed; we use the parse one).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Response> {
        serde_json::from_slice(&self.body).map_err(|_| cannot_parse_json())
    }
}

pub fn cannot_parse_json() -> Response {
    oauth_error(400, "invalid_request", Some("Cannot parse the JSON"))
}

pub fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn json_response(code: u16, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status(code);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn ok_json(body: &Value) -> Response {
    json_response(200, body)
}

pub fn no_content() -> Response {
    empty(204)
}

pub fn empty(code: u16) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status(code);
    resp
}

pub fn with_header(mut resp: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// OAuth2 shape: `{"error": ..., "error_description": ...}` (description omitted when None).
/// The generic exception mapper's `{"error": "..."}` is the same shape without a description.
pub fn oauth_error(code: u16, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({"error": error, "error_description": d}),
        None => json!({"error": error}),
    };
    json_response(code, &body)
}

/// Admin ErrorRepresentation: `{"errorMessage": ...}`.
pub fn error_message(code: u16, message: &str) -> Response {
    json_response(code, &json!({"errorMessage": message}))
}

/// A user-profile validation error (one error, or `{"errors": [...]}` for several).
pub fn field_errors(errors: Vec<Value>) -> Response {
    if errors.len() == 1 {
        json_response(400, &errors[0])
    } else {
        json_response(400, &json!({ "errors": errors }))
    }
}

pub fn not_found(message: &str) -> Response {
    oauth_error(404, message, None)
}

pub fn unauthorized() -> Response {
    oauth_error(401, "HTTP 401 Unauthorized", None)
}

pub fn forbidden() -> Response {
    oauth_error(403, "HTTP 403 Forbidden", None)
}

pub fn html(code: u16, text: &str) -> Response {
    let mut resp = Response::new(Body::from(text.to_owned()));
    *resp.status_mut() = status(code);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    resp
}

pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// What Keycloak (RESTEasy) answers for a path it has no resource for.
pub fn no_such_resource() -> Response {
    json_response(
        404,
        &json!({"error": "Unable to find matching target resource method"}),
    )
}

pub fn method_not_allowed() -> Response {
    oauth_error(405, "HTTP 405 Method Not Allowed", None)
}
