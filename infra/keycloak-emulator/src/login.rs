//! What signing a user in shares between the password grant and the standard flow: the
//! password check with brute-force counting, the VERIFY_PROFILE rule, and the tokens a session
//! issues (contract §1.2, §10).

use serde_json::{json, Map, Value};

use crate::emulator::Emulator;
use crate::http::Req;
use crate::realm::{new_id, Client, Realm, User};

/// Whether `given` is the user's password. A wrong one counts as a login failure for
/// brute-force detection (a permanent lockout disables the user and ends their sessions); a
/// right one clears the failures.
pub(crate) fn password_matches(
    emu: &Emulator,
    realm: &mut Realm,
    user: &User,
    given: Option<&str>,
    ip: &str,
) -> bool {
    let ok = match (&user.password_hash, given) {
        (Some(stored), Some(given)) => *stored == emu.keys.hash_password(given),
        _ => false,
    };
    if ok {
        realm.login_failures.remove(&user.id);
    } else if realm.settings.brute_force.protected {
        let (settings, now) = (realm.settings.brute_force.clone(), realm.now_ms());
        let verdict = realm
            .login_failures
            .entry(user.id.clone())
            .or_default()
            .fail(&settings, now, ip);
        if verdict == crate::brute_force::Verdict::PermanentlyLocked {
            let mut locked = user.clone();
            locked.enabled = false;
            locked.attributes.insert(
                crate::brute_force::PERMANENT_LOCKOUT_ATTRIBUTE.into(),
                vec!["permanentLockout".into()],
            );
            realm.replace_user(locked);
            realm.end_user_sessions(&user.id);
        }
    }
    ok
}

/// VERIFY_PROFILE: attributes the profile requires for the `user` role, missing on the user.
pub(crate) fn profile_incomplete(realm: &Realm, user: &User) -> bool {
    if !realm.settings.verify_profile {
        return false;
    }
    let (roles, _) = realm.effective_roles(user);
    if !roles.contains("user") && !roles.contains(&realm.settings.default_role) {
        return false;
    }
    realm.profile.missing_required_for_user(|name| match name {
        "username" => true,
        "email" => user.email.is_some(),
        "firstName" => user.first_name.is_some(),
        "lastName" => user.last_name.is_some(),
        other => user.attributes.get(other).is_some_and(|v| !v.is_empty()),
    })
}

/// The access token claims for a user, with the client's mappers applied.
pub(crate) fn user_claims(realm: &Realm, user: &User, client: &Client) -> Map<String, Value> {
    let (realm_roles, client_roles) = realm.effective_roles(user);
    let mut c = Map::new();
    let mut aud: Vec<String> = client_roles
        .iter()
        .filter(|(k, v)| **k != client.client_id && !v.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    for a in &client.audiences {
        if !aud.contains(a) {
            aud.push(a.clone());
        }
    }
    match aud.len() {
        0 => {}
        1 => {
            c.insert("aud".into(), json!(aud[0]));
        }
        _ => {
            c.insert("aud".into(), json!(aud));
        }
    }
    c.insert("realm_access".into(), json!({"roles": realm_roles}));
    let resource: Map<String, Value> = client_roles
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, json!({ "roles": v })))
        .collect();
    if !resource.is_empty() {
        c.insert("resource_access".into(), Value::Object(resource));
    }
    c.insert("email_verified".into(), json!(user.email_verified));
    let name = [&user.first_name, &user.last_name]
        .iter()
        .filter_map(|x| x.as_deref())
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        c.insert("name".into(), json!(name));
    }
    c.insert("preferred_username".into(), json!(user.username));
    if let Some(x) = &user.first_name {
        c.insert("given_name".into(), json!(x));
    }
    if let Some(x) = &user.last_name {
        c.insert("family_name".into(), json!(x));
    }
    if let Some(x) = &user.email {
        c.insert("email".into(), json!(x));
    }
    if let Some((claim, full_path)) = &client.groups_claim {
        let mut groups: Vec<&str> = user
            .groups
            .iter()
            .filter_map(|g| realm.groups.get(g))
            .map(|g| {
                if *full_path {
                    g.path.as_str()
                } else {
                    g.name.as_str()
                }
            })
            .collect();
        groups.sort_unstable();
        c.insert(claim.clone(), json!(groups));
    }
    for (attr, claim) in &client.attribute_claims {
        if let Some(v) = user.attributes.get(attr).and_then(|v| v.first()) {
            c.insert(claim.clone(), json!(v));
        }
    }
    c
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn issue_tokens(
    emu: &Emulator,
    realm: &Realm,
    iss: &str,
    user: &User,
    client: &Client,
    sid: Option<&str>,
    requested_scope: &str,
    req: &Req,
) -> Value {
    let now = realm.now_s();
    let session_exp = sid
        .and_then(|s| realm.sessions.get(s))
        .map(|s| realm.session_expiry_s(s));
    let exp = session_exp
        .map(|e| e.min(now + realm.settings.access_token_lifespan))
        .unwrap_or(now + realm.settings.access_token_lifespan);
    let openid = requested_scope.split_whitespace().any(|s| s == "openid");
    let mut scopes: Vec<&str> = Vec::new();
    if openid {
        scopes.push("openid");
    }
    scopes.extend(["email", "profile"]);
    let scope = scopes.join(" ");
    let mut claims = user_claims(realm, user, client);
    claims.insert("exp".into(), json!(exp));
    claims.insert("iat".into(), json!(now));
    claims.insert("jti".into(), json!(new_id()));
    claims.insert("iss".into(), json!(iss));
    claims.insert("sub".into(), json!(user.id));
    claims.insert("typ".into(), json!("Bearer"));
    claims.insert("azp".into(), json!(client.client_id));
    if let Some(s) = sid {
        claims.insert("sid".into(), json!(s));
    }
    claims.insert("acr".into(), json!("1"));
    claims.insert("scope".into(), json!(scope));
    if sid.is_none() {
        claims.insert("client_id".into(), json!(client.client_id));
        claims.insert("clientHost".into(), json!(req.remote_ip));
        claims.insert("clientAddress".into(), json!(req.remote_ip));
    }
    let access = emu.keys.sign_rs256(&Value::Object(claims.clone()));
    let mut resp = json!({
        "access_token": access, "expires_in": exp - now, "token_type": "Bearer",
        "not-before-policy": 0, "scope": scope, "refresh_expires_in": 0,
    });
    if let (Some(s), Some(rexp)) = (sid, session_exp) {
        let refresh = json!({
            "exp": rexp, "iat": now, "jti": new_id(), "iss": iss, "aud": iss, "sub": user.id,
            "typ": "Refresh", "azp": client.client_id, "sid": s, "scope": scope,
        });
        resp["refresh_token"] = json!(emu.keys.sign_hs512(&refresh));
        resp["refresh_expires_in"] = json!(rexp - now);
        resp["session_state"] = json!(s);
        if openid {
            let mut id = user_claims(realm, user, client);
            id.retain(|k, _| !matches!(k.as_str(), "realm_access" | "resource_access"));
            for (k, v) in [
                ("exp", json!(exp)),
                ("iat", json!(now)),
                ("jti", json!(new_id())),
                ("iss", json!(iss)),
                ("aud", json!(client.client_id)),
                ("sub", json!(user.id)),
                ("typ", json!("ID")),
                ("azp", json!(client.client_id)),
                ("sid", json!(s)),
                ("acr", json!("1")),
            ] {
                id.insert(k.into(), v);
            }
            resp["id_token"] = json!(emu.keys.sign_rs256(&Value::Object(id)));
        }
    }
    resp
}
