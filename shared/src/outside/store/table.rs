//! The table: the `Store` handle (a DynamoDB client with its capacity meter and cursor key),
//! items and their attribute values, update expressions, the one error type, and the table
//! created from `infra/local/table.json` for the suites and the benchmark.

use std::collections::HashMap;

use crate::base::deadline::Bounded;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use super::capacity::{Capacity, CapacityMeter};

pub type Item = HashMap<String, AttributeValue>;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("the item changed since it was read")]
    VersionConflict,
    #[error("the item exists already")]
    AlreadyExists,
    #[error("invalid cursor")]
    InvalidCursor,
    /// Another admin write holds the record's write lock.
    #[error("a write is in progress")]
    Locked,
    /// The user is soft-deleted locally: logins are refused.
    #[error("user deleted")]
    UserDeleted,
    #[error("DynamoDB unavailable: {0}")]
    Unavailable(String),
    #[error("DynamoDB error: {0}")]
    Other(String),
}

impl From<crate::base::deadline::Expired> for StoreError {
    fn from(_: crate::base::deadline::Expired) -> Self {
        StoreError::Unavailable("no answer before the invocation's deadline".into())
    }
}

const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// Map an SDK failure (after the SDK's own retries) to a store error.
pub(crate) fn sdk_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(text)
        }
        SdkError::ServiceError(se)
            if se
                .err()
                .code()
                .is_some_and(|c| RETRYABLE_CODES.contains(&c)) =>
        {
            StoreError::Unavailable(text)
        }
        _ => StoreError::Other(text),
    }
}

/// The result of a conditional write: `true` if it was written, `false` if its condition refused
/// it (nothing was written), any other failure as a store error.
pub(crate) fn written<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().and_then(|se| se.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk_error(e)),
    }
}

/// The item an `UpdateItem` whose condition failed found (`ALL_OLD` on a condition check
/// failure; empty when there was none), or `None` for any other error.
pub(crate) fn refused_item<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
) -> Option<Item> {
    match e.as_service_error() {
        Some(
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                c,
            ),
        ) => Some(c.item.clone().unwrap_or_default()),
        _ => None,
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn user_pk(id: &str) -> String {
    format!("USER#{id}")
}

/// Builds an `UpdateExpression` with placeholder names and values.
#[derive(Default)]
pub(crate) struct Update {
    sets: Vec<String>,
    removes: Vec<String>,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

impl Update {
    pub fn name(&mut self, attr: &str) -> String {
        let key = format!("#{attr}");
        self.names.insert(key.clone(), attr.to_owned());
        key
    }

    pub fn value(&mut self, v: AttributeValue) -> String {
        let key = format!(":v{}", self.values.len());
        self.values.insert(key.clone(), v);
        key
    }

    pub fn set(&mut self, attr: &str, v: AttributeValue) {
        let (name, value) = (self.name(attr), self.value(v));
        self.sets.push(format!("{name} = {value}"));
    }

    /// `attr = <expr>`, the expression written with placeholders from `name` / `value`.
    pub fn set_expr(&mut self, attr: &str, expr: String) {
        let name = self.name(attr);
        self.sets.push(format!("{name} = {expr}"));
    }

    pub fn set_opt(&mut self, attr: &str, v: Option<&str>) {
        match v {
            Some(v) => self.set(attr, s(v)),
            None => {
                let name = self.name(attr);
                self.removes.push(name);
            }
        }
    }

    pub fn expression(&self) -> String {
        let mut out = String::new();
        if !self.sets.is_empty() {
            out.push_str("SET ");
            out.push_str(&self.sets.join(", "));
        }
        if !self.removes.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("REMOVE ");
            out.push_str(&self.removes.join(", "));
        }
        out
    }
}

/// One page of a listing and the cursor to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
    /// Key of the HMAC that makes list cursors tamper-evident.
    cursor_key: aws_lc_rs::hmac::Key,
    /// The capacity this store (and its clones) consumed.
    capacity: CapacityMeter,
}

