//! Creating and updating a user and resetting a password (contract §4.1, §4.2, §4.5, §4.6): the
//! representation read leniently as Keycloak does, checked against the realm's user profile
//! and password policy, with Keycloak's answers for a taken username or email.

use std::collections::{BTreeMap, BTreeSet};

use axum::response::Response;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::{managed_user, require, Caller};
use crate::brute_force::PERMANENT_LOCKOUT_ATTRIBUTE;
use crate::emulator::Emulator;
use crate::http::{
    cannot_parse_json, error_message, field_errors, forbidden, no_content, oauth_error,
    with_header, Req,
};
use crate::realm::{new_id, Realm, User};

fn string_or_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, Vec<String>>>, D::Error> {
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    let Some(raw) = raw else { return Ok(None) };
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let vals = match v {
            Value::String(s) => vec![s],
            Value::Null => vec![],
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<_, D::Error>>()?,
            _ => return Err(de::Error::custom("attribute values must be strings")),
        };
        out.insert(k, vals);
    }
    Ok(Some(out))
}

/// Every field of Keycloak 26's UserRepresentation; anything else is refused like Jackson does.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct UserRep {
    id: Option<String>,
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    #[serde(default, deserialize_with = "string_or_list")]
    attributes: Option<BTreeMap<String, Vec<String>>>,
    user_profile_metadata: Option<Value>,
    created_timestamp: Option<i64>,
    enabled: Option<bool>,
    totp: Option<bool>,
    federation_link: Option<String>,
    service_account_client_id: Option<String>,
    credentials: Option<Vec<CredentialRep>>,
    disableable_credential_types: Option<Value>,
    required_actions: Option<Vec<String>>,
    federated_identities: Option<Value>,
    realm_roles: Option<Value>,
    client_roles: Option<Value>,
    client_consents: Option<Value>,
    not_before: Option<i64>,
    groups: Option<Vec<String>>,
    access: Option<Value>,
    #[serde(rename = "self")]
    self_link: Option<String>,
    origin: Option<String>,
    application_roles: Option<Value>,
    social_links: Option<Value>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct CredentialRep {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_label: Option<String>,
    created_date: Option<i64>,
    secret_data: Option<String>,
    credential_data: Option<String>,
    priority: Option<i64>,
    value: Option<String>,
    temporary: Option<bool>,
    device: Option<String>,
    hashed_salted_value: Option<String>,
    salt: Option<String>,
    hash_iterations: Option<i64>,
    counter: Option<i64>,
    algorithm: Option<String>,
    digits: Option<i64>,
    period: Option<i64>,
    config: Option<Value>,
}

const KNOWN_REQUIRED_ACTIONS: &[&str] = &[
    "CONFIGURE_TOTP",
    "TERMS_AND_CONDITIONS",
    "UPDATE_PASSWORD",
    "UPDATE_PROFILE",
    "VERIFY_EMAIL",
    "VERIFY_PROFILE",
    "delete_account",
    "update_user_locale",
    "webauthn-register",
    "webauthn-register-passwordless",
    "CONFIGURE_RECOVERY_AUTHN_CODES",
    "UPDATE_EMAIL",
    "delete_credential",
];

fn password_credential(rep: &UserRep) -> Option<CredentialRep> {
    rep.credentials
        .iter()
        .flatten()
        .find(|c| c.kind.as_deref().unwrap_or("password") == "password")
        .cloned()
}

/// Profile validation of the identity fields and custom attributes, as field errors.
fn validate_profile(realm: &Realm, user: &User) -> Result<(), Response> {
    let identity = [
        ("username", Some(user.username.as_str())),
        ("email", user.email.as_deref()),
        ("firstName", user.first_name.as_deref()),
        ("lastName", user.last_name.as_deref()),
    ];
    let custom = user
        .attributes
        .iter()
        .flat_map(|(k, vals)| vals.iter().map(move |v| (k.as_str(), Some(v.as_str()))));
    let mut errors = Vec::new();
    for (name, value) in identity.into_iter().chain(custom) {
        let Some(v) = value else { continue };
        if v.chars().count() > 2048 && !realm.profile.is_declared(name) {
            errors.push(json!({"field": name, "errorMessage": "error-invalid-length", "params": [name, 0, 2048]}));
        } else if let Some(e) = realm.profile.validate(name, v) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(field_errors(errors))
    }
}

