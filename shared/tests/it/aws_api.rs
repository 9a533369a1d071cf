//! The AWS calls made without their SDK crates (`outside::aws_api`): Lambda's asynchronous
//! invoke (`outside::lambda`) and the JSON protocol of Secrets Manager and SQS, against a local
//! API that answers as the test says and keeps what it was sent (the request AWS would
//! authenticate, refusals named and not retried, throttling retried), and against moto's SQS.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use user_sync::outside::aws_api::{AwsApi, CallError, SECRETS_MANAGER, SQS};
use user_sync::outside::lambda::LambdaClient;

use crate::common;

/// What the stand-in API was sent: the path, the headers and the body of each request.
type Sent = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

/// An answer of the stand-in: status, `x-amzn-errortype` header, body.
type Answer = (u16, &'static str, String);

/// An API answering each request with the next of `answers`, then with `otherwise`.
async fn stand_in(answers: Vec<Answer>, otherwise: Answer) -> (String, Sent) {
    let sent: Sent = Arc::default();
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let seen = Arc::clone(&sent);
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, answers, otherwise) =
                (Arc::clone(&seen), Arc::clone(&answers), otherwise.clone());
            async move {
                seen.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), headers, body.to_vec()));
                let (status, error, body) =
                    answers.lock().unwrap().pop_front().unwrap_or(otherwise);
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("x-amzn-errortype", error)],
                    body,
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, sent)
}

/// A Lambda Invoke API answering each request with the next of `answers` (status, error type),
/// then 202.
async fn lambda_api(answers: &[(u16, &'static str)]) -> (String, Sent) {
    let answers = answers
        .iter()
        .map(|&(status, error)| {
            let body = format!(r#"{{"Type":"User","message":"{error} from the test"}}"#);
            (status, error, body)
        })
        .collect();
    stand_in(answers, (202, "", String::new())).await
}

fn credentials(session_token: Option<&str>) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "AKIDEXAMPLE",
        "secret-of-the-test",
        session_token.map(str::to_owned),
        None,
        "tests",
    ))
}

fn client(endpoint: &str, session_token: Option<&str>) -> LambdaClient {
    LambdaClient::new(endpoint, "eu-west-1", credentials(session_token))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&key, data.as_bytes())
        .as_ref()
        .to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// The SigV4 signature AWS computes for a request as it arrived (path, headers, body), written
