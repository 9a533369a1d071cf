//! The state of browser logins a realm holds (the standard flow's data, kept by `standard_flow`):
//! logins in progress and authorization codes not yet exchanged.

use std::collections::HashMap;

/// Logins in progress (by `{AUTH_SESSION_ID}.{tab_id}`) and codes not yet exchanged.
#[derive(Debug, Default)]
pub struct Logins {
    pub pending: HashMap<String, Login>,
    pub codes: HashMap<String, Code>,
}

/// One authorization request, from the endpoint to its code.
#[derive(Clone, Debug)]
pub struct Login {
    pub client_uuid: String,
    pub client_id: String,
    /// Where the answer goes (as sent, or the client's single registered URI).
    pub redirect_uri: String,
    /// `redirect_uri` as the request sent it: the exchange must send the same string.
    pub redirect_uri_param: Option<String>,
    pub mode: Mode,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    /// (challenge, method)
    pub challenge: Option<(String, String)>,
    pub started_ms: i64,
    /// Set once the credentials are right and required actions remain.
    pub user_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Code {
    pub client_uuid: String,
    pub sid: String,
    pub redirect_uri_param: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub challenge: Option<(String, String)>,
    pub expires_ms: i64,
    /// A login on the page (`acr` 1), not a reused SSO session (`acr` 0).
    pub fresh: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Query,
    Fragment,
    FormPost,
}
