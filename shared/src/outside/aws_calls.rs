//! Which AWS actions a function calls, recorded as it runs: the evidence behind the IAM test.
//!
//! Each function declares the AWS actions its code calls in its `Cargo.toml`
//! (`[package.metadata.iam]`), and `tests/stack/test_iam.py` proves that `template.yaml` grants
//! exactly those. With `AWS_CALL_LOG_DIR` set (the test stacks set it; a deployment never does),
//! every SDK call a function makes is appended to `<dir>/<function>.calls` as the IAM action it
//! needs (`dynamodb:Query`, or `dynamodb:Query@index` for a secondary index), so the test also
//! proves the code calls nothing the table leaves out, and that every declared action is used.

use std::io::Write;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The IAM action of an SDK operation (`Metadata` names the service as the SDK does).
pub fn iam_action(service: &str, operation: &str) -> String {
    let prefix = match service {
        "DynamoDB" => "dynamodb",
        "Secrets Manager" => "secretsmanager",
        other => return format!("{}:{operation}", other.to_lowercase().replace(' ', "")),
    };
    format!("{prefix}:{operation}")
}

/// Appends the action of every call to the function's log file (each action once per process).
/// Clones share the file.
#[derive(Clone, Debug)]
pub struct CallRecorder {
    file: Arc<Mutex<(std::fs::File, std::collections::HashSet<String>)>>,
}

impl CallRecorder {
    /// A recorder when `AWS_CALL_LOG_DIR` is set, else none (the default, and always in AWS).
    pub fn from_env() -> Option<Self> {
        let env = crate::base::config::LambdaEnv::get();
        let dir = env.call_log_dir.as_ref()?;
        let function = env.function_name.as_deref().unwrap_or("unknown");
        std::fs::create_dir_all(dir).ok()?;
        let path = dir.join(format!("{function}.calls"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        Some(CallRecorder {
            file: Arc::new(Mutex::new((file, Default::default()))),
        })
    }
}

impl CallRecorder {
    /// Record `action` (an IAM action) for a call made without an SDK client (`outside::lambda`).
    pub fn record(&self, action: &str) {
        if let Ok(mut guard) = self.file.lock() {
            let (file, seen) = &mut *guard;
            // One write of the whole line: appends from several processes never interleave.
            if seen.insert(action.to_owned()) {
                let _ = file.write_all(format!("{action}\n").as_bytes());
            }
        }
    }
}

/// Whether a DynamoDB read goes to a secondary index (authorized on `table/<t>/index/*`).
fn on_index(context: &BeforeSerializationInterceptorContextRef<'_>) -> bool {
    use aws_sdk_dynamodb::operation::{query::QueryInput, scan::ScanInput};
    let input = context.input();
    input
        .downcast_ref::<QueryInput>()
        .map(|q| q.index_name.is_some())
        .or_else(|| {
            input
                .downcast_ref::<ScanInput>()
                .map(|s| s.index_name.is_some())
        })
        .unwrap_or(false)
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    // Not `read_before_execution`: a client interceptor runs that before the operation's own
    // configuration (with its `Metadata`) is in the bag.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            let mut line = iam_action(m.service(), m.name());
            if on_index(context) {
                line.push_str("@index");
            }
            self.record(&line);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_operations_map_to_their_iam_actions() {
        assert_eq!(iam_action("DynamoDB", "GetItem"), "dynamodb:GetItem");
        assert_eq!(
            iam_action("Secrets Manager", "GetSecretValue"),
            "secretsmanager:GetSecretValue"
        );
    }
}
