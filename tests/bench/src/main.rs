//! `make bench`: the bulk-sync benchmark. DynamoDB Local and the Keycloak emulator (release) run
//! as their own processes, as in `make dev`; each measured run (a sync, a floor, a way of writing)
//! runs in a process of its own, started from this one, so its peak RSS is that run's. For each
//! realm size: the first full sync, the read floor (every user paged out of Keycloak and the
//! store's digest read, no logic, no write), the write floor and the two conditional ways of
//! creating users (writes.rs), a resync with no change, and a resync with 1 % of the users
//! changed. Prints two Markdown tables: the runs, and their billed DynamoDB units and cost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool, not a request path

mod writes;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use user_sync::features::sync::{run, Mode, SyncRequest};
use user_sync::outside::keycloak::{ClientCredentials, ClientSecret, KeycloakClient, RetryPolicy};
use user_sync::outside::secrets::Secret;
use user_sync::outside::store::Store;
use user_sync::services::Services;
use user_sync::Config;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// Lambda's longest invocation, the bulk-sync function's timeout.
const LAMBDA_MS: i64 = 15 * 60 * 1000;
const ADMIN_SECRET: &str = "dev-only-user-sync-admin-secret-not-for-production";

/// This process's peak resident set, in MiB (Linux: VmHWM).
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
    kind: Kind,
    secs: f64,
    users_per_sec: f64,
    writes: u64,
    kc_requests: u64,
    /// DynamoDB read and write capacity units as DynamoDB Local reports them (transactions are
    /// under-reported: tests/stack/test_dynamodb_local.py).
    rcu: f64,
    wcu: f64,
    peak_rss: f64,
    ratio: Option<f64>,
    /// Lambda invocations a sync took (more than one when it handed over).
    invocations: u64,
}

/// Each row against its floor, all from the same size's runs: a first sync against the read floor
/// plus the write floor, a resync against the read floor, a way of writing against the write floor.
fn print_row(r: &Row) {
    println!(
        "| {} | {:.2} | {:.0} | {} | {} | {:.0} | {:.0} | {:.1} | {} | {} |",
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
            .unwrap_or_else(|| "1.00".into()),
        if r.kind == Kind::Sync {
            r.invocations.to_string()
        } else {
            "".into()
        }
    );
}

fn set_ratios(rows: &mut [Row]) {
    let secs_of = |k: Kind| rows.iter().find(|r| r.kind == k).map(|r| r.secs);
    let read = secs_of(Kind::Floor).unwrap();
    let write = secs_of(Kind::Write(writes::Way::Batch)).unwrap();
    for (i, r) in rows.iter_mut().enumerate() {
        r.ratio = Some(match r.kind {
            Kind::Sync if i == 0 => r.secs / (read + write),
            Kind::Sync | Kind::Floor => r.secs / read,
            Kind::Write(_) => r.secs / write,
        });
    }
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
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/infra/local/table.json")).unwrap(),
    )
    .unwrap();
    user_sync::outside::store::create_table_from_spec(ddb, name, &spec)
        .await
        .unwrap();
}

/// An item's size as DynamoDB bills it: attribute names plus values (a number ~1 byte per two
/// digits plus one; lists and maps 3 bytes plus 1 per element).
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|e| value(e) + 1).sum::<usize>(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, e)| k.len() + value(e) + 1).sum::<usize>()
            }
            AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// Average billed size of up to 200 user records, read from the table or one of its indexes.
async fn average_size(ddb: &aws_sdk_dynamodb::Client, table: &str, index: Option<&str>) -> f64 {
    let out = ddb
        .scan()
        .table_name(table)
        .set_index_name(index.map(str::to_owned))
        .filter_expression("begins_with(pk, :user)")
        .expression_attribute_values(":user", AttributeValue::S("USER#".into()))
        .limit(400)
        .send()
        .await
        .unwrap();
    let items = out.items.unwrap_or_default();
    let sizes: Vec<usize> = items.iter().take(200).map(item_size).collect();
    sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64
}

