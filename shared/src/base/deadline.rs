//! The invocation's deadline. Every outbound call (Keycloak, DynamoDB, Secrets Manager) is bounded
//! by the time the invocation has left, minus a margin kept for answering and for compensation
//! (undoing a half-done registration or login), so a function always answers itself — a `503`
//! problem with `Retry-After` — instead of being cut off by the platform's timeout.
//!
//! The deadline travels as a task-local, set once per invocation by the HTTP edge (or the
//! bulk-sync handler): the clients beneath read it without every signature carrying it.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
    /// Set while compensating: calls may then use the time ordinary calls leave.
    static COMPENSATING: ();
}

/// Kept back from ordinary calls: time to compensate, and to answer.
pub const MARGIN: Duration = Duration::from_millis(2500);
/// Kept back from compensating calls: time to answer.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// The call did not finish before the invocation's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired;

/// Epoch milliseconds before this (2001) cannot be a deadline.
const PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;

/// The deadline of an invocation whose runtime says `deadline_ms`, for a request API Gateway took
/// at `received_ms` (epoch milliseconds, its `requestContext.timeEpoch`; `None` for an event that
/// is not a request). Lambda gives the epoch time by which the invocation must end, and that is
/// the deadline. `cargo lambda watch` sends a fixed `600000` instead; for local runs each function
/// declares its real timeout in `FUNCTION_TIMEOUT_SECONDS` (its Cargo.toml's
/// `[package.metadata.lambda.watch.env]`, kept equal to template.yaml's `Timeout` by a test),
/// counted from when the local gateway took the request: the gateway's own timeout (the
/// function's) runs from then, and a request may wait before the function sees it (for one of
/// `cargo lambda watch`'s instances to be free, or to start).
pub fn of_invocation(deadline_ms: u64, received_ms: Option<i64>) -> Option<Instant> {
    if deadline_ms >= PLAUSIBLE_EPOCH_MS {
        let left = i64::try_from(deadline_ms).ok()? - crate::base::clock::now_ms();
        return (left > 0).then(|| Instant::now() + Duration::from_millis(left as u64));
    }
    let declared = crate::base::config::LambdaEnv::get().declared_timeout_s?;
    Some(declared_deadline(
        declared,
        received_ms,
        crate::base::clock::now_ms(),
    ))
}

/// A local run's deadline: `declared_s` after the request was taken at `received_ms` (now when
/// unknown, or if the gateway's clock says a time to come); a request that waited longer than
/// that has none left.
fn declared_deadline(declared_s: u64, received_ms: Option<i64>, now_ms: i64) -> Instant {
    let declared = Duration::from_secs(declared_s);
    let waited = received_ms
        .and_then(|r| u64::try_from(now_ms.saturating_sub(r)).ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    Instant::now() + declared.saturating_sub(waited)
}

/// Run `f` (one invocation) under `deadline`.
pub async fn within<F: Future>(deadline: Option<Instant>, f: F) -> F::Output {
    match deadline {
        Some(d) => DEADLINE.scope(d, f).await,
        None => f.await,
    }
}

/// Time left before the deadline, if there is one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
}

/// Time left for an outbound call now: the time to the deadline minus the margin that applies
/// (none outside an invocation).
pub fn budget() -> Option<Duration> {
    let margin = if COMPENSATING.try_with(|_| ()).is_ok() {
        ANSWER_MARGIN
    } else {
        MARGIN
    };
    remaining().map(|left| left.saturating_sub(margin))
}

/// Run `f` (an undo of half-done work) allowed to use the margin ordinary calls keep.
pub async fn compensate<F: Future>(f: F) -> F::Output {
    COMPENSATING.scope((), f).await
}

/// `f` under the deadline (and the compensation, if any) of the task that calls this, for a task
/// of its own: a task-local does not follow `tokio::spawn`, and a spawned call would otherwise
/// run unbounded (the sync's crawl pages, digest segments and writes did).
pub fn carried<F: Future>(f: F) -> impl Future<Output = F::Output> {
    let deadline = DEADLINE.try_with(|d| *d).ok();
    let compensating = COMPENSATING.try_with(|_| ()).is_ok();
    async move {
        if compensating {
            within(deadline, compensate(f)).await
        } else {
            within(deadline, f).await
        }
    }
}

