//! Request parsing and response building shared by the handlers: JSON bodies (content type, 64 KiB
//! limit, unknown fields refused), input rules as Keycloak applies them, and problem+json answers.

use http::{header, HeaderValue, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, FieldError};

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
            code: "invalid_json",
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
                code: "validation_failed",
                detail: strip_position(&msg),
            },
            _ => Error::BadRequest {
                code: "invalid_json",
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

/// Characters Keycloak's default user profile refuses in usernames.
const USERNAME_PROHIBITED: &[char] = &[
    '<', '>', '&', '"', '\'', '$', '%', '!', '#', '?', '§', ';', '*', '~', '/', '\\', '|', '^',
    '=', '[', ']', '{', '}', '(', ')',
];

/// A username as Keycloak stores it (trimmed, lowercase), or why it is refused:
/// 3 to 255 characters, no white space, none of Keycloak's prohibited characters.
pub fn username(raw: &str) -> Result<String, FieldError> {
    let v = raw.trim().to_lowercase();
    let len = v.chars().count();
    if !(3..=255).contains(&len) {
        return Err(FieldError::new("username", "must be 3 to 255 characters"));
    }
    if v.chars()
        .any(|c| c.is_whitespace() || c.is_control() || USERNAME_PROHIBITED.contains(&c))
    {
        return Err(FieldError::new(
            "username",
            "may contain letters, digits and . _ - @ + only",
        ));
    }
    Ok(v)
}

/// An email as Keycloak stores it (trimmed, lowercase), or why it is refused.
pub fn email(raw: &str) -> Result<String, FieldError> {
    let v = raw.trim().to_lowercase();
    let valid = v.len() <= 255
        && match v.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        }
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>' | '"'));
    if valid {
        Ok(v)
    } else {
        Err(FieldError::new("email", "must be a valid email address"))
    }
}

/// A first or last name: at most 255 characters, none of Keycloak's prohibited characters.
pub fn person_name(field: &str, raw: &str) -> Result<String, FieldError> {
    let v = raw.trim().to_owned();
    if v.chars().count() > 255 {
        return Err(FieldError::new(field, "must be at most 255 characters"));
    }
    if v.chars()
        .any(|c| c.is_control() || (USERNAME_PROHIBITED.contains(&c) && c != '\''))
    {
        return Err(FieldError::new(
            field,
            "contains characters that are not allowed",
        ));
    }
    Ok(v)
}

/// A password we are willing to send on: present and not absurd. Keycloak's policy decides the rest.
pub fn password(raw: &str) -> Result<(), FieldError> {
    if raw.trim().is_empty() {
        return Err(FieldError::new("password", "required"));
    }
    if raw.len() > 1024 {
        return Err(FieldError::new("password", "must be at most 1024 bytes"));
    }
    Ok(())
}

/// Collect the failures of several field checks into one validation error.
pub fn all_valid(results: Vec<Result<(), FieldError>>) -> Result<(), Error> {
    let errors: Vec<FieldError> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
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
        assert_eq!((p.status, p.code), (400, "invalid_json"));
    }

    #[test]
    fn usernames_follow_keycloak_rules() {
        assert_eq!(username("  Alice.Smith ").unwrap(), "alice.smith");
        assert!(username("al").is_err());
        assert!(username("a b c").is_err());
        assert!(username("bad<name>").is_err());
        assert_eq!(username("x@example.com").unwrap(), "x@example.com");
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(email("A@Example.COM").unwrap(), "a@example.com");
        for bad in ["a@", "@b.c", "a@b", "a b@c.d", "a@@b.c"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problem_response_is_problem_json_with_retry_after() {
        let r = problem_response(&Error::Keycloak(
            crate::keycloak::KeycloakError::RateLimited {
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
