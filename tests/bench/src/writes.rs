//! The write floor and the ways a first sync can create users, measured on DynamoDB Local: the
//! store's own user records (read from the table a first sync filled) written again into an empty
//! table of the same definition, timed from the first write to the last answer.
//!
//! - `batch`: BatchWriteItem, 25 items a request, 8 requests in flight, unprocessed items sent
//!   again. Blind puts: the fastest the store accepts these items, and the cheapest (one unit per
//!   KB per item, plus one per index the item is in). The floor, not a way to sync: a blind put
//!   can overwrite a record a login wrote a moment ago.
//! - `puts`: PutItem with `attribute_not_exists(pk)`, as many in flight as the sync keeps
//!   (`user_sync::outside::store::CREATE_CONCURRENCY`). A record written since the digest was read is
//!   never overwritten; the same units as the floor.
//! - `inserts`: PartiQL `INSERT` statements, 25 a BatchExecuteStatement, 8 in flight (a duplicate
//!   fails per statement). Never overwrites either; the same units, but its own IAM action.
//! - `tx100`: TransactWriteItems of 100 conditional puts, one after another (the sync before
//!   DynamoDB Local). Also never overwrites, at two units per KB per item on the table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, Put, PutRequest, ReturnConsumedCapacity, TransactWriteItem,
    WriteRequest,
};
use tokio::task::JoinSet;
use user_sync::outside::store::{digest_segments, KeycloakFields};

type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Copy, PartialEq)]
pub enum Way {
    Batch,
    Puts,
    Inserts,
    Tx100,
}

impl Way {
    pub const ALL: [Way; 4] = [Way::Batch, Way::Puts, Way::Inserts, Way::Tx100];

    pub fn arg(self) -> &'static str {
        match self {
            Way::Batch => "batch",
            Way::Puts => "puts",
            Way::Inserts => "inserts",
            Way::Tx100 => "tx100",
        }
    }

    pub fn label(self) -> String {
        match self {
            Way::Batch => "write floor (batch writes of 25, 8 in flight)".into(),
            Way::Puts => format!(
                "conditional puts, {} in flight",
                user_sync::outside::store::CREATE_CONCURRENCY
            ),
            Way::Inserts => "PartiQL INSERT batches of 25, 8 in flight".into(),
            Way::Tx100 => "transactions of 100, one at a time".into(),
        }
    }

    pub fn parse(s: &str) -> Option<Way> {
        Way::ALL.into_iter().find(|w| w.arg() == s)
    }
}

/// Every user record of `table` (about `users` of them), read with a parallel scan in the
/// digest's segments (not timed): DynamoDB Local serves a segment ever more slowly the deeper its
/// pages go: a million records read in 4 segments gave a quarter of them in 13 minutes.
pub async fn user_records(ddb: &aws_sdk_dynamodb::Client, table: &str, users: u64) -> Vec<Item> {
    let segments = digest_segments(users);
    let next = Arc::new(AtomicI32::new(0));
    let mut set = JoinSet::new();
    for _ in 0..4 {
        let (ddb, table, next) = (ddb.clone(), table.to_owned(), Arc::clone(&next));
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let segment = next.fetch_add(1, Ordering::Relaxed);
                if segment >= segments {
                    return out;
                }
                let mut start = None;
                loop {
                    let page = ddb
                        .scan()
                        .table_name(&table)
                        .segment(segment)
                        .total_segments(segments)
                        .filter_expression("begins_with(pk, :user) AND sk = :profile")
                        .expression_attribute_values(":user", AttributeValue::S("USER#".into()))
                        .expression_attribute_values(
                            ":profile",
                            AttributeValue::S("PROFILE".into()),
                        )
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .unwrap();
                    out.extend(page.items.unwrap_or_default());
                    start = page.last_evaluated_key;
                    if start.is_none() {
                        break;
                    }
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(part) = set.join_next().await {
        all.extend(part.unwrap());
    }
    all
}

fn units(consumed: &[ConsumedCapacity]) -> f64 {
    consumed.iter().filter_map(|c| c.capacity_units).sum()
}

/// Writes `items` into the empty table `into` the given way: (seconds, write units reported).
pub async fn write_all(
    ddb: &aws_sdk_dynamodb::Client,
    into: &str,
    way: Way,
    items: Vec<Item>,
) -> (f64, f64) {
    let (chunk, in_flight) = match way {
        Way::Batch | Way::Inserts => (25, 8),
        Way::Puts => (1, user_sync::outside::store::CREATE_CONCURRENCY),
        Way::Tx100 => (100, 1),
    };
    let mut chunks: Vec<Vec<Item>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(chunk).collect());
    }
    let started = Instant::now();
    let mut pending = chunks.into_iter();
    let mut set = JoinSet::new();
    let mut wcu = 0.0;
    loop {
        while set.len() < in_flight {
            let Some(chunk) = pending.next() else { break };
            let (ddb, table) = (ddb.clone(), into.to_owned());
            set.spawn(async move { write_chunk(&ddb, &table, way, chunk).await });
        }
        match set.join_next().await {
            Some(done) => wcu += done.unwrap(),
            None => break,
        }
    }
    (started.elapsed().as_secs_f64(), wcu)
}

