//! `LambdaEnv`: what the Lambda runtime sets (the function's name) and what only the local stack
//! and its tests set (the declared timeout `cargo lambda watch` cannot give, the AWS call log),
//! read once per process. Every function reads these, whichever other configuration it has.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::lookup;

/// The runtime's part of the environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LambdaEnv {
    /// `AWS_LAMBDA_FUNCTION_NAME`, set by Lambda (and by `cargo lambda watch`).
    pub function_name: Option<String>,
    /// `FUNCTION_TIMEOUT_SECONDS`: the function's timeout, declared for local runs, where the
    /// runtime's deadline is a fixed placeholder (`deadline::of_invocation`).
    pub declared_timeout_s: Option<u64>,
    /// `AWS_CALL_LOG_DIR`: where the test stacks record each AWS call (`aws_calls`); never set
    /// in a deployment.
    pub call_log_dir: Option<PathBuf>,
}

impl LambdaEnv {
    /// The process's, read on first use.
    pub fn get() -> &'static LambdaEnv {
        static ENV: OnceLock<LambdaEnv> = OnceLock::new();
        ENV.get_or_init(|| Self::from_lookup(|k| std::env::var(k).ok()))
    }

    /// Unreadable values count as unset: none of them is required.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let value = |name: &str| lookup::value(&get, name);
        LambdaEnv {
            function_name: value("AWS_LAMBDA_FUNCTION_NAME"),
            declared_timeout_s: value("FUNCTION_TIMEOUT_SECONDS").and_then(|v| v.parse().ok()),
            call_log_dir: value("AWS_CALL_LOG_DIR").map(PathBuf::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtimes_variables_are_read_and_a_malformed_timeout_counts_as_unset() {
        let env = crate::base::config::lookup::fixed;
        let e = LambdaEnv::from_lookup(env(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "bulk-sync"),
            ("FUNCTION_TIMEOUT_SECONDS", " 30 "),
            ("AWS_CALL_LOG_DIR", "/tmp/calls"),
        ]));
        assert_eq!(e.function_name.as_deref(), Some("bulk-sync"));
        assert_eq!(e.declared_timeout_s, Some(30));
        assert_eq!(e.call_log_dir, Some(PathBuf::from("/tmp/calls")));
        let e = LambdaEnv::from_lookup(env(&[("FUNCTION_TIMEOUT_SECONDS", "soon")]));
        assert_eq!(e, LambdaEnv::default());
    }
}
