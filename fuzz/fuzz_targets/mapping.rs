//! Salesforce mapping files: compiled, or refused with located diagnostics.
#![no_main]

use leadsync::diagnostics::SourceText;
use leadsync::salesforce::mapping::SalesforceMapping;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(d) = SalesforceMapping::from_source(&SourceText::new("fuzz.toml", text)) {
        assert!(!d.is_empty());
        for e in &d.0 {
            assert!(e.line > 0, "a mapping error without a line: {e}");
            assert!(!e.message.is_empty());
        }
    }
});
