//! Every user's effective realm roles and group paths, read per role and per group (a few requests
//! for the whole realm instead of two per user) and held compactly: users share a handful of
//! membership combinations, so each user costs one id-map entry pointing at a shared set.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use crate::ids::IdMap;
use crate::keycloak::{KeycloakClient, KeycloakError, UserRepresentation};
use crate::users::is_technical_role;

const MEMBER_PAGE: u32 = 500;

/// One thing a user can be a member of: a realm role (standing for its effective roles) or a group.
enum Source {
    Role(Vec<String>),
    Group(String),
}

/// The roles and groups of every user, as shared sets of sources.
#[derive(Default)]
pub struct Memberships {
    sources: Vec<Source>,
    /// Set 0 is the empty set; every other set is a previous set plus one source.
    sets: Vec<Vec<u32>>,
    next: HashMap<(u32, u32), u32>,
    of: IdMap<u32>,
}

impl Memberships {
    fn add_source(&mut self, source: Source) -> u32 {
        self.sources.push(source);
        (self.sources.len() - 1) as u32
    }

    /// `user` is a member of `source`. Sources are added in order, so a set is always sorted and
    /// the same combination is always reached the same way: one set per combination.
    fn add_member(&mut self, user: &str, source: u32) {
        if self.sets.is_empty() {
            self.sets.push(Vec::new());
        }
        let current = self.of.get(user).copied().unwrap_or(0);
        let sets = &mut self.sets;
        let set = *self.next.entry((current, source)).or_insert_with(|| {
            let mut grown = sets[current as usize].clone();
            grown.push(source);
            sets.push(grown);
            (sets.len() - 1) as u32
        });
        self.of.insert(user, set);
    }

    /// Every member of `source`, a page at a time, until a short page.
    async fn add_members<F, Fut>(&mut self, source: u32, mut page: F) -> Result<(), KeycloakError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Vec<UserRepresentation>, KeycloakError>>,
    {
        let mut first = 0;
        loop {
            let members = page(first).await?;
            for member in &members {
                self.add_member(&member.id, source);
            }
            if (members.len() as u32) < MEMBER_PAGE {
                return Ok(());
            }
            first += MEMBER_PAGE;
        }
    }

    /// The user's effective realm roles (technical ones left out) and group paths.
    pub fn of(&self, user: &str) -> (BTreeSet<String>, Vec<String>) {
        let mut roles = BTreeSet::new();
        let mut groups = Vec::new();
        let set = self
            .of
            .get(user)
            .map_or(&[][..], |s| &self.sets[*s as usize][..]);
        for source in set {
            match &self.sources[*source as usize] {
                Source::Role(effective) => roles.extend(effective.iter().cloned()),
                Source::Group(path) => groups.push(path.clone()),
            }
        }
        (roles, groups)
    }

    /// Read from Keycloak: each realm role's members (the role standing for its composites'
    /// closure) and each group's members.
    pub async fn read(kc: &KeycloakClient, expected_users: usize) -> Result<Self, KeycloakError> {
        let mut m = Memberships {
            of: IdMap::with_capacity(expected_users),
            ..Default::default()
        };
        let roles = kc.realm_roles().await?;
        let mut contains: HashMap<String, Vec<String>> = HashMap::new();
        for r in roles.iter().filter(|r| r.composite) {
            let children = kc.role_composites(&r.name).await?;
            contains.insert(
                r.name.clone(),
                children
                    .into_iter()
                    .filter(|c| !c.client_role)
                    .map(|c| c.name)
                    .collect(),
            );
        }
        for role in &roles {
            let mut effective = BTreeSet::new();
            let mut todo = vec![role.name.clone()];
            while let Some(r) = todo.pop() {
                if effective.insert(r.clone()) {
                    todo.extend(contains.get(&r).cloned().unwrap_or_default());
                }
            }
            effective.retain(|r| !is_technical_role(r));
            let source = m.add_source(Source::Role(effective.into_iter().collect()));
            m.add_members(source, |first| {
                kc.role_members(&role.name, first, MEMBER_PAGE)
            })
            .await?;
        }
        for group in kc.groups().await? {
            let source = m.add_source(Source::Group(group.path.clone()));
            m.add_members(source, |first| {
                kc.group_members(&group.id, first, MEMBER_PAGE)
            })
            .await?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_with_the_same_roles_and_groups_share_one_set() {
        let mut m = Memberships::default();
        let user = m.add_source(Source::Role(vec!["user".into()]));
        let admin = m.add_source(Source::Role(vec!["admin".into(), "user".into()]));
        let staff = m.add_source(Source::Group("/staff".into()));
        for id in ["a", "b", "c"] {
            m.add_member(id, user);
        }
        m.add_member("c", admin);
        for id in ["a", "b", "c"] {
            m.add_member(id, staff);
        }
        // {} , {user}, {user,admin}, {user,staff}, {user,admin,staff}
        assert_eq!(m.sets.len(), 5);
        assert_eq!(m.of("a"), m.of("b"));
        let (roles, groups) = m.of("c");
        assert_eq!(roles.into_iter().collect::<Vec<_>>(), ["admin", "user"]);
        assert_eq!(groups, ["/staff"]);
        assert_eq!(m.of("nobody"), (BTreeSet::new(), vec![]));
    }
}
