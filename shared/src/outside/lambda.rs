//! Lambda's asynchronous Invoke, the one Lambda call the functions make (`POST /admin/sync` and
//! a run handing over to its follow-up), signed and sent as `outside::aws_api` sends every AWS
//! call but DynamoDB's; recorded as `lambda:InvokeFunction`.

use aws_credential_types::provider::SharedCredentialsProvider;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::aws_api::{AwsApi, CallError, LAMBDA};

/// A path label as the SDK encodes it: everything but unreserved characters (an ARN's `:` too).
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The Lambda API of one account and region, built once per cold start (`services`).
#[derive(Clone, Debug)]
pub struct LambdaClient {
    api: AwsApi,
}

impl LambdaClient {
    /// Over Lambda's API (`aws_api::LAMBDA`, from the shared configuration: `services`).
    pub(crate) fn new_from(api: AwsApi) -> Self {
        LambdaClient { api }
    }

    /// A client of the Lambda API at `endpoint` (tests and tools with their own endpoints).
    pub fn new(endpoint: &str, region: &str, credentials: SharedCredentialsProvider) -> Self {
        LambdaClient {
            api: AwsApi::new(&LAMBDA, endpoint, region, credentials),
        }
    }

    /// Where the invokes go.
    pub fn endpoint(&self) -> &str {
        self.api.endpoint()
    }

    /// Queue `payload` (JSON) for an asynchronous invocation of `function` (a name or an ARN):
    /// done once Lambda answers 202.
    pub async fn invoke_event(&self, function: &str, payload: Vec<u8>) -> Result<(), CallError> {
        let path = format!(
            "/2015-03-31/functions/{}/invocations",
            utf8_percent_encode(function, LABEL)
        );
        let headers = [
            ("content-type", "application/json"),
            ("x-amz-invocation-type", "Event"),
        ];
        self.api
            .send("InvokeFunction", &path, &headers, payload)
            .await
            .map(drop)
    }
}