/// Extension for the futures of outbound calls.
pub trait Bounded: Future + Sized {
    /// Bounded by the invocation's deadline, less the margin kept for compensating and answering.
    fn within_deadline(self) -> impl Future<Output = Result<Self::Output, Expired>> {
        async move {
            match budget() {
                None => Ok(self.await),
                Some(b) => tokio::time::timeout(b, self).await.map_err(|_| Expired),
            }
        }
    }
}

impl<F: Future> Bounded for F {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spawned_task_keeps_the_deadline_only_when_carried() {
        let deadline = Instant::now() + MARGIN + Duration::from_millis(100);
        let slow = || tokio::time::sleep(Duration::from_secs(5)).within_deadline();
        let started = Instant::now();
        let carried = within(Some(deadline), async {
            tokio::spawn(carried(slow())).await.unwrap()
        })
        .await;
        assert_eq!(carried, Err(Expired));
        assert!(started.elapsed() < Duration::from_secs(1));
        let bare = within(Some(deadline), async {
            tokio::spawn(async { budget() }).await.unwrap()
        })
        .await;
        assert_eq!(bare, None, "a bare task has no deadline");
    }

    #[tokio::test]
    async fn a_carried_compensation_keeps_the_answer_margin_only() {
        let deadline = Instant::now() + MARGIN + Duration::from_secs(10);
        let left = within(
            Some(deadline),
            compensate(async { tokio::spawn(carried(async { budget() })).await.unwrap() }),
        )
        .await
        .unwrap();
        assert!(left > Duration::from_secs(10), "{left:?}");
    }

    #[tokio::test]
    async fn calls_are_cut_at_the_deadline_minus_the_margin() {
        let deadline = Instant::now() + MARGIN + Duration::from_millis(100);
        let slow = tokio::time::sleep(Duration::from_secs(5));
        let started = Instant::now();
        let r = within(Some(deadline), slow.within_deadline()).await;
        assert_eq!(r, Err(Expired));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn compensation_may_use_the_margin_ordinary_calls_leave() {
        let deadline = Instant::now() + MARGIN;
        let sleep = || tokio::time::sleep(Duration::from_millis(200)).within_deadline();
        assert_eq!(within(Some(deadline), sleep()).await, Err(Expired));
        let r = within(Some(deadline), compensate(sleep())).await;
        assert_eq!(r, Ok(()));
    }

    #[tokio::test]
    async fn without_a_deadline_nothing_is_cut() {
        let r = tokio::time::sleep(Duration::from_millis(10))
            .within_deadline()
            .await;
        assert_eq!(r, Ok(()));
        assert!(remaining().is_none());
    }

    #[test]
    fn a_deadline_in_the_past_is_no_deadline() {
        let now = crate::base::clock::now_ms();
        assert!(of_invocation(now as u64 - 1, None).is_none());
        let d = of_invocation(now as u64 + 10_000, Some(now - 60_000)).unwrap();
        assert!(d > Instant::now() + Duration::from_secs(9));
    }

    #[test]
    fn locally_the_time_a_request_waited_before_the_function_saw_it_counts_against_its_timeout() {
        let now = crate::base::clock::now_ms();
        let d = declared_deadline(10, Some(now - 4_000), now);
        let left = d.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(6), "{left:?}");
        assert!(left > Duration::from_secs(5), "{left:?}");
    }

    #[test]
    fn locally_a_request_that_waited_past_its_timeout_has_no_time_left() {
        let now = crate::base::clock::now_ms();
        let d = declared_deadline(10, Some(now - 12_000), now);
        assert!(d <= Instant::now());
    }

    #[test]
    fn locally_a_request_time_to_come_or_unknown_gives_the_whole_timeout() {
        let now = crate::base::clock::now_ms();
        for received in [Some(now + 60_000), None] {
            let left =
                declared_deadline(10, received, now).saturating_duration_since(Instant::now());
            assert!(
                left > Duration::from_millis(9_900),
                "{received:?}: {left:?}"
            );
        }
    }
}
