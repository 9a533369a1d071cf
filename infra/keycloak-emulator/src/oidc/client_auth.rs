//! Client authentication as Keycloak does it (HTTP Basic or form), and the form helpers the
//! token endpoints share.

use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::http::{empty, oauth_error, with_header, Req};
use crate::realm::{Client, Realm};

/// Why client authentication failed; each endpoint words it its own way.
#[derive(Debug, PartialEq)]
pub enum ClientAuthError {
    MissingClientId,
    InvalidClient,
    BadSecret,
    BearerOnly,
    Unparsable,
}

/// Client auth as Keycloak does it: HTTP Basic with URL-decoded parts, or form
/// `client_id`/`client_secret`; form values win over the header.
pub fn authenticate_client(
    realm: &Realm,
    req: &Req,
    form: &[(String, String)],
) -> Result<Client, ClientAuthError> {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut id = field("client_id");
    let mut secret = field("client_secret");
    if let Some(auth) = req.header("authorization") {
        match auth
            .strip_prefix("Basic ")
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(a, b)| (decode_form_part(a), decode_form_part(b)))
            }) {
            Some((hid, hsecret)) => {
                if id.is_none() {
                    id = Some(hid);
                }
                if secret.is_none() {
                    secret = Some(hsecret);
                }
            }
            None if id.is_none() => return Err(ClientAuthError::Unparsable),
            None => {}
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or(ClientAuthError::MissingClientId)?;
    let client = realm
        .client(&id)
        .filter(|c| c.enabled)
        .ok_or(ClientAuthError::InvalidClient)?;
    if client.bearer_only {
        return Err(ClientAuthError::BearerOnly);
    }
    if !client.public {
        match (&client.secret, secret) {
            (Some(expected), Some(given)) if constant_time_eq(expected, &given) => {}
            _ => return Err(ClientAuthError::BadSecret),
        }
    }
    Ok(client.clone())
}

fn decode_form_part(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token endpoint's (and logout's) wording of a client auth failure (contract §1.1).
pub(super) fn client_auth_response(err: ClientAuthError, realm: &str) -> Response {
    const INVALID: &str = "Invalid client or Invalid client credentials";
    match err {
        ClientAuthError::MissingClientId => {
            oauth_error(400, "invalid_client", Some("Missing client_id parameter"))
        }
        ClientAuthError::InvalidClient => oauth_error(401, "invalid_client", Some(INVALID)),
        ClientAuthError::BadSecret => oauth_error(401, "unauthorized_client", Some(INVALID)),
        ClientAuthError::BearerOnly => {
            oauth_error(400, "invalid_client", Some("Bearer-only not allowed"))
        }
        ClientAuthError::Unparsable => with_header(
            empty(401),
            "www-authenticate",
            &format!("Basic realm=\"{realm}\""),
        ),
    }
}

pub(super) fn has_duplicates(form: &[(String, String)]) -> bool {
    let mut seen = std::collections::HashSet::new();
    form.iter().any(|(k, _)| !seen.insert(k.as_str()))
}

pub(super) fn form_value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
