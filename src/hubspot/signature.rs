//! HubSpot webhook request validation, as pure functions (time is passed in).
//!
//! - v3 (`X-HubSpot-Signature-v3`): Base64 HMAC-SHA256, keyed by the app's client secret, of
//!   method + URI + raw body + `X-HubSpot-Request-Timestamp`; requests older than 5 minutes are
//!   refused. HubSpot signs the URI with some characters percent-decoded, so the same decoding
//!   is applied before signing.
//! - v1 (`X-HubSpot-Signature`, version v1): hex SHA-256 of secret + body (Webhooks API).
//! - v2 (version v2): hex SHA-256 of secret + method + URI + body (workflow webhooks).
//!
//! Comparisons are constant-time; error messages never carry the secret or the body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Oldest (and furthest in the future) a v3 timestamp may be, in milliseconds.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A required header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The timestamp is not epoch milliseconds.
    #[error("X-HubSpot-Request-Timestamp is not a number of milliseconds")]
    MalformedTimestamp,
    /// Older than five minutes (a replay, or a clock far off).
    #[error("request timestamp is {age_ms} ms old, over the 300000 ms allowed")]
    Stale {
        /// How old.
        age_ms: i64,
    },
    /// Dated too far in the future.
    #[error("request timestamp is {ahead_ms} ms in the future")]
    FromFuture {
        /// How far ahead.
        ahead_ms: i64,
    },
    /// The signature does not match.
    #[error("signature does not match")]
    Mismatch,
}