/// What the three runs of one size cost at DynamoDB's on-demand prices (us-east-1, per million
/// request units: reads $0.125, writes $0.625), from the measured item sizes, as DynamoDB bills
/// them (DynamoDB Local under-reports transactions, so they are computed here).
fn cost_lines(n: usize, record: f64, digest: f64, has_email: bool) -> Vec<String> {
    const READ: f64 = 0.125 / 1e6;
    const WRITE: f64 = 0.625 / 1e6;
    let n = n as f64;
    let kb = |bytes: f64| (bytes / 1024.0).ceil();
    // Eventually consistent scans: half a unit per 4 KB read.
    let digest_scan = n * digest / 4096.0 * 0.5;
    let table_scan = n * record / 4096.0 * 0.5;
    // A write also writes every index holding the item: GSI1 and GSI2 (full records), SyncDigest.
    let indexes = kb(record) * if has_email { 2.0 } else { 1.0 } + kb(digest);
    let create = kb(record) + indexes; // a conditional put: a plain write's units
    let update = kb(record) + indexes;
    let line = |label: &str, rru: f64, wru: f64| {
        format!(
            "| {n} users: {label} | {rru:.0} | {wru:.0} | ${:.4} |",
            rru * READ + wru * WRITE
        )
    };
    vec![
        line("first full sync", digest_scan, n * create),
        line(
            "(the first sync as transactions of 100)",
            digest_scan,
            n * (create + kb(record)),
        ),
        line("resync, no change", digest_scan, 0.0),
        line("resync, 1 % changed", digest_scan, n / 100.0 * update),
        line("(a table scan instead of SyncDigest)", table_scan, 0.0),
    ]
}

fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let creds = aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "bench");
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .build(),
    )
}

fn keycloak(emulator: &str, realm: &str) -> Arc<KeycloakClient> {
    Arc::new(
        KeycloakClient::new(emulator, realm, RetryPolicy::default())
            .unwrap()
            .with_service_client(ClientCredentials::new(
                "user-sync-admin",
                ClientSecret::Fixed(Secret::new(ADMIN_SECRET)),
            )),
    )
}

/// What to measure in a run of its own.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Every user paged out of Keycloak as the sync pages them, and the same projection of the
    /// store read; no diff, no write.
    Floor,
    /// A full sync, as the bulk-sync function runs it.
    Sync,
    /// The store's user records written into an empty table one way (writes.rs).
    Write(writes::Way),
}

impl Kind {
    /// Its name on the `bench --run` command line.
    fn arg(self) -> String {
        match self {
            Kind::Floor => "floor".into(),
            Kind::Sync => "sync".into(),
            Kind::Write(way) => format!("write-{}", way.arg()),
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "floor" => Some(Kind::Floor),
            "sync" => Some(Kind::Sync),
            _ => writes::Way::parse(s.strip_prefix("write-")?).map(Kind::Write),
        }
    }
}

