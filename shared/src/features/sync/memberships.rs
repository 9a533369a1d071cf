//! Every user's effective realm roles and group paths, read per role and per group (a few requests
//! for the whole realm instead of two per user) and held compactly: users share a handful of
//! membership combinations, each held once here; a user's entry in the caller's map holds the
//! 4-byte number of theirs.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use crate::base::ids::IdMap;
use crate::features::observe::is_technical_role;
use crate::outside::keycloak::{KeycloakClient, KeycloakError, Member};

/// Members read a request, for a realm of `users`: 5 000, or a 40th of the realm when that is
/// more, up to 50 000. Keycloak answers a member page at offset `first` by walking the `first`
/// members before it (JPA's `usersInRole` and `getGroupMembersStream`: ORDER BY username,
/// OFFSET), so a listing costs members² / page, and the realm's default role has every user as
/// a member: with a page that grows with the realm, a listing is at most 40 pages and its cost
/// grows with the realm, not its square, up to 2 000 000 users. At a million users the default
/// role's members read from the emulator in 152 s at 500 a page and 24–36 s at 5 000 (README).
/// A page of 5 000 brief representations is ~1.6 MB of JSON, of which only the ids are kept.
pub(super) fn member_page(users: u64) -> u32 {
    (users / 40).clamp(5_000, 50_000) as u32
}

/// One thing a user can be a member of: a realm role (standing for its effective roles) or a group.
enum Source {
    Role(Vec<String>),
    Group(String),
}

/// The number of a user's membership combination, as 4 bytes with no alignment: a map entry
/// that holds one stays 30 bytes (16-byte id, 14 bytes of state) instead of being padded to 32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Combination([u8; 4]);

impl From<u32> for Combination {
    fn from(n: u32) -> Self {
        Combination(n.to_le_bytes())
    }
}

impl Combination {
    fn number(self) -> u32 {
        u32::from_le_bytes(self.0)
    }
}

/// The membership combinations of a realm's users, as shared sets of sources.
pub struct Memberships {
    sources: Vec<Source>,
    /// Set 0 is the empty set; every other set is a previous set plus one source.
    sets: Vec<Vec<u32>>,
    next: HashMap<(u32, u32), u32>,
}

impl Default for Memberships {
    fn default() -> Self {
        Memberships {
            sources: Vec::new(),
            sets: vec![Vec::new()],
            next: HashMap::new(),
        }
    }
}

impl Memberships {
    fn add_source(&mut self, source: Source) -> u32 {
        self.sources.push(source);
        (self.sources.len() - 1) as u32
    }

    /// A member of the combination `current` is a member of `source` too: their combination
    /// now. Sources are added in order, so a set is always sorted and the same combination is
    /// always reached the same way: one set per combination.
    fn with(&mut self, current: u32, source: u32) -> u32 {
        let sets = &mut self.sets;
        *self.next.entry((current, source)).or_insert_with(|| {
            let mut grown = sets[current as usize].clone();
            grown.push(source);
            sets.push(grown);
            (sets.len() - 1) as u32
        })
    }

    /// Every member of `source`, a page at a time, until a short page; each member's
    /// combination (`set` of their entry in `map`) updated, the map borrowed between awaits only.
    async fn add_members<V, F, Fut>(
        &mut self,
        map: &RefCell<IdMap<V>>,
        set: fn(&mut V) -> &mut Combination,
        source: u32,
        page_size: u32,
        mut page: F,
    ) -> Result<(), KeycloakError>
    where
        V: Copy + Default,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Vec<Member>, KeycloakError>>,
    {
        let mut first = 0;
        loop {
            let members = page(first).await?;
            let mut map = map.borrow_mut();
            for member in &members {
                let combination = set(map.entry(&member.id));
                *combination = self.with(combination.number(), source).into();
            }
            drop(map);
            if (members.len() as u32) < page_size {
                return Ok(());
            }
            first += page_size;
        }
    }

    /// The effective realm roles (technical ones left out) and group paths of a combination.
    pub fn of(&self, combination: Combination) -> (BTreeSet<String>, Vec<String>) {
        let mut roles = BTreeSet::new();
        let mut groups = Vec::new();
        let set = self
            .sets
            .get(combination.number() as usize)
            .map_or(&[][..], |s| &s[..]);
        for source in set {
            match &self.sources[*source as usize] {
                Source::Role(effective) => roles.extend(effective.iter().cloned()),
                Source::Group(path) => groups.push(path.clone()),
            }
        }
        (roles, groups)
    }

    /// Read from Keycloak: each realm role's members (the role standing for its composites'
    /// closure) and each group's members; each member's combination is `set` of their entry in
    /// `map`, which the caller may fill from elsewhere meanwhile (it is borrowed between awaits
    /// only). `users`: the realm's user count, which sizes the member pages.
    pub async fn read<V: Copy + Default>(
        kc: &KeycloakClient,
        users: u64,
        map: &RefCell<IdMap<V>>,
        set: fn(&mut V) -> &mut Combination,
    ) -> Result<Self, KeycloakError> {
        let page = member_page(users);
        let mut m = Memberships::default();
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
            if effective.is_empty() {
                continue; // its members gain nothing the record shows: no need to read them
            }
            let source = m.add_source(Source::Role(effective.into_iter().collect()));
            m.add_members(map, set, source, page, |first| {
                kc.role_members(&role.name, first, page)
            })
            .await?;
        }
        for group in kc.groups().await? {
            let source = m.add_source(Source::Group(group.path.clone()));
            m.add_members(map, set, source, page, |first| {
                kc.group_members(&group.id, first, page)
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
    fn a_member_page_is_a_fortieth_of_the_realm_between_5_000_and_50_000() {
        assert_eq!(member_page(0), 5_000);
        assert_eq!(member_page(100_000), 5_000);
        assert_eq!(member_page(1_000_000), 25_000);
        assert_eq!(member_page(2_000_000), 50_000);
        assert_eq!(member_page(u64::MAX), 50_000);
    }

    #[test]
    fn users_with_the_same_roles_and_groups_share_one_set() {
        let mut m = Memberships::default();
        let user = m.add_source(Source::Role(vec!["user".into()]));
        let admin = m.add_source(Source::Role(vec!["admin".into(), "user".into()]));
        let staff = m.add_source(Source::Group("/staff".into()));
        let mut of: HashMap<&str, u32> = HashMap::new();
        let mut add = |id, source| {
            let current = of.get(id).copied().unwrap_or(0);
            of.insert(id, m.with(current, source));
        };
        for id in ["a", "b", "c"] {
            add(id, user);
        }
        add("c", admin);
        for id in ["a", "b", "c"] {
            add(id, staff);
        }
        // {} , {user}, {user,admin}, {user,staff}, {user,admin,staff}
        assert_eq!(m.sets.len(), 5);
        assert_eq!(of["a"], of["b"]);
        let (roles, groups) = m.of(of["c"].into());
        assert_eq!(roles.into_iter().collect::<Vec<_>>(), ["admin", "user"]);
        assert_eq!(groups, ["/staff"]);
        assert_eq!(m.of(Combination::default()), (BTreeSet::new(), vec![]));
    }
}
