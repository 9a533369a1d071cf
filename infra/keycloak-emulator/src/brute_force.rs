//! Brute-force detection as Keycloak 26 does it (contract §7.1, `DefaultBruteForceProtector`):
//! failed password grants are counted per user; every `failureFactor`-th failure locks the user
//! for `waitIncrement × (failures / failureFactor)` seconds (at most `maxFailureWait`), and two
//! failures closer than `quickLoginCheckMilliSeconds` lock for `minimumQuickLoginWaitSeconds`.
//! A locked user's grant answers exactly like a wrong password; `GET /users/{id}` shows
//! `enabled: false` meanwhile. With `permanentLockout` the lockout disables the user for good
//! (attribute `disabledReason=permanentLockout`). A success, `PUT enabled:true` or the
//! attack-detection `DELETE` clears the failures.

use serde_json::{json, Value};

/// Set on a user that a permanent brute-force lockout disabled.
pub const PERMANENT_LOCKOUT_ATTRIBUTE: &str = "disabledReason";

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub protected: bool,
    pub failure_factor: i64,
    pub wait_increment_s: i64,
    pub max_failure_wait_s: i64,
    pub quick_login_check_ms: i64,
    pub minimum_quick_login_wait_s: i64,
    pub max_delta_time_s: i64,
    pub permanent_lockout: bool,
    pub max_temporary_lockouts: i64,
}

impl Settings {
    /// From a realm export, with Keycloak's defaults (`RealmManager`).
    pub fn from_export(source: &Value) -> Self {
        let int = |k: &str, default: i64| source.get(k).and_then(Value::as_i64).unwrap_or(default);
        let flag = |k: &str| source.get(k).and_then(Value::as_bool).unwrap_or(false);
        Settings {
            protected: flag("bruteForceProtected"),
            failure_factor: int("failureFactor", 30).max(1),
            wait_increment_s: int("waitIncrementSeconds", 60),
            max_failure_wait_s: int("maxFailureWaitSeconds", 900),
            quick_login_check_ms: int("quickLoginCheckMilliSeconds", 1000),
            minimum_quick_login_wait_s: int("minimumQuickLoginWaitSeconds", 60),
            max_delta_time_s: int("maxDeltaTimeSeconds", 43_200),
            permanent_lockout: flag("permanentLockout"),
            max_temporary_lockouts: int("maxTemporaryLockouts", 0),
        }
    }
}

/// A user's login failures (Keycloak's `UserLoginFailureModel`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failures {
    pub num_failures: i64,
    pub num_temporary_lockouts: i64,
    pub last_failure_ms: i64,
    pub last_ip: String,
    /// Epoch seconds before which the user may not log in.
    pub not_before_s: i64,
}

/// What a failure did to the user.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Counted,
    TemporarilyLocked,
    PermanentlyLocked,
}

impl Failures {
    pub fn locked(&self, now_ms: i64) -> bool {
        now_ms / 1000 < self.not_before_s
    }

    /// Record a failed login at `now_ms` from `ip`.
    pub fn fail(&mut self, s: &Settings, now_ms: i64, ip: &str) -> Verdict {
        let delta = if self.last_failure_ms > 0 {
            now_ms - self.last_failure_ms
        } else {
            0
        };
        if delta > s.max_delta_time_s * 1000 {
            self.num_failures = 0;
        }
        self.num_failures += 1;
        self.last_failure_ms = now_ms;
        self.last_ip = ip.to_owned();
        let permanent_only = s.permanent_lockout && s.max_temporary_lockouts == 0;
        if !permanent_only && delta > 0 && delta < s.quick_login_check_ms {
            self.not_before_s = now_ms / 1000 + s.minimum_quick_login_wait_s;
            return Verdict::TemporarilyLocked;
        }
        if self.num_failures % s.failure_factor != 0 {
            return Verdict::Counted;
        }
        if s.permanent_lockout
            && (s.max_temporary_lockouts == 0
                || self.num_temporary_lockouts >= s.max_temporary_lockouts)
        {
            return Verdict::PermanentlyLocked;
        }
        let wait =
            (s.wait_increment_s * (self.num_failures / s.failure_factor)).min(s.max_failure_wait_s);
        self.not_before_s = now_ms / 1000 + wait;
        self.num_temporary_lockouts += 1;
        Verdict::TemporarilyLocked
    }

    /// `GET /attack-detection/brute-force/users/{id}`.
    pub fn status(&self, now_ms: i64) -> Value {
        json!({
            "numFailures": self.num_failures,
            "numTemporaryLockouts": self.num_temporary_lockouts,
            "disabled": self.locked(now_ms),
            "lastIPFailure": if self.last_ip.is_empty() { "n/a" } else { self.last_ip.as_str() },
            "lastFailure": self.last_failure_ms,
            "failedLoginNotBefore": self.not_before_s,
        })
    }
}

/// The status of a user with no failures (or when detection is off).
pub fn clean_status() -> Value {
    Failures::default().status(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::from_export(&json!({"bruteForceProtected": true, "failureFactor": 3,
            "waitIncrementSeconds": 60, "maxFailureWaitSeconds": 120, "quickLoginCheckMilliSeconds": 1000}))
    }

    #[test]
    fn every_failure_factor_th_failure_locks_for_a_growing_wait() {
        let (s, mut f) = (settings(), Failures::default());
        let mut t = 1_000_000_000_000;
        assert_eq!(f.fail(&s, t, "ip"), Verdict::Counted);
        t += 5_000;
        assert_eq!(f.fail(&s, t, "ip"), Verdict::Counted);
        t += 5_000;
        assert_eq!(f.fail(&s, t, "ip"), Verdict::TemporarilyLocked);
        assert!(f.locked(t) && f.locked(t + 59_000) && !f.locked(t + 61_000));
        for _ in 0..3 {
            t += 61_000;
            f.fail(&s, t, "ip");
        }
        assert_eq!(f.not_before_s, t / 1000 + 120, "2 × 60 s, capped at 120");
    }

    #[test]
    fn two_quick_failures_lock_for_the_minimum_wait() {
        let (s, mut f) = (settings(), Failures::default());
        f.fail(&s, 1_000_000_000_000, "ip");
        assert_eq!(
            f.fail(&s, 1_000_000_000_200, "ip"),
            Verdict::TemporarilyLocked
        );
        assert_eq!(f.not_before_s, 1_000_000_000 + 60);
    }

    #[test]
    fn permanent_lockout_replaces_the_temporary_one() {
        let mut s = settings();
        s.permanent_lockout = true;
        let mut f = Failures::default();
        let mut t = 1_000_000_000_000;
        let mut last = Verdict::Counted;
        for _ in 0..3 {
            t += 5_000;
            last = f.fail(&s, t, "ip");
        }
        assert_eq!(last, Verdict::PermanentlyLocked);
    }
}
