//! API Gateway's CORS for an HTTP API (`CorsConfiguration`): a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered by the gateway itself, whatever the routes, and
//! every answer to an allowed `Origin` carries `Access-Control-Allow-Origin` and the exposed
//! headers. An origin not allowed gets no CORS header (the browser then refuses the answer).

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
}

impl Cors {
    fn allows(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|o| o == "*" || o == origin)
    }

    /// The gateway's own answer to a preflight, if this request is one.
    pub fn preflight(&self, method: &str, headers: &HeaderMap) -> Option<Response> {
        if method != "OPTIONS" || !headers.contains_key("access-control-request-method") {
            return None;
        }
        let mut resp = Response::new(axum::body::Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let Some(origin) = origin(headers).filter(|o| self.allows(o)) else {
            return Some(resp);
        };
        let h = resp.headers_mut();
        put(h, "access-control-allow-origin", origin);
        put(
            h,
            "access-control-allow-methods",
            &self.allow_methods.join(","),
        );
        put(
            h,
            "access-control-allow-headers",
            &self.allow_headers.join(","),
        );
        if let Some(age) = self.max_age {
            put(h, "access-control-max-age", &age.to_string());
        }
        put(h, "vary", "origin");
        Some(resp)
    }

    /// An answer to an allowed origin's request, with its CORS headers.
    pub fn decorate(&self, request: &HeaderMap, mut resp: Response) -> Response {
        if let Some(origin) = origin(request).filter(|o| self.allows(o)) {
            let h = resp.headers_mut();
            put(h, "access-control-allow-origin", origin);
            if !self.expose_headers.is_empty() {
                put(
                    h,
                    "access-control-expose-headers",
                    &self.expose_headers.join(","),
                );
            }
            put(h, "vary", "origin");
        }
        resp
    }
}

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get("origin").and_then(|v| v.to_str().ok())
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            allow_origins: vec!["http://app.test".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into()],
            expose_headers: vec!["etag".into()],
            max_age: Some(600),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_preflight_of_an_allowed_origin_is_answered_by_the_gateway() {
        let h = headers(&[
            ("origin", "http://app.test"),
            ("access-control-request-method", "POST"),
        ]);
        let resp = cors().preflight("OPTIONS", &h).unwrap();
        assert_eq!(resp.status(), 204);
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "http://app.test"
        );
        assert_eq!(
            resp.headers()["access-control-allow-headers"],
            "authorization"
        );
    }

    #[test]
    fn another_origin_gets_no_cors_header() {
        let h = headers(&[
            ("origin", "http://evil.test"),
            ("access-control-request-method", "POST"),
        ]);
        let resp = cors().preflight("OPTIONS", &h).unwrap();
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
        let plain = cors().decorate(&h, Response::new(axum::body::Body::empty()));
        assert!(!plain.headers().contains_key("access-control-allow-origin"));
    }

    #[test]
    fn an_options_request_without_a_requested_method_is_not_a_preflight() {
        assert!(cors()
            .preflight("OPTIONS", &headers(&[("origin", "http://app.test")]))
            .is_none());
    }
}
