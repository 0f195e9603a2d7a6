//! Signature checks with arbitrary headers, URI and body: never a panic, and a signature that
//! is not the right one is always refused.
#![no_main]

use leadsync::hubspot::signature::{normalize_uri, sign_v3, verify_v2, verify_v3};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

const NOW: i64 = 1_764_000_000_000;

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xFF (never in UTF-8): uri, timestamp, signature, body.
    let mut parts = data.splitn(4, |b| *b == 0xFF);
    let uri = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let ts = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let secret = SecretString::from("fuzz-secret");
    let _ = normalize_uri(&uri);
    let right = sign_v3(&secret, "POST", &uri, body, &ts);
    let got = verify_v3(&secret, "POST", &uri, body, Some(&ts), Some(&sig), NOW);
    if sig.trim() != right {
        assert!(got.is_err(), "a wrong v3 signature was accepted");
    }
    let _ = verify_v3(&secret, "POST", &uri, body, Some(&ts), Some(&right), NOW);
    if verify_v2(&secret, "POST", &uri, body, Some(&sig)).is_ok() {
        // Only a 64-digit hex string can be a v2 signature.
        let s = sig.trim();
        assert!(s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    }
});
