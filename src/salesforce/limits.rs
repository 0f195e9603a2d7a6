//! The org's daily API allocation, shared with every other integration: leadsync reads
//! `Sforce-Limit-Info` on every response and holds promotions back once its configured share
//! is spent, saying why.

/// What `Sforce-Limit-Info: api-usage=USED/MAX` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesforceUsage {
    /// Calls made in the rolling 24 hours, by every integration of the org.
    pub used: u64,
    /// The org's daily allocation.
    pub max: u64,
}

/// Reads `api-usage=10018/100000` (other parts such as `api-bursts=1/750` are ignored).
pub fn parse_limit_info(header: &str) -> Option<SalesforceUsage> {
    header.split(';').find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        if key.trim() != "api-usage" {
            return None;
        }
        let (used, max) = value.trim().split_once('/')?;
        Some(SalesforceUsage {
            used: used.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        })
    })
}

/// leadsync's share of the allocation: the calls it may still make, given what it made itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesforceShare {
    /// Percent of the org's allocation leadsync may use (like HubSpot's "allocated to HubSpot").
    pub percent: u8,
}

/// Why a promotion waits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetHold {
    /// leadsync used its share of the day.
    #[error(
        "leadsync used {used} of its {allowed} Salesforce calls today ({percent}% of the org's {max}); promotions wait for the rolling window"
    )]
    ShareSpent {
        /// Calls leadsync made in the window.
        used: u64,
        /// Its share.
        allowed: u64,
        /// The configured percent.
        percent: u8,
        /// The org's allocation.
        max: u64,
    },
    /// The whole org is at its limit (other integrations included).
    #[error("the Salesforce org used {used} of its {max} daily calls; promotions wait")]
    OrgExhausted {
        /// Calls the org made.
        used: u64,
        /// Its allocation.
        max: u64,
    },
}

impl SalesforceShare {
    /// Whether `needed` more calls fit, given the org's usage and leadsync's own calls in the window.
    pub fn check(&self, usage: SalesforceUsage, ours: u64, needed: u64) -> Result<(), BudgetHold> {
        if usage.used + needed > usage.max {
            return Err(BudgetHold::OrgExhausted {
                used: usage.used,
                max: usage.max,
            });
        }
        let allowed = usage.max * u64::from(self.percent.min(100)) / 100;
        if ours + needed > allowed {
            return Err(BudgetHold::ShareSpent {
                used: ours,
                allowed,
                percent: self.percent,
                max: usage.max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_read_with_or_without_bursts() {
        let u = SalesforceUsage {
            used: 10_018,
            max: 100_000,
        };
        assert_eq!(parse_limit_info("api-usage=10018/100000"), Some(u));
        assert_eq!(parse_limit_info("api-usage=10018/100000; api-bursts=1/750"), Some(u));
        assert_eq!(
            parse_limit_info(" api-bursts=1/750 ;api-usage = 10018 / 100000"),
            Some(u)
        );
        assert_eq!(parse_limit_info("api-usage=lots"), None);
        assert_eq!(parse_limit_info(""), None);
    }

    #[test]
    fn promotions_wait_past_the_share_or_the_org_limit() {
        let share = SalesforceShare { percent: 20 };
        let usage = SalesforceUsage {
            used: 50_000,
            max: 100_000,
        };
        assert!(share.check(usage, 19_990, 10).is_ok());
        let hold = share.check(usage, 19_995, 10).unwrap_err();
        assert!(hold.to_string().contains("used 19995 of its 20000"), "{hold}");
        let full = SalesforceUsage {
            used: 99_995,
            max: 100_000,
        };
        assert!(matches!(share.check(full, 0, 10), Err(BudgetHold::OrgExhausted { .. })));
    }
}
