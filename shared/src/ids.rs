//! A map keyed by user id, small enough to hold one entry for every user of a large realm.
//!
//! Keycloak's user ids are UUIDs (36 characters); held as 16 bytes they cost a third of the
//! string, with no heap allocation per key. An id that is not a canonical lowercase UUID (a realm
//! imported with its own ids) is kept as it is, in a second map, so nothing is ever lost or merged.

use std::collections::HashMap;

/// The 16 bytes of a canonical lowercase UUID (`8-4-4-4-12` hex digits), or `None`.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibble = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibble / 2] |= if nibble % 2 == 0 { v << 4 } else { v };
        nibble += 1;
    }
    Some(out)
}

fn uuid_string(bytes: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Values by user id.
#[derive(Debug)]
pub struct IdMap<V> {
    uuids: HashMap<[u8; 16], V>,
    others: HashMap<Box<str>, V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap {
            uuids: HashMap::new(),
            others: HashMap::new(),
        }
    }
}

impl<V> IdMap<V> {
    /// Room for `n` users without growing (a growing table briefly holds both sizes).
    pub fn with_capacity(n: usize) -> Self {
        IdMap {
            uuids: HashMap::with_capacity(n),
            others: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.uuids.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &str) -> Option<&V> {
        match uuid_bytes(id) {
            Some(k) => self.uuids.get(&k),
            None => self.others.get(id),
        }
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut V> {
        match uuid_bytes(id) {
            Some(k) => self.uuids.get_mut(&k),
            None => self.others.get_mut(id),
        }
    }

    /// The user's value, a default one inserted first if there is none.
    pub fn entry(&mut self, id: &str) -> &mut V
    where
        V: Default,
    {
        match uuid_bytes(id) {
            Some(k) => self.uuids.entry(k).or_default(),
            None => self.others.entry(id.into()).or_default(),
        }
    }

    pub fn insert(&mut self, id: &str, value: V) -> Option<V> {
        match uuid_bytes(id) {
            Some(k) => self.uuids.insert(k, value),
            None => self.others.insert(id.into(), value),
        }
    }

    /// The ids whose value passes `keep` (each id rebuilt as a string: for the few, not the many).
    pub fn ids_where(&self, keep: impl Fn(&V) -> bool) -> Vec<String> {
        let uuids = self
            .uuids
            .iter()
            .filter(|(_, v)| keep(v))
            .map(|(k, _)| uuid_string(k));
        let others = self
            .others
            .iter()
            .filter(|(_, v)| keep(v))
            .map(|(k, _)| k.to_string());
        uuids.chain(others).collect()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.uuids.values().chain(self.others.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_uuid_round_trips_through_its_bytes() {
        let id = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
        let mut m = IdMap::default();
        m.insert(id, 1);
        assert_eq!(m.uuids.len(), 1);
        assert_eq!(m.get(id), Some(&1));
        assert_eq!(m.ids_where(|_| true), vec![id.to_owned()]);
    }

    #[test]
    fn ids_that_are_not_canonical_uuids_are_kept_as_given() {
        let mut m = IdMap::default();
        for id in [
            "alice",
            "0A1B2C3D-4E5F-6789-ABCD-EF0123456789",
            "0a1b2c3d4e5f6789abcdef0123456789xxxx",
            "0a1b2c3d-4e5f-6789-abcd-ef012345678g",
        ] {
            m.insert(id, ());
            assert!(m.get(id).is_some(), "{id}");
        }
        assert_eq!((m.uuids.len(), m.others.len()), (0, 4));
        let mut ids = m.ids_where(|_| true);
        ids.sort();
        assert_eq!(ids[3], "alice");
    }

    #[test]
    fn upper_and_lower_case_ids_are_different_users() {
        let mut m = IdMap::default();
        m.insert("0a1b2c3d-4e5f-6789-abcd-ef0123456789", 1);
        m.insert("0A1B2C3D-4E5F-6789-ABCD-EF0123456789", 2);
        assert_eq!(m.len(), 2);
    }
}
