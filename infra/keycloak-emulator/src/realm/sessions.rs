//! The realm's SSO sessions: created, kept alive, expired and ended, and the back-channel
//! logout tokens an ending sends.

use std::collections::BTreeMap;

use serde_json::json;

use crate::backchannel::Delivery;

use super::model::{new_id, Client, Realm, Session};

impl Realm {
    pub fn end_user_sessions(&mut self, user_id: &str) {
        if let Some(sids) = self.user_sessions.remove(user_id) {
            for sid in sids {
                self.sessions.remove(&sid);
            }
        }
    }

    pub fn end_session(&mut self, sid: &str) -> Option<Session> {
        let session = self.sessions.remove(sid)?;
        if let Some(set) = self.user_sessions.get_mut(&session.user_id) {
            set.remove(sid);
        }
        Some(session)
    }

    /// End a session the way a logout does (end-session, refresh-token logout, an admin's
    /// session delete): its clients' back-channel logout tokens go to the outbox.
    pub fn log_out_session(&mut self, sid: &str, fallback_issuer: &str) -> Option<Session> {
        let session = self.end_session(sid)?;
        let deliveries = self.logout_deliveries(&session, fallback_issuer);
        self.backchannel_outbox.extend(deliveries);
        Some(session)
    }

    /// The deliveries for `session`, just ended: one per client of the session that wants them.
    fn logout_deliveries(&self, session: &Session, fallback_issuer: &str) -> Vec<Delivery> {
        let now = self.now_s();
        let iss = if session.issuer.is_empty() {
            fallback_issuer
        } else {
            &session.issuer
        };
        session
            .clients
            .keys()
            .filter_map(|uuid| self.client_by_uuid(uuid))
            .filter(|c| c.enabled && !c.browser.frontchannel_logout)
            .filter_map(|c| {
                let url = c.browser.backchannel_logout_url.clone()?;
                let mut events = json!({ crate::backchannel::EVENT: {} });
                if c.browser.backchannel_logout_revoke_offline {
                    events["revoke_offline_access"] = json!(true);
                }
                let mut claims = json!({
                    "iat": now, "exp": now + crate::backchannel::LIFETIME_S, "jti": new_id(), "iss": iss,
                    "aud": c.client_id, "sub": session.user_id, "typ": "Logout", "events": events,
                });
                if c.browser.backchannel_logout_session_required {
                    claims["sid"] = json!(session.id);
                }
                Some(Delivery { url, claims })
            })
            .collect()
    }

    /// An admin's "log the user out": every session, each with its back-channel logout.
    pub fn log_out_user(&mut self, user_id: &str, fallback_issuer: &str) {
        let sids: Vec<String> = self
            .user_sessions
            .get(user_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for sid in sids {
            self.log_out_session(&sid, fallback_issuer);
        }
    }

    /// The session if it is still alive under the realm's idle and max lifetimes; an expired one
    /// is removed, as Keycloak's expiration does.
    pub fn live_session(&mut self, sid: &str) -> Option<&mut Session> {
        let now = self.now_ms();
        let (idle, max) = (self.settings.sso_idle * 1000, self.settings.sso_max * 1000);
        let expired = {
            let s = self.sessions.get(sid)?;
            now > s.last_access_ms + idle || now > s.start_ms + max
        };
        if expired {
            self.end_session(sid);
            return None;
        }
        self.sessions.get_mut(sid)
    }

    pub fn session_expiry_s(&self, session: &Session) -> i64 {
        let idle = session.last_access_ms / 1000 + self.settings.sso_idle;
        let max = session.start_ms / 1000 + self.settings.sso_max;
        idle.min(max)
    }

    pub fn create_session(&mut self, user_id: &str, client: &Client, ip: &str) -> String {
        let now = self.now_ms();
        let sid = new_id();
        self.sessions.insert(
            sid.clone(),
            Session {
                id: sid.clone(),
                user_id: user_id.to_owned(),
                ip: ip.to_owned(),
                start_ms: now,
                last_access_ms: now,
                clients: BTreeMap::from([(client.id.clone(), client.client_id.clone())]),
                issuer: String::new(),
            },
        );
        self.user_sessions
            .entry(user_id.to_owned())
            .or_default()
            .insert(sid.clone());
        sid
    }
}
