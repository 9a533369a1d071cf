//! The requests the session routes take and the answers they give: the tokens go to the client
//! here and nowhere else.

use serde::{Deserialize, Serialize};

use crate::features::users::UserView;
use crate::outside::keycloak::TokenSet;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub token: String,
}

/// The tokens handed to the client (the only place they ever go).
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensView {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

/// The answer of a login.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginView {
    pub user: UserView,
    pub tokens: TokensView,
    pub session_id: String,
}

/// The answer of a refresh.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshView {
    pub tokens: TokensView,
    pub session_id: String,
}

impl From<&TokenSet> for TokensView {
    fn from(t: &TokenSet) -> Self {
        TokensView {
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone(),
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_expires_in: t.refresh_expires_in,
        }
    }
}