async fn write_chunk(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    way: Way,
    chunk: Vec<Item>,
) -> f64 {
    let total = ReturnConsumedCapacity::Total;
    match way {
        Way::Batch => {
            let mut wcu = 0.0;
            let mut requests: Vec<WriteRequest> = chunk
                .into_iter()
                .map(|item| {
                    let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            while !requests.is_empty() {
                let out = ddb
                    .batch_write_item()
                    .request_items(table, requests)
                    .return_consumed_capacity(total.clone())
                    .send()
                    .await
                    .unwrap();
                wcu += units(out.consumed_capacity());
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
            }
            wcu
        }
        Way::Puts => {
            let out = ddb
                .put_item()
                .table_name(table)
                .set_item(chunk.into_iter().next())
                .condition_expression("attribute_not_exists(pk)")
                .return_consumed_capacity(total)
                .send()
                .await
                .unwrap();
            out.consumed_capacity
                .and_then(|c| c.capacity_units)
                .unwrap_or(0.0)
        }
        Way::Inserts => {
            let mut batch = ddb
                .batch_execute_statement()
                .return_consumed_capacity(total);
            for item in chunk {
                let (names, values): (Vec<String>, Vec<AttributeValue>) = item.into_iter().unzip();
                let tuple: Vec<String> = names.iter().map(|n| format!("'{n}': ?")).collect();
                batch = batch.statements(
                    aws_sdk_dynamodb::types::BatchStatementRequest::builder()
                        .statement(format!(
                            "INSERT INTO \"{table}\" VALUE {{{}}}",
                            tuple.join(", ")
                        ))
                        .set_parameters(Some(values))
                        .build()
                        .unwrap(),
                );
            }
            let out = batch.send().await.unwrap();
            assert!(
                out.responses().iter().all(|r| r.error.is_none()),
                "{:?}",
                out.responses()
            );
            units(out.consumed_capacity())
        }
        Way::Tx100 => {
            let mut tx = ddb.transact_write_items().return_consumed_capacity(total);
            for item in chunk {
                let put = Put::builder()
                    .table_name(table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .unwrap();
                tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
            }
            units(tx.send().await.unwrap().consumed_capacity())
        }
    }
}

/// Writes and reads a throwaway table before anything is measured: DynamoDB Local is a JVM, and
/// the first few thousand requests run while its JIT compiles (the first sync measured on a cold
/// DynamoDB Local took about 1.5 times as long as the same writes a few minutes later). DynamoDB
/// itself has no such warm-up.
pub async fn warm_up(
    ddb: &aws_sdk_dynamodb::Client,
    create_table: impl std::future::Future<Output = ()>,
    table: &str,
) {
    create_table.await;
    let item = |i: usize, way: &str| -> Item {
        let s = |v: String| AttributeValue::S(v);
        HashMap::from([
            ("pk".into(), s(format!("USER#{way}{i:08}"))),
            ("sk".into(), s("PROFILE".into())),
            ("gsi1pk".into(), s(format!("USERNAME#{}", i % 8))),
            ("gsi1sk".into(), s(format!("{way}{i:08}"))),
            ("gsi2pk".into(), s(format!("EMAIL#{}", i % 8))),
            ("gsi2sk".into(), s(format!("{way}{i:08}@example.org"))),
            ("kc_hash".into(), s("0123456789abcdef".into())),
            ("status".into(), s("active".into())),
        ])
    };
    for way in Way::ALL {
        let items = (0..5_000).map(|i| item(i, way.arg())).collect();
        write_all(ddb, table, way, items).await;
    }
    let _ = user_records(ddb, table, 5_000).await;
    warm_up_updates(ddb, table).await;
    ddb.delete_table().table_name(table).send().await.unwrap();
}

/// The resyncs' and webhooks' conditional updates (`apply_keycloak_fields`) take a path of their
/// own through DynamoDB Local, still cold after the puts: the 10 000-user 1 %-changed run paid
/// ~7 ms a write for it (2026-12-03), where a warm DynamoDB Local spends ~3.7 ms of CPU on one.
/// Each user written twice, as a create and as an update to a newer observation.
async fn warm_up_updates(ddb: &aws_sdk_dynamodb::Client, table: &str) {
    let store = user_sync::outside::store::Store::new(ddb.clone(), table, b"warm-up");
    for observed_at in [1, 2] {
        let mut set = JoinSet::new();
        for i in 0..3_000 {
            if set.len() >= 16 {
                set.join_next().await.unwrap().unwrap();
            }
            let store = store.clone();
            set.spawn(async move {
                let fields = KeycloakFields {
                    username: format!("warm-up-{i}"),
                    last_name: Some(format!("Round {observed_at}")),
                    enabled: true,
                    ..Default::default()
                };
                let id = format!("00000000-0000-4000-8000-{i:012}");
                store
                    .apply_keycloak_fields(&id, &fields, &Default::default(), observed_at, 1)
                    .await
                    .unwrap();
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
    }
}
