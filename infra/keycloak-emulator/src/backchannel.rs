//! OIDC Back-Channel Logout as Keycloak 26 sends it (contract §12): when a session ends through
//! the end-session endpoint, a refresh-token logout, an admin's session delete or an admin's
//! "log the user out", each client of the session that is enabled, not front-channel and has a
//! `backchannel.logout.url` gets one POST with a signed `logout_token`. Not for logout-all, a
//! user's deletion or disabling, or expiry: those end sessions silently.
//!
//! The realm collects the deliveries, claims built, under its lock (`Realm::log_out_session`:
//! the data model names no sender); the request that
//! ended the session sends them (`deliver`) after releasing the lock and before it answers, one
//! after the other, each with Keycloak's 5 s socket timeout, no retry: the session is gone
//! whatever the receiver answers.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::jwt::Keys;

/// Keycloak's socket timeout for the POST (`DefaultHttpClientFactory`).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// A logout token's lifetime: `exp` = `iat` + 120 s.
pub const LIFETIME_S: i64 = 120;

/// The event member every logout token carries.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// One logout token to send.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub url: String,
    pub claims: Value,
}

/// The logout tokens sent lately, for tests (`GET /_emulator/backchannel-logouts`): URL, token
/// and the receiver's status (0: no answer), oldest first, the last `SENT_KEPT`.
#[derive(Default)]
pub struct Sent(Mutex<VecDeque<Value>>);

const SENT_KEPT: usize = 200;

impl Sent {
    fn push(&self, url: &str, token: &str, status: u16) {
        let mut sent = self.0.lock();
        if sent.len() == SENT_KEPT {
            sent.pop_front();
        }
        sent.push_back(json!({"url": url, "logoutToken": token, "status": status}));
    }

    pub fn list(&self) -> Vec<Value> {
        self.0.lock().iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.0.lock().clear();
    }
}

/// Send each delivery in turn; failures are only logged, as Keycloak does.
pub async fn deliver(keys: &Keys, sent: &Sent, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    let Ok(client) = reqwest::Client::builder().timeout(SOCKET_TIMEOUT).build() else {
        return;
    };
    for d in deliveries {
        let token = keys.sign_rs256_typed(&d.claims, "logout+jwt");
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", &token)
            .finish();
        let answer = client
            .post(&d.url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=ISO-8859-1",
            )
            .body(body)
            .send()
            .await;
        sent_log(sent, &d.url, &token, &answer);
        match answer {
            Ok(r) if matches!(r.status().as_u16(), 200 | 204) => {}
            Ok(r) => eprintln!(
                "keycloak-emulator: back-channel logout to {} answered {}",
                d.url,
                r.status()
            ),
            Err(e) => eprintln!(
                "keycloak-emulator: back-channel logout to {} failed: {e}",
                d.url
            ),
        }
    }
}

fn sent_log(
    sent: &Sent,
    url: &str,
    token: &str,
    answer: &Result<reqwest::Response, reqwest::Error>,
) {
    let status = answer.as_ref().map_or(0, |r| r.status().as_u16());
    sent.push(url, token, status);
}
