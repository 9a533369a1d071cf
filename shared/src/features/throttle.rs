//! Abuse limits of the public auth routes, held by the application itself so they hold even where
//! Keycloak's own brute-force detection is off: login attempts per account (by username or by
//! email, one budget) and per source IP, registrations per source IP, each counted in DynamoDB
//! per fixed window. Past a limit the route
//! answers `429 rate_limited` with `Retry-After` — without calling Keycloak, for existing and
//! unknown usernames alike.
//!
//! A login attempt is counted *before* Keycloak is asked (an atomic `ADD`), so a burst of parallel
//! guesses cannot slip past the limit; a success then clears the username's count and takes itself
//! back from the IP's, and an attempt Keycloak could not judge (an outage) is taken back from both.

use crate::base::clock::EpochSecs;
use crate::base::config::ThrottleLimits;
use crate::error::Error;
use crate::outside::store::{token_hash, AttemptWindow, Store};
use crate::services::Services;

/// What is being counted, over which window.
#[derive(Clone, Copy)]
struct Limit {
    kind: &'static str,
    max: u64,
    window_s: i64,
}

impl Limit {
    fn window(self, key: &str, now: EpochSecs) -> AttemptWindow {
        let start = EpochSecs(now.0 - now.0.rem_euclid(self.window_s));
        AttemptWindow {
            subject: format!("THROTTLE#{}#{key}", self.kind),
            start,
            end: start.after(self.window_s),
        }
    }
}

fn login_user(l: &ThrottleLimits) -> Limit {
    Limit {
        kind: "login-user",
        max: l.login_failures_per_user,
        window_s: l.login_window_s,
    }
}

fn login_ip(l: &ThrottleLimits) -> Limit {
    Limit {
        kind: "login-ip",
        max: l.login_failures_per_ip,
        window_s: l.login_window_s,
    }
}

fn registration_ip(l: &ThrottleLimits) -> Limit {
    Limit {
        kind: "register-ip",
        max: l.registrations_per_ip,
        window_s: l.register_window_s,
    }
}

/// The counter key of a username: its hash (as Keycloak would match it: trimmed, lowercase), so
/// the table holds no usernames of people who never got in.
fn username_key(username: &str) -> String {
    token_hash(&username.trim().to_lowercase())[..32].to_owned()
}

/// The counter key of a source address: its hash, so the table holds no one's address.
fn ip_key(ip: &str) -> String {
    token_hash(&format!("ip|{ip}"))[..32].to_owned()
}

/// Count an attempt; past the limit, the refusal to answer.
async fn count(
    store: &Store,
    limit: Limit,
    window: &AttemptWindow,
    now: EpochSecs,
) -> Result<(), Error> {
    let attempts = store.count_attempt(window).await?;
    if attempts > limit.max {
        tracing::warn!(
            subject = limit.kind,
            attempts,
            limit = limit.max,
            "throttled"
        );
        return Err(Error::RateLimited {
            retry_after: window.end.secs_since(now).max(1) as u64,
        });
    }
    Ok(())
}

/// A login attempt counted against its username and source IP.
pub struct LoginAttempt<'a> {
    store: &'a Store,
    user: AttemptWindow,
    ip: Option<AttemptWindow>,
}

/// The account a login identifier names, as Keycloak resolves it (contract §13): with `@`, the
/// account with that email if there is one, else the identifier as a username. Guesses by
/// username and by email of one account thus share one budget. The lookup runs for unknown
/// identifiers too, so the answer does not tell them apart; a failed lookup refuses the login.
async fn account_of(services: &Services, identifier: &str) -> Result<String, Error> {
    let identifier = identifier.trim().to_lowercase();
    if !identifier.contains('@') {
        return Ok(identifier);
    }
    let by_email = services.store.username_of_email(&identifier).await?;
    Ok(by_email.unwrap_or(identifier))
}

/// Count a login attempt, or refuse it (429) when its account or source IP is over the limit.
pub async fn admit_login<'a>(
    services: &'a Services,
    identifier: &str,
    ip: Option<&str>,
) -> Result<LoginAttempt<'a>, Error> {
    let limits = &services.config.throttle;
    let account = account_of(services, identifier).await?;
    let now = EpochSecs::now();
    let attempt = LoginAttempt {
        store: &services.store,
        user: login_user(limits).window(&username_key(&account), now),
        ip: ip.map(|ip| login_ip(limits).window(&ip_key(ip), now)),
    };
    let by_user = count(&services.store, login_user(limits), &attempt.user, now);
    let by_ip = async {
        match &attempt.ip {
            Some(w) => count(&services.store, login_ip(limits), w, now).await,
            None => Ok(()),
        }
    };
    let (user, ip) = tokio::join!(by_user, by_ip);
    user.and(ip)?;
    Ok(attempt)
}

impl LoginAttempt<'_> {
    /// The password was right: the username starts over; the IP's count forgets this attempt.
    pub async fn succeeded(&self) {
        let (user, ip) = tokio::join!(self.store.clear_attempts(&self.user), self.uncount_ip());
        if let Err(e) = user.and(ip) {
            tracing::warn!(error = %e, "could not reset the login counters");
        }
    }

    /// Keycloak could not judge the attempt (an outage): it counts against nobody.
    pub async fn inconclusive(&self) {
        let (user, ip) = tokio::join!(self.store.uncount_attempt(&self.user), self.uncount_ip());
        if let Err(e) = user.and(ip) {
            tracing::warn!(error = %e, "could not take back a login attempt");
        }
    }

    async fn uncount_ip(&self) -> Result<(), crate::outside::store::StoreError> {
        match &self.ip {
            Some(w) => self.store.uncount_attempt(w).await,
            None => Ok(()),
        }
    }
}

/// Count a registration from `ip`, or refuse it (429) past the limit.
pub async fn admit_registration(services: &Services, ip: Option<&str>) -> Result<(), Error> {
    let Some(ip) = ip else {
        return Ok(());
    };
    let limit = registration_ip(&services.config.throttle);
    let now = EpochSecs::now();
    count(&services.store, limit, &limit.window(&ip_key(ip), now), now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_and_keyed_by_subject() {
        let limit = Limit {
            kind: "login-ip",
            max: 10,
            window_s: 900,
        };
        let w = limit.window("10.0.0.1", EpochSecs(1_800_000_123));
        assert_eq!(w.subject, "THROTTLE#login-ip#10.0.0.1");
        // 1 800 000 000 is a multiple of 900: the window starts there.
        assert_eq!(
            (w.start, w.end),
            (EpochSecs(1_800_000_000), EpochSecs(1_800_000_900))
        );
    }

    #[test]
    fn addresses_are_counted_by_a_hash_and_never_stored() {
        assert_eq!(ip_key("10.0.0.1"), ip_key("10.0.0.1"));
        assert_ne!(ip_key("10.0.0.1"), ip_key("10.0.0.2"));
        assert!(!ip_key("10.0.0.1").contains("10.0"));
    }

    #[test]
    fn usernames_are_counted_as_keycloak_matches_them_and_never_stored() {
        assert_eq!(username_key(" Alice "), username_key("alice"));
        assert!(!username_key("alice").contains("alice"));
    }
}
