//! The deliveries' signature (the Phase Two extension's HMAC), and the queue's deduplication id.

use aws_lc_rs::{digest, hmac};

/// `X-Keycloak-Signature`: the lowercase hex HMAC-SHA256 of the raw body with the shared
/// secret (RFC 2104), as the Phase Two extension signs. Compared in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(tag) = header.and_then(|h| hex::decode(h.trim()).ok()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &tag).is_ok()
}

/// The signature the extension would send (the emulator's and the tests' side).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(hmac::sign(&key, body).as_ref())
}

/// The SQS deduplication id of an event id: at most 128 characters of a restricted alphabet,
/// so a digest of it.
pub fn deduplication_id(event_id: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, event_id.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hex_hmac_sha256_of_the_raw_body() {
        let body = br#"{"type":"admin.USER-UPDATE"}"#;
        let good = sign(b"s3cret", body);
        assert_eq!(good.len(), 64);
        assert!(signature_valid(b"s3cret", body, Some(&good)));
        assert!(signature_valid(b"s3cret", body, Some(&good.to_uppercase())));
        assert!(!signature_valid(b"other", body, Some(&good)));
        assert!(!signature_valid(b"s3cret", b"{}", Some(&good)));
        assert!(!signature_valid(b"s3cret", body, None));
        assert!(!signature_valid(b"s3cret", body, Some("zz")));
        assert!(!signature_valid(b"s3cret", body, Some("")));
    }

    #[test]
    fn a_deduplication_id_fits_sqs() {
        let id = deduplication_id(&"x".repeat(500));
        assert!(id.len() <= 128 && id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
