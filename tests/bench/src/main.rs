//! `make bench`: the bulk-sync benchmark. moto and the Keycloak emulator (release) run as their
//! own processes, as in `make dev`; the sync engine runs here, so this process's peak RSS is the
//! sync's. For each realm size: the I/O floor (every user paged out of Keycloak, the same items
//! batch-written, no logic), then the first full sync, a resync with no change, and a resync with
//! 1 % of the users changed. Prints one Markdown table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool, not a request path

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use user_sync::keycloak::{ClientCredentials, ClientSecret, KeycloakClient, RetryPolicy};
use user_sync::secrets::Secret;
use user_sync::services::Services;
use user_sync::store::{KeycloakFields, Store, User};
use user_sync::sync::{run, Mode, SyncRequest};
use user_sync::Config;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const ADMIN_SECRET: &str = "dev-only-user-sync-admin-secret-not-for-production";

/// Peak resident set since the last reset, in MiB (Linux: VmHWM).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

// The child is returned to the caller, which stops and reaps it; if it dies early we abort.
#[allow(clippy::zombie_processes)]
fn spawn_with_port_line(mut cmd: Command, prefix: &str) -> (std::process::Child, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start process");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "process ended early"
        );
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let value = rest.split_whitespace().next().unwrap().to_owned();
            std::thread::spawn(move || for _ in reader.lines() {});
            return (child, value);
        }
    }
}

struct Row {
    scenario: String,
    secs: f64,
    users_per_sec: f64,
    writes: u64,
    kc_requests: u64,
    /// DynamoDB read and write capacity units as reported (moto: a fixed number per call).
    rcu: f64,
    wcu: f64,
    peak_rss: f64,
    ratio: Option<f64>,
}

