//! The AWS APIs the functions call besides DynamoDB's: Lambda's asynchronous Invoke
//! (`outside::lambda`), Secrets Manager's GetSecretValue (`outside::secrets`), and SQS's
//! SendMessage and ChangeMessageVisibility (the webhook queue, `features::hooks`), each signed
//! by AWS's own SigV4 signer (`aws-sigv4`).
//!
//! Not through their SDK crates: for these four operations, the generated clients were the
//! largest compilation units of every build (aws-sdk-lambda 124 s, aws-sdk-secretsmanager 37 s
//! and aws-sdk-sqs 35 s of the arm64 artifacts' 1 028 s, then the longest part of `make test`).
//! DynamoDB, whose API the store uses widely, keeps its SDK client. What the SDK clients did is
//! kept, from the same shared configuration (`services::aws_setup`):
//! - the endpoint from the service's own variable (`AWS_ENDPOINT_URL_LAMBDA`,
//!   `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_SQS`) or profile section, then
//!   `AWS_ENDPOINT_URL`, then the region's own (FIPS and dual-stack honoured; the `aws`, `aws-cn`
//!   and `aws-us-gov` partitions);
//! - credentials from the configuration's provider chain (which caches them), asked per call;
//! - throttling and transient failures retried as the SDK's standard mode is configured in
//!   `services` (5 attempts, jittered exponential backoff); a refusal is not retried;
//! - the JSON protocol of Secrets Manager (1.1) and SQS (1.0): `X-Amz-Target`, the error's
//!   `__type` as its code;
//! - every call recorded under its IAM action for the stack's IAM test (`aws_calls`).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::aws_calls::CallRecorder;

/// Attempts per call, as the SDK's standard retry mode is configured here (`services`).
const ATTEMPTS: u32 = 5;
/// Standard mode's backoff: a random share of min(1 s × 2^(attempt − 1), 20 s).
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// How long one attempt may take (each of these calls is answered at once).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The error codes the SDK's standard retry mode counts as throttling or transient, whatever
/// the status they come with.
const RETRIED_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// One AWS service as these calls need it.
#[derive(Debug)]
pub struct Service {
    /// The SDK's service id: names the endpoint variable (`AWS_ENDPOINT_URL_<ID>`).
    pub id: &'static str,
    /// The signing name, the endpoint's prefix and the IAM actions' prefix.
    pub name: &'static str,
    /// The JSON protocol's target prefix and content type, for the services that speak it.
    json: Option<(&'static str, &'static str)>,
}

pub const LAMBDA: Service = Service {
    id: "Lambda",
    name: "lambda",
    json: None,
};
pub const SECRETS_MANAGER: Service = Service {
    id: "Secrets Manager",
    name: "secretsmanager",
    json: Some(("secretsmanager", "application/x-amz-json-1.1")),
};
pub const SQS: Service = Service {
    id: "SQS",
    name: "sqs",
    json: Some(("AmazonSQS", "application/x-amz-json-1.0")),
};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error("could not sign the request: {0}")]
    Signing(String),
    /// The service answered, and refused (no such resource, access denied, invalid input, …).
    #[error("{service} answered {status} {code}: {message}")]
    Refused {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer (connection refused, timed out), only throttling and server errors, or an
    /// answer that could not be read.
    #[error("{service} did not answer: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
}

impl CallError {
    /// The refusal's error code (`ResourceNotFoundException`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// One service's API in one account and region, built once per cold start (`services`).
#[derive(Clone)]
pub struct AwsApi {
    service: &'static Service,
    endpoint: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    recorder: Option<CallRecorder>,
    /// Built on the first call: some functions never make one.
    http: Arc<OnceLock<reqwest::Client>>,
}

impl std::fmt::Debug for AwsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsApi")
            .field("service", &self.service.id)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// `service`'s endpoint in `region` when nothing overrides it.
pub fn regional_endpoint(service: &Service, region: &str, fips: bool, dual_stack: bool) -> String {
    let name = service.name;
    let host = if fips {
        format!("{name}-fips")
    } else {
        name.to_owned()
    };
    let suffix = match (region.starts_with("cn-"), dual_stack) {
        (true, false) => "amazonaws.com.cn",
        (true, true) => "api.amazonwebservices.com.cn",
        (false, false) => "amazonaws.com",
        (false, true) => "api.aws",
    };
    format!("https://{host}.{region}.{suffix}")
}

impl AwsApi {
    /// From the shared AWS configuration, as an SDK client would be.
    pub fn from_config(
        service: &'static Service,
        aws: &aws_config::SdkConfig,
        recorder: Option<CallRecorder>,
    ) -> Self {
        let region = aws.region().map(|r| r.to_string()).unwrap_or_default();
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id(service.id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .ok();
        let endpoint = aws
            .service_config()
            .zip(key)
            .and_then(|(c, key)| c.load_config(key))
            .or_else(|| aws.endpoint_url().map(str::to_owned))
            .unwrap_or_else(|| {
                regional_endpoint(
                    service,
                    &region,
                    aws.use_fips().unwrap_or(false),
                    aws.use_dual_stack().unwrap_or(false),
                )
            });
        AwsApi {
            service,
            endpoint,
            region,
            credentials: aws.credentials_provider(),
            recorder,
            http: Arc::default(),
        }
    }

    /// `service`'s API at `endpoint` (tests and tools with their own endpoints).
    pub fn new(
        service: &'static Service,
        endpoint: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        AwsApi {
            service,
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            credentials: Some(credentials),
            recorder: None,
            http: Arc::default(),
        }
    }

    /// Where the calls go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One operation of a JSON-protocol service (`X-Amz-Target: <prefix>.<operation>`): the
    /// answer's JSON (`null` for an empty one). The operation's name is its IAM action.
    pub async fn call(
        &self,
        operation: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        let (prefix, content_type) = self.service.json.ok_or_else(|| {
            CallError::Signing(format!("{} has no JSON protocol", self.service.id))
        })?;
        let target = format!("{prefix}.{operation}");
        let body = serde_json::to_vec(input).map_err(|e| CallError::Signing(e.to_string()))?;
        let headers = [
            ("content-type", content_type),
            ("x-amz-target", target.as_str()),
        ];
        let answer = self.send(operation, "/", &headers, body).await?;
        if answer.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&answer)
            .map_err(|e| self.unavailable(format!("unreadable answer: {e}")))
    }

