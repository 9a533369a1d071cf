//! Users (contract §4.1–§4.6, §4.9, §7.1): list, count, get, create, update, delete, password
//! reset, logout, sessions; the brute-force status of a user.

use std::sync::Arc;

use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde_json::{json, Value};

use super::caller::{find_user, managed_user, require, viewable_user, Admin};
use crate::emulator::Emulator;
use crate::http::{json_response, no_content, not_found, ok_json};
use crate::realm::{Realm, User};

use super::user_search::{list_users, UserFilter};
use super::user_writes::{create_user, reset_password, update_user};

pub(super) fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/count", get(count))
        .route("/users/{id}", get(get_one).put(update).delete(remove))
        .route("/users/{id}/reset-password", put(reset))
        .route("/users/{id}/logout", post(logout))
        .route("/users/{id}/sessions", get(sessions))
        .route("/sessions/{sid}", delete(delete_session))
        .route("/logout-all", post(logout_all))
        .route(
            "/attack-detection/brute-force/users",
            delete(clear_all_failures),
        )
        .route(
            "/attack-detection/brute-force/users/{id}",
            get(failures).delete(clear_failures),
        )
}

async fn list(a: Admin) -> Response {
    a.read(|realm, caller| list_users(realm, &a.req, caller))
}

async fn count(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.query_users())?;
        let filter = UserFilter::from_req(&a.req)?;
        let n = if !caller.view_users() {
            0
        } else if filter.is_unfiltered() {
            realm.listing_order().len()
        } else {
            filter.matching(realm).count()
        };
        Ok(json_response(200, &json!(n)))
    })
}

async fn get_one(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.query_users())?;
        let user = find_user(realm, caller, a.param("id"))?;
        require(caller.view_users())?;
        let mut rep = realm.user_json(user, false, caller.manage_users());
        // `UserResource#getUser`: a user in a brute-force lockout reads as disabled.
        if realm.temporarily_locked(&user.id) {
            rep["enabled"] = json!(false);
        }
        Ok(ok_json(&rep))
    })
}

async fn create(a: Admin) -> Response {
    a.write(|realm, caller| create_user(&a.emu, realm, &a.req, caller))
}

async fn update(a: Admin) -> Response {
    a.write(|realm, caller| update_user(&a.emu, realm, &a.req, caller, a.param("id")))
}

async fn remove(a: Admin) -> Response {
    a.write(|realm, caller| {
        let id = managed_user(realm, caller, a.param("id"))?;
        realm.delete_user(&id);
        realm.admin_event(&caller.auth, "DELETE", "USER", &format!("users/{id}"), None);
        Ok(no_content())
    })
}

async fn reset(a: Admin) -> Response {
    a.write(|realm, caller| reset_password(&a.emu, realm, &a.req, caller, a.param("id")))
}

async fn logout(a: Admin) -> Response {
    let iss = a.issuer();
    a.write_logging_out(|realm, caller| {
        let id = managed_user(realm, caller, a.param("id"))?;
        let now = realm.now_s();
        if let Some(u) = realm.user_mut(&id) {
            u.not_before = now;
        }
        realm.log_out_user(&id, &iss);
        realm.admin_event(
            &caller.auth,
            "ACTION",
            "USER",
            &format!("users/{id}/logout"),
            None,
        );
        Ok(no_content())
    })
    .await
}

async fn sessions(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        Ok(ok_json(&json!(user_sessions(realm, user))))
    })
}

async fn delete_session(a: Admin) -> Response {
    let iss = a.issuer();
    a.write_logging_out(|realm, caller| {
        require(caller.manage_users())?;
        let sid = a.param("sid");
        realm
            .log_out_session(sid, &iss)
            .ok_or_else(|| not_found("Sesssion not found"))?;
        realm.admin_event(
            &caller.auth,
            "DELETE",
            "USER_SESSION",
            &format!("sessions/{sid}"),
            Some(json!({"offline": false})),
        );
        Ok(no_content())
    })
    .await
}

async fn logout_all(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.manage_users())?;
        realm.sessions.clear();
        realm.user_sessions.clear();
        Ok(ok_json(&json!({})))
    })
}

async fn failures(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_users())?;
        let status = match realm.login_failures.get(a.param("id")) {
            Some(f) if realm.settings.brute_force.protected => f.status(realm.now_ms()),
            _ => crate::brute_force::clean_status(),
        };
        Ok(ok_json(&status))
    })
}

async fn clear_failures(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.manage_users())?;
        let id = a.param("id");
        realm.login_failures.remove(id);
        let path = format!("attack-detection/brute-force/users/{id}");
        realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", &path, None);
        Ok(no_content())
    })
}

async fn clear_all_failures(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.manage_users())?;
        realm.login_failures.clear();
        let path = "attack-detection/brute-force/users";
        realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", path, None);
        Ok(no_content())
    })
}

fn user_sessions(realm: &Realm, user: &User) -> Vec<Value> {
    let now = realm.now_ms();
    let mut sessions: Vec<_> = realm
        .user_sessions
        .get(&user.id)
        .into_iter()
        .flatten()
        .filter_map(|sid| realm.sessions.get(sid))
        .filter(|s| {
            now <= s.last_access_ms + realm.settings.sso_idle * 1000
                && now <= s.start_ms + realm.settings.sso_max * 1000
        })
        .collect();
    sessions.sort_by_key(|s| s.start_ms);
    sessions
        .into_iter()
        .map(|s| {
            json!({"id": s.id, "username": user.username, "userId": user.id, "ipAddress": s.ip,
                   "start": s.start_ms, "lastAccess": s.last_access_ms, "rememberMe": false,
                   "clients": s.clients, "transientUser": false})
        })
        .collect()
}
