//! SOQL built safely: every value is escaped as a string literal, and lookups of many values go
//! in `IN (...)` batches, so 200 promotions cost a handful of queries, not 200.

/// Values per `IN (...)` list: keeps each query far under SOQL's 100,000-character limit even
/// with long emails.
pub const IN_BATCH: usize = 200;

/// A SOQL string literal: backslash, quotes and control characters escaped.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The domain of a website or an email, for account matching: lower-cased, no scheme, no `www.`,
/// no path. `None` for a free-mail domain (gmail.com never identifies a company).
pub fn company_domain(value: &str, freemail: &std::collections::HashSet<String>) -> Option<String> {
    let v = value.trim().to_lowercase();
    let v = v.rsplit_once('@').map_or(v.as_str(), |(_, d)| d);
    let v = v.trim_start_matches("https://").trim_start_matches("http://");
    let host = v.split(['/', '?', '#', ':']).next().unwrap_or("");
    let host = host.strip_prefix("www.").unwrap_or(host).trim_end_matches('.');
    (!host.is_empty() && host.contains('.') && !freemail.contains(host)).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(literal("o'brien@example.com"), r"'o\'brien@example.com'");
        assert_eq!(literal(r"a\b"), r"'a\\b'");
        assert_eq!(literal("x' OR Name != '"), r"'x\' OR Name != \''");
        assert_eq!(literal("line\nbreak"), r"'line\nbreak'");
    }

    #[test]
    fn company_domains_ignore_free_mail_and_noise() {
        let free: std::collections::HashSet<String> = ["gmail.com".to_string()].into();
        assert_eq!(
            company_domain("https://www.Acme.com/about", &free).as_deref(),
            Some("acme.com")
        );
        assert_eq!(company_domain("jo@eu.acme.com", &free).as_deref(), Some("eu.acme.com"));
        assert_eq!(company_domain("jo@gmail.com", &free), None);
        assert_eq!(company_domain("localhost", &free), None);
    }
}
