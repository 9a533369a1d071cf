//! Lambda's asynchronous invoke (`outside::lambda`), against a local Invoke API that answers as
//! the test says and keeps what it was sent: the request AWS would authenticate, refusals named
//! and not retried, throttling retried.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use axum::http::{HeaderMap, StatusCode};
use user_sync::outside::lambda::{InvokeError, LambdaClient};

/// What the stand-in Invoke API was sent: the path, the headers and the body of each request.
type Sent = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

/// A Lambda Invoke API answering each request with the next of `answers` (status, error type),
/// then 202.
async fn lambda_api(answers: &[(u16, &'static str)]) -> (String, Sent) {
    let sent: Sent = Arc::default();
    let answers = Arc::new(Mutex::new(answers.iter().copied().collect::<VecDeque<_>>()));
    let seen = Arc::clone(&sent);
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let (seen, answers) = (Arc::clone(&seen), Arc::clone(&answers));
            async move {
                seen.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), headers, body.to_vec()));
                match answers.lock().unwrap().pop_front() {
                    None => (
                        StatusCode::ACCEPTED,
                        [("x-amzn-errortype", "")],
                        String::new(),
                    ),
                    Some((status, error)) => (
                        StatusCode::from_u16(status).unwrap(),
                        [("x-amzn-errortype", error)],
                        format!(r#"{{"Type":"User","message":"{error} from the test"}}"#),
                    ),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, sent)
}

fn client(endpoint: &str, session_token: Option<&str>) -> LambdaClient {
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "secret-of-the-test",
        session_token.map(str::to_owned),
        None,
        "tests",
    );
    LambdaClient::new(
        endpoint,
        "eu-west-1",
        SharedCredentialsProvider::new(credentials),
    )
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
fn expected_signature(path: &str, headers: &HeaderMap, body: &[u8], secret: &str) -> String {
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
    let scope = format!("{}/eu-west-1/lambda/aws4_request", &time[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{time}\n{scope}\n{}",
        sha256_hex(request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), &time[..8]);
    for part in ["eu-west-1", "lambda", "aws4_request"] {
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
        expected_signature(path, headers, body, "secret-of-the-test"),
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
        InvokeError::Refused { status, code, .. } => {
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
