//! `leadsync plan`: the funnel worked back from a revenue goal (revenue / average deal =
//! customers; each rate `a-b` turns the count needed at `b` into the count needed at `a`).

use std::fmt::Write;
use std::str::FromStr;

use crate::lifecycle::Stage;

/// A conversion rate from one stage to a later one.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// The stage the cohort entered.
    pub from: Stage,
    /// The later stage reached.
    pub to: Stage,
    /// The share that reached it, in (0, 1].
    pub rate: f64,
    /// How many contacts it was measured on (`None` when given).
    pub sample: Option<u64>,
}

impl FromStr for Rate {
    type Err = String;

    /// `lead-customer=0.02`.
    fn from_str(s: &str) -> Result<Rate, String> {
        let shape = || format!("rate `{s}`: expected STAGE-STAGE=RATE, e.g. lead-customer=0.02");
        let (pair, rate) = s.split_once('=').ok_or_else(shape)?;
        let (a, b) = pair.split_once('-').ok_or_else(shape)?;
        let stage = |x: &str| {
            Stage::from_str(x.trim()).map_err(|_| {
                let all: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
                format!("rate `{s}`: `{x}` is not a stage (one of {})", all.join(", "))
            })
        };
        let (from, to) = (stage(a)?, stage(b)?);
        if from >= to {
            return Err(format!(
                "rate `{s}`: {} does not come before {}",
                from.as_str(),
                to.as_str()
            ));
        }
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| format!("rate `{s}`: `{rate}` is not a number"))?;
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(format!("rate `{s}`: {rate} is not in (0, 1]"));
        }
        Ok(Rate {
            from,
            to,
            rate,
            sample: None,
        })
    }
}

/// How many are needed at one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The stage.
    pub stage: Stage,
    /// How many must enter it per period.
    pub needed: u64,
    /// The rate that gave it (`None` for customers).
    pub via: Option<Rate>,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// Revenue or average deal not positive.
    #[error("--revenue and --avg-deal must be positive (got {revenue} and {avg_deal})")]
    NotPositive {
        /// Revenue asked.
        revenue: f64,
        /// Average deal.
        avg_deal: f64,
    },
    /// Two rates lead to the same stage.
    #[error("two rates end at {0}: give one")]
    Twice(&'static str),
    /// A rate that does not chain back from customer.
    #[error("rate {from}-{to} does not connect to customer through the other rates")]
    Unconnected {
        /// From.
        from: &'static str,
        /// To.
        to: &'static str,
    },
}

/// Rounds a count up, forgiving the float error of a division that is exact on paper
/// (10 / 0.02 is 500, not 501).
fn ceil(x: f64) -> u64 {
    (x - 1e-9).ceil().max(0.0) as u64
}

/// Works the funnel back from `revenue` at `avg_deal` a customer through `rates`: customers
/// first, then each stage a rate reaches back to, highest first.
pub fn plan(revenue: f64, avg_deal: f64, rates: &[Rate]) -> Result<Vec<Need>, PlanError> {
    if !(revenue > 0.0 && avg_deal > 0.0) {
        return Err(PlanError::NotPositive { revenue, avg_deal });
    }
    for (i, r) in rates.iter().enumerate() {
        if rates[..i].iter().any(|o| o.to == r.to) {
            return Err(PlanError::Twice(r.to.as_str()));
        }
    }
    let mut out = vec![Need {
        stage: Stage::Customer,
        needed: ceil(revenue / avg_deal),
        via: None,
    }];
    let mut used = 0;
    while let Some(r) = rates.iter().find(|r| Some(r.to) == out.last().map(|n| n.stage)) {
        let needed = out.last().map_or(0, |n| n.needed);
        out.push(Need {
            stage: r.from,
            needed: ceil(needed as f64 / r.rate),
            via: Some(r.clone()),
        });
        used += 1;
    }
    if used < rates.len() {
        let r = rates
            .iter()
            .find(|r| !out.iter().any(|n| n.via.as_ref() == Some(*r)))
            .unwrap_or(&rates[0]);
        return Err(PlanError::Unconnected {
            from: r.from.as_str(),
            to: r.to.as_str(),
        });
    }
    Ok(out)
}

/// The plan as a table, with what the last full period delivered at each stage and the rates
/// refused for too small a sample.
pub fn render(needs: &[Need], period: &str, delivered: Option<&[(Stage, u64)]>, refused: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>10}  {:<28} last full {period}",
        "stage", "needed", "rate"
    );
    for n in needs {
        let via = n.via.as_ref().map_or(String::from("revenue / average deal"), |r| {
            let sample = r.sample.map_or(String::new(), |s| format!(" (n={s})"));
            format!("{}-{} = {}{sample}", r.from.as_str(), r.to.as_str(), r.rate)
        });
        let got = delivered
            .and_then(|d| d.iter().find(|(s, _)| *s == n.stage))
            .map_or(String::from("-"), |(_, c)| c.to_string());
        let _ = writeln!(out, "{:<12} {:>10}  {:<28} {got}", n.stage.as_str(), n.needed, via);
    }
    for r in refused {
        let _ = writeln!(out, "refused: {r}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(s: &[&str]) -> Vec<Rate> {
        s.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn needed(p: &[Need]) -> Vec<(&'static str, u64)> {
        p.iter().map(|n| (n.stage.as_str(), n.needed)).collect()
    }

    #[test]
    fn ten_thousand_at_a_thousand_and_two_percent_is_ten_customers_and_five_hundred_leads() {
        let p = plan(10_000.0, 1_000.0, &rates(&["lead-customer=0.02"])).unwrap();
        assert_eq!(needed(&p), [("customer", 10), ("lead", 500)]);
    }

    #[test]
    fn per_stage_rates_give_every_stage_rounded_up() {
        // 10 customers; /0.25 = 40 opportunities; /0.5 = 80 SQLs; /0.6 = 133.3 → 134 SALs;
        // /0.7 = 191.4 → 192 MQLs; /0.2 = 960 leads.
        let r = rates(&[
            "lead-mql=0.2",
            "mql-sal=0.7",
            "sal-sql=0.6",
            "sql-opportunity=0.5",
            "opportunity-customer=0.25",
        ]);
        let p = plan(10_000.0, 1_000.0, &r).unwrap();
        assert_eq!(
            needed(&p),
            [
                ("customer", 10),
                ("opportunity", 40),
                ("sql", 80),
                ("sal", 134),
                ("mql", 192),
                ("lead", 960)
            ]
        );
        // Uneven revenue rounds customers up: 10,500 / 1,000 needs 11.
        assert_eq!(plan(10_500.0, 1_000.0, &[]).unwrap()[0].needed, 11);
    }

    #[test]
    fn rates_that_do_not_chain_or_repeat_and_bad_input_are_refused() {
        assert_eq!(
            plan(1.0, 1.0, &rates(&["lead-mql=0.2"])),
            Err(PlanError::Unconnected {
                from: "lead",
                to: "mql"
            })
        );
        assert_eq!(
            plan(1.0, 1.0, &rates(&["lead-customer=0.2", "mql-customer=0.5"])),
            Err(PlanError::Twice("customer"))
        );
        assert!(matches!(plan(0.0, 1.0, &[]), Err(PlanError::NotPositive { .. })));
        for (bad, says) in [
            ("lead-customer", "expected STAGE-STAGE=RATE"),
            ("lead-buyer=0.1", "`buyer` is not a stage"),
            ("customer-lead=0.1", "customer does not come before lead"),
            ("lead-mql=2", "is not in (0, 1]"),
            ("lead-mql=abc", "`abc` is not a number"),
        ] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
