//! The run's one CloudWatch metrics line.

use serde_json::{json, Value};

use crate::outside::store::SyncRun;

/// One CloudWatch Embedded Metric Format line per run (Lambda sends stdout to CloudWatch Logs,
/// which turns it into metrics). Written by hand rather than with `metrics_cloudwatch_embedded`:
/// a run emits exactly one line whose dimensions (its final status) are known only at the end,
/// so a global metrics recorder and its flush would be more code and another dependency tree.
///
/// Besides the counts, `runs` is 1 for every run: by `Status` alone and by `Mode` and `Status`,
/// it is what template.yaml's alarms watch (a run failed, one needs approval, no full run
/// succeeded for two intervals).
pub fn metrics_line(run: &SyncRun) -> serde_json::Value {
    let mut counts = serde_json::to_value(&run.counts).unwrap_or_default();
    if let (Some(c), Ok(Value::Object(cost))) =
        (counts.as_object_mut(), serde_json::to_value(run.cost))
    {
        c.insert("runs".into(), json!(1));
        c.extend(cost);
    }
    let names: Vec<&String> = counts
        .as_object()
        .map(|c| c.keys().collect())
        .unwrap_or_default();
    let mut line = json!({
        "_aws": {
            "Timestamp": run.finished_at.unwrap_or(run.started_at),
            "CloudWatchMetrics": [{
                "Namespace": "KeycloakUserSync",
                "Dimensions": [["Mode", "Status"], ["Status"]],
                "Metrics": names.iter().map(|n| json!({"Name": n, "Unit": if n.as_str() == "durationMs" { "Milliseconds" } else { "Count" }})).collect::<Vec<_>>(),
            }],
        },
        "Mode": if run.was_full() { "full" } else { "incremental" },
        "Status": run.status,
        "RunId": run.run_id,
    });
    if let (Some(line), Some(counts)) = (line.as_object_mut(), counts.as_object()) {
        line.extend(counts.clone());
        // How far apart the clocks are, either way, without dimensions (declared only when read).
        if let Some(skew) = run.keycloak_clock_skew_ms {
            line.insert("keycloakClockSkewMs".into(), json!(skew.unsigned_abs()));
            if let Some(directives) = line["_aws"]["CloudWatchMetrics"].as_array_mut() {
                directives.push(json!({
                    "Namespace": "KeycloakUserSync",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "keycloakClockSkewMs", "Unit": "Milliseconds"}],
                }));
            }
        }
    }
    line
}

pub(super) fn emit_metrics(run: &SyncRun) {
    println!("{}", metrics_line(run));
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::outside::store::{RunCost, SyncCounts, SyncMode, SyncStatus};

    #[test]
    fn the_metrics_line_is_embedded_metric_format() {
        let run = SyncRun {
            run_id: "1".into(),
            mode: SyncMode::Incremental,
            escalated: true,
            status: SyncStatus::Succeeded,
            started_at: 1,
            finished_at: Some(2),
            counts: SyncCounts {
                created: 3,
                duration_ms: 10,
                ..Default::default()
            },
            plan: None,
            errors: Vec::new(),
            cost: RunCost {
                read_capacity_units: 2.5,
                write_capacity_units: 4.0,
                keycloak_requests: 7,
            },
            keycloak_clock_skew_ms: Some(-120_000),
            expires_at: crate::base::clock::EpochSecs(0),
        };
        let line = metrics_line(&run);
        assert_eq!(
            (line["Mode"].as_str(), line["Status"].as_str()),
            (Some("full"), Some("succeeded"))
        );
        assert_eq!(line["created"], 3);
        let metrics = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert!(metrics.contains(&json!({"Name": "durationMs", "Unit": "Milliseconds"})));
        assert!(metrics.contains(&json!({"Name": "created", "Unit": "Count"})));
        assert_eq!(
            (
                line["writeCapacityUnits"].clone(),
                line["keycloakRequests"].clone()
            ),
            (json!(4.0), json!(7))
        );
        // What the alarms count: one run, by status alone and by mode and status.
        assert!(metrics.contains(&json!({"Name": "runs", "Unit": "Count"})));
        assert_eq!(line["runs"], 1);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Mode", "Status"], ["Status"]])
        );
        // The clock skew alarm's metric: how far apart, either way, with no dimensions.
        assert_eq!(line["keycloakClockSkewMs"], 120_000);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][1],
            json!({"Namespace": "KeycloakUserSync", "Dimensions": [[]],
                   "Metrics": [{"Name": "keycloakClockSkewMs", "Unit": "Milliseconds"}]})
        );
    }

    #[test]
    fn a_skew_that_could_not_be_read_declares_no_metric() {
        let run = SyncRun {
            run_id: "1".into(),
            mode: SyncMode::Full,
            escalated: false,
            status: SyncStatus::Succeeded,
            started_at: 1,
            finished_at: Some(2),
            counts: SyncCounts::default(),
            plan: None,
            errors: Vec::new(),
            cost: RunCost::default(),
            keycloak_clock_skew_ms: None,
            expires_at: crate::base::clock::EpochSecs(0),
        };
        let line = metrics_line(&run);
        assert!(line.get("keycloakClockSkewMs").is_none());
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
            1
        );
    }
}
