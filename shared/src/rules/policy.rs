//! Who may act on whom (DESIGN §4a), decided here and only here. Roles rank `admin` above
//! `manager` above everyone else. A caller may change a user only if it outranks every privileged
//! realm role the user holds (read from Keycloak at decision time, composites expanded, never from
//! the local copy); roles in `PROTECTED_ROLES` count as `admin`. Nobody disables or deletes
//! themself through the API. Service accounts do not exist for the admin API.

use crate::base::config::Config;
use crate::error::Error;
use crate::outside::auth::Principal;

/// A rank in the role order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    User,
    Manager,
    Admin,
}

/// What an admin route does to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    Create,
    Update,
    /// Set `emailVerified` by hand: trusting an address nobody verified is an admin's call.
    VerifyEmail,
    Disable,
    Delete,
    ResetPassword,
    Logout,
    SyncFromKeycloak,
    SyncToKeycloak,
    /// Bulk sync start/approve, run and status reads.
    ControlSync,
    ReadAudit,
}

impl Action {
    /// The least rank that may call the route at all.
    fn route_rank(self) -> Rank {
        match self {
            Action::Delete | Action::ControlSync | Action::ReadAudit | Action::VerifyEmail => {
                Rank::Admin
            }
            _ => Rank::Manager,
        }
    }

    /// Whether the action changes its target (and so needs the caller to outrank it).
    fn changes_target(self) -> bool {
        !matches!(
            self,
            Action::Read | Action::SyncFromKeycloak | Action::ControlSync | Action::ReadAudit
        )
    }
}

/// The user an action is about, as Keycloak knows them right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub id: String,
    /// Effective realm roles (composites expanded); empty when Keycloak has no such user.
    pub realm_roles: Vec<String>,
    pub service_account: bool,
}

#[derive(Clone, Debug)]
pub struct Policy {
    admin_role: String,
    manager_role: String,
    protected_roles: Vec<String>,
}

impl Policy {
    pub fn new(config: &Config) -> Self {
        Policy {
            admin_role: config.admin_role.clone(),
            manager_role: config.manager_role.clone(),
            protected_roles: config.protected_roles.clone(),
        }
    }

    /// The rank a set of realm roles gives.
    pub fn rank<S: AsRef<str>>(&self, roles: &[S]) -> Rank {
        let has = |r: &str| roles.iter().any(|x| x.as_ref() == r);
        if has(&self.admin_role) || self.protected_roles.iter().any(|p| has(p)) {
            Rank::Admin
        } else if has(&self.manager_role) {
            Rank::Manager
        } else {
            Rank::User
        }
    }

    /// The caller's own rank: only `admin` and `manager` count (a protected role does not make
    /// its holder an administrator).
    fn caller_rank(&self, caller: &Principal) -> Rank {
        if caller.has_realm_role(&self.admin_role) {
            Rank::Admin
        } else if caller.has_realm_role(&self.manager_role) {
            Rank::Manager
        } else {
            Rank::User
        }
    }

