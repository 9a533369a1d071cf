//! The DynamoDB capacity a store consumed, as DynamoDB reports it. Every read and write the store
//! sends asks for `ReturnConsumedCapacity: TOTAL` (an interceptor on its client, so no call can
//! forget it), and the units in each answer are added up: a sync run records its share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::operation::{
    batch_get_item::{BatchGetItemInput, BatchGetItemOutput},
    batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput},
    delete_item::{DeleteItemInput, DeleteItemOutput},
    get_item::{GetItemInput, GetItemOutput},
    put_item::{PutItemInput, PutItemOutput},
    query::{QueryInput, QueryOutput},
    scan::{ScanInput, ScanOutput},
    transact_get_items::{TransactGetItemsInput, TransactGetItemsOutput},
    transact_write_items::{TransactWriteItemsInput, TransactWriteItemsOutput},
    update_item::{UpdateItemInput, UpdateItemOutput},
};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::{Deserialize, Serialize};

/// Capacity units, read and write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    pub read_units: f64,
    pub write_units: f64,
}

impl std::ops::Sub for Capacity {
    type Output = Capacity;
    fn sub(self, earlier: Capacity) -> Capacity {
        Capacity {
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
        }
    }
}

/// Running totals, in thousandths of a unit, shared by every clone of the store.
#[derive(Clone, Debug, Default)]
pub struct CapacityMeter(Arc<[AtomicU64; 2]>);

const READ: usize = 0;
const WRITE: usize = 1;

impl CapacityMeter {
    /// What the store has consumed since it was built.
    pub fn total(&self) -> Capacity {
        let units = |i: usize| self.0[i].load(Ordering::Relaxed) as f64 / 1000.0;
        Capacity {
            read_units: units(READ),
            write_units: units(WRITE),
        }
    }

    fn add<'a>(&self, kind: usize, consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) {
        let units: f64 = consumed
            .into_iter()
            .map(|c| c.capacity_units().unwrap_or_default())
            .sum();
        self.0[kind].fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
    }
}

/// `$input.return_consumed_capacity = TOTAL` on every metered operation's input.
macro_rules! ask_for_capacity {
    ($input:expr, $($ty:ty),+) => {
        $(if let Some(i) = $input.downcast_mut::<$ty>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
        })+
    };
}

/// Add the capacity an output reports, by operation kind.
macro_rules! count_capacity {
    ($meter:expr, $output:expr, $kind:expr, one: [$($one:ty),*], many: [$($many:ty),*]) => {
        $(if let Some(o) = $output.downcast_ref::<$one>() {
            $meter.add($kind, o.consumed_capacity());
        })*
        $(if let Some(o) = $output.downcast_ref::<$many>() {
            $meter.add($kind, o.consumed_capacity());
        })*
    };
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        ask_for_capacity!(
            input,
            GetItemInput,
            QueryInput,
            ScanInput,
            BatchGetItemInput,
            TransactGetItemsInput,
            PutItemInput,
            UpdateItemInput,
            DeleteItemInput,
            BatchWriteItemInput,
            TransactWriteItemsInput
        );
        Ok(())
    }

    // After each attempt that got an answer (DynamoDB reports no capacity with an error).
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error() else {
            return Ok(());
        };
        count_capacity!(self, output, READ,
            one: [GetItemOutput, QueryOutput, ScanOutput],
            many: [BatchGetItemOutput, TransactGetItemsOutput]);
        count_capacity!(self, output, WRITE,
            one: [PutItemOutput, UpdateItemOutput, DeleteItemOutput],
            many: [BatchWriteItemOutput, TransactWriteItemsOutput]);
        Ok(())
    }
}
