//! Webhook bodies, after the signature check: a Webhooks API delivery and a workflow record.
//! Never a panic; a refusal is `Malformed` (400) with words, never another kind.
#![no_main]

use leadsync::server::intake::{IntakeError, webhook_events, workflow_row_of_portal};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|body: &[u8]| {
    match webhook_events(body) {
        Ok(rows) => {
            for (_, r) in rows {
                assert!(!r.dedupe_key.is_empty());
                assert!(!r.contact_id.is_empty());
            }
        }
        Err(IntakeError::Malformed(m)) => assert!(!m.is_empty()),
        Err(e) => panic!("a body is refused as malformed, not {e:?}"),
    }
    let secret = SecretString::from("fuzz-secret");
    match workflow_row_of_portal(&secret, body) {
        Ok((_, r)) => assert!(r.contact_id.bytes().all(|b| b.is_ascii_digit())),
        Err(IntakeError::Malformed(m)) => assert!(!m.is_empty()),
        Err(e) => panic!("a body is refused as malformed, not {e:?}"),
    }
});
