//! The emulator's state: the realms it serves (each from its export, for reset and clone), the
//! signing keys, the fault rules and the request counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::faults::FaultRule;
use crate::jwt::Keys;
use crate::realm::Realm;

pub struct RealmEntry {
    pub realm: RwLock<Realm>,
    /// The export this realm was built from, for reset and clone.
    pub source: Arc<Value>,
    /// Imported at start (kept by a global reset) rather than cloned by a test.
    pub imported: bool,
}

pub struct Emulator {
    pub keys: Keys,
    realms: RwLock<HashMap<String, Arc<RealmEntry>>>,
    pub faults: Mutex<Vec<FaultRule>>,
    stats: Mutex<BTreeMap<String, u64>>,
    /// Back-channel logout tokens sent lately (tests read them).
    pub logouts_sent: crate::backchannel::Sent,
}

impl Emulator {
    /// An emulator serving the given realm exports.
    pub fn new(exports: Vec<Value>) -> Result<Arc<Self>, String> {
        let emu = Emulator {
            keys: Keys::generate(),
            realms: RwLock::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            stats: Mutex::new(BTreeMap::new()),
            logouts_sent: Default::default(),
        };
        for export in exports {
            emu.add_realm(Arc::new(export), None, true)?;
        }
        Ok(Arc::new(emu))
    }

    pub fn from_file(path: &str) -> Result<Arc<Self>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read realm file {path}: {e}"))?;
        let export: Value = serde_json::from_str(&text)
            .map_err(|e| format!("realm file {path} is not JSON: {e}"))?;
        Self::new(vec![export])
    }

    pub fn realm(&self, name: &str) -> Option<Arc<RealmEntry>> {
        self.realms.read().get(name).cloned()
    }

    pub fn realm_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.realms.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Build a realm from an export and register it; fails if the name is taken.
    pub fn add_realm(
        &self,
        source: Arc<Value>,
        name: Option<&str>,
        imported: bool,
    ) -> Result<String, String> {
        let realm = Realm::import(&source, name, &self.keys)?;
        let name = realm.name.clone();
        let mut realms = self.realms.write();
        if realms.contains_key(&name) {
            return Err(format!("realm {name} exists"));
        }
        realms.insert(
            name.clone(),
            Arc::new(RealmEntry {
                realm: RwLock::new(realm),
                source,
                imported,
            }),
        );
        Ok(name)
    }

    pub fn remove_realm(&self, name: &str) -> bool {
        self.realms.write().remove(name).is_some()
    }

    /// Back to the state right after start: imported realms rebuilt, clones and faults gone.
    pub fn reset(&self) -> Result<(), String> {
        let mut realms = self.realms.write();
        realms.retain(|_, e| e.imported);
        for entry in realms.values() {
            let fresh = Realm::import(&entry.source, None, &self.keys)?;
            *entry.realm.write() = fresh;
        }
        self.faults.lock().clear();
        self.stats.lock().clear();
        self.logouts_sent.clear();
        Ok(())
    }

    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.stats.lock().clone()
    }

    pub fn clear_stats(&self) {
        self.stats.lock().clear();
    }

    /// Count one request (its path's segments, percent-decoded) for the stats.
    pub fn count(&self, method: &str, segments: &[String]) {
        let route = route_key(segments);
        let mut stats = self.stats.lock();
        *stats.entry(format!("{method} {route}")).or_default() += 1;
        *stats.entry("total".into()).or_default() += 1;
    }
}

/// The path with realm names and ids folded, so counts group by endpoint.
fn route_key(segments: &[String]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        out.push('/');
        let realm_slot = (i == 1 && segments[0] == "realms")
            || (i == 2 && segments[0] == "admin" && segments[1] == "realms");
        if realm_slot {
            out.push_str("{realm}");
        } else if s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4 {
            out.push_str("{id}");
        } else {
            out.push_str(s);
        }
    }
    out
}
