//! Token signing and checking, the way Keycloak does it: RS256 access tokens with a `kid` (and
//! Keycloak's odd header spacing), HS512 refresh tokens, a JWKS with a `sig` and an `enc` key.
//! Keys are generated at start and live only in memory; they are never written anywhere.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

pub struct RsaKey {
    pub kid: String,
    pair: RsaKeyPair,
    n: String,
    e: String,
    /// base64 SubjectPublicKeyInfo, as `GET /realms/{r}` publishes it.
    pub spki_b64: String,
}

impl RsaKey {
    fn generate() -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let parts: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let spki = pair.public_key().as_der().expect("SPKI encoding");
        let kid = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, spki.as_ref()).as_ref());
        RsaKey {
            kid,
            n: URL_SAFE_NO_PAD.encode(&parts.n),
            e: URL_SAFE_NO_PAD.encode(&parts.e),
            spki_b64: STANDARD.encode(spki.as_ref()),
            pair,
        }
    }

    fn jwk(&self, alg: &str, usage: &str) -> Value {
        json!({"kid": self.kid, "kty": "RSA", "alg": alg, "use": usage, "n": self.n, "e": self.e})
    }
}

pub struct Keys {
    pub sig: RsaKey,
    enc: RsaKey,
    hmac: hmac::Key,
    hmac_kid: String,
    /// Keyed hash for stored passwords, so no plaintext password sits in memory.
    password_key: hmac::Key,
    rng: SystemRandom,
}

impl Default for Keys {
    fn default() -> Self {
        Self::generate()
    }
}

impl Keys {
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let mut secret = [0u8; 64];
        rng.fill(&mut secret).expect("random");
        let mut pw = [0u8; 32];
        rng.fill(&mut pw).expect("random");
        Keys {
            sig: RsaKey::generate(),
            enc: RsaKey::generate(),
            hmac: hmac::Key::new(hmac::HMAC_SHA512, &secret),
            hmac_kid: uuid::Uuid::new_v4().to_string(),
            password_key: hmac::Key::new(hmac::HMAC_SHA256, &pw),
            rng,
        }
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.sig.jwk("RS256", "sig"), self.enc.jwk("RSA-OAEP", "enc")]})
    }

    /// RS256 JWS with Keycloak's header layout (`"typ" : "JWT"` with spaces).
    pub fn sign_rs256(&self, claims: &Value) -> String {
        self.sign_rs256_typed(claims, "JWT")
    }

    /// RS256 JWS with its own header `typ` (a logout token's is `logout+jwt`, contract §12).
    pub fn sign_rs256_typed(&self, claims: &Value, typ: &str) -> String {
        let header = format!(
            r#"{{"alg":"RS256","typ" : "{typ}","kid" : "{}"}}"#,
            self.sig.kid
        );
        let input = signing_input(&header, claims);
        let mut sig = vec![0u8; self.sig.pair.public_modulus_len()];
        self.sig
            .pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    pub fn sign_hs512(&self, claims: &Value) -> String {
        let header = format!(
            r#"{{"alg":"HS512","typ" : "JWT","kid" : "{}"}}"#,
            self.hmac_kid
        );
        let input = signing_input(&header, claims);
        let tag = hmac::sign(&self.hmac, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Claims of an RS256 token signed by us, or None (bad shape, alg, kid or signature).
    /// Expiry and issuer are the caller's business.
    pub fn verify_rs256(&self, token: &str) -> Option<Value> {
        let (input, header, claims, sig) = split(token)?;
        if header.get("alg")?.as_str()? != "RS256" || header.get("kid")?.as_str()? != self.sig.kid {
            return None;
        }
        let public = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.sig.pair.public_key().as_ref(),
        );
        public.verify(input.as_bytes(), &sig).ok()?;
        Some(claims)
    }

    pub fn verify_hs512(&self, token: &str) -> Option<Value> {
        let (input, header, claims, sig) = split(token)?;
        if header.get("alg")?.as_str()? != "HS512" {
            return None;
        }
        hmac::verify(&self.hmac, input.as_bytes(), &sig).ok()?;
        Some(claims)
    }

    pub fn hash_password(&self, password: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.password_key, password.as_bytes()).as_ref())
    }
}

fn signing_input(header: &str, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn split(token: &str) -> Option<(&str, Value, Value, Vec<u8>)> {
    let (input, sig) = token.rsplit_once('.')?;
    let (h, c) = input.split_once('.')?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    Some((input, header, claims, URL_SAFE_NO_PAD.decode(sig).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs256_tokens_verify_and_tampered_ones_do_not() {
        let keys = Keys::generate();
        let token = keys.sign_rs256(&json!({"sub": "a"}));
        assert!(token.starts_with("eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6IC"));
        assert_eq!(keys.verify_rs256(&token).unwrap()["sub"], "a");
        let forged = format!("{}x", &token[..token.len() - 1]);
        assert!(keys.verify_rs256(&forged).is_none());
        assert!(keys.verify_rs256(&keys.sign_hs512(&json!({}))).is_none());
    }

    #[test]
    fn hs512_tokens_verify_only_with_this_process_key() {
        let keys = Keys::generate();
        let other = Keys::generate();
        let token = keys.sign_hs512(&json!({"typ": "Refresh"}));
        assert!(keys.verify_hs512(&token).is_some());
        assert!(other.verify_hs512(&token).is_none());
    }
}
