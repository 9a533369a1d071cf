//! How fast is the emulator? Serves it on ONE worker thread (one core), loads a 100 000-user realm,
//! and measures from a client on another thread:
//! - server time (Server-Timing) and round trip of listing a page of 100 users, first and last page;
//! - admin GET /users/{id} throughput with 32 connections;
//! - password-grant throughput (RS256 signing on every call).
//!
//! `cargo run --release -p keycloak-emulator --example loadtest` (or `make bench-emulator`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool, not a request path

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const USERS: usize = 100_000;
const SECRET: &str = "dev-only-user-sync-secret-not-for-production";

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn start_server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let realm = concat!(env!("CARGO_MANIFEST_DIR"), "/../keycloak/realm.json");
            let emu = keycloak_emulator::Emulator::from_file(realm).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            keycloak_emulator::serve(listener, emu, std::future::pending())
                .await
                .unwrap();
        });
    });
    format!("http://127.0.0.1:{}", rx.recv().unwrap())
}

async fn throughput<F, Fut>(connections: usize, duration: Duration, call: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (call, done, failed) = (call.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c as u64;
            while Instant::now() < deadline {
                if !call(i).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += connections as u64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "some requests failed");
    done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let base = start_server();
    let http = reqwest::Client::new();
    let realm = "bench";
    http.post(format!("{base}/_emulator/realms"))
        .json(&json!({"name": realm, "from": "demo"}))
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let r = http
        .post(format!("{base}/_emulator/realms/{realm}/users/bulk"))
        .json(
            &json!({"count": USERS, "prefix": "load", "password": "load-password-1",
                      "attributes": {"organization": ["Acme"], "department": ["Ops"]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let bulk = started.elapsed();
    let token: Value = http
        .post(format!(
            "{base}/realms/{realm}/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "user-sync"),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| bulk-create {USERS} users | {:.2} s |",
        bulk.as_secs_f64()
    );
    for (label, first) in [("first page", 0), ("last page", USERS - 100)] {
        let mut server = Vec::new();
        let mut round = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let r = http
                .get(format!("{base}/admin/realms/{realm}/users?first={first}&max=100&briefRepresentation=false"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let timing = r.headers()["server-timing"].to_str().unwrap().to_owned();
            let body: Value = r.json().await.unwrap();
            round.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(body.as_array().unwrap().len(), 100);
            server.push(
                timing
                    .trim_start_matches("app;dur=")
                    .parse::<f64>()
                    .unwrap(),
            );
        }
        println!(
            "| list 100 users, {label} (first={first}) of {USERS}: server time p50 / p99 | {:.3} ms / {:.3} ms |",
            percentile(&mut server, 0.5),
            percentile(&mut server, 0.99)
        );
        println!(
            "| same, round trip incl. JSON parsing p50 / p99 | {:.3} ms / {:.3} ms |",
            percentile(&mut round, 0.5),
            percentile(&mut round, 0.99)
        );
    }
    let ids: Vec<String> = http
        .get(format!(
            "{base}/admin/realms/{realm}/users?first=0&max=1000&briefRepresentation=true"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    let ids = Arc::new(ids);
    let (h, b, t) = (http.clone(), base.clone(), token.clone());
    let rps = throughput(32, Duration::from_secs(5), move |i| {
        let url = format!(
            "{b}/admin/realms/{realm}/users/{}",
            ids[i as usize % ids.len()]
        );
        let req = h.get(url).bearer_auth(t.clone());
        async move { req.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    println!("| admin GET /users/{{id}} with bearer check, 32 connections | {rps:.0} req/s |");
    let (h, b) = (http.clone(), base.clone());
    let rps = throughput(16, Duration::from_secs(5), move |i| {
        let username = format!("load{:06}", i % USERS as u64);
        let req = h
            .post(format!("{b}/realms/{realm}/protocol/openid-connect/token"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "user-sync"),
                ("client_secret", SECRET),
                ("username", username.as_str()),
                ("password", "load-password-1"),
            ]);
        async move { req.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    println!(
        "| password grant (new session, RS256 + HS512 signing), 16 connections | {rps:.0} req/s |"
    );
}