/// One measured run, in a process of its own (`bench --run <kind> <n> <dynamodb> <emulator>`),
/// as a Lambda invocation runs the sync: its peak RSS is that run's, not memory an earlier run
/// freed and the allocator kept. Prints one `RESULT {json}` line.
async fn measured_run(kind: Kind, n: usize, endpoint: &str, emulator: &str) {
    let (realm, table) = (format!("bench{n}"), format!("sync{n}"));
    let ddb = dynamodb(endpoint);
    let kc = keycloak(emulator, &realm);
    kc.warm_up().await.unwrap();
    let http = reqwest::Client::new();
    let store = Store::new(ddb.clone(), &table, b"bench");
    let (before, started) = (kc_requests(&http, emulator).await, Instant::now());
    let before_capacity = store.consumed();
    let mut invocations = 1;
    let (writes, rcu, wcu, secs) = match kind {
        Kind::Write(way) => {
            let items = writes::user_records(&ddb, &table, n as u64).await;
            let into = format!("w{n}-{}", way.arg());
            create_table(&ddb, &into).await;
            let count = items.len() as u64;
            let (secs, wcu) = writes::write_all(&ddb, &into, way, items).await;
            ddb.delete_table().table_name(&into).send().await.unwrap();
            (count, 0.0, wcu, Some(secs))
        }
        Kind::Floor => {
            let mut first = 0u32;
            let mut paged = 0usize;
            loop {
                let mut set = tokio::task::JoinSet::new();
                for i in 0..4u32 {
                    let kc = kc.clone();
                    set.spawn(async move {
                        kc.list_users(first + i * 100, 100, false)
                            .await
                            .unwrap()
                            .len()
                    });
                }
                let mut short = false;
                while let Some(p) = set.join_next().await {
                    let p = p.unwrap();
                    short |= p < 100;
                    paged += p;
                }
                if short {
                    break;
                }
                first += 400;
            }
            let crawled = started.elapsed().as_secs_f64();
            let mut digest = user_sync::base::ids::IdMap::with_capacity(paged);
            store
                .scan_digest(paged as u64, |id, d| {
                    *digest.entry(id) = Some::<user_sync::outside::store::Digest>(d)
                })
                .await
                .unwrap();
            assert!(digest.len() >= n, "the digest has every user");
            let used = store.consumed() - before_capacity;
            // Which side of the floor grows with the realm: Keycloak's pages or the digest scan.
            eprintln!(
                "floor of {n}: Keycloak pages {crawled:.2} s ({:.1} µs a user), digest scan {:.2} s ({:.1} µs a user)",
                crawled * 1e6 / paged as f64,
                started.elapsed().as_secs_f64() - crawled,
                (started.elapsed().as_secs_f64() - crawled) * 1e6 / paged as f64
            );
            (0, used.read_units, used.write_units, None)
        }
        Kind::Sync => {
            // The run's own log lines (each read's and the crawl's time) on stderr.
            tracing_subscriber::fmt()
                .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
            let config = Config::from_lookup(|k| {
                Some(match k {
                    "KEYCLOAK_URL" => emulator.to_owned(),
                    "KEYCLOAK_REALM" => realm.clone(),
                    "KEYCLOAK_ADMIN_CLIENT_ID" => "user-sync-admin".into(),
                    "KEYCLOAK_ADMIN_SECRET_ID" => "unused".into(),
                    "JWT_AUDIENCE" => "user-sync".into(),
                    "TABLE_NAME" => table.clone(),
                    _ => return None,
                })
            })
            .unwrap();
            // The hand-over's own invoke goes nowhere (a closed loopback port); this process
            // starts the follow-up itself, as Lambda would.
            let aws_lambda = user_sync::outside::lambda::LambdaClient::new(
                "http://127.0.0.1:9",
                "us-east-1",
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("local", "local", None, None, "bench"),
                ),
            );
            let services = Services::from_parts(config, kc, store, aws_lambda);
            // Each invocation gets Lambda's 15 minutes, and stops writing where the function
            // would (`stop_writing_at`); a run that hands over is followed by the next.
            let (mut written, mut rcu, mut wcu) = (0, 0.0, 0.0);
            invocations = 0;
            loop {
                invocations += 1;
                let now = user_sync::base::clock::now_ms();
                let request = SyncRequest {
                    mode: Mode::Full,
                    dry_run: false,
                    force: false,
                    run_id: None,
                    deadline_ms: Some(user_sync::features::sync::stop_writing_at(
                        now + LAMBDA_MS,
                        now,
                    )),
                };
                let result = run(&services, request).await.unwrap();
                let c = &result.counts;
                written += c.written() + c.deactivated;
                rcu += result.cost.read_capacity_units;
                wcu += result.cost.write_capacity_units;
                if result.status == user_sync::outside::store::SyncStatus::Continued {
                    continue;
                }
                assert!(
                    result.status == user_sync::outside::store::SyncStatus::Succeeded,
                    "{:?} {:?}",
                    result.status,
                    result.errors
                );
                break;
            }
            (written, rcu, wcu, None)
        }
    };
    let secs = secs.unwrap_or_else(|| started.elapsed().as_secs_f64());
    let requests = kc_requests(&http, emulator).await - before;
    let line = json!({"secs": secs, "writes": writes, "kc_requests": requests, "rcu": rcu,
                      "invocations": invocations,
                      "wcu": wcu, "peak_rss": peak_rss_mib()});
    println!("RESULT {line}");
}

