//! The admin API as the service account calls it: users, sessions, roles, groups, events. A 401
//! drops the cached token and retries once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::client::{encode, json, KeycloakClient, Reply, Safety};
use super::error::{classify, Endpoint, KeycloakError};
use super::types::*;

/// How long the list of service-account users is trusted: a client given service accounts
/// later is known within this.
pub const SERVICE_ACCOUNTS_TTL: Duration = Duration::from_secs(300);

impl KeycloakClient {
    /// An admin call as the service account. A 401 (token expired or revoked early) drops the
    /// cached token and retries once with a new one.
    pub(super) async fn admin<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&B>,
        safety: Safety,
    ) -> Result<Reply, KeycloakError> {
        let url = self.admin_url(path);
        for attempt in 0..2 {
            let token = self.service_token().await?;
            let reply = self
                .send(safety, || {
                    let mut req = self.http.request(method.clone(), &url).bearer_auth(&*token);
                    if !query.is_empty() {
                        req = req.query(query);
                    }
                    if let Some(b) = body {
                        req = req.json(b);
                    }
                    req
                })
                .await?;
            if reply.status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.sa_token.invalidate(&token);
                continue;
            }
            if reply.status.is_success() {
                return Ok(reply);
            }
            return Err(classify(
                Endpoint::Admin,
                reply.status.as_u16(),
                &reply.body,
            ));
        }
        Err(KeycloakError::Unauthorized)
    }

    pub(super) async fn admin_get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, KeycloakError> {
        let reply = self
            .admin::<()>(Method::GET, path, query, None, Safety::Idempotent)
            .await?;
        json(&reply.body)
    }

    /// Create a user; returns its id, read from `Location`. A POST is not idempotent, so it is
    /// retried only when Keycloak certainly did not process it (429, connection refused).
    pub async fn create_user(&self, user: &NewUser) -> Result<String, KeycloakError> {
        let reply = self
            .admin(
                Method::POST,
                "/users",
                &[],
                Some(user),
                Safety::NotIdempotent,
            )
            .await?;
        reply
            .location
            .as_deref()
            .and_then(|l| l.rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| KeycloakError::Protocol("user created without a Location header".into()))
    }

    /// A user as Keycloak stores them. `GET /users/{id}` shows a user in a temporary brute-force
    /// lockout as `enabled: false` (contract §4.1); a lockout is not a disable, so such a user is
    /// read as enabled (one more call, for disabled-looking users only).
    pub async fn get_user(&self, id: &str) -> Result<UserRepresentation, KeycloakError> {
        let mut rep: UserRepresentation = self
            .admin_get(&format!("/users/{}", encode(id)), &[])
            .await?;
        if !rep.enabled && self.temporarily_locked(id).await? {
            rep.enabled = true;
        }
        Ok(rep)
    }

    /// Whether brute-force detection holds the user back right now (a permanent lockout is a
    /// real disable and does not count).
    pub async fn temporarily_locked(&self, id: &str) -> Result<bool, KeycloakError> {
        let status: Value = self
            .admin_get(
                &format!("/attack-detection/brute-force/users/{}", encode(id)),
                &[],
            )
            .await?;
        Ok(status.get("disabled").and_then(Value::as_bool) == Some(true))
    }

    pub async fn find_user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserRepresentation>, KeycloakError> {
        let found: Vec<UserRepresentation> = self
            .admin_get(
                "/users",
                &[
                    ("username".into(), username.to_owned()),
                    ("exact".into(), "true".into()),
                    ("briefRepresentation".into(), "false".into()),
                ],
            )
            .await?;
        Ok(found
            .into_iter()
            .find(|u| u.username == username.to_lowercase()))
    }

    /// Whether Keycloak's user search finds this id (`search=id:<id>`, contract §3): a second
    /// opinion on a 404 before anyone is deactivated over it.
    pub async fn found_by_search(&self, id: &str) -> Result<bool, KeycloakError> {
        let found: Vec<UserRepresentation> = self
            .admin_get(
                "/users",
                &[
                    ("search".into(), format!("id:{id}")),
                    ("briefRepresentation".into(), "true".into()),
                ],
            )
            .await?;
        Ok(found.iter().any(|u| u.id == id))
    }

    /// The user id of the service client's service account: the author Keycloak records on the
    /// admin events of this project's own writes. Read from the `sub` of its own token.
    pub async fn service_account_id(&self) -> Result<String, KeycloakError> {
        let token = self.service_token().await?;
        super::unverified_claims(&token)
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| KeycloakError::Protocol("the service token has no sub".into()))
    }

    /// The ids of the realm's service-account users: the `service-account-user` of every client
    /// with service accounts on. Keycloak 26 marks no user as one on the admin API, and does not
    /// reserve their name prefix (contract §14), so the clients are the one source. Read again
    /// after `SERVICE_ACCOUNTS_TTL`; a failed read is an error, never an empty set.
    pub async fn service_account_users(&self) -> Result<Arc<HashSet<String>>, KeycloakError> {
        let mut cached = self.service_accounts.lock().await;
        if let Some((read, ids)) = cached.as_ref() {
            if read.elapsed() < SERVICE_ACCOUNTS_TTL {
                return Ok(Arc::clone(ids));
            }
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Client {
            id: String,
            #[serde(default)]
            service_accounts_enabled: bool,
        }
        let clients: Vec<Client> = self.admin_get("/clients", &[]).await?;
        let mut ids = HashSet::new();
        for c in clients.iter().filter(|c| c.service_accounts_enabled) {
            let path = format!("/clients/{}/service-account-user", encode(&c.id));
            let user: UserRepresentation = self.admin_get(&path, &[]).await?;
            ids.insert(user.id);
        }
        let ids = Arc::new(ids);
        *cached = Some((Instant::now(), Arc::clone(&ids)));
        Ok(ids)
    }

    /// One page of users, ordered by username (service accounts excluded by Keycloak).
    pub async fn list_users(
        &self,
        first: u32,
        max: u32,
        brief: bool,
    ) -> Result<Vec<UserRepresentation>, KeycloakError> {
        self.admin_get(
            "/users",
            &[
                ("first".into(), first.to_string()),
                ("max".into(), max.to_string()),
                ("briefRepresentation".into(), brief.to_string()),
            ],
        )
        .await
    }

    pub async fn count_users(&self) -> Result<u64, KeycloakError> {
        self.admin_get("/users/count", &[]).await
    }

    /// GET → merge → PUT of the complete representation: a partial PUT would clear every
    /// field it leaves out (Keycloak 24+).
    pub async fn update_user(&self, id: &str, update: &UserUpdate) -> Result<(), KeycloakError> {
        let path = format!("/users/{}", encode(id));
        let mut rep: Value = self.admin_get(&path, &[]).await?;
        update.merge_into(&mut rep);
        self.admin(Method::PUT, &path, &[], Some(&rep), Safety::Idempotent)
            .await
            .map(|_| ())
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), KeycloakError> {
        self.admin::<()>(
            Method::DELETE,
            &format!("/users/{}", encode(id)),
            &[],
            None,
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    pub async fn reset_password(
        &self,
        id: &str,
        password: &str,
        temporary: bool,
    ) -> Result<(), KeycloakError> {
        let cred = PasswordCredential::new(password, temporary);
        self.admin(
            Method::PUT,
            &format!("/users/{}/reset-password", encode(id)),
            &[],
            Some(&cred),
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    /// End every session of a user and make older tokens stale.
    pub async fn logout_user(&self, id: &str) -> Result<(), KeycloakError> {
        self.admin::<()>(
            Method::POST,
            &format!("/users/{}/logout", encode(id)),
            &[],
            None,
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    pub async fn user_sessions(
        &self,
        id: &str,
    ) -> Result<Vec<UserSessionRepresentation>, KeycloakError> {
        self.admin_get(&format!("/users/{}/sessions", encode(id)), &[])
            .await
    }

    pub async fn delete_session(&self, sid: &str) -> Result<(), KeycloakError> {
        self.admin::<()>(
            Method::DELETE,
            &format!("/sessions/{}", encode(sid)),
            &[],
            None,
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    /// The realm's user-profile configuration (declared attributes, validators, permissions).
    pub async fn user_profile(&self) -> Result<Value, KeycloakError> {
        self.admin_get("/users/profile", &[]).await
    }

    pub async fn realm_roles(&self) -> Result<Vec<RoleRepresentation>, KeycloakError> {
        self.admin_get("/roles", &[("max".into(), "-1".into())])
            .await
    }

    /// Effective realm roles of a user: direct, from groups, and composites expanded.
    pub async fn user_effective_realm_roles(
        &self,
        id: &str,
    ) -> Result<Vec<RoleRepresentation>, KeycloakError> {
        self.admin_get(
            &format!("/users/{}/role-mappings/realm/composite", encode(id)),
            &[],
        )
        .await
    }

    /// The roles a composite realm role contains (realm and client roles).
    pub async fn role_composites(
        &self,
        role: &str,
    ) -> Result<Vec<RoleRepresentation>, KeycloakError> {
        self.admin_get(&format!("/roles/{}/composites", encode(role)), &[])
            .await
    }

    /// Users holding a realm role directly, one page.
    pub async fn role_members(
        &self,
        role: &str,
        first: u32,
        max: u32,
    ) -> Result<Vec<Member>, KeycloakError> {
        self.admin_get(
            &format!("/roles/{}/users", encode(role)),
            &[
                ("first".into(), first.to_string()),
                ("max".into(), max.to_string()),
                ("briefRepresentation".into(), "true".into()),
            ],
        )
        .await
    }

    pub async fn groups(&self) -> Result<Vec<GroupRepresentation>, KeycloakError> {
        self.admin_get("/groups", &[("max".into(), "-1".into())])
            .await
    }

    pub async fn group_members(
        &self,
        group_id: &str,
        first: u32,
        max: u32,
    ) -> Result<Vec<Member>, KeycloakError> {
        self.admin_get(
            &format!("/groups/{}/members", encode(group_id)),
            &[
                ("first".into(), first.to_string()),
                ("max".into(), max.to_string()),
                ("briefRepresentation".into(), "true".into()),
            ],
        )
        .await
    }

    pub async fn user_groups(&self, id: &str) -> Result<Vec<GroupRepresentation>, KeycloakError> {
        self.admin_get(
            &format!("/users/{}/groups", encode(id)),
            &[("max".into(), "-1".into())],
        )
        .await
    }

    pub async fn admin_events(&self, q: &EventQuery) -> Result<Vec<AdminEvent>, KeycloakError> {
        self.admin_get("/admin-events", &q.params("resourceTypes"))
            .await
    }

    /// Whether and how long Keycloak stores events (needs `view-events`).
    pub async fn events_config(&self) -> Result<Value, KeycloakError> {
        self.admin_get("/events/config", &[]).await
    }

    pub async fn user_events(&self, q: &EventQuery) -> Result<Vec<UserEvent>, KeycloakError> {
        self.admin_get("/events", &q.params("type")).await
    }
}
