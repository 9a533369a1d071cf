//! OIDC Back-Channel Logout (`POST /auth/backchannel-logout`): Keycloak tells this service that
//! a session ended there (an admin's "sign out", a user's logout elsewhere, the end-session
//! endpoint), and the matching local sessions end at once, so their access tokens are refused
//! from the next request on (contract §12; the spec's §2.6 validation in `auth::logout_token`).
//!
//! A token is taken once (its issuer and `jti`, kept until it expires), before any session
//! ends: a replayed one is refused and changes nothing — without `sid` it would otherwise end
//! the sessions the user opened since. Keycloak sends each token once and never again (no
//! retry): one whose sessions the store could not end is answered `503` and logged.

use serde::Deserialize;
use serde_json::Value;

use crate::base::clock::{now_ms, EpochSecs};
use crate::error::{Error, ProblemCode};
use crate::outside::auth::{AuthError, LEEWAY_SECS};
use crate::outside::store::SessionEnd;
use crate::services::Services;

#[derive(Clone, Debug, Deserialize)]
pub struct LogoutRequest {
    pub logout_token: String,
}

/// What a logout token ended here.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub user_id: String,
    /// The session it named (without `sid`: every session of the user).
    pub sid: Option<String>,
    pub sessions: usize,
}

fn refused(e: AuthError) -> Error {
    tracing::info!(reason = %e, "back-channel logout token refused");
    match e {
        AuthError::KeysUnavailable(_) => e.into(),
        _ => Error::BadRequest {
            code: ProblemCode::InvalidLogoutToken,
            detail: "the logout token is not valid".into(),
        },
    }
}

fn text<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

pub async fn logout(services: &Services, req: &LogoutRequest) -> Result<Ended, Error> {
    let audiences = services.config.session_clients();
    let claims = services
        .bearer
        .logout_token(&req.logout_token, &audiences)
        .await
        .map_err(refused)?;
    let (Some(iss), Some(jti), Some(user_id)) = (
        text(&claims, "iss"),
        text(&claims, "jti"),
        text(&claims, "sub"),
    ) else {
        return Err(refused(AuthError::Invalid(
            "iss, jti or sub missing".into(),
        )));
    };
    let sid = text(&claims, "sid").map(str::to_owned);
    let digest = crate::outside::store::token_hash(&format!("{iss}\n{jti}"));
    let exp = EpochSecs(claims.get("exp").and_then(Value::as_i64).unwrap_or(0));
    let keep_until = exp.after(LEEWAY_SECS as i64);
    if !services
        .store
        .take_logout_token(&digest, keep_until)
        .await?
    {
        tracing::warn!(user_id, "a back-channel logout token was replayed");
        return Err(Error::BadRequest {
            code: ProblemCode::LogoutTokenReplayed,
            detail: "this logout token was received before".into(),
        });
    }
    let now = now_ms();
    let reason = SessionEnd::EndedInKeycloak;
    let ended = match &sid {
        Some(sid) => services
            .store
            .end_session(user_id, sid, reason, now)
            .await
            .map(usize::from),
        None => services.store.end_all_sessions(user_id, reason, now).await,
    };
    let sessions = ended.inspect_err(|e| {
        tracing::error!(user_id, error = %e, "a back-channel logout could not end the sessions");
    })?;
    tracing::info!(
        user_id,
        sid = sid.as_deref().unwrap_or(""),
        sessions,
        "back-channel logout: sessions ended"
    );
    Ok(Ended {
        user_id: user_id.to_owned(),
        sid,
        sessions,
    })
}
