//! What to do with a record Salesforce refused, decided from its error code alone (pure).
//!
//! sObject Collections answer per record with `{"success": false, "errors": [{"statusCode",
//! "message", "fields"}]}`; other REST errors are arrays of `{"errorCode", "message"}`. Both
//! read into [`SalesforceRecordError`].

use serde::Deserialize;

/// One error Salesforce reported for a record or a request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SalesforceRecordError {
    /// `statusCode` in collections answers, `errorCode` elsewhere.
    #[serde(alias = "statusCode", alias = "errorCode")]
    pub code: String,
    /// Salesforce's message, shown to the admin as is.
    #[serde(default)]
    pub message: String,
    /// Fields concerned.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// What happens to the record next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Transient (a row lock, a batch rolled back because of another record): try again with backoff.
    Retry,
    /// A duplicate rule or several matches: link when one record is named, else a person decides.
    Review,
    /// The data or the mapping is wrong (validation, required field, picklist, length): parked
    /// with Salesforce's message, tried again once the mapping is fixed.
    DeadLetter,
    /// The record was deleted or merged away: look it up again instead of writing to it.
    Gone,
    /// A converted lead: write to the contact it became.
    Converted,
    /// The org's daily allocation is spent: stop cleanly, resume later; nothing is lost.
    StopForToday,
    /// The session expired: mint a new token, then retry.
    Reauthenticate,
}

/// The disposition of one error code.
pub fn classify(code: &str) -> Disposition {
    match code {
        "UNABLE_TO_LOCK_ROW" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" | "PROCESSING_HALTED" | "SERVER_UNAVAILABLE" => {
            Disposition::Retry
        }
        "DUPLICATES_DETECTED" | "DUPLICATE_VALUE" | "DUPLICATE_EXTERNAL_ID" | "MULTIPLE_CHOICES" => Disposition::Review,
        "ENTITY_IS_DELETED" | "NOT_FOUND" | "INVALID_CROSS_REFERENCE_KEY" | "ENTITY_IS_ARCHIVED" => Disposition::Gone,
        "CANNOT_UPDATE_CONVERTED_LEAD" => Disposition::Converted,
        "REQUEST_LIMIT_EXCEEDED" | "TXN_SECURITY_API_LIMIT" => Disposition::StopForToday,
        "INVALID_SESSION_ID" => Disposition::Reauthenticate,
        // FIELD_CUSTOM_VALIDATION_EXCEPTION, REQUIRED_FIELD_MISSING, INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST,
        // STRING_TOO_LONG, INVALID_FIELD, INVALID_TYPE_ON_FIELD_IN_RECORD, and anything unknown:
        // retrying cannot fix them, and dropping them would lose the lead.
        _ => Disposition::DeadLetter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/contracts/salesforce")
            .join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn codes() {
        use Disposition::*;
        #[rustfmt::skip]
        let cases = [
            ("UNABLE_TO_LOCK_ROW", Retry), ("ALL_OR_NONE_OPERATION_ROLLED_BACK", Retry), ("PROCESSING_HALTED", Retry),
            ("DUPLICATES_DETECTED", Review), ("DUPLICATE_VALUE", Review),
            ("FIELD_CUSTOM_VALIDATION_EXCEPTION", DeadLetter), ("REQUIRED_FIELD_MISSING", DeadLetter),
            ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", DeadLetter), ("STRING_TOO_LONG", DeadLetter),
            ("SOMETHING_NEW", DeadLetter),
            ("ENTITY_IS_DELETED", Gone), ("CANNOT_UPDATE_CONVERTED_LEAD", Converted),
            ("REQUEST_LIMIT_EXCEEDED", StopForToday), ("INVALID_SESSION_ID", Reauthenticate),
        ];
        for (code, want) in cases {
            assert_eq!(classify(code), want, "{code}");
        }
    }

    #[test]
    fn the_shared_example_bodies_read_and_classify() {
        let expired: Vec<SalesforceRecordError> =
            serde_json::from_str(&fixture("restforce/expired_session_response.json")).unwrap();
        assert_eq!(classify(&expired[0].code), Disposition::Reauthenticate);
        let write: Vec<SalesforceRecordError> =
            serde_json::from_str(&fixture("restforce/sobject/write_error_response.json")).unwrap();
        assert_eq!(
            (write[0].code.as_str(), classify(&write[0].code)),
            ("INVALID_FIELD", Disposition::DeadLetter)
        );
        let graph: serde_json::Value =
            serde_json::from_str(&fixture("revoman/composite/graph/resp/graph-response-error.json")).unwrap();
        let codes: Vec<Disposition> = graph["graphs"][0]["graphResponse"]["compositeResponse"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["body"].as_array().cloned().unwrap_or_default())
            .map(|e| classify(e["errorCode"].as_str().unwrap_or("")))
            .collect();
        assert!(
            codes.contains(&Disposition::Review) && codes.contains(&Disposition::Retry),
            "{codes:?}"
        );
    }

    #[test]
    fn collections_use_status_code() {
        let e: SalesforceRecordError = serde_json::from_str(
            r#"{"statusCode":"FIELD_CUSTOM_VALIDATION_EXCEPTION","message":"Phone is required","fields":["Phone"]}"#,
        )
        .unwrap();
        assert_eq!(
            (e.code.as_str(), e.fields.as_slice()),
            ("FIELD_CUSTOM_VALIDATION_EXCEPTION", &["Phone".to_string()][..])
        );
    }
}
