//! The names the standard flow shares: its cookies, the required actions, the known scopes.

pub(super) const COOKIE_AUTH_SESSION: &str = "AUTH_SESSION_ID";
pub(super) const COOKIE_IDENTITY: &str = "KEYCLOAK_IDENTITY";
pub(super) const COOKIE_SESSION: &str = "KEYCLOAK_SESSION";
pub(super) const UPDATE_PASSWORD: &str = "UPDATE_PASSWORD";
pub(super) const VERIFY_PROFILE: &str = "VERIFY_PROFILE";
/// Scopes a client may ask for in this realm (the default client scopes of a new realm).
pub(super) const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "roles",
    "web-origins",
    "acr",
    "basic",
    "offline_access",
    "address",
    "phone",
    "microprofile-jwt",
    "organization",
];
