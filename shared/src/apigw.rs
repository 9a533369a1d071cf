//! The Lambda side of the HTTP functions: an API Gateway (HTTP API, payload 2.0) event becomes an
//! `ApiRequest`, a handler's `Result` becomes the HTTP answer (errors through the one problem
//! mapping), and `serve` runs a handler with its `Services` built once per cold start.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};

/// The error type a function's `main` returns.
pub use lambda_http::Error as LambdaError;
use serde::Serialize;

use crate::error::Error;
use crate::http::{json_response, problem_response};
use crate::services::Services;

/// What a handler needs of a request.
#[derive(Clone, Debug, Default)]
pub struct ApiRequest {
    pub method: String,
    /// The matched route, e.g. `DELETE /auth/sessions/{sid}`.
    pub route_key: String,
    pub path: String,
    pub path_params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn path_param(&self, name: &str) -> Result<&str, Error> {
        self.path_params
            .get(name)
            .map(String::as_str)
            .ok_or(Error::NotFound)
    }

    /// The JSON body as `T` (content type, size and unknown fields checked).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        crate::http::parse_json(self.header("content-type"), &self.body)
    }

    pub fn from_lambda(req: lambda_http::Request) -> Self {
        let context = req.request_context_ref().cloned();
        let path_params = req
            .path_parameters_ref()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let query = req
            .query_string_parameters_ref()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let (parts, body) = req.into_parts();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
            })
            .collect();
        let body = match body {
            Body::Empty => Vec::new(),
            Body::Text(t) => t.into_bytes(),
            Body::Binary(b) => b,
            _ => Vec::new(),
        };
        let mut out = ApiRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            path_params,
            query,
            headers,
            body,
            ..Default::default()
        };
        if let Some(RequestContext::ApiGatewayV2(ctx)) = context {
            out.route_key = ctx.route_key.unwrap_or_default();
            out.source_ip = ctx.http.source_ip;
            out.user_agent = ctx.http.user_agent;
            out.request_id = ctx.request_id;
        }
        out
    }
}

/// A handler's successful answer.
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

impl ApiResponse {
    pub fn json<T: Serialize>(status: u16, body: &T) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: Some(json_response(status, body).into_body()),
        }
    }

    pub fn no_content() -> Self {
        ApiResponse {
            status: 204,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_http(self) -> lambda_http::Response<Body> {
        let mut builder = lambda_http::Response::builder().status(self.status);
        if self.body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in self.headers {
            builder = builder.header(k, v);
        }
        builder
            .body(self.body.map(Body::Text).unwrap_or(Body::Empty))
            .unwrap_or_else(|_| lambda_http::Response::new(Body::Empty))
    }
}

/// The HTTP answer of a handler result: errors become problem+json here and only here.
pub fn respond(result: Result<ApiResponse, Error>) -> lambda_http::Response<Body> {
    match result {
        Ok(r) => r.into_http(),
        Err(e) => {
            let resp = problem_response(&e);
            let (parts, body) = resp.into_parts();
            lambda_http::Response::from_parts(parts, Body::Text(body))
        }
    }
}

/// Logs go to CloudWatch as one line each, without colours. Request bodies, headers, tokens and
/// secrets are never logged.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_target(false)
        .without_time() // Lambda stamps every line
        .try_init();
}

/// Run an HTTP function: build the services once (cold start), warm them, then serve every
/// invocation with `handler`.
pub async fn serve<H, F>(handler: H) -> Result<(), lambda_http::Error>
where
    H: Fn(Arc<Services>, ApiRequest) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<ApiResponse, Error>> + Send,
{
    init_logging();
    let services = Arc::new(Services::from_env().await?);
    services.warm_up().await;
    lambda_http::run(lambda_http::service_fn(move |req: lambda_http::Request| {
        let services = Arc::clone(&services);
        let handler = handler.clone();
        async move {
            let request = ApiRequest::from_lambda(req);
            let started = Instant::now();
            let (route, request_id) = (request.route_key.clone(), request.request_id.clone());
            let result = handler(services, request).await;
            if let Err(Error::Internal(detail))
            | Err(Error::Store(crate::store::StoreError::Other(detail))) = &result
            {
                tracing::error!(%route, ?request_id, %detail, "request failed");
            }
            let response = respond(result);
            tracing::info!(%route, ?request_id, status = response.status().as_u16(),
                           ms = started.elapsed().as_millis() as u64, "request");
            Ok::<_, std::convert::Infallible>(response)
        }
    }))
    .await
}
