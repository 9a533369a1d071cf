//! Lambda's asynchronous Invoke, the one Lambda call the functions make (`POST /admin/sync` and
//! a run handing over to its follow-up), signed by AWS's own SigV4 signer (`aws-sigv4`).
//!
//! Not through `aws-sdk-lambda`: for this one operation, that client's generated code was the
//! largest compilation unit of every build (124 s of the arm64 artifacts' 1 028 s, the longest
//! part of `make test`). What the SDK client did is kept, from the same shared configuration:
//! the endpoint from `AWS_ENDPOINT_URL_LAMBDA` (or the `lambda` profile section), then
//! `AWS_ENDPOINT_URL`, then the region's own (FIPS and dual-stack honoured; the `aws`, `aws-cn`
//! and `aws-us-gov` partitions); credentials from the configuration's provider chain, asked per
//! call (an invoke is rare: once per `POST /admin/sync` or hand-over); throttling and transient
//! failures retried as the SDK's standard mode does (5 attempts, jittered exponential backoff);
//! the call recorded as `lambda:InvokeFunction` for the IAM test.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::aws_calls::CallRecorder;

/// Attempts per invoke, as the SDK's standard retry mode is configured here (`services`).
const ATTEMPTS: u32 = 5;
/// Standard mode's backoff: a random share of min(1 s × 2^(attempt − 1), 20 s).
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// How long one attempt may take (an asynchronous invoke is answered once it is queued).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A path label as the SDK encodes it: everything but unreserved characters (an ARN's `:` too).
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error("could not sign the request: {0}")]
    Signing(String),
    /// Lambda answered, and refused (the function does not exist, access denied, …).
    #[error("Lambda answered {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer (connection refused, timed out), or only throttling and server errors.
    #[error("Lambda did not accept the invoke: {0}")]
    Unavailable(String),
}

/// The Lambda API of one account and region, built once per cold start (`services`).
#[derive(Clone)]
pub struct LambdaClient {
    endpoint: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    recorder: Option<CallRecorder>,
    /// Built on the first invoke: most functions never make one.
    http: Arc<OnceLock<reqwest::Client>>,
}

impl std::fmt::Debug for LambdaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaClient")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Lambda's endpoint in `region` when nothing overrides it.
pub fn regional_endpoint(region: &str, fips: bool, dual_stack: bool) -> String {
    let service = if fips { "lambda-fips" } else { "lambda" };
    let suffix = match (region.starts_with("cn-"), dual_stack) {
        (true, false) => "amazonaws.com.cn",
        (true, true) => "api.amazonwebservices.com.cn",
        (false, false) => "amazonaws.com",
        (false, true) => "api.aws",
    };
    format!("https://{service}.{region}.{suffix}")
}

impl LambdaClient {
    /// From the shared AWS configuration, as an SDK client would be.
    pub fn from_config(aws: &aws_config::SdkConfig, recorder: Option<CallRecorder>) -> Self {
        let region = aws.region().map(|r| r.to_string()).unwrap_or_default();
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id("Lambda")
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
                    &region,
                    aws.use_fips().unwrap_or(false),
                    aws.use_dual_stack().unwrap_or(false),
                )
            });
        LambdaClient {
            endpoint,
            region,
            credentials: aws.credentials_provider(),
            recorder,
            http: Arc::default(),
        }
    }

    /// A client of the Lambda API at `endpoint` (tests and tools with their own endpoints).
    pub fn new(endpoint: &str, region: &str, credentials: SharedCredentialsProvider) -> Self {
        LambdaClient {
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            credentials: Some(credentials),
            recorder: None,
            http: Arc::default(),
        }
    }

    /// Where the invokes go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Queue `payload` (JSON) for an asynchronous invocation of `function` (a name or an ARN):
    /// done once Lambda answers 202.
    pub async fn invoke_event(&self, function: &str, payload: Vec<u8>) -> Result<(), InvokeError> {
        if let Some(r) = &self.recorder {
            r.record("lambda:InvokeFunction");
        }
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.endpoint.trim_end_matches('/'),
            utf8_percent_encode(function, LABEL)
        );
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                let ceiling = BACKOFF_CAP.min(BACKOFF_BASE * 2u32.pow(attempt - 2));
                tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
            }
            match self.attempt(&url, &payload).await? {
                Attempt::Accepted => return Ok(()),
                Attempt::Retry(why) => last = why,
            }
        }
        Err(InvokeError::Unavailable(format!(
            "{last} (after {ATTEMPTS} attempts)"
        )))
    }

    async fn attempt(&self, url: &str, payload: &[u8]) -> Result<Attempt, InvokeError> {
        let request = self.signed(url, payload).await?;
        let http = self.http()?;
        let answer = match http.execute(request).await {
            Ok(a) => a,
            Err(e) => return Ok(Attempt::Retry(transport(&e))),
        };
        let status = answer.status().as_u16();
        if answer.status().is_success() {
            return Ok(Attempt::Accepted);
        }
        let code = answer
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let body = answer.bytes().await.unwrap_or_default();
        let (code, message) = error_of(code, &body);
        if status == 429 || status >= 500 {
            return Ok(Attempt::Retry(format!("{status} {code}: {message}")));
        }
        Err(InvokeError::Refused {
            status,
            code,
            message,
        })
    }

    /// The invoke request, signed with the credentials of this moment.
    async fn signed(&self, url: &str, payload: &[u8]) -> Result<reqwest::Request, InvokeError> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| InvokeError::Credentials("no credentials provider".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| InvokeError::Credentials(e.to_string()))?;
        let identity = Identity::from(credentials);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| InvokeError::Signing(e.to_string()))?
            .into();
        let headers = [
            ("content-type", "application/json"),
            ("x-amz-invocation-type", "Event"),
        ];
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(payload),
        )
        .map_err(|e| InvokeError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| InvokeError::Signing(e.to_string()))?
            .into_parts();
        let mut request = http::Request::builder().method("POST").uri(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut request = request
            .body(payload.to_vec())
            .map_err(|e| InvokeError::Signing(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        reqwest::Request::try_from(request).map_err(|e| InvokeError::Signing(e.to_string()))
    }

    fn http(&self) -> Result<&reqwest::Client, InvokeError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| InvokeError::Unavailable(transport(&e)))?;
        Ok(self.http.get_or_init(|| client))
    }
}

enum Attempt {
    Accepted,
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
/// `__type`/`Type`; the body's `message`/`Message`.
fn error_of(code: Option<String>, body: &[u8]) -> (String, String) {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| json.get(*n).and_then(|v| v.as_str()))
            .map(str::to_owned)
    };
    let code = code
        .or_else(|| field(&["__type", "Type"]))
        .unwrap_or_else(|| "UnknownError".into());
    let message = field(&["message", "Message", "errorMessage"])
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_regional_endpoint_follows_the_partition_fips_and_dual_stack() {
        assert_eq!(
            regional_endpoint("eu-west-1", false, false),
            "https://lambda.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("us-east-1", true, false),
            "https://lambda-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("us-gov-west-1", false, false),
            "https://lambda.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("cn-north-1", false, false),
            "https://lambda.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            regional_endpoint("eu-west-1", false, true),
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
            error_of(None, b"bad gateway"),
            ("UnknownError".into(), "bad gateway".into())
        );
    }
}