    /// A signed POST of `body` to `path` (already percent-encoded), retried as the standard
    /// mode retries; recorded as `<service>:<action>`. The answer's body once it succeeds.
    pub(crate) async fn send(
        &self,
        action: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        if let Some(r) = &self.recorder {
            r.record(&format!("{}:{action}", self.service.name));
        }
        let url = format!("{}{path}", self.endpoint.trim_end_matches('/'));
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                let ceiling = BACKOFF_CAP.min(BACKOFF_BASE * 2u32.pow(attempt - 2));
                tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
            }
            match self.attempt(&url, headers, &body).await? {
                Attempt::Answered(answer) => return Ok(answer),
                Attempt::Retry(why) => last = why,
            }
        }
        Err(self.unavailable(format!("{last} (after {ATTEMPTS} attempts)")))
    }

    async fn attempt(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Attempt, CallError> {
        let request = self.signed(url, headers, body).await?;
        let http = self.http()?;
        let answer = match http.execute(request).await {
            Ok(a) => a,
            Err(e) => return Ok(Attempt::Retry(transport(&e))),
        };
        let status = answer.status().as_u16();
        let code = answer
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let success = answer.status().is_success();
        let body = match answer.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return Ok(Attempt::Retry(transport(&e))),
        };
        if success {
            return Ok(Attempt::Answered(body));
        }
        let (code, message) = error_of(code, &body);
        if status == 429 || status >= 500 || RETRIED_CODES.contains(&code.as_str()) {
            return Ok(Attempt::Retry(format!("{status} {code}: {message}")));
        }
        Err(CallError::Refused {
            service: self.service.id,
            status,
            code,
            message,
        })
    }

    /// The request, signed with the credentials of this moment.
    async fn signed(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<reqwest::Request, CallError> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| CallError::Credentials("no credentials provider".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| CallError::Credentials(e.to_string()))?;
        let identity = Identity::from(credentials);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CallError::Signing(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| CallError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| CallError::Signing(e.to_string()))?
            .into_parts();
        let mut request = http::Request::builder().method("POST").uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request
            .body(body.to_vec())
            .map_err(|e| CallError::Signing(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        reqwest::Request::try_from(request).map_err(|e| CallError::Signing(e.to_string()))
    }

    fn http(&self) -> Result<&reqwest::Client, CallError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| self.unavailable(transport(&e)))?;
        Ok(self.http.get_or_init(|| client))
    }

    fn unavailable(&self, reason: String) -> CallError {
        CallError::Unavailable {
            service: self.service.id,
            reason,
        }
    }
}

enum Attempt {
    Answered(Vec<u8>),
    Retry(String),
}

/// A transport failure, in words (reqwest's own chain of causes).
fn transport(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The error code and message of a refusal: the `x-amzn-ErrorType` header, else the body's
/// `__type`/`Type`, as the SDK reads them (`aws.protocols#Shape:extra` → `Shape`); the body's
/// `message`/`Message`.
fn error_of(header: Option<String>, body: &[u8]) -> (String, String) {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| json.get(*n).and_then(|v| v.as_str()))
            .map(str::to_owned)
    };
    let code = header
        .or_else(|| field(&["__type", "Type"]))
        .map(|c| {
            let shape = c.rsplit('#').next().unwrap_or(&c);
            shape.split(':').next().unwrap_or(shape).to_owned()
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "UnknownError".into());
    let message = field(&["message", "Message", "errorMessage"])
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_regional_endpoint_follows_the_service_partition_fips_and_dual_stack() {
        assert_eq!(
            regional_endpoint(&LAMBDA, "eu-west-1", false, false),
            "https://lambda.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint(&SQS, "us-east-1", true, false),
            "https://sqs-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint(&SECRETS_MANAGER, "us-gov-west-1", false, false),
            "https://secretsmanager.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint(&LAMBDA, "cn-north-1", false, false),
            "https://lambda.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            regional_endpoint(&LAMBDA, "eu-west-1", false, true),
            "https://lambda.eu-west-1.api.aws"
        );
    }

    #[test]
    fn a_refusal_names_its_code_from_the_header_else_the_body() {
        let body = br#"{"Type":"User","message":"Function not found: arn:aws:lambda:x"}"#;
        assert_eq!(
            error_of(Some("ResourceNotFoundException".into()), body),
            (
                "ResourceNotFoundException".into(),
                "Function not found: arn:aws:lambda:x".into()
            )
        );
        assert_eq!(
            error_of(
                None,
                br#"{"__type":"AccessDeniedException","Message":"no"}"#
            ),
            ("AccessDeniedException".into(), "no".into())
        );
        assert_eq!(
            error_of(
                None,
                br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}"#
            ),
            ("QueueDoesNotExist".into(), "gone".into())
        );
        assert_eq!(
            error_of(Some("ValidationException:http://internal".into()), b"{}").0,
            "ValidationException"
        );
        assert_eq!(
            error_of(None, b"bad gateway"),
            ("UnknownError".into(), "bad gateway".into())
        );
    }
}