/// Runs `bench --run …` and reads its result line.
fn run_in_own_process(kind: Kind, n: usize, endpoint: &str, emulator: &str) -> Value {
    let kind = kind.arg();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--run", &kind, &n.to_string(), endpoint, emulator])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the {kind} run of {n} users failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("a result line");
    serde_json::from_str(line).unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, kind, n, endpoint, emulator] = &args[..] {
        if flag == "--run" {
            let kind =
                Kind::parse(kind).expect("--run floor|sync|write-batch|write-puts|write-tx100");
            measured_run(kind, n.parse().unwrap(), endpoint, emulator).await;
            return;
        }
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let (mut dynamodb_process, dynamodb_port) = spawn_with_port_line(
        {
            let mut c = Command::new(format!("{ROOT}/.venv/bin/python"));
            c.arg(format!("{ROOT}/infra/local/aws_local.py"))
                .args(["for-tests", "dynamodb"]);
            c
        },
        "PORT ",
    );
    let dynamodb_url = format!("http://127.0.0.1:{dynamodb_port}");
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
    let ddb = dynamodb(&dynamodb_url);
    let http = reqwest::Client::new();
    writes::warm_up(&ddb, create_table(&ddb, "warm-up"), "warm-up").await;
    // Each size's rows are printed as soon as its runs are done.
    println!("| scenario | time (s) | users/s | DynamoDB writes | Keycloak requests | RCU | WCU | peak RSS (MiB) | × its floor | invocations |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    let mut costs = Vec::new();
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
        let kc = keycloak(&emulator, &realm);
        let table = format!("sync{n}");
        create_table(&ddb, &table).await;
        let scenarios = [
            ("first full sync".to_owned(), Kind::Sync, 0usize),
            (
                "read floor (page all + read the digest)".to_owned(),
                Kind::Floor,
                0,
            ),
        ]
        .into_iter()
        // The ways of creating compare at the sizes up to 100 000; above, only the floor runs.
        .chain(
            writes::Way::ALL
                .into_iter()
                .filter(move |w| *w == writes::Way::Batch || n <= 100_000)
                .map(|w| (w.label(), Kind::Write(w), 0)),
        )
        .chain([
            ("resync, no change".to_owned(), Kind::Sync, 0),
            ("resync, 1 % changed".to_owned(), Kind::Sync, n / 100),
        ]);
        let first = rows.len();
        for (label, kind, change) in scenarios {
            for i in 0..change {
                let id = format!("u{:06}", i * 100);
                let found = kc.find_user_by_username(&id).await.unwrap().unwrap();
                kc.update_user(
                    &found.id,
                    &user_sync::outside::keycloak::UserUpdate {
                        last_name: Some(format!("Changed{i}")),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            }
            let r = run_in_own_process(kind, n, &dynamodb_url, &emulator);
            let (secs, writes) = (r["secs"].as_f64().unwrap(), r["writes"].as_u64().unwrap());
            match label.as_str() {
                "resync, no change" => {
                    assert_eq!(writes, 0, "a resync with no change writes nothing")
                }
                "resync, 1 % changed" => {
                    assert_eq!(writes, change as u64, "writes equal the changed users")
                }
                _ => {}
            }
            rows.push(Row {
                scenario: format!("{n} users: {label}"),
                kind,
                secs,
                users_per_sec: total as f64 / secs,
                writes,
                kc_requests: r["kc_requests"].as_u64().unwrap(),
                rcu: r["rcu"].as_f64().unwrap(),
                wcu: r["wcu"].as_f64().unwrap(),
                peak_rss: r["peak_rss"].as_f64().unwrap(),
                ratio: None,
                invocations: r["invocations"].as_u64().unwrap(),
            });
            // The table prints when a size is done; a run stopped before keeps what it measured.
            eprintln!("measured: {n} users, {label}: {secs:.2} s, {writes} writes");
        }
        set_ratios(&mut rows[first..]);
        rows[first..].iter().for_each(print_row);
        costs.extend(cost_lines(
            n,
            average_size(&ddb, &table, None).await,
            average_size(&ddb, &table, Some(user_sync::outside::store::SYNC_INDEX)).await,
            true,
        ));
    }
    // Stop what we started: the emulator by signal, DynamoDB Local's wrapper by closing its stdin.
    let _ = emulator_process.kill();
    let _ = emulator_process.wait();
    drop(dynamodb_process.stdin.take());
    let _ = dynamodb_process.wait();
    println!();
    println!("| DynamoDB, on-demand (billed units from the measured item sizes) | read units | write units | cost |");
    println!("|---|---:|---:|---:|");
    for line in costs {
        println!("{line}");
    }
}
