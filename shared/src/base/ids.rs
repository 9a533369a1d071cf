//! A map keyed by user id, small enough to hold one entry for every user of a large realm.
//!
//! Keycloak's user ids are UUIDs (36 characters); held as 16 bytes they cost a third of the
//! string, with no heap allocation per key. They are kept in one vector sorted by key (exactly one
//! entry's bytes per user: a hash map keeps 12–56 % of its buckets empty, and briefly holds two
//! tables when it grows), plus a small map of the entries added since the vector was last merged.
//! An id that is not a canonical lowercase UUID (a realm imported with its own ids) is kept as it
//! is, in a second map, so nothing is ever lost or merged.

use std::collections::HashMap;

/// The 16 bytes of a canonical lowercase UUID (`8-4-4-4-12` hex digits), or `None`: an id that
/// parses in another form (upper case, braces, no hyphens) would not write back as it came.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let parsed = uuid::Uuid::try_parse(id).ok()?;
    let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let written = parsed.as_hyphenated().encode_lower(&mut canonical);
    (written.as_bytes() == id.as_bytes()).then(|| parsed.into_bytes())
}

fn uuid_string(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*bytes).as_hyphenated().to_string()
}

/// New entries wait in a small map until this many, then are merged into the sorted vector.
const MERGE_AT: usize = 8_192;

/// Values by 16-byte key: a sorted vector, and the entries added since its last merge.
#[derive(Debug)]
struct SortedTable<V> {
    sorted: Vec<([u8; 16], V)>,
    recent: HashMap<[u8; 16], V>,
}

impl<V> SortedTable<V> {
    fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }
}

impl<V: Copy> SortedTable<V> {
    fn position(&self, key: &[u8; 16]) -> Result<usize, usize> {
        self.sorted.binary_search_by(|(k, _)| k.cmp(key))
    }

    fn get(&self, key: &[u8; 16]) -> Option<&V> {
        match self.position(key) {
            Ok(i) => Some(&self.sorted[i].1),
            Err(_) => self.recent.get(key),
        }
    }

    fn get_mut(&mut self, key: &[u8; 16]) -> Option<&mut V> {
        match self.position(key) {
            Ok(i) => Some(&mut self.sorted[i].1),
            Err(_) => self.recent.get_mut(key),
        }
    }

    /// The entry of `key`, if any, else a place for a new one in the recent map (merged first
    /// if it is full).
    fn slot(&mut self, key: [u8; 16]) -> Result<&mut V, &mut HashMap<[u8; 16], V>> {
        if let Ok(i) = self.position(&key) {
            return Ok(&mut self.sorted[i].1);
        }
        if self.recent.len() >= MERGE_AT && !self.recent.contains_key(&key) {
            self.merge();
        }
        Err(&mut self.recent)
    }

    /// The recent entries into the sorted vector, merged from the back in place: the vector
    /// grows once by their number, and nothing else is allocated but their sorted copy.
    fn merge(&mut self) {
        let mut recent: Vec<([u8; 16], V)> = self.recent.drain().collect();
        recent.sort_unstable_by_key(|e| e.0);
        let mut old = self.sorted.len();
        self.sorted.extend(recent.iter().copied());
        let mut write = self.sorted.len();
        while let Some(&(key, value)) = recent.last() {
            write -= 1;
            if old > 0 && self.sorted[old - 1].0 > key {
                old -= 1;
                self.sorted[write] = self.sorted[old];
            } else {
                self.sorted[write] = (key, value);
                recent.pop();
            }
        }
        self.recent.shrink_to(MERGE_AT);
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8; 16], &V)> {
        self.sorted
            .iter()
            .map(|(k, v)| (k, v))
            .chain(self.recent.iter())
    }
}

/// Values by user id.
#[derive(Debug)]
pub struct IdMap<V> {
    uuids: SortedTable<V>,
    others: HashMap<Box<str>, V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<V> IdMap<V> {
    /// Room for `n` users: the sorted vector is allocated once (memory not yet written to is
    /// not resident), so it does not grow and copy itself while it fills.
    pub fn with_capacity(n: usize) -> Self {
        IdMap {
            uuids: SortedTable {
                sorted: Vec::with_capacity(n),
                recent: HashMap::new(),
            },
            others: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.uuids.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V: Copy> IdMap<V> {
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
            Some(k) => match self.uuids.slot(k) {
                Ok(v) => v,
                Err(recent) => recent.entry(k).or_default(),
            },
            None => self.others.entry(id.into()).or_default(),
        }
    }

    pub fn insert(&mut self, id: &str, value: V) -> Option<V> {
        match uuid_bytes(id) {
            Some(k) => match self.uuids.slot(k) {
                Ok(v) => Some(std::mem::replace(v, value)),
                Err(recent) => recent.insert(k, value),
            },
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
        self.uuids
            .iter()
            .map(|(_, v)| v)
            .chain(self.others.values())
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

    /// `n` distinct canonical UUIDs in no particular order.
    fn uuids(n: u64) -> Vec<String> {
        (0..n)
            .map(|i| {
                let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
                x ^= x >> 29;
                let y = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let h = format!("{x:016x}{y:016x}");
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
            })
            .collect()
    }

    #[test]
    fn every_entry_is_found_and_updated_in_place_across_many_merges() {
        let ids = uuids(3 * MERGE_AT as u64 + 17);
        let mut m: IdMap<u32> = IdMap::with_capacity(10);
        for (i, id) in ids.iter().enumerate() {
            *m.entry(id) += i as u32;
        }
        // Each entry once more, half of them by `insert`: values change, the count does not.
        for (i, id) in ids.iter().enumerate() {
            if i % 2 == 0 {
                *m.entry(id) += 1;
            } else {
                assert_eq!(m.insert(id, u32::MAX), Some(i as u32));
            }
        }
        assert_eq!(m.len(), ids.len());
        assert!(
            m.uuids.sorted.len() >= 3 * MERGE_AT,
            "merged into the vector"
        );
        assert!(m.uuids.sorted.windows(2).all(|w| w[0].0 < w[1].0));
        for (i, id) in ids.iter().enumerate() {
            let expected = if i % 2 == 0 { i as u32 + 1 } else { u32::MAX };
            assert_eq!(m.get(id), Some(&expected), "{id}");
        }
        let mut listed = m.ids_where(|v| *v == u32::MAX);
        let mut odd: Vec<String> = ids.iter().skip(1).step_by(2).cloned().collect();
        listed.sort();
        odd.sort();
        assert!(listed == odd, "the ids set by insert, no other");
        assert_eq!(m.values().count(), ids.len());
        assert_eq!(m.get("00000000-0000-0000-0000-000000000000"), None);
    }

    #[test]
    fn upper_and_lower_case_ids_are_different_users() {
        let mut m = IdMap::default();
        m.insert("0a1b2c3d-4e5f-6789-abcd-ef0123456789", 1);
        m.insert("0A1B2C3D-4E5F-6789-ABCD-EF0123456789", 2);
        assert_eq!(m.len(), 2);
    }
}
