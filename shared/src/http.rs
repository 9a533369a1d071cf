//! The HTTP edge of the functions, on the runtime's own pieces: `lambda_http` runs an axum
//! `Router` (one per function); extractors read JSON bodies by this API's rules (content type,
//! 64 KiB, unknown fields refused), the bearer caller and API Gateway's request context; and an
//! `Error` becomes its problem+json answer here, logged once with its cause.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::IntoResponse;
use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use lambda_http::request::RequestContext;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, FieldError, ProblemCode};
use crate::features::audit::Actor;
use crate::outside::auth::Principal;
pub use crate::rules::request::Origin;
use crate::services::Services;

/// The state every function's router shares: everything built once per cold start.
pub type AppState = Arc<Services>;

/// Run an HTTP function: the platform's logging (JSON with `AWS_LAMBDA_LOG_FORMAT=JSON`, level
/// from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`), the services built and warmed once, then every
/// invocation served by `router`.
pub async fn serve(router: axum::Router<AppState>) -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let services = Arc::new(Services::from_env().await?);
    services.warm_up().await;
    run(router, services).await
}

/// Serve `router` with a state of its own (a function that needs less than `Services`), after
/// the caller has set up tracing and built the state.
pub async fn run<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    state: S,
) -> Result<(), lambda_http::Error> {
    let app = router
        .fallback(|| async { Error::NotFound })
        .with_state(state);
    lambda_http::run(lambda_http::service_fn(move |req: lambda_http::Request| {
        use lambda_http::tower::ServiceExt;
        use tracing::Instrument;
        let (route, request_id, received_ms) = match req.extensions().get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => (
                ctx.route_key.clone().unwrap_or_default(),
                ctx.request_id.clone().unwrap_or_default(),
                Some(ctx.time_epoch),
            ),
            _ => Default::default(),
        };
        let deadline = req
            .extensions()
            .get::<lambda_http::Context>()
            .and_then(|c| crate::base::deadline::of_invocation(c.deadline, received_ms));
        let span = tracing::info_span!("request", %route, %request_id);
        let app = app.clone();
        async move {
            let started = std::time::Instant::now();
            let response = crate::base::deadline::within(deadline, app.oneshot(req))
                .await
                .map(with_security_headers);
            if let Ok(r) = &response {
                tracing::info!(
                    status = r.status().as_u16(),
                    ms = started.elapsed().as_millis() as u64,
                    "request"
                );
            }
            response
        }
        .instrument(span)
    }))
    .await
}

/// Headers every answer carries: nothing of this API is for a cache (token answers must not be
/// stored, RFC 6749 §5.1; user data must not be either), and no answer is content-sniffed.
pub fn with_security_headers<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let problem = self.to_problem();
        // The cause is logged here, once; the client sees only the problem.
        if problem.status >= 500 {
            tracing::error!(status = problem.status, code = problem.code.as_str(), error = %self.cause(), "request failed");
        } else {
            // Keycloak's text for a refusal is kept here, never in the answer. The project's own
            // refusals are not logged with their text: serde's can quote the input.
            let keycloak = match &self {
                Error::Keycloak(e) => e.to_string(),
                _ => String::new(),
            };
            tracing::info!(
                status = problem.status,
                code = problem.code.as_str(),
                keycloak = %keycloak,
                "request refused"
            );
        }
        let (parts, body) = problem_response(&self).into_parts();
        axum::response::Response::from_parts(parts, axum::body::Body::from(body))
    }
}

/// A JSON request body, parsed by this API's rules; a refusal is a problem+json answer.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        Body::<T>::from_request(req, state).await?.parsed.map(Json)
    }
}

/// Query parameters read into `T` by axum's own `Query`; a refusal is a problem+json answer.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(Error::BadRequest {
                code: ProblemCode::InvalidQuery,
                detail: rejection.body_text(),
            }),
        }
    }
}

/// A `302 Found` to `location`, setting a cookie.
pub fn found(location: &str, set_cookie: &str) -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    for (name, value) in [
        (header::LOCATION, location),
        (header::SET_COOKIE, set_cookie),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// The value of the request's cookie `name`.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A form-encoded request body (`application/x-www-form-urlencoded`, as OIDC's back-channel
/// logout sends it), by axum's own `Form`; a refusal is a problem+json answer.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| {
                c.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(Error::UnsupportedMediaType);
        }
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            return Err(Error::PayloadTooLarge { limit: MAX_BODY });
        };
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(rejection) => Err(Error::BadRequest {
                code: ProblemCode::InvalidForm,
                detail: format!("the form body cannot be read: {}", rejection.body_text()),
            }),
        }
    }
}

/// A JSON body read by the same rules as `Json`, with a refusal handed to the handler instead
/// of answered at once (the admin routes audit what they refuse), and the names of the fields
/// the body carried, for that record: top-level keys and the keys of objects beneath them,
/// `MAX_FIELD_NAMES` at most, each cut to `MAX_FIELD_NAME` characters. Never their values.
pub struct Body<T> {
    pub parsed: Result<T, Error>,
    pub fields: Vec<String>,
}

const MAX_FIELD_NAMES: usize = 20;
const MAX_FIELD_NAME: usize = 64;

