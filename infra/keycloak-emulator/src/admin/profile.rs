//! The declarative user profile (contract §7.2): read by any admin, replaced whole with
//! `manage-realm`.

use std::sync::Arc;

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::caller::{require, Admin};
use crate::emulator::Emulator;
use crate::http::{error_message, ok_json};

pub(super) fn router() -> Router<Arc<Emulator>> {
    Router::new().route("/users/profile", get(read).put(replace))
}

async fn read(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.any_admin_role())?;
        Ok(ok_json(&realm.profile.config))
    })
}

async fn replace(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.has("manage-realm"))?;
        let config: Value = a.req.json()?;
        realm
            .profile
            .replace(config)
            .map_err(|e| error_message(400, e))?;
        Ok(ok_json(&realm.profile.config))
    })
}
