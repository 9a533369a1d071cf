//! Sign-in on Keycloak's own page, for server-side apps: the standard flow of the login client
//! (confidential, PKCE S256, `state`, `nonce`), the result handed to the app by a one-time
//! handle.
//!
//! 1. `GET /auth/authorize?redirect=<app URL>`: the target must be in `SIGN_IN_REDIRECT_URIS`
//!    (exact match). A random `state` is kept (its hash, the target, 10 minutes, single use);
//!    the PKCE verifier and the nonce are derived from it under the login client's secret, so no
//!    secret is stored. The browser gets a cookie that binds the sign-in to it (its hash is kept
//!    with the state) and goes to Keycloak's authorization endpoint.
//! 2. `GET /auth/callback?code&state&iss`: the state is taken (a replayed or forged one is
//!    `400` and changes nothing); the browser must hold the sign-in's cookie, so a callback URL
//!    an attacker completed and sent to someone else signs nobody in (login CSRF, RFC 9700
//!    §4.7); `iss` must be the realm (RFC 9207), the code is exchanged with
//!    the verifier, the ID token verified (signature, issuer, audience, nonce), and the user and
//!    the session are recorded exactly as a password login records them. The answer sends the
//!    browser to the target with `?handle=…`: a random key that seals the sign-in's answer,
//!    whose hash names the sealed answer in the table for 60 s.
//! 3. `POST /auth/callback/redeem {"handle"}`: the app's back end takes the answer once (the
//!    same body as `POST /auth/login`). Tokens never appear in a URL or a log, and the table
//!    holds them only sealed with a key it does not have.
//!
//! Errors Keycloak sends back (`error=access_denied`, …) and a failed exchange reach the app as
//! `?error=…` on its target: nothing is recorded then.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::base::clock::{now_ms, EpochSecs};
use crate::error::{Error, ProblemCode};
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::token_hash;
use crate::rules::request::Origin;
use crate::services::Services;

/// How long a sign-in may take on Keycloak's page.
pub const SIGN_IN_TTL_S: i64 = 600;
/// How long a signed-in answer waits for its app.
pub const HANDLE_TTL_S: i64 = 60;
/// The cookie that binds a sign-in to the browser that began it (sent only to the callback).
pub const BINDING_COOKIE: &str = "kus_sign_in";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeQuery {
    pub redirect: String,
}

/// What Keycloak sends back to `/auth/callback` (RFC 6749 §4.1.2, RFC 9207).
#[derive(Clone, Debug, Deserialize)]
pub struct CallbackQuery {
    pub state: Option<String>,
    pub code: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    pub handle: String,
}

fn random_token() -> Result<[u8; 32], Error> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("no randomness"))?;
    Ok(bytes)
}

fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn callback_url(services: &Services) -> Result<&str, Error> {
    services
        .config
        .callback_url
        .as_deref()
        .ok_or(Error::NotFound)
}

/// Step 1: where the browser goes to sign in.
/// Where a browser is sent, and the cookie it gets there.
pub struct Redirect {
    pub location: String,
    pub set_cookie: String,
}

