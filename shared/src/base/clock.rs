//! Time, in one place. An instant is epoch **milliseconds** (`now_ms`, and every `*_at` field of
//! the store and the API's records: what Keycloak's event times use), except where DynamoDB's TTL
//! or a JWT's `exp` wants epoch **seconds**: those instants are typed `EpochSecs`, so the two
//! cannot be mixed up. The ISO 8601 form is for answers. Durations and deadlines are `deadline`'s.

use serde::{Deserialize, Serialize};

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An instant in epoch seconds: the table's TTL attribute (`expires_at`), a JWT's `exp`, a
/// throttle window's bounds. Stored and serialised as the bare number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EpochSecs(pub i64);

impl EpochSecs {
    /// Now, to the second.
    pub fn now() -> Self {
        Self::of_ms(now_ms())
    }

    /// The second an instant in epoch milliseconds falls in.
    pub fn of_ms(ms: i64) -> Self {
        EpochSecs(ms.div_euclid(1000))
    }

    /// `secs` seconds later.
    pub fn after(self, secs: i64) -> Self {
        EpochSecs(self.0 + secs)
    }

    /// Seconds from `earlier` to this instant.
    pub fn secs_since(self, earlier: EpochSecs) -> i64 {
        self.0 - earlier.0
    }

    /// The same instant in epoch milliseconds.
    pub fn as_ms(self) -> i64 {
        self.0 * 1000
    }
}

impl std::fmt::Display for EpochSecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// ISO 8601 UTC with milliseconds, from epoch milliseconds.
pub fn iso8601(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_in_seconds_is_the_second_its_milliseconds_fall_in_and_is_stored_bare() {
        assert_eq!(
            EpochSecs::of_ms(1_700_000_000_999),
            EpochSecs(1_700_000_000)
        );
        assert_eq!(EpochSecs(10).after(5).as_ms(), 15_000);
        assert_eq!(EpochSecs(15).secs_since(EpochSecs(10)), 5);
        assert_eq!(serde_json::json!(EpochSecs(42)), serde_json::json!(42));
        assert_eq!(EpochSecs(42).to_string(), "42");
    }
}
