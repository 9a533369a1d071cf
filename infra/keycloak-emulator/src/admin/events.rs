//! Events (contract §5): login and admin events, newest first or by `direction`, filtered and
//! paged; the events configuration.

use std::sync::Arc;

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::{paging, require, Admin};
use crate::emulator::Emulator;
use crate::http::{no_content, oauth_error, ok_json, Req};
use crate::realm::Realm;

pub(super) fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/events", get(login_events).delete(clear_login_events))
        .route(
            "/admin-events",
            get(admin_events).delete(clear_admin_events),
        )
        .route("/events/config", get(config).put(update_config))
}

async fn login_events(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_events())?;
        list_events(realm, &a.req, false)
    })
}

async fn admin_events(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_events())?;
        list_events(realm, &a.req, true)
    })
}

async fn clear_login_events(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.has("manage-events"))?;
        realm.events.clear();
        Ok(no_content())
    })
}

async fn clear_admin_events(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.has("manage-events"))?;
        realm.admin_events.clear();
        Ok(no_content())
    })
}

async fn config(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_events())?;
        Ok(ok_json(&events_config(realm)))
    })
}

async fn update_config(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.has("manage-events"))?;
        update_events_config(realm, &a.req)
    })
}
/// `yyyy-MM-dd` (UTC day) or epoch milliseconds. `end_of_day` for `dateTo`.
fn parse_date(v: &str, end_of_day: bool) -> Option<i64> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok();
    }
    let day =
        time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    let start = day.midnight().assume_utc().unix_timestamp() * 1000;
    Some(if end_of_day {
        start + 86_400_000 - 1
    } else {
        start
    })
}

fn list_events(realm: &Realm, req: &Req, admin: bool) -> Result<Response, Response> {
    let date = |key: &str, end: bool| -> Result<Option<i64>, Response> {
        match req.param(key) {
            None => Ok(None),
            Some(v) => parse_date(v, end).map(Some).ok_or_else(|| {
                oauth_error(
                    400,
                    &format!(
                        "Invalid value for '{key}', expected format is yyyy-MM-dd or an Epoch timestamp"
                    ),
                    None,
                )
            }),
        }
    };
    let from = date("dateFrom", false)?;
    let to = date("dateTo", true)?;
    let ascending = match req.param("direction") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(oauth_error(
                400,
                "Invalid value for sortDirection, expected value is asc or desc",
                None,
            ))
        }
    };
    let (first, max) = paging(req, 100);
    let retention = if admin {
        realm.settings.admin_events_expiration
    } else {
        realm.settings.events_expiration
    };
    let oldest = retention
        .filter(|r| *r > 0)
        .map(|r| realm.now_ms() - r * 1000);
    let source = if admin {
        &realm.admin_events
    } else {
        &realm.events
    };
    let field_in = |e: &Value, ptr: &str, key: &str| -> bool {
        let wanted: Vec<&str> = req.params(key).collect();
        wanted.is_empty()
            || e.pointer(ptr)
                .and_then(Value::as_str)
                .is_some_and(|v| wanted.contains(&v))
    };
    let keep = |e: &&Value| {
        let t = e["time"].as_i64().unwrap_or(0);
        if from.is_some_and(|f| t < f) || to.is_some_and(|x| t > x) || oldest.is_some_and(|o| t < o)
        {
            return false;
        }
        if admin {
            field_in(e, "/operationType", "operationTypes")
                && field_in(e, "/resourceType", "resourceTypes")
                && field_in(e, "/resourcePath", "resourcePath")
                && field_in(e, "/authDetails/realmId", "authRealm")
                && field_in(e, "/authDetails/clientId", "authClient")
                && field_in(e, "/authDetails/userId", "authUser")
                && field_in(e, "/authDetails/ipAddress", "authIpAddress")
        } else {
            field_in(e, "/type", "type")
                && field_in(e, "/clientId", "client")
                && field_in(e, "/userId", "user")
                && field_in(e, "/ipAddress", "ipAddress")
        }
    };
    let mut matching: Vec<&Value> = source.iter().filter(keep).collect();
    // Stable sort by time keeps insertion order among equal times.
    matching.sort_by_key(|e| e["time"].as_i64().unwrap_or(0));
    if !ascending {
        matching.reverse();
    }
    let page: Vec<&Value> = matching.into_iter().skip(first).take(max).collect();
    Ok(ok_json(&json!(page)))
}

fn events_config(realm: &Realm) -> Value {
    let s = &realm.settings;
    let mut v = json!({
        "eventsEnabled": s.events_enabled, "eventsListeners": s.events_listeners,
        "enabledEventTypes": s.enabled_event_types, "adminEventsEnabled": s.admin_events_enabled,
        "adminEventsDetailsEnabled": s.admin_events_details_enabled,
    });
    if let Some(e) = s.events_expiration {
        v["eventsExpiration"] = json!(e);
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventsConfigRep {
    events_enabled: Option<bool>,
    events_expiration: Option<i64>,
    events_listeners: Option<Vec<String>>,
    enabled_event_types: Option<Vec<String>>,
    admin_events_enabled: Option<bool>,
    admin_events_details_enabled: Option<bool>,
}

fn update_events_config(realm: &mut Realm, req: &Req) -> Result<Response, Response> {
    let rep: EventsConfigRep = req.json()?;
    let s = &mut realm.settings;
    if let Some(v) = rep.events_enabled {
        s.events_enabled = v;
    }
    if rep.events_expiration.is_some() {
        s.events_expiration = rep.events_expiration;
    }
    if let Some(v) = rep.events_listeners {
        s.events_listeners = v;
    }
    if let Some(v) = rep.enabled_event_types {
        s.enabled_event_types = v;
    }
    if let Some(v) = rep.admin_events_enabled {
        s.admin_events_enabled = v;
    }
    if let Some(v) = rep.admin_events_details_enabled {
        s.admin_events_details_enabled = v;
    }
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_utc_days_or_epoch_millis() {
        assert_eq!(parse_date("1970-01-02", false), Some(86_400_000));
        assert_eq!(parse_date("1970-01-01", true), Some(86_399_999));
        assert_eq!(parse_date("1735000000123", false), Some(1_735_000_000_123));
        assert_eq!(parse_date("2024-13-01", false), None);
        assert_eq!(parse_date("yesterday", false), None);
    }
}