impl Store {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        cursor_key: &[u8],
    ) -> Self {
        let capacity = CapacityMeter::default();
        let client = aws_sdk_dynamodb::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(capacity.clone())
                .build(),
        );
        Store {
            client,
            table: table.into(),
            cursor_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, cursor_key),
            capacity,
        }
    }

    /// The DynamoDB capacity consumed through this store so far.
    pub fn consumed(&self) -> Capacity {
        self.capacity.total()
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// An opaque, tamper-evident cursor: the body as JSON, signed with the cursor key.
    pub(crate) fn seal_cursor<T: serde::Serialize>(&self, body: &T) -> Result<String, StoreError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let json = serde_json::to_vec(body).map_err(|e| StoreError::Other(e.to_string()))?;
        let tag = aws_lc_rs::hmac::sign(&self.cursor_key, &json);
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    /// The body of a cursor this store sealed; anything else is `InvalidCursor`.
    pub(crate) fn open_cursor<T: serde::de::DeserializeOwned>(
        &self,
        cursor: &str,
    ) -> Result<T, StoreError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let (body, tag) = cursor.split_once('.').ok_or(StoreError::InvalidCursor)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| StoreError::InvalidCursor)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StoreError::InvalidCursor)?;
        aws_lc_rs::hmac::verify(&self.cursor_key, &body, &tag)
            .map_err(|_| StoreError::InvalidCursor)?;
        serde_json::from_slice(&body).map_err(|_| StoreError::InvalidCursor)
    }

    /// Write `record` (serialized as attributes) with the given keys and extra attributes,
    /// unconditionally: records that only ever have one writer (runs, state, audit, repairs).
    pub(crate) async fn put_record<T: serde::Serialize>(
        &self,
        record: &T,
        keys: impl IntoIterator<Item = (String, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut item: Item =
            serde_dynamo::to_item(record).map_err(|e| StoreError::Other(e.to_string()))?;
        item.extend(keys);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Apply `update` to the item at `key` if `condition` holds; `Ok(false)` when it did not
    /// (nothing written).
    pub(crate) async fn update_if(
        &self,
        key: Item,
        update: Update,
        condition: String,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values((!update.values.is_empty()).then_some(update.values))
            .send()
            .within_deadline()
            .await?;
        written(result)
    }
}

/// Create a table as `infra/local/table.json` (a `CreateTable` request in JSON) describes it: for
/// the test suites and the benchmark, which make their own tables in moto.
pub async fn create_table_from_spec(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    spec: &serde_json::Value,
) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let other = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Other(e.to_string());
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    let keys = |v: &serde_json::Value| -> Result<Vec<KeySchemaElement>, StoreError> {
        list(v)
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(text(&k["AttributeName"]))
                    .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
                    .build()
                    .map_err(other)
            })
            .collect()
    };
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(keys(&spec["KeySchema"])?));
    for a in list(&spec["AttributeDefinitions"]) {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(&a["AttributeName"]))
                .attribute_type(ScalarAttributeType::from(
                    a["AttributeType"].as_str().unwrap_or_default(),
                ))
                .build()
                .map_err(other)?,
        );
    }
    for g in list(&spec["GlobalSecondaryIndexes"]) {
        let p = &g["Projection"];
        let projection = Projection::builder()
            .projection_type(ProjectionType::from(
                p["ProjectionType"].as_str().unwrap_or_default(),
            ))
            .set_non_key_attributes(
                p.get("NonKeyAttributes")
                    .map(|a| list(a).iter().map(text).collect()),
            )
            .build();
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(&g["IndexName"]))
                .set_key_schema(Some(keys(&g["KeySchema"])?))
                .projection(projection)
                .build()
                .map_err(other)?,
        );
    }
    req.send().await.map_err(sdk_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_expression_uses_placeholders() {
        let mut u = Update::default();
        u.set("status", s("active"));
        u.set_opt("phone", None);
        let v = u.value(n(1));
        let name = u.name("version");
        u.set_expr("version", format!("{name} + {v}"));
        assert_eq!(
            u.expression(),
            "SET #status = :v0, #version = #version + :v1 REMOVE #phone"
        );
        assert_eq!(u.names["#status"], "status");
    }
}
