//! Running an endpoint on its realm: the realm's lock, the issuer the request names, and the
//! back-channel logouts a change left, sent once the lock is released (contract §12).

use axum::response::Response;

use crate::emulator::Emulator;
use crate::http::{oauth_error, Call, Req};
use crate::realm::Realm;

pub fn issuer(req: &Req, realm: &str) -> String {
    format!("{}/realms/{realm}", req.base_url)
}

/// Run an OIDC endpoint on its realm (write lock: most of them create or end sessions), with the
/// issuer the request's base URL gives.
pub(crate) fn on_realm(
    c: &Call,
    endpoint: impl FnOnce(&Emulator, &mut Realm, &Req, &str) -> Response,
) -> Response {
    on_realm_collecting(c, endpoint).0
}

/// As `on_realm`, for an endpoint that may log sessions out: the back-channel logout tokens
/// it left are sent after the lock is released, before the answer (contract §12).
pub(crate) async fn on_realm_logging_out(
    c: &Call,
    endpoint: impl FnOnce(&Emulator, &mut Realm, &Req, &str) -> Response,
) -> Response {
    let (resp, outbox) = on_realm_collecting(c, endpoint);
    crate::backchannel::deliver(&c.emu.keys, &c.emu.logouts_sent, outbox).await;
    resp
}

fn on_realm_collecting(
    c: &Call,
    endpoint: impl FnOnce(&Emulator, &mut Realm, &Req, &str) -> Response,
) -> (Response, Vec<crate::backchannel::Delivery>) {
    let name = c.param("realm");
    let Some(entry) = c.emu.realm(name) else {
        return (oauth_error(404, "Realm does not exist", None), Vec::new());
    };
    let iss = issuer(&c.req, name);
    let mut realm = entry.realm.write();
    let resp = endpoint(&c.emu, &mut realm, &c.req, &iss);
    (resp, std::mem::take(&mut realm.backchannel_outbox))
}