fn check_password(realm: &Realm, user: &User, password: &str) -> Result<(), Response> {
    match realm
        .settings
        .password_policy
        .check(password, &user.username, user.email.as_deref())
    {
        Some((key, message)) => Err(oauth_error(400, key, Some(&message))),
        None => Ok(()),
    }
}

/// `up-duplicate-username` (contract §13): another user has this username, or (email login on)
/// the username has an `@` after its first character and another user has it as email.
fn username_taken(realm: &Realm, username: &str, except: &str) -> bool {
    let other = |id: &str| id != except;
    realm.users.get(username).is_some_and(|u| other(&u.id))
        || (realm.settings.login_with_email_allowed
            && username.find('@').is_some_and(|i| i > 0)
            && realm.emails.get(username).is_some_and(|id| other(id)))
}

/// `up-duplicate-email` (contract §13), checked for a new or changed email only: another user
/// has this email (duplicates not allowed), or (email login on) has it as username.
fn email_taken(realm: &Realm, email: Option<&str>, except: &str) -> bool {
    let Some(e) = email else { return false };
    let other = |id: &str| id != except;
    (!realm.settings.duplicate_emails_allowed && realm.emails.get(e).is_some_and(|id| other(id)))
        || (realm.settings.login_with_email_allowed
            && realm.users.get(e).is_some_and(|u| other(&u.id)))
}

fn masked(rep: &Value) -> Value {
    let mut rep = rep.clone();
    if let Some(creds) = rep.get_mut("credentials").and_then(Value::as_array_mut) {
        for c in creds {
            if c.get("value").is_some() {
                c["value"] = json!("**********");
            }
        }
    }
    rep
}

pub(super) fn create_user(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
) -> Result<Response, Response> {
    require(caller.manage_users())?;
    let raw: Value = serde_json::from_slice(&req.body).map_err(|_| cannot_parse_json())?;
    let rep: UserRep = serde_json::from_value(raw.clone()).map_err(|_| cannot_parse_json())?;
    let username = rep
        .username
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| error_message(400, "User name is missing"))?
        .to_lowercase();
    let email = rep
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_lowercase);
    if username_taken(realm, &username, "") {
        return Err(error_message(409, "User exists with same username"));
    }
    if email_taken(realm, email.as_deref(), "") {
        return Err(error_message(409, "User exists with same email"));
    }
    let mut groups: BTreeSet<String> = realm.settings.default_groups.iter().cloned().collect();
    for path in rep.groups.iter().flatten() {
        let g = realm
            .group_by_path(path)
            .ok_or_else(|| error_message(400, &format!("Group {path} not found")))?;
        groups.insert(g.id.clone());
    }
    let mut required_actions: Vec<String> = rep
        .required_actions
        .iter()
        .flatten()
        .filter(|a| KNOWN_REQUIRED_ACTIONS.contains(&a.as_str()))
        .cloned()
        .collect();
    let id = new_id();
    let mut user = User {
        id: id.clone(),
        username,
        email,
        first_name: rep.first_name.clone().filter(|s| !s.is_empty()),
        last_name: rep.last_name.clone().filter(|s| !s.is_empty()),
        email_verified: rep.email_verified.unwrap_or(false),
        enabled: rep.enabled.unwrap_or(false),
        created_ms: realm.now_ms(),
        attributes: realm
            .profile
            .writable_attributes(rep.attributes.clone().unwrap_or_default()),
        realm_roles: BTreeSet::from([realm.settings.default_role.clone()]),
        groups,
        ..User::default()
    };
    validate_profile(realm, &user)?;
    if let Some(cred) = password_credential(&rep) {
        let value = cred.value.clone().unwrap_or_default();
        check_password(realm, &user, &value)?;
        user.password_hash = Some(emu.keys.hash_password(&value));
        if cred.temporary.unwrap_or(false) {
            required_actions.push("UPDATE_PASSWORD".into());
        }
    }
    required_actions.dedup();
    user.required_actions = required_actions;
    realm.insert_user(user);
    realm.admin_event(
        &caller.auth,
        "CREATE",
        "USER",
        &format!("users/{id}"),
        Some(masked(&raw)),
    );
    let location = format!("{}{}/{}", req.base_url, req.path.trim_end_matches('/'), id);
    Ok(with_header(crate::http::empty(201), "location", &location))
}

