//! What starts a run, and its time budget: when it stops writing and hands over.

use serde::{Deserialize, Serialize};

use crate::base::clock::now_ms;
use crate::outside::store::{SyncRun, SyncStatus};

pub use crate::outside::store::SyncMode as Mode;

/// What starts a run: a schedule (`{"mode": "full"}`), the admin API (`{mode, dryRun, force,
/// runId}`) or a run handing over to its follow-up (`start::start_run` sends it).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    pub mode: Mode,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When to stop writing and hand over to a follow-up invocation (epoch ms); see
    /// `stop_writing_at`.
    #[serde(skip)]
    pub deadline_ms: Option<i64>,
}

/// The hand-over time for an invocation that must be done by `deadline` (epoch ms): a minute
/// before it, or a fifth of the time left if that is shorter, to record the run and hand over.
pub fn stop_writing_at(deadline: i64, now: i64) -> i64 {
    let left = (deadline - now).max(0);
    deadline - (left / 5).min(60_000)
}

pub(super) fn out_of_time(req: &SyncRequest) -> bool {
    req.deadline_ms.is_some_and(|d| now_ms() > d)
}

/// Out of time: nobody is deactivated in a run that did not finish; the follow-up goes on.
pub(super) fn hand_over(run: &mut SyncRun) {
    run.status = SyncStatus::Continued;
    run.errors
        .push("time budget reached: continuing in a follow-up invocation".into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stops_writing_a_minute_before_its_deadline_or_at_a_fifth_of_the_time_left() {
        let deadline = 1_000_000_000;
        assert_eq!(
            stop_writing_at(deadline, deadline - 900_000),
            deadline - 60_000
        );
        assert_eq!(
            stop_writing_at(deadline, deadline - 100_000),
            deadline - 20_000
        );
        assert_eq!(stop_writing_at(deadline, deadline + 5), deadline);
    }

    #[test]
    fn a_follow_up_names_its_run_and_its_flags_but_never_its_deadline() {
        let req = SyncRequest {
            mode: Mode::Full,
            dry_run: false,
            force: true,
            run_id: Some("r-1".into()),
            deadline_ms: Some(5),
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"mode": "full", "dryRun": false, "force": true, "runId": "r-1"})
        );
    }

    #[test]
    fn only_a_run_with_a_deadline_behind_it_is_out_of_time() {
        let req = |deadline_ms| SyncRequest {
            mode: Mode::Incremental,
            dry_run: false,
            force: false,
            run_id: None,
            deadline_ms,
        };
        assert!(!out_of_time(&req(None)));
        assert!(out_of_time(&req(Some(0))));
        assert!(!out_of_time(&req(Some(now_ms() + 60_000))));
    }
}