/// The field names a JSON body carries (not their values), bounded.
pub fn field_names(body: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    let cut = |name: &str| name.chars().take(MAX_FIELD_NAME).collect::<String>();
    let mut names = Vec::new();
    for (key, value) in &top {
        match value {
            serde_json::Value::Object(inner) if !inner.is_empty() => {
                names.extend(inner.keys().map(|k| cut(&format!("{key}.{k}"))))
            }
            _ => names.push(cut(key)),
        }
    }
    names.truncate(MAX_FIELD_NAMES);
    names
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: Request, _: &S) -> Result<Self, Error> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY + 1).await else {
            return Ok(Body {
                parsed: Err(Error::PayloadTooLarge { limit: MAX_BODY }),
                fields: Vec::new(),
            });
        };
        let parsed = parse_json(content_type.as_deref(), &body);
        let fields = if parsed.is_err() {
            field_names(&body)
        } else {
            Vec::new()
        };
        Ok(Body { parsed, fields })
    }
}

/// An admin route's call: the signed-in caller (authenticated before anything is parsed) and
/// where the request came from, for the audit trail.
pub struct AdminCall {
    pub caller: Principal,
    pub origin: Origin,
}

impl AdminCall {
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            principal: &self.caller,
            request_id: &self.origin.request_id,
        }
    }
}

impl FromRequestParts<AppState> for AdminCall {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, services: &AppState) -> Result<Self, Error> {
        let Caller(caller) = Caller::from_request_parts(parts, services).await?;
        let origin = Origin::from_request_parts(parts, services).await?;
        Ok(AdminCall { caller, origin })
    }
}

/// The signed-in caller of a bearer route (token and session checked).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, services: &AppState) -> Result<Self, Error> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        crate::features::sessions::authenticate(services, authorization)
            .await
            .map(Caller)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let mut origin = Origin::default();
        if let Some(RequestContext::ApiGatewayV2(ctx)) = parts.extensions.get::<RequestContext>() {
            origin.request_id = ctx.request_id.clone().unwrap_or_default();
            origin.ip = ctx.http.source_ip.clone();
            origin.user_agent = ctx.http.user_agent.clone();
        }
        if origin.request_id.is_empty() {
            origin.request_id = parts
                .extensions
                .get::<lambda_http::Context>()
                .map(|c| c.request_id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        }
        Ok(origin)
    }
}

/// A header's value, if it is present and text.
pub fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A JSON answer with a status.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> axum::response::Response {
    let (parts, body) = json_response(status.as_u16(), body).into_parts();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// Bodies above this are refused before parsing (DESIGN §4).
pub const MAX_BODY: usize = 64 * 1024;

/// Parse a JSON request body into `T`. `T` should be `#[serde(deny_unknown_fields)]` so that an
/// unknown field is a 400 naming it.
pub fn parse_json<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, Error> {
    if body.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge { limit: MAX_BODY });
    }
    let is_json = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|c| {
            c == "application/json" || (c.starts_with("application/") && c.ends_with("+json"))
        });
    if !is_json {
        return Err(Error::UnsupportedMediaType);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest {
            code: ProblemCode::InvalidJson,
            detail: "the body is empty; send a JSON object".into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde's messages name the field: "unknown field `nick`, expected one of ..."
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or("").to_owned();
            return Error::Validation(vec![FieldError::new(field, "unknown field")]);
        }
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or("").to_owned();
            return Error::Validation(vec![FieldError::new(field, "required")]);
        }
        match e.classify() {
            serde_json::error::Category::Data => Error::BadRequest {
                code: ProblemCode::ValidationFailed,
                detail: strip_position(&msg),
            },
            _ => Error::BadRequest {
                code: ProblemCode::InvalidJson,
                detail: format!("the body is not valid JSON: {}", strip_position(&msg)),
            },
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

pub fn json_response<T: Serialize>(status: u16, body: &T) -> Response<String> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    let mut resp = Response::new(text);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The problem+json answer for an error (the only place errors become responses).
pub fn problem_response(error: &Error) -> Response<String> {
    let problem = error.to_problem();
    let mut resp = json_response(problem.status, &problem);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(secs) = problem.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = parse_json::<Login>(
            Some("application/json"),
            br#"{"username":"a","password":"b","nick":"c"}"#,
        )
        .unwrap_err();
        match err {
            Error::Validation(f) => assert_eq!(f, vec![FieldError::new("nick", "unknown field")]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_fields_are_named() {
        let err = parse_json::<Login>(
            Some("application/json; charset=utf-8"),
            br#"{"username":"a"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_problem().errors,
            vec![FieldError::new("password", "required")]
        );
    }

    #[test]
    fn wrong_content_type_is_415_and_oversized_body_413() {
        assert_eq!(
            parse_json::<Login>(Some("text/plain"), b"{}")
                .unwrap_err()
                .to_problem()
                .status,
            415
        );
        assert_eq!(
            parse_json::<Login>(None, b"{}")
                .unwrap_err()
                .to_problem()
                .status,
            415
        );
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(
            parse_json::<Login>(Some("application/json"), &big)
                .unwrap_err()
                .to_problem()
                .status,
            413
        );
    }

    #[test]
    fn broken_json_is_invalid_json() {
        let p = parse_json::<Login>(Some("application/json"), b"{\"username\":")
            .unwrap_err()
            .to_problem();
        assert_eq!((p.status, p.code.as_str()), (400, "invalid_json"));
    }

    #[test]
    fn problem_response_is_problem_json_with_retry_after() {
        let r = problem_response(&Error::Keycloak(
            crate::outside::keycloak::KeycloakError::RateLimited {
                retry_after: Some(3),
            },
        ));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert_eq!(r.headers()["retry-after"], "3");
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(body["code"], "rate_limited");
    }
}
