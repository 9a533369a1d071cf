//! The user search of `GET /users` and `GET /users/count` (contract §4.3, §4.4): `search` (prefix,
//! `*` infix, `"exact"`, `id:`), field and `q=` attribute filters, `exact`, `enabled`,
//! `emailVerified`, `briefRepresentation`, paging in username order.

use axum::response::Response;
use serde_json::json;

use super::caller::{paging, require, Caller};
use crate::http::{ok_json, Req};
use crate::realm::{Realm, User};

enum Term {
    Prefix(String),
    Infix(String),
    Exact(String),
}

pub(super) struct UserFilter {
    search: Option<Vec<Term>>,
    ids: Option<Vec<String>>,
    fields: Vec<(&'static str, String)>,
    attributes: Vec<(String, String)>,
    fields_exact: bool,
    attributes_exact: bool,
    enabled: Option<bool>,
    email_verified: Option<bool>,
    include_service_accounts: bool,
}

impl UserFilter {
    pub(super) fn from_req(req: &Req) -> Result<Self, Response> {
        let exact = req.bool_param("exact");
        let enabled = req.bool_param("enabled");
        let email_verified = req.bool_param("emailVerified");
        if let Some(search) = req.param("search") {
            let search = search.trim();
            if let Some(ids) = search.strip_prefix("id:") {
                return Ok(UserFilter {
                    search: None,
                    ids: Some(ids.split_whitespace().map(str::to_owned).collect()),
                    fields: vec![],
                    attributes: vec![],
                    fields_exact: true,
                    attributes_exact: true,
                    enabled,
                    email_verified,
                    include_service_accounts: false,
                });
            }
            let terms = search
                .split_whitespace()
                .map(|t| {
                    let t = t.to_lowercase();
                    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
                        Term::Exact(t[1..t.len() - 1].to_owned())
                    } else if t.len() >= 2 && t.starts_with('*') && t.ends_with('*') {
                        Term::Infix(t[1..t.len() - 1].to_owned())
                    } else {
                        Term::Prefix(t.trim_end_matches('*').to_owned())
                    }
                })
                .collect();
            return Ok(UserFilter {
                search: Some(terms),
                ids: None,
                fields: vec![],
                attributes: vec![],
                fields_exact: false,
                attributes_exact: true,
                enabled,
                email_verified,
                include_service_accounts: false,
            });
        }
        let mut fields = Vec::new();
        for name in ["username", "email", "firstName", "lastName"] {
            if let Some(v) = req.param(name) {
                fields.push((name, v.to_lowercase()));
            }
        }
        let mut attributes = Vec::new();
        if let Some(q) = req.param("q") {
            for (k, v) in parse_q(q) {
                attributes.push((k, v.to_lowercase()));
            }
        }
        let any_criteria = !fields.is_empty()
            || !attributes.is_empty()
            || enabled.is_some()
            || email_verified.is_some()
            || exact.is_some();
        Ok(UserFilter {
            search: None,
            ids: None,
            fields,
            attributes,
            // The name fields are substring matches unless exact=true; `q` is exact unless
            // exact=false (26.0.8+/26.1+).
            fields_exact: exact.unwrap_or(false),
            attributes_exact: exact.unwrap_or(true),
            enabled,
            email_verified,
            include_service_accounts: any_criteria,
        })
    }

    /// No criteria at all: every user but the service accounts.
    pub(super) fn is_unfiltered(&self) -> bool {
        self.search.is_none()
            && self.ids.is_none()
            && self.fields.is_empty()
            && self.attributes.is_empty()
            && self.enabled.is_none()
            && self.email_verified.is_none()
            && !self.include_service_accounts
    }