/// from AWS's description of the algorithm: a canonical request (the path encoded once more),
/// the string to sign, the key derived from the secret, date, region and service.
fn expected_signature(
    service: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> String {
    let authorization = header(headers, "authorization");
    let signed = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    let canonical_headers: String = signed
        .split(';')
        .map(|name| format!("{name}:{}\n", header(headers, name).trim()))
        .collect();
    let path = path.replace('%', "%25");
    let request = format!(
        "POST\n{path}\n\n{canonical_headers}\n{signed}\n{}",
        sha256_hex(body)
    );
    let time = header(headers, "x-amz-date");
    let scope = format!("{}/eu-west-1/{service}/aws4_request", &time[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{time}\n{scope}\n{}",
        sha256_hex(request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), &time[..8]);
    for part in ["eu-west-1", service, "aws4_request"] {
        key = hmac(&key, part);
    }
    hex::encode(hmac(&key, &to_sign))
}

#[tokio::test]
async fn an_invoke_is_queued_as_an_event_signed_for_lambda_in_the_region() {
    let (endpoint, sent) = lambda_api(&[]).await;
    let function = "arn:aws:lambda:eu-west-1:123456789012:function:bulk-sync";
    client(&endpoint, Some("session-of-the-test"))
        .invoke_event(function, br#"{"mode":"full"}"#.to_vec())
        .await
        .unwrap();

    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    let (path, headers, body) = &sent[0];
    assert_eq!(
        path,
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Abulk-sync/invocations",
        "the function's ARN is one path label"
    );
    assert_eq!(body, br#"{"mode":"full"}"#);
    assert_eq!(header(headers, "x-amz-invocation-type"), "Event");
    let authorization = header(headers, "authorization");
    let date = &header(headers, "x-amz-date")[..8];
    assert!(
        authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{date}/eu-west-1/lambda/aws4_request, "
        )),
        "{authorization}"
    );
    assert!(
        authorization.contains(
            "SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type;x-amz-security-token,"
        ),
        "the invocation type is signed too: {authorization}"
    );
    assert_eq!(
        header(headers, "x-amz-security-token"),
        "session-of-the-test"
    );
    assert!(!authorization.contains("secret-of-the-test"));
    let signature = authorization.rsplit("Signature=").next().unwrap();
    assert_eq!(
        signature,
        expected_signature("lambda", path, headers, body, "secret-of-the-test"),
        "the signature AWS would compute from the request as it arrived (its host header included)"
    );
}

#[tokio::test]
async fn a_refused_invoke_names_the_refusal_and_is_not_retried() {
    let (endpoint, sent) = lambda_api(&[(404, "ResourceNotFoundException")]).await;
    let e = client(&endpoint, None)
        .invoke_event("bulk-sync", b"{}".to_vec())
        .await
        .unwrap_err();
    match &e {
        CallError::Refused { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (404, "ResourceNotFoundException"))
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .contains("ResourceNotFoundException from the test"));
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_throttled_invoke_is_retried_until_lambda_accepts_it() {
    let (endpoint, sent) = lambda_api(&[(429, "TooManyRequestsException")]).await;
    client(&endpoint, None)
        .invoke_event("bulk-sync", b"{}".to_vec())
        .await
        .unwrap();
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].2, sent[1].2, "the same event both times");
}

/// Secrets Manager's API at a stand-in answering `answers` first, then `{"SecretString": "{}"}`.
async fn secrets_api(answers: Vec<Answer>) -> (AwsApi, Sent) {
    let found = (200, "", json!({ "SecretString": "{}" }).to_string());
    let (endpoint, sent) = stand_in(answers, found).await;
    let api = AwsApi::new(&SECRETS_MANAGER, &endpoint, "eu-west-1", credentials(None));
    (api, sent)
}

#[tokio::test]
async fn a_json_call_is_signed_with_its_target_for_the_service_in_the_region() {
    let (api, sent) = secrets_api(vec![]).await;
    let input = json!({ "SecretId": "login", "VersionStage": "AWSPREVIOUS" });
    let answer = api.call("GetSecretValue", &input).await.unwrap();
    assert_eq!(answer, json!({ "SecretString": "{}" }));

    let sent = sent.lock().unwrap();
    let (path, headers, body) = &sent[0];
    assert_eq!(path, "/");
    assert_eq!(
        header(headers, "x-amz-target"),
        "secretsmanager.GetSecretValue"
    );
    assert_eq!(
        header(headers, "content-type"),
        "application/x-amz-json-1.1"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(body).unwrap(),
        input
    );
    let authorization = header(headers, "authorization");
    assert!(
        authorization.contains("/eu-west-1/secretsmanager/aws4_request, "),
        "{authorization}"
    );
    assert!(
        authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target,"),
        "the operation is signed too: {authorization}"
    );
    let signature = authorization.rsplit("Signature=").next().unwrap();
    assert_eq!(
        signature,
        expected_signature("secretsmanager", path, headers, body, "secret-of-the-test")
    );
}

#[tokio::test]
async fn a_json_refusal_names_its_code_and_is_not_retried() {
    let not_found = json!({
        "__type": "ResourceNotFoundException",
        "Message": "Secrets Manager can't find the specified secret value for staging label: AWSPREVIOUS",
    });
    let (api, sent) = secrets_api(vec![(400, "", not_found.to_string())]).await;
    let e = api
        .call("GetSecretValue", &json!({ "SecretId": "login" }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ResourceNotFoundException"));
    assert!(e.to_string().contains("staging label: AWSPREVIOUS"), "{e}");
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_json_call_throttled_with_400_is_retried_until_it_is_answered() {
    let throttled = json!({ "__type": "ThrottlingException", "Message": "Rate exceeded" });
    let (api, sent) = secrets_api(vec![(400, "", throttled.to_string())]).await;
    api.call("GetSecretValue", &json!({ "SecretId": "login" }))
        .await
        .unwrap();
    assert_eq!(sent.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_api_that_never_answers_is_unavailable_after_the_standard_attempts() {
    let (api, sent) = secrets_api(vec![(503, "", String::new()); 5]).await;
    let e = api
        .call("GetSecretValue", &json!({ "SecretId": "login" }))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("after 5 attempts"), "{e}");
    assert_eq!(sent.lock().unwrap().len(), 5);
}

/// SQS's API in moto, as the webhook intake and consumer call it.
fn moto_sqs() -> AwsApi {
    let local = Credentials::new("local", "local", None, None, "tests");
    AwsApi::new(
        &SQS,
        common::moto(),
        "us-east-1",
        SharedCredentialsProvider::new(local),
    )
}

#[tokio::test]
async fn sqs_takes_a_fifo_message_and_its_visibility_change_in_its_json_protocol() {
    let sqs = moto_sqs();
    let name = format!("{}.fifo", common::unique("hooks"));
    let created = sqs
        .call(
            "CreateQueue",
            &json!({ "QueueName": name, "Attributes": { "FifoQueue": "true" } }),
        )
        .await
        .unwrap();
    let url = created["QueueUrl"].as_str().unwrap();
    let message = json!({
        "QueueUrl": url,
        "MessageBody": "{\"userId\":\"u-1\"}",
        "MessageGroupId": "u-1",
        "MessageDeduplicationId": "event-1",
    });
    sqs.call("SendMessage", &message).await.unwrap();
    sqs.call("SendMessage", &message).await.unwrap();

    let received = sqs
        .call(
            "ReceiveMessage",
            &json!({ "QueueUrl": url, "MaxNumberOfMessages": 10, "MessageSystemAttributeNames": ["All"] }),
        )
        .await
        .unwrap();
    let messages = received["Messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "one message per deduplication id");
    assert_eq!(messages[0]["Body"], "{\"userId\":\"u-1\"}");
    assert_eq!(messages[0]["Attributes"]["MessageGroupId"], "u-1");
    let postpone = json!({
        "QueueUrl": url,
        "ReceiptHandle": messages[0]["ReceiptHandle"],
        "VisibilityTimeout": 0,
    });
    sqs.call("ChangeMessageVisibility", &postpone)
        .await
        .unwrap();
    let again = sqs
        .call("ReceiveMessage", &json!({ "QueueUrl": url }))
        .await
        .unwrap();
    assert_eq!(
        again["Messages"].as_array().map(Vec::len),
        Some(1),
        "visible again at once"
    );
}

#[tokio::test]
async fn a_message_to_a_missing_queue_is_refused_by_name() {
    let url = format!("{}/123456789012/{}", common::moto(), common::unique("gone"));
    let message = json!({ "QueueUrl": url, "MessageBody": "{}" });
    let e = moto_sqs().call("SendMessage", &message).await.unwrap_err();
    assert!(matches!(e, CallError::Refused { status: 400, .. }), "{e:?}");
    assert_eq!(e.code(), Some("QueueDoesNotExist"), "{e}");
}
