//! The local gateway applies template.yaml's route throttling as API Gateway does. In a binary of
//! its own: a burst above a route's limit would throttle other tests sharing the stack.

#![allow(clippy::unwrap_used)]

use e2e::*;
use serde_json::json;

#[tokio::test]
async fn above_the_registration_routes_rate_the_gateway_answers_429() {
    stack_with_template_throttling();
    // RegisterThrottleBurstLimit (20) requests at once pass; the rest of a burst of 60 do not.
    let requests: Vec<_> = (0..60)
        .map(|_| tokio::spawn(async { post("/auth/register", json!({"username": "x"})).await }))
        .collect();
    let mut throttled = 0;
    for r in requests {
        let r = r.await.unwrap();
        if r.status == 429 {
            assert_eq!(r.body, json!({"message": "Too Many Requests"}));
            throttled += 1;
        } else {
            assert_eq!(
                r.status, 400,
                "admitted requests reach the function: {}",
                r.text
            );
        }
    }
    assert!(throttled >= 30, "{throttled} of 60 throttled");
}