    /// May `caller` use the route that does `action` at all? (`403 forbidden` otherwise.)
    pub fn allow_route(&self, caller: &Principal, action: Action) -> Result<(), Error> {
        if self.caller_rank(caller) >= action.route_rank() {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// May `caller` do `action` to `target`? Service accounts are `404`; a caller who does not
    /// outrank the target, or an admin disabling or deleting themself, is `403 forbidden_target`.
    pub fn allow(&self, caller: &Principal, action: Action, target: &Target) -> Result<(), Error> {
        self.allow_route(caller, action)?;
        if target.service_account {
            return Err(Error::NotFound);
        }
        if !action.changes_target() {
            return Ok(());
        }
        let caller_rank = self.caller_rank(caller);
        if target.id == caller.user_id && matches!(action, Action::Disable | Action::Delete) {
            return Err(Error::ForbiddenTarget {
                detail: "you cannot disable or delete your own account".into(),
            });
        }
        let outranks = caller_rank == Rank::Admin || caller_rank > self.rank(&target.realm_roles);
        if outranks {
            Ok(())
        } else {
            Err(Error::ForbiddenTarget {
                detail: "this user holds a role at or above yours".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn policy() -> Policy {
        Policy {
            admin_role: "admin".into(),
            manager_role: "manager".into(),
            protected_roles: vec!["auditor".into()],
        }
    }

    fn caller(id: &str, roles: &[&str]) -> Principal {
        Principal {
            user_id: id.into(),
            username: id.into(),
            email: None,
            session_id: Some("s".into()),
            realm_roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            client_roles: BTreeMap::new(),
            expires_at: crate::base::clock::EpochSecs(0),
            claims: serde_json::Value::Null,
            token: crate::outside::secrets::Secret::new("t"),
        }
    }

    fn target(id: &str, roles: &[&str]) -> Target {
        Target {
            id: id.into(),
            realm_roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            service_account: false,
        }
    }

    const CHANGES: [Action; 6] = [
        Action::Update,
        Action::Disable,
        Action::ResetPassword,
        Action::Logout,
        Action::SyncToKeycloak,
        Action::Create,
    ];

    #[test]
    fn a_manager_changes_plain_users_only() {
        let bob = caller("bob", &["manager", "user"]);
        for action in CHANGES {
            assert!(policy()
                .allow(&bob, action, &target("carol", &["user"]))
                .is_ok());
            for privileged in [
                &["admin"][..],
                &["manager"],
                &["auditor"],
                &["user", "admin"],
            ] {
                assert!(
                    matches!(
                        policy().allow(&bob, action, &target("x", privileged)),
                        Err(Error::ForbiddenTarget { .. })
                    ),
                    "{action:?} on {privileged:?}"
                );
            }
        }
    }

    #[test]
    fn a_manager_reads_and_refreshes_everyone() {
        let bob = caller("bob", &["manager"]);
        for action in [Action::Read, Action::SyncFromKeycloak] {
            assert!(policy()
                .allow(&bob, action, &target("alice", &["admin"]))
                .is_ok());
        }
    }

    #[test]
    fn an_admin_acts_on_anyone_but_never_disables_or_deletes_themself() {
        let alice = caller("alice", &["admin"]);
        for action in [
            Action::Update,
            Action::ResetPassword,
            Action::Disable,
            Action::Delete,
        ] {
            assert!(policy()
                .allow(&alice, action, &target("other-admin", &["admin"]))
                .is_ok());
        }
        for action in [Action::Disable, Action::Delete] {
            assert!(matches!(
                policy().allow(&alice, action, &target("alice", &["admin"])),
                Err(Error::ForbiddenTarget { .. })
            ));
        }
        assert!(policy()
            .allow(&alice, Action::Update, &target("alice", &["admin"]))
            .is_ok());
    }

    #[test]
    fn admin_only_routes_refuse_managers_before_any_target_is_read() {
        let bob = caller("bob", &["manager"]);
        for action in [
            Action::Delete,
            Action::ControlSync,
            Action::ReadAudit,
            Action::VerifyEmail,
        ] {
            assert!(matches!(
                policy().allow_route(&bob, action),
                Err(Error::Forbidden)
            ));
        }
        let carol = caller("carol", &["user"]);
        assert!(matches!(
            policy().allow_route(&carol, Action::Read),
            Err(Error::Forbidden)
        ));
    }

    #[test]
    fn service_accounts_do_not_exist_for_the_admin_api() {
        let alice = caller("alice", &["admin"]);
        let sa = Target {
            service_account: true,
            ..target("sa", &[])
        };
        assert!(matches!(
            policy().allow(&alice, Action::Read, &sa),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn a_protected_role_does_not_make_its_holder_an_admin() {
        let auditor = caller("a", &["auditor"]);
        assert!(matches!(
            policy().allow_route(&auditor, Action::Read),
            Err(Error::Forbidden)
        ));
    }
}