pub(super) fn update_user(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
    id: &str,
) -> Result<Response, Response> {
    let id = managed_user(realm, caller, id)?;
    let raw: Value = serde_json::from_slice(&req.body).map_err(|_| cannot_parse_json())?;
    let rep: UserRep = serde_json::from_value(raw.clone()).map_err(|_| cannot_parse_json())?;
    let mut user = realm.user(&id).cloned().ok_or_else(forbidden)?;
    match rep.username.as_deref().map(str::to_lowercase) {
        None if realm.settings.edit_username_allowed => {
            return Err(error_message(400, "User name is missing"))
        }
        None => {}
        Some(u) if u == user.username => {}
        Some(u) if realm.settings.edit_username_allowed => {
            if username_taken(realm, &u, &id) {
                return Err(error_message(409, "User exists with same username"));
            }
            user.username = u;
        }
        Some(_) => {
            return Err(field_errors(vec![json!({
                "field": "username", "errorMessage": "readOnlyUsernameMessage", "params": ["username"]
            })]))
        }
    }
    let clean = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    if let Some(attrs) = &rep.attributes {
        // Full replace: whatever is not sent is removed (Keycloak 24+).
        user.email = clean(&rep.email).map(|e| e.to_lowercase());
        user.first_name = clean(&rep.first_name);
        user.last_name = clean(&rep.last_name);
        user.attributes = realm.profile.writable_attributes(attrs.clone());
    } else {
        if rep.email.is_some() {
            user.email = clean(&rep.email).map(|e| e.to_lowercase());
        }
        if rep.first_name.is_some() {
            user.first_name = clean(&rep.first_name);
        }
        if rep.last_name.is_some() {
            user.last_name = clean(&rep.last_name);
        }
    }
    let email_changed = realm
        .user(&id)
        .is_none_or(|before| before.email != user.email);
    if email_changed && email_taken(realm, user.email.as_deref(), &id) {
        return Err(error_message(409, "User exists with same email"));
    }
    validate_profile(realm, &user)?;
    if let Some(e) = rep.email_verified {
        user.email_verified = e;
    }
    if let Some(actions) = &rep.required_actions {
        user.required_actions = actions
            .iter()
            .filter(|a| KNOWN_REQUIRED_ACTIONS.contains(&a.as_str()))
            .cloned()
            .collect();
    }
    if let Some(cred) = password_credential(&rep) {
        let value = cred.value.clone().unwrap_or_default();
        check_password(realm, &user, &value)?;
        user.password_hash = Some(emu.keys.hash_password(&value));
    }
    let disabling = rep.enabled == Some(false) && user.enabled;
    if let Some(e) = rep.enabled {
        user.enabled = e;
    }
    // `enabled: true` clears brute-force failures and a permanent lockout (contract §4.5).
    let cleared = rep.enabled == Some(true)
        && (realm.login_failures.remove(&id).is_some()
            | user
                .attributes
                .remove(PERMANENT_LOCKOUT_ATTRIBUTE)
                .is_some());
    realm.replace_user(user);
    if cleared {
        let path = format!("users/{id}");
        realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", &path, None);
    }
    if disabling {
        realm.end_user_sessions(&id);
    }
    realm.admin_event(
        &caller.auth,
        "UPDATE",
        "USER",
        &format!("users/{id}"),
        Some(masked(&raw)),
    );
    Ok(no_content())
}

pub(super) fn reset_password(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
    id: &str,
) -> Result<Response, Response> {
    let id = managed_user(realm, caller, id)?;
    let cred: CredentialRep = req.json()?;
    let value = cred
        .value
        .clone()
        .ok_or_else(|| oauth_error(400, "No password provided", None))?;
    if value.trim().is_empty() {
        return Err(oauth_error(400, "Empty password not allowed", None));
    }
    let user = realm.user(&id).cloned().ok_or_else(forbidden)?;
    check_password(realm, &user, &value)?;
    let hash = emu.keys.hash_password(&value);
    let temporary = cred.temporary.unwrap_or(false);
    if let Some(u) = realm.user_mut(&id) {
        u.password_hash = Some(hash);
        u.required_actions.retain(|a| a != "UPDATE_PASSWORD");
        if temporary {
            u.required_actions.push("UPDATE_PASSWORD".into());
        }
    }
    realm.admin_event(
        &caller.auth,
        "ACTION",
        "USER",
        &format!("users/{id}/reset-password"),
        Some(json!({"type": "password", "value": "**********", "temporary": temporary})),
    );
    Ok(no_content())
}