async fn kc_requests(http: &reqwest::Client, emulator: &str) -> u64 {
    let stats: Value = http
        .get(format!("{emulator}/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["total"].as_u64().unwrap_or(0)
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::*;
    let key = |a: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(a)
            .key_type(t)
            .build()
            .unwrap()
    };
    let mut req = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range));
    for a in ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        );
    }
    for (index, pk, sk) in [("GSI1", "gsi1pk", "gsi1sk"), ("GSI2", "gsi2pk", "gsi2sk")] {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key(pk, KeyType::Hash))
                .key_schema(key(sk, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        );
    }
    req.send().await.unwrap();
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let (mut moto_process, moto_port) = spawn_with_port_line(
        {
            let mut c = Command::new(format!("{ROOT}/.venv/bin/python"));
            c.arg(format!("{ROOT}/infra/local/moto_for_tests.py"));
            c
        },
        "PORT ",
    );
    let moto = format!("http://127.0.0.1:{moto_port}");
    let (mut emulator_process, emulator) = spawn_with_port_line(
        {
            let mut c = Command::new(format!("{ROOT}/target/release/keycloak-emulator"));
            c.args([
                "--realm",
                &format!("{ROOT}/infra/keycloak/realm.json"),
                "--port",
                "0",
            ]);
            c
        },
        "keycloak-emulator listening on ",
    );
    let creds = aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "bench");
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(&moto)
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .build(),
    );
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    for n in sizes {
        let realm = format!("bench{n}");
        http.post(format!("{emulator}/_emulator/realms"))
            .json(&json!({"name": realm, "from": "demo"}))
            .send()
            .await
            .unwrap();
        let r = http
            .post(format!("{emulator}/_emulator/realms/{realm}/users/bulk"))
            .json(
                &json!({"count": n, "prefix": "u", "password": "bench-password-1",
                          "attributes": {"organization": ["Acme"], "department": ["Ops"]}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let total = n + 3; // the demo realm's own users
        let kc = Arc::new(
            KeycloakClient::new(&emulator, &realm, RetryPolicy::default())
                .unwrap()
                .with_service_client(ClientCredentials::new(
                    "user-sync-admin",
                    ClientSecret::Fixed(Secret::new(ADMIN_SECRET)),
                )),
        );
        kc.warm_up().await.unwrap();

        // The floor: page everything out, batch-write the same items, no logic.
        let floor_table = format!("floor{n}");
        create_table(&ddb, &floor_table).await;
        let floor_store = Store::new(ddb.clone(), &floor_table, b"bench");
        reset_peak_rss();
        let (before, started) = (kc_requests(&http, &emulator).await, Instant::now());
        let mut first = 0u32;
        let mut pages = Vec::new();
        loop {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..4u32 {
                let kc = kc.clone();
                set.spawn(async move { kc.list_users(first + i * 100, 100, false).await.unwrap() });
            }
            let mut short = false;
            while let Some(p) = set.join_next().await {
                let p = p.unwrap();
                short |= p.len() < 100;
                pages.push(p);
            }
            if short {
                break;
            }
            first += 400;
        }
        let items: Vec<_> = pages
            .into_iter()
            .flatten()
            .map(|u| {
                let f = KeycloakFields {
                    username: u.username.clone(),
                    email: u.email.clone(),
                    enabled: u.enabled,
                    ..Default::default()
                };
                User::new(&u.id, &f, &Default::default(), 0)
                    .to_item()
                    .unwrap()
            })
            .collect();
        let written = items.len() as u64;
        floor_store.batch_put(items).await.unwrap();
        let floor = started.elapsed().as_secs_f64();
        rows.push(Row {
            scenario: format!("{n} users: I/O floor (page all + batch write)"),
            secs: floor,
            users_per_sec: total as f64 / floor,
            writes: written,
            kc_requests: kc_requests(&http, &emulator).await - before,
            rcu: floor_store.consumed().read_units,
            wcu: floor_store.consumed().write_units,
            peak_rss: peak_rss_mib(),
            ratio: None,
        });

        // The sync, as the bulk-sync function runs it.
        let table = format!("sync{n}");
        create_table(&ddb, &table).await;
        let config = Config::from_lookup(|k| {
            Some(match k {
                "KEYCLOAK_URL" => emulator.clone(),
                "KEYCLOAK_REALM" => realm.clone(),
                "KEYCLOAK_ADMIN_CLIENT_ID" => "user-sync-admin".into(),
                "KEYCLOAK_ADMIN_SECRET_ID" => "unused".into(),
                "JWT_AUDIENCE" => "user-sync".into(),
                "TABLE_NAME" => table.clone(),
                _ => return None,
            })
        })
        .unwrap();
        let aws_lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::Config::builder()
                .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
                .region(aws_sdk_lambda::config::Region::new("us-east-1"))
                .build(),
        );
        let services = Services::from_parts(
            config,
            kc.clone(),
            Store::new(ddb.clone(), &table, b"bench"),
            aws_lambda,
        );
        let mut scenario =
            |label: &str, run_result: user_sync::store::SyncRun, secs: f64, requests: u64| {
                let c = &run_result.counts;
                let writes = c.written() + c.deactivated;
                assert!(
                    run_result.status == user_sync::store::SyncStatus::Succeeded,
                    "{label}: {:?} {:?}",
                    run_result.status,
                    run_result.errors
                );
                rows.push(Row {
                    scenario: format!("{n} users: {label}"),
                    secs,
                    users_per_sec: total as f64 / secs,
                    writes,
                    kc_requests: requests,
                    rcu: run_result.cost.read_capacity_units,
                    wcu: run_result.cost.write_capacity_units,
                    peak_rss: peak_rss_mib(),
                    ratio: Some(secs / floor),
                });
                (writes, c.clone())
            };
        let full = || SyncRequest {
            mode: Mode::Full,
            dry_run: false,
            force: false,
            run_id: None,
            deadline_ms: None,
        };
        for (label, change) in [
            ("first full sync", 0usize),
            ("resync, no change", 0),
            ("resync, 1 % changed", n / 100),
        ] {
            for i in 0..change {
                let id = format!("u{:06}", i * 100);
                let found = kc.find_user_by_username(&id).await.unwrap().unwrap();
                kc.update_user(
                    &found.id,
                    &user_sync::keycloak::UserUpdate {
                        last_name: Some(format!("Changed{i}")),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            }
            reset_peak_rss();
            let (before, started) = (kc_requests(&http, &emulator).await, Instant::now());
            let result = run(&services, full()).await.unwrap();
            let secs = started.elapsed().as_secs_f64();
            let requests = kc_requests(&http, &emulator).await - before;
            let (writes, _counts) = scenario(label, result, secs, requests);
            match label {
                "resync, no change" => {
                    assert_eq!(writes, 0, "a resync with no change writes nothing")
                }
                "resync, 1 % changed" => {
                    assert_eq!(writes, change as u64, "writes equal the changed users")
                }
                _ => {}
            }
        }
    }
    // Stop what we started: the emulator by signal, moto's wrapper by closing its stdin.
    let _ = emulator_process.kill();
    let _ = emulator_process.wait();
    drop(moto_process.stdin.take());
    let _ = moto_process.wait();
    println!("| scenario | time (s) | users/s | DynamoDB writes | Keycloak requests | RCU | WCU | peak RSS (MiB) | × floor |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} | {} |",
            r.scenario,
            r.secs,
            r.users_per_sec,
            r.writes,
            r.kc_requests,
            r.rcu,
            r.wcu,
            r.peak_rss,
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "1.00".into())
        );
    }
}