/// The `Set-Cookie` of the binding cookie on the callback's path (`value` empty: its removal).
fn binding_cookie(callback: &str, value: &str) -> String {
    let secure = if callback.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let max_age = if value.is_empty() { 0 } else { SIGN_IN_TTL_S };
    let path = callback
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/auth/callback");
    format!(
        "{BINDING_COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    )
}

pub async fn authorize(services: &Services, q: &AuthorizeQuery) -> Result<Redirect, Error> {
    let callback = callback_url(services)?;
    if !services.config.sign_in_redirects.contains(&q.redirect) {
        return Err(Error::BadRequest {
            code: ProblemCode::RedirectNotAllowed,
            detail: "redirect is not one of this API's sign-in targets".into(),
        });
    }
    let state = URL_SAFE_NO_PAD.encode(random_token()?);
    let browser = URL_SAFE_NO_PAD.encode(random_token()?);
    let (verifier, nonce) = services.keycloak.sign_in_binding(&state).await?;
    let expires_at = EpochSecs::now().after(SIGN_IN_TTL_S);
    services
        .store
        .put_sign_in(
            &token_hash(&state),
            &q.redirect,
            &token_hash(&browser),
            expires_at,
        )
        .await?;
    Ok(Redirect {
        location: services.keycloak.authorization_url(
            callback,
            &state,
            &nonce,
            &s256(&verifier),
        )?,
        set_cookie: binding_cookie(callback, &browser),
    })
}

/// `target` with one more query parameter.
fn with_param(target: &str, name: &str, value: &str) -> String {
    let sep = if target.contains('?') { '&' } else { '?' };
    let pair = form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    format!("{target}{sep}{pair}")
}

/// An error code safe to put in the app's URL: Keycloak's (`access_denied`, …) as they are,
/// anything else as `sign_in_failed`.
fn error_code(raw: &str) -> &str {
    let plain = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if plain {
        raw
    } else {
        "sign_in_failed"
    }
}

/// Step 2: where the browser goes back to, with the handle (or the error).
/// `binding` is the value of the browser's binding cookie; the answer removes it.
pub async fn callback(
    services: &Services,
    q: &CallbackQuery,
    binding: Option<&str>,
    origin: &Origin,
) -> Result<Redirect, Error> {
    let callback = callback_url(services)?;
    let location = back_to(services, q, binding, origin, callback).await?;
    Ok(Redirect {
        location,
        set_cookie: binding_cookie(callback, ""),
    })
}

async fn back_to(
    services: &Services,
    q: &CallbackQuery,
    binding: Option<&str>,
    origin: &Origin,
    callback: &str,
) -> Result<String, Error> {
    let invalid_state = || Error::BadRequest {
        code: ProblemCode::InvalidState,
        detail: "this sign-in is unknown, was completed already or has expired; start again".into(),
    };
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(invalid_state)?;
    let now = EpochSecs::now();
    let (target, binding_hash) = services
        .store
        .take_sign_in(&token_hash(state), now)
        .await?
        .ok_or_else(invalid_state)?;
    // Taken first: a state that reached the wrong browser is spent, not left for another try.
    if binding.map(token_hash).as_deref() != Some(binding_hash.as_str()) {
        tracing::warn!("a sign-in came back in a browser that did not begin it");
        return Err(Error::BadRequest {
            code: ProblemCode::InvalidState,
            detail: "this sign-in was not begun in this browser; start again".into(),
        });
    }
    let fail = |code: &str| Ok(with_param(&target, "error", error_code(code)));
    if let Some(e) = &q.error {
        tracing::info!(error = %error_code(e), "Keycloak sent the sign-in back with an error");
        return fail(e);
    }
    let issuer = services.keycloak.issuer();
    if q.iss.as_deref().is_some_and(|iss| iss != issuer) {
        tracing::warn!("a sign-in came back with another issuer (mix-up)");
        return fail("sign_in_failed");
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return fail("invalid_request");
    };
    let started = now_ms();
    let (verifier, nonce) = services.keycloak.sign_in_binding(state).await?;
    let tokens = match services
        .keycloak
        .code_grant(code, &verifier, callback)
        .await
    {
        Ok(t) => t,
        Err(e @ KeycloakError::Unavailable { .. }) | Err(e @ KeycloakError::RateLimited { .. }) => {
            tracing::warn!(error = %e, "the code exchange failed");
            return fail("temporarily_unavailable");
        }
        Err(e) => {
            tracing::info!(error = %e, "Keycloak refused the code");
            return fail("sign_in_failed");
        }
    };
    if !id_token_verifies(services, &tokens, &nonce).await {
        return fail("sign_in_failed");
    }
    // Only a hint for a repair, should the new session have to be ended and that fail too.
    let username = crate::outside::keycloak::unverified_claims(&tokens.access_token)
        .and_then(|c| {
            c.get("preferred_username")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let signed_in =
        crate::features::sessions::record_sign_in(services, &tokens, origin, &username, started)
            .await?;
    let handle = sealed_for_the_app(services, &tokens, &signed_in, now).await?;
    Ok(with_param(&target, "handle", &handle))
}

/// Whether the ID token of a sign-in is the login client's, from this realm, with our nonce.
async fn id_token_verifies(
    services: &Services,
    tokens: &crate::outside::keycloak::TokenSet,
    nonce: &str,
) -> bool {
    let login_client = services
        .config
        .login_client
        .as_ref()
        .map(|c| c.client_id.as_str())
        .unwrap_or_default();
    let id_token = tokens.id_token.as_deref().unwrap_or_default();
    let verified = services
        .bearer
        .id_token(id_token, login_client, nonce)
        .await;
    if let Err(e) = &verified {
        tracing::warn!(error = %e, "the ID token of a sign-in does not verify");
    }
    verified.is_ok()
}

/// The sign-in's answer sealed under a new one-time handle, which only the app's URL carries.
async fn sealed_for_the_app(
    services: &Services,
    tokens: &crate::outside::keycloak::TokenSet,
    signed_in: &crate::features::sessions::LoginView,
    now: EpochSecs,
) -> Result<String, Error> {
    let answer = serde_json::to_vec(signed_in).map_err(|e| Error::internal(e.to_string()))?;
    let key = random_token()?;
    let sealed = seal(&key, &answer)?;
    let handle = URL_SAFE_NO_PAD.encode(key);
    let handle_hash = token_hash(&handle);
    let put = services
        .store
        .put_signed_in(&handle_hash, sealed, now.after(HANDLE_TTL_S));
    if let Err(e) = crate::base::deadline::compensate(put).await {
        // No app will hold this session's tokens: end it on both sides.
        end_unclaimed(services, tokens, signed_in).await;
        return Err(e.into());
    }
    Ok(handle)
}

async fn end_unclaimed(
    services: &Services,
    tokens: &crate::outside::keycloak::TokenSet,
    signed_in: &crate::features::sessions::LoginView,
) {
    let (id, sid) = (&signed_in.user.id, &signed_in.session_id);
    let ended = services.store.end_session(
        id,
        sid,
        crate::outside::store::SessionEnd::Revoked,
        now_ms(),
    );
    if let Err(e) = crate::base::deadline::compensate(ended).await {
        tracing::warn!(user_id = %id, error = %e, "could not end an unclaimed sign-in's session");
    }
    if let Some(rt) = &tokens.refresh_token {
        if let Err(e) = crate::base::deadline::compensate(services.keycloak.logout(rt)).await {
            tracing::warn!(user_id = %id, error = %e, "could not end an unclaimed sign-in in Keycloak");
        }
    }
}

/// Step 3: the signed-in answer, once.
pub async fn redeem(services: &Services, req: &RedeemRequest) -> Result<Value, Error> {
    let invalid = || Error::BadRequest {
        code: ProblemCode::InvalidHandle,
        detail: "this handle is unknown, was redeemed already or has expired".into(),
    };
    let key = URL_SAFE_NO_PAD
        .decode(req.handle.as_bytes())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(invalid)?;
    let now = EpochSecs::now();
    let sealed = services
        .store
        .take_signed_in(&token_hash(&req.handle), now)
        .await?
        .ok_or_else(invalid)?;
    let answer = open(&key, &sealed).ok_or_else(invalid)?;
    serde_json::from_slice(&answer).map_err(|e| Error::internal(e.to_string()))
}

/// AES-256-GCM under `key`: the nonce, then the ciphertext and its tag.
fn seal(key: &[u8; 32], plain: &[u8]) -> Result<Vec<u8>, Error> {
    let failed = |_| Error::internal("sealing failed");
    let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(failed)?);
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(failed)?;
    let mut data = plain.to_vec();
    sealing
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(failed)?;
    let mut out = nonce.to_vec();
    out.extend(data);
    Ok(out)
}

fn open(key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let opening = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let (nonce, data) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = opening.open_in_place(nonce, Aad::empty(), &mut data).ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_answer_opens_with_its_key_only() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"{\"a\":1}").unwrap();
        assert_eq!(open(&key, &sealed).unwrap(), b"{\"a\":1}");
        assert!(open(&[8u8; 32], &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(open(&key, &tampered).is_none());
    }

    #[test]
    fn error_codes_in_the_apps_url_are_keycloaks_plain_words_or_sign_in_failed() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("<script>"), "sign_in_failed");
        assert_eq!(error_code("a&b=c"), "sign_in_failed");
        assert_eq!(error_code(""), "sign_in_failed");
    }

    #[test]
    fn the_target_keeps_its_own_query() {
        assert_eq!(
            with_param("https://app/x", "handle", "h"),
            "https://app/x?handle=h"
        );
        assert_eq!(
            with_param("https://app/x?a=1", "error", "e"),
            "https://app/x?a=1&error=e"
        );
    }
}
