//! Sign-in in a real browser against the local stack: `tests/browser/sign_in.test.mjs` drives
//! Debian's Chromium (playwright-core) through the demo app with Keycloak's own keycloak-js, the
//! emulator's login page and the API (the demo app's origin is the one the gateway's CORS and
//! the web client's redirect URIs name). Screenshots (the login page, the demo page, and any
//! failure) land in `target/browser-artifacts`.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use e2e::stack;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Run the browser suite's tests whose names match `pattern`.
fn browser_tests(pattern: &str) {
    let s = stack();
    let artifacts = format!("{ROOT}/target/browser-artifacts");
    let out = Command::new("node")
        .args(["--test", "--test-name-pattern", pattern, "sign_in.test.mjs"])
        .current_dir(format!("{ROOT}/tests/browser"))
        .env("API_URL", &s.gateway)
        .env("KEYCLOAK_URL", &s.keycloak)
        .env("REALM", &s.realm)
        .env("DEMO_URL", &s.demo)
        .env("ARTIFACTS", &artifacts)
        .output()
        .expect("node runs (make tools installs tests/browser's packages)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {artifacts}):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("# pass 1"), "exactly one test ran:\n{text}");
}

#[tokio::test]
async fn keycloak_js_signs_in_on_the_login_page_syncs_and_a_session_ended_in_keycloak_is_refused() {
    tokio::task::spawn_blocking(|| browser_tests("keycloak-js signs in"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_server_side_flow_signs_in_through_the_login_page_in_a_browser() {
    tokio::task::spawn_blocking(|| browser_tests("the server-side flow"))
        .await
        .unwrap();
}