    /// The users this filter matches, in username order. A lookup by id or by exact username
    /// reads those users alone, as Keycloak's indexed columns let its query do; every other
    /// filter walks the realm's users (at a million users a walk costs ~0.3 s).
    pub(super) fn matching<'r>(
        &'r self,
        realm: &'r Realm,
    ) -> Box<dyn Iterator<Item = &'r User> + 'r> {
        let named: Option<Vec<&str>> = match &self.ids {
            Some(ids) => {
                let mut names: Vec<&str> = ids
                    .iter()
                    .filter_map(|id| realm.ids.get(id))
                    .map(String::as_str)
                    .collect();
                names.sort_unstable();
                names.dedup();
                Some(names)
            }
            None if self.fields_exact => self
                .fields
                .iter()
                .find(|(name, _)| *name == "username")
                .map(|(_, wanted)| vec![wanted.as_str()]),
            None => None,
        };
        match named {
            Some(names) => Box::new(
                names
                    .into_iter()
                    .filter_map(|name| realm.users.get(name))
                    .filter(|u| self.matches(u)),
            ),
            None => Box::new(realm.users.values().filter(|u| self.matches(u))),
        }
    }

    fn matches(&self, u: &User) -> bool {
        if self.enabled.is_some_and(|e| e != u.enabled)
            || self.email_verified.is_some_and(|e| e != u.email_verified)
        {
            return false;
        }
        if u.service_account_client_id.is_some() && !self.include_service_accounts {
            return false;
        }
        if let Some(ids) = &self.ids {
            return ids.contains(&u.id);
        }
        let lower = |x: &Option<String>| x.as_deref().map(str::to_lowercase);
        if let Some(terms) = &self.search {
            let values = [
                Some(u.username.clone()),
                lower(&u.email),
                lower(&u.first_name),
                lower(&u.last_name),
            ];
            return terms.iter().all(|t| {
                values.iter().flatten().any(|v| match t {
                    Term::Prefix(p) => v.starts_with(p.as_str()),
                    Term::Infix(p) => v.contains(p.as_str()),
                    Term::Exact(p) => v == p,
                })
            });
        }
        for (name, wanted) in &self.fields {
            let value = match *name {
                "username" => Some(u.username.clone()),
                "email" => lower(&u.email),
                "firstName" => lower(&u.first_name),
                _ => lower(&u.last_name),
            };
            let ok = value.is_some_and(|v| {
                if self.fields_exact {
                    v == *wanted
                } else {
                    v.contains(wanted.as_str())
                }
            });
            if !ok {
                return false;
            }
        }
        for (key, wanted) in &self.attributes {
            let ok = u.attributes.get(key).is_some_and(|vals| {
                vals.iter().any(|v| {
                    let v = v.to_lowercase();
                    if self.attributes_exact {
                        v == *wanted
                    } else {
                        v.contains(wanted.as_str())
                    }
                })
            });
            if !ok {
                return false;
            }
        }
        true
    }
}

/// `q=key1:value1 key2:"value with spaces"`.
fn parse_q(q: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = q.trim();
    while let Some((key, after)) = rest.split_once(':') {
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v, n),
                None => (quoted, ""),
            }
        } else {
            match after.split_once(' ') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.push((key.trim().to_owned(), value.to_owned()));
        rest = next.trim_start();
    }
    out
}

pub(super) fn list_users(realm: &Realm, req: &Req, caller: &Caller) -> Result<Response, Response> {
    require(caller.query_users())?;
    let filter = UserFilter::from_req(req)?;
    let (first, max) = paging(req, 100);
    if !caller.view_users() || max == 0 {
        return Ok(ok_json(&json!([])));
    }
    let brief = req.bool_param("briefRepresentation").unwrap_or(false);
    let manage = caller.manage_users();
    let mut body = Vec::with_capacity(max.min(1000) * 400);
    body.push(b'[');
    let mut write = |i: usize, u: &User| {
        if i > 0 {
            body.push(b',');
        }
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &realm.user_view(u, brief, manage));
    };
    if filter.is_unfiltered() {
        let order = realm.listing_order();
        let end = first.saturating_add(max).min(order.len());
        for (i, name) in order.get(first..end).unwrap_or(&[]).iter().enumerate() {
            if let Some(u) = realm.users.get(name) {
                write(i, u);
            }
        }
    } else {
        for (i, u) in filter.matching(realm).skip(first).take(max).enumerate() {
            write(i, u);
        }
    }
    body.push(b']');
    let mut resp = Response::new(axum::body::Body::from(body));
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// User writes

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_queries_split_on_spaces_and_honour_quotes() {
        assert_eq!(
            parse_q(r#"dept:eng title:"Head of QA""#),
            vec![
                ("dept".to_owned(), "eng".to_owned()),
                ("title".to_owned(), "Head of QA".to_owned())
            ]
        );
    }
}
