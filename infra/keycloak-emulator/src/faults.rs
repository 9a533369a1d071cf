//! Fault and rate-limit rules on the emulator's requests (`/_emulator/faults`): which requests a
//! rule matches, and what it does to them. Turning an outcome into an answer is the router's.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

/// A rule applied to matching requests: before Keycloak's logic runs (the default), or, with
/// `after`, once it has run, to the answer alone — the request is done and its answer is late,
/// replaced or lost, as a real Keycloak's answer is when a proxy or the network fails after it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default)]
    pub id: String,
    /// HTTP method to match; any when absent.
    pub method: Option<String>,
    /// Path glob, `*` matching any run of characters (slashes included).
    pub path: String,
    /// Only requests whose body contains this text (e.g. `username=dave` on the token endpoint).
    pub body_contains: Option<String>,
    /// Only requests whose raw query string contains this text (e.g. `first=100&`).
    pub query_contains: Option<String>,
    /// Status to answer with; absent means "only add latency".
    pub status: Option<u16>,
    /// JSON body of the fault response (default: a Keycloak-style error for the status).
    pub body: Option<Value>,
    /// How many matching requests the rule affects; unlimited when absent.
    pub times: Option<u64>,
    #[serde(default)]
    pub latency_ms: u64,
    /// Rate limit: requests per second let through before the rule answers (429 by default).
    pub per_second: Option<u64>,
    /// `Retry-After` seconds on the fault response.
    pub retry_after: Option<u64>,
    /// Run the request first, then delay (`latencyMs`), replace (`status`) or lose (`drop`) its
    /// answer.
    #[serde(default)]
    pub after: bool,
    /// With `after`: never answer (the connection stays open until the caller gives up).
    #[serde(default)]
    pub drop: bool,
    #[serde(default)]
    pub hits: u64,
    #[serde(skip)]
    window: Option<(Instant, u64)>,
}

pub enum FaultOutcome {
    None,
    Delay(Duration),
    /// Answer with this status and body (and `Retry-After`), after the delay.
    Respond(FaultAnswer),
    /// Handle the request, then: delay the answer, replace it (`answer`), or lose it (`drop`).
    After {
        delay: Duration,
        answer: Option<FaultAnswer>,
        drop: bool,
    },
}

/// The answer a fault gives in place of Keycloak's.
pub struct FaultAnswer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
    pub delay: Duration,
}

fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The request as a rule reads it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    pub raw_query: &'a str,
}

pub fn apply_faults(rules: &Mutex<Vec<FaultRule>>, req: &Request<'_>) -> FaultOutcome {
    let mut rules = rules.lock();
    let Some(idx) = rules.iter().position(|r| {
        r.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(req.method))
            && glob(&r.path, req.path)
            && r.body_contains
                .as_deref()
                .is_none_or(|needle| String::from_utf8_lossy(req.body).contains(needle))
            && r.query_contains
                .as_deref()
                .is_none_or(|needle| req.raw_query.contains(needle))
    }) else {
        return FaultOutcome::None;
    };
    let rule = &mut rules[idx];
    if let Some(limit) = rule.per_second {
        let now = Instant::now();
        let (start, count) = match rule.window {
            Some((s, c)) if now.duration_since(s) < Duration::from_secs(1) => (s, c + 1),
            _ => (now, 1),
        };
        rule.window = Some((start, count));
        if count <= limit {
            return FaultOutcome::None;
        }
    }
    rule.hits += 1;
    let delay = Duration::from_millis(rule.latency_ms);
    let answer = (rule.status.is_some() || rule.per_second.is_some()).then(|| {
        let status = rule.status.unwrap_or(429);
        FaultAnswer {
            status,
            body: rule.body.clone().unwrap_or_else(|| default_body(status)),
            retry_after: rule.retry_after,
            delay,
        }
    });
    let outcome = match (rule.after, answer) {
        (true, answer) => FaultOutcome::After {
            delay,
            answer,
            drop: rule.drop,
        },
        (false, Some(answer)) => FaultOutcome::Respond(answer),
        (false, None) => FaultOutcome::Delay(delay),
    };
    if let Some(t) = rule.times.as_mut() {
        *t = t.saturating_sub(1);
        if *t == 0 {
            rules.remove(idx);
        }
    }
    outcome
}

fn default_body(status: u16) -> Value {
    match status {
        429 => json!({"error": "too_many_requests"}),
        500..=599 => {
            json!({"error": "unknown_error", "error_description": "For more on this error consult the server log."})
        }
        s => json!({"error": format!("HTTP {s}")}),
    }
}

impl serde::Serialize for FaultRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({
            "id": self.id, "method": self.method, "path": self.path, "bodyContains": self.body_contains, "queryContains": self.query_contains, "status": self.status,
            "body": self.body, "times": self.times, "latencyMs": self.latency_ms,
            "perSecond": self.per_second, "retryAfter": self.retry_after, "after": self.after,
            "drop": self.drop, "hits": self.hits,
        })
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_stars_across_slashes() {
        assert!(glob("/admin/realms/*/users", "/admin/realms/t1/users"));
        assert!(glob("*/users*", "/admin/realms/t1/users/abc"));
        assert!(!glob("/admin/realms/*/users", "/admin/realms/t1/users/abc"));
        assert!(glob(
            "/realms/t1/protocol/openid-connect/token",
            "/realms/t1/protocol/openid-connect/token"
        ));
    }
}
