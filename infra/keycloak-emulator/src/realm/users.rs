//! The realm's users, clients and groups as the handlers look them up and change them, their
//! effective roles, and a user as the admin API renders it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::model::{Access, Client, Group, Realm, User, UserView};

impl Realm {
    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub fn client_by_uuid(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub fn group_by_path(&self, path: &str) -> Option<&Group> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.groups.values().find(|g| g.path == path)
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.ids.get(id).and_then(|u| self.users.get(u))
    }

    pub fn user_mut(&mut self, id: &str) -> Option<&mut User> {
        let username = self.ids.get(id)?;
        self.users.get_mut(username)
    }

    /// The service-account user of a client, by its link (`serviceAccountClientLink`), never by
    /// its name: a user who merely took the `service-account-` prefix is not one (contract §14).
    pub fn service_account_of(&self, client: &Client) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.service_account_client_id.as_deref() == Some(client.client_id.as_str()))
    }

    /// `KeycloakModelUtils#findUserByNameOrEmail` (contract §13): with email login on, an
    /// identifier with `@` is looked up by email first; then by username.
    pub fn user_by_username_or_email(&self, login: &str) -> Option<&User> {
        let login = login.to_lowercase();
        let by_email = (self.settings.login_with_email_allowed && login.contains('@'))
            .then(|| self.emails.get(&login).and_then(|id| self.user(id)))
            .flatten();
        by_email.or_else(|| self.users.get(&login))
    }

    /// Non-service-account usernames in order (what an unfiltered listing pages over).
    pub fn listing_order(&self) -> Arc<Vec<String>> {
        let mut cached = self.listing.lock();
        Arc::clone(cached.get_or_insert_with(|| {
            Arc::new(
                self.users
                    .values()
                    .filter(|u| u.service_account_client_id.is_none())
                    .map(|u| u.username.clone())
                    .collect(),
            )
        }))
    }

    pub fn insert_user(&mut self, user: User) {
        *self.listing.get_mut() = None;
        self.ids.insert(user.id.clone(), user.username.clone());
        if let Some(e) = &user.email {
            self.emails.insert(e.clone(), user.id.clone());
        }
        self.users.insert(user.username.clone(), user);
    }

    /// Replace a user's record, keeping the username and email indexes right.
    pub fn replace_user(&mut self, user: User) {
        if let Some(old) = self.remove_user_record(&user.id) {
            debug_assert_eq!(old.id, user.id);
        }
        self.insert_user(user);
    }

    fn remove_user_record(&mut self, id: &str) -> Option<User> {
        *self.listing.get_mut() = None;
        let username = self.ids.remove(id)?;
        let user = self.users.remove(&username)?;
        if let Some(e) = &user.email {
            if self.emails.get(e).is_some_and(|owner| owner == id) {
                self.emails.remove(e);
            }
        }
        Some(user)
    }

    pub fn delete_user(&mut self, id: &str) -> Option<User> {
        let user = self.remove_user_record(id)?;
        self.end_user_sessions(id);
        Some(user)
    }

    /// Effective roles: direct and group roles, composites expanded.
    /// Returns realm role names and clientId → client role names.
    pub fn effective_roles(
        &self,
        user: &User,
    ) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
        let mut realm: BTreeSet<String> = BTreeSet::new();
        let mut clients: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut todo: Vec<(Option<String>, String)> =
            user.realm_roles.iter().map(|r| (None, r.clone())).collect();
        for (c, names) in &user.client_roles {
            todo.extend(names.iter().map(|n| (Some(c.clone()), n.clone())));
        }
        for gid in &user.groups {
            let mut next = Some(gid.clone());
            while let Some(g) = next.and_then(|id| self.groups.get(&id)) {
                todo.extend(g.realm_roles.iter().map(|r| (None, r.clone())));
                for (c, names) in &g.client_roles {
                    todo.extend(names.iter().map(|n| (Some(c.clone()), n.clone())));
                }
                next = g.parent_id.clone();
            }
        }
        while let Some((client, name)) = todo.pop() {
            let role = match &client {
                None => {
                    if !realm.insert(name.clone()) {
                        continue;
                    }
                    self.realm_roles.get(&name)
                }
                Some(c) => {
                    if !clients.entry(c.clone()).or_default().insert(name.clone()) {
                        continue;
                    }
                    self.client_roles.get(c).and_then(|m| m.get(&name))
                }
            };
            if let Some(role) = role {
                todo.extend(role.composites_realm.iter().map(|r| (None, r.clone())));
                for (c, names) in &role.composites_client {
                    todo.extend(names.iter().map(|n| (Some(c.clone()), n.clone())));
                }
            }
        }
        (realm, clients)
    }

    /// The user as the admin API shows it. `access` reflects what the caller may do.
    pub fn user_view<'a>(&'a self, u: &'a User, brief: bool, can_manage: bool) -> UserView<'a> {
        let attributes = (!brief)
            .then(|| self.profile.visible_attributes(&u.attributes))
            .filter(|a| !a.is_empty());
        UserView {
            id: &u.id,
            username: &u.username,
            first_name: u.first_name.as_deref(),
            last_name: u.last_name.as_deref(),
            email: u.email.as_deref(),
            email_verified: u.email_verified,
            attributes,
            created_timestamp: u.created_ms,
            enabled: u.enabled,
            totp: (!brief).then_some(false),
            disableable_credential_types: (!brief).then_some([]),
            required_actions: (!brief).then_some(u.required_actions.as_slice()),
            not_before: (!brief).then_some(u.not_before),
            access: Access {
                manage_group_membership: can_manage,
                view: true,
                map_roles: can_manage,
                impersonate: false,
                manage: can_manage,
            },
        }
    }

    pub fn user_json(&self, u: &User, brief: bool, can_manage: bool) -> Value {
        serde_json::to_value(self.user_view(u, brief, can_manage)).unwrap_or(Value::Null)
    }
}