/// Decodes the characters HubSpot decodes before signing a URI.
pub fn normalize_uri(uri: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).map(str::to_ascii_uppercase);
        match code.and_then(|c| DECODED.iter().find(|(k, _)| *k == c).map(|(_, ch)| *ch)) {
            Some(ch) => {
                out.push(ch);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The v3 signature of a request.
pub fn sign_v3(secret: &SecretString, method: &str, uri: &str, body: &[u8], timestamp_ms: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes any key length");
    mac.update(method.as_bytes());
    mac.update(normalize_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp_ms.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a v3-signed request at `now_ms`. A timestamp exactly 5 minutes old is accepted, as
/// in HubSpot's SDKs (`timestamp < now - 300000` is the refusal).
pub fn verify_v3(
    secret: &SecretString,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now_ms: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp
        .ok_or(SignatureError::Missing("X-HubSpot-Request-Timestamp"))?
        .trim();
    let signature = signature
        .ok_or(SignatureError::Missing("X-HubSpot-Signature-v3"))?
        .trim();
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::MalformedTimestamp)?;
    // In i128: a header of i64::MIN (or MAX) must be refused as stale, not overflow.
    let age = i128::from(now_ms) - i128::from(ts);
    let clamp = |ms: i128| i64::try_from(ms).unwrap_or(i64::MAX);
    if age > i128::from(MAX_AGE_MS) {
        return Err(SignatureError::Stale { age_ms: clamp(age) });
    }
    if -age > i128::from(MAX_AGE_MS) {
        return Err(SignatureError::FromFuture { ahead_ms: clamp(-age) });
    }
    let expected = sign_v3(secret, method, uri, body, timestamp);
    equal(expected.as_bytes(), signature.as_bytes())
}

/// The v1 signature: hex SHA-256 of secret + body.
pub fn sign_v1(secret: &SecretString, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.expose_secret().as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// The v2 signature: hex SHA-256 of secret + method + URI + body.
pub fn sign_v2(secret: &SecretString, method: &str, uri: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.expose_secret().as_bytes());
    h.update(method.as_bytes());
    h.update(uri.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// Checks a v2 signature (hex, either case).
pub fn verify_v2(
    secret: &SecretString,
    method: &str,
    uri: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let sig = signature.ok_or(SignatureError::Missing("X-HubSpot-Signature"))?;
    equal(
        sign_v2(secret, method, uri, body).as_bytes(),
        sig.trim().to_ascii_lowercase().as_bytes(),
    )
}

fn equal(expected: &[u8], given: &[u8]) -> Result<(), SignatureError> {
    if expected.len() == given.len() && bool::from(expected.ct_eq(given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::from("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy")
    }
    const URI: &str = "https://www.example.com/webhook_uri";
    const BODY: &[u8] = b"{'example_field':'example_value'}";
    const TS: i64 = 1_693_657_560_000;
    const SIG: &str = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";

    fn v3(uri: &str, body: &[u8], ts: &str, sig: &str, now: i64) -> Result<(), SignatureError> {
        verify_v3(&secret(), "POST", uri, body, Some(ts), Some(sig), now)
    }

    #[test]
    fn hubspots_own_sdk_test_vector_verifies() {
        assert_eq!(sign_v3(&secret(), "POST", URI, BODY, &TS.to_string()), SIG);
        assert_eq!(v3(URI, BODY, &TS.to_string(), SIG, TS + 1_000), Ok(()));
    }

    #[test]
    fn v3_refusals() {
        let ts = TS.to_string();
        assert_eq!(
            v3(URI, b"{'example_field':'other'}", &ts, SIG, TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v3(
                &SecretString::from("wrong"),
                "POST",
                URI,
                BODY,
                Some(&ts),
                Some(SIG),
                TS
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v3(URI, BODY, &ts, SIG, TS + MAX_AGE_MS),
            Ok(()),
            "exactly five minutes old is accepted"
        );
        assert_eq!(
            v3(URI, BODY, &ts, SIG, TS + MAX_AGE_MS + 1),
            Err(SignatureError::Stale { age_ms: MAX_AGE_MS + 1 })
        );
        assert!(matches!(
            v3(URI, BODY, &ts, SIG, TS - MAX_AGE_MS - 1),
            Err(SignatureError::FromFuture { .. })
        ));
        assert_eq!(
            v3(URI, BODY, "yesterday", SIG, TS),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            verify_v3(&secret(), "POST", URI, BODY, None, Some(SIG), TS),
            Err(SignatureError::Missing("X-HubSpot-Request-Timestamp"))
        );
        assert_eq!(v3(URI, BODY, &ts, "", TS), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_percent_encoded_uri_signs_like_the_decoded_one() {
        let encoded = "https://leadsync.example.com/webhooks/hubspot%3Fportal%3D42%2Cx";
        let decoded = "https://leadsync.example.com/webhooks/hubspot?portal=42,x";
        // %3D (=) is not among the decoded characters: it stays encoded.
        assert_eq!(
            normalize_uri(encoded),
            "https://leadsync.example.com/webhooks/hubspot?portal%3D42,x"
        );
        let ts = TS.to_string();
        let sig = sign_v3(&secret(), "POST", decoded.replace('=', "%3D").as_str(), BODY, &ts);
        assert_eq!(v3(encoded, BODY, &ts, &sig, TS), Ok(()));
        assert_eq!(
            normalize_uri("a%2fb%zz%"),
            "a/b%zz%",
            "lower-case codes decode; unknown ones stay"
        );
    }

    #[test]
    fn v2_round_trips_and_accepts_either_case_and_differs_from_v1() {
        let s = secret();
        let v1 = sign_v1(&s, BODY);
        assert_eq!(v1.len(), 64);
        let v2 = sign_v2(&s, "POST", URI, BODY);
        assert_ne!(v1, v2);
        assert_eq!(verify_v2(&s, "POST", URI, BODY, Some(&v2)), Ok(()));
        assert_eq!(
            verify_v2(&s, "GET", URI, BODY, Some(&v2)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_v2(&s, "POST", URI, BODY, None),
            Err(SignatureError::Missing("X-HubSpot-Signature"))
        );
    }

    #[test]
    fn errors_never_carry_the_secret() {
        let e = verify_v3(&secret(), "POST", URI, BODY, Some("1"), Some("x"), TS).unwrap_err();
        assert!(!e.to_string().contains("yyyy"));
    }
}
