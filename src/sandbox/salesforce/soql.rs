//! The SOQL subset leadsync sends: `SELECT f, … FROM Object [WHERE cond] [ORDER BY f [ASC|DESC],
//! …] [LIMIT n]`, where `cond` combines `f IN (…)`, `f NOT IN (…)`, `=`, `!=`, `<`, `<=`, `>`,
//! `>=` with `AND`, `OR` and parentheses. Text compares ignoring case, as in Salesforce.

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub fields: Vec<String>,
    pub object: String,
    pub filter: Option<Cond>,
    pub order: Vec<(String, bool)>,
    pub limit: Option<usize>,
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Cmp(String, String, Lit),
    In(String, bool, InList),
}

/// The values of an `IN (…)`, sorted once for a scan of every record: text that can only match as
/// text (ignoring case) in a set, the rest (instants, numbers, `null`) compared one by one as
/// [`compare`] does. A promotion's query names up to 200 values, and the fake org holds tens of
/// thousands of records at a million contacts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InList {
    text: std::collections::HashSet<String>,
    others: Vec<Lit>,
}

impl InList {
    fn new(values: Vec<Lit>) -> InList {
        let mut list = InList {
            text: Default::default(),
            others: Vec::new(),
        };
        for l in values {
            match &l {
                Lit::Text(t) | Lit::Other(t) if instant(t).is_none() && t.parse::<f64>().is_err() => {
                    list.text.insert(t.to_lowercase());
                }
                _ => list.others.push(l),
            }
        }
        list
    }

    /// Whether `v` equals one of the values, as `compare` judges equality.
    fn holds(&self, v: &Value) -> bool {
        // A value that is text to one side compares as text: lower case on both.
        let hit_text = !self.text.is_empty()
            && match v {
                Value::Null => false,
                Value::String(s) => self.text.contains(&s.to_lowercase()),
                other => self.text.contains(&other.to_string().to_lowercase()),
            };
        hit_text || self.others.iter().any(|l| compare(v, l) == Some(Ordering::Equal))
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Null,
    Text(String),
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(String),
}

fn lex(q: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match cs.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        let e = cs.get(i + 1).copied().ok_or("bad escape")?;
                        s.push(match e {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            c => c,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        s.push(*c);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if "(),".contains(c) {
            out.push(Tok::Sym(c.to_string()));
            i += 1;
        } else if "=!<>".contains(c) {
            let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
            if ["!=", "<=", ">=", "<>"].contains(&two.as_str()) {
                out.push(Tok::Sym(if two == "<>" { "!=".into() } else { two }));
                i += 2;
            } else {
                out.push(Tok::Sym(c.to_string()));
                i += 1;
            }
        } else {
            let start = i;
            while i < cs.len() && !cs[i].is_whitespace() && !"(),=!<>'".contains(cs[i]) {
                i += 1;
            }
            out.push(Tok::Word(cs[start..i].iter().collect()));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn kw(&mut self, kw: &str) -> Result<(), String> {
        if self.peek_kw(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expecting {kw}"))
        }
    }
    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.toks.get(self.pos), Some(Tok::Sym(x)) if x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> Result<String, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(w.clone())
            }
            other => Err(format!("unexpected token: {other:?}")),
        }
    }
    fn lit(&mut self) -> Result<Lit, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Lit::Text(s))
            }
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(if w.eq_ignore_ascii_case("null") {
                    Lit::Null
                } else {
                    Lit::Other(w)
                })
            }
            other => Err(format!("unexpected token: {other:?}")),
        }
    }
    fn or(&mut self) -> Result<Cond, String> {
        let mut left = self.and()?;
        while self.peek_kw("OR") {
            self.pos += 1;
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Cond, String> {
        let mut left = self.atom()?;
        while self.peek_kw("AND") {
            self.pos += 1;
            left = Cond::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }
    fn atom(&mut self) -> Result<Cond, String> {
        if self.sym("(") {
            let c = self.or()?;
            if !self.sym(")") {
                return Err("expecting )".into());
            }
            return Ok(c);
        }
        let field = self.word()?;
        let negated = self.peek_kw("NOT");
        if negated {
            self.pos += 1;
        }
        if self.peek_kw("IN") {
            self.pos += 1;
            if !self.sym("(") {
                return Err("expecting (".into());
            }
            let mut values = vec![self.lit()?];
            while self.sym(",") {
                values.push(self.lit()?);
            }
            if !self.sym(")") {
                return Err("expecting )".into());
            }
            return Ok(Cond::In(field, negated, InList::new(values)));
        }
        for op in ["=", "!=", "<=", ">=", "<", ">"] {
            if self.sym(op) {
                return Ok(Cond::Cmp(field, op.to_string(), self.lit()?));
            }
        }
        Err(format!("unexpected token after {field}"))
    }
}

/// Parses a query of the subset.
pub(crate) fn parse(q: &str) -> Result<Query, String> {
    let mut p = Parser { toks: lex(q)?, pos: 0 };
    p.kw("SELECT")?;
    let mut fields = vec![p.word()?];
    while p.sym(",") {
        fields.push(p.word()?);
    }
    p.kw("FROM")?;
    let object = p.word()?;
    let filter = if p.peek_kw("WHERE") {
        p.pos += 1;
        Some(p.or()?)
    } else {
        None
    };
    let mut order = Vec::new();
    if p.peek_kw("ORDER") {
        p.pos += 1;
        p.kw("BY")?;
        loop {
            let f = p.word()?;
            let desc = if p.peek_kw("DESC") {
                p.pos += 1;
                true
            } else {
                if p.peek_kw("ASC") {
                    p.pos += 1;
                }
                false
            };
            order.push((f, desc));
            if !p.sym(",") {
                break;
            }
        }
    }
    let limit = if p.peek_kw("LIMIT") {
        p.pos += 1;
        Some(p.word()?.parse().map_err(|_| "LIMIT takes a number".to_string())?)
    } else {
        None
    };
    if p.pos != p.toks.len() {
        return Err(format!("unexpected token: {:?}", p.toks[p.pos]));
    }
    Ok(Query {
        fields,
        object,
        filter,
        order,
        limit,
    })
}

impl Cond {
    /// Every field the condition names.
    pub(crate) fn fields(&self, out: &mut Vec<String>) {
        match self {
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.fields(out);
                b.fields(out);
            }
            Cond::Cmp(f, _, _) | Cond::In(f, _, _) => out.push(f.clone()),
        }
    }

    /// Whether a record (field lookup is case-insensitive) satisfies it.
    pub(crate) fn eval(&self, get: &dyn Fn(&str) -> Value) -> bool {
        match self {
            Cond::And(a, b) => a.eval(get) && b.eval(get),
            Cond::Or(a, b) => a.eval(get) || b.eval(get),
            Cond::In(f, negated, values) => values.holds(&get(f)) != *negated,
            Cond::Cmp(f, op, lit) => {
                let v = get(f);
                if *lit == Lit::Null {
                    return match op.as_str() {
                        "=" => v.is_null(),
                        "!=" => !v.is_null(),
                        _ => false,
                    };
                }
                let Some(o) = compare(&v, lit) else {
                    return op == "!=" && v.is_null();
                };
                match op.as_str() {
                    "=" => o == Ordering::Equal,
                    "!=" => o != Ordering::Equal,
                    "<" => o == Ordering::Less,
                    "<=" => o != Ordering::Greater,
                    ">" => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }
            }
        }
    }
}

/// A record value against a literal: instants, numbers and booleans as such, text ignoring case.
fn compare(v: &Value, lit: &Lit) -> Option<Ordering> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let l = match lit {
        Lit::Null => return None,
        Lit::Text(s) | Lit::Other(s) => s.clone(),
    };
    if let (Some(a), Some(b)) = (instant(&text), instant(&l)) {
        return Some(a.cmp(&b));
    }
    if let (Ok(a), Ok(b)) = (text.parse::<f64>(), l.parse::<f64>()) {
        return a.partial_cmp(&b);
    }
    Some(text.to_lowercase().cmp(&l.to_lowercase()))
}

/// Salesforce date-times (`2026-01-01T00:00:00Z`, `…T00:00:00.000+0000`) and dates, in ms.
pub(crate) fn instant(s: &str) -> Option<i64> {
    if s.len() < 10 || !s.as_bytes()[4].eq(&b'-') {
        return None;
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(q: &str, rec: &Value) -> bool {
        let q = parse(q).unwrap();
        let get = |f: &str| {
            let o = rec.as_object().unwrap();
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(f))
                .map_or(Value::Null, |(_, v)| v.clone())
        };
        q.filter.unwrap().eval(&get)
    }

    #[test]
    fn the_subset_parses_and_evaluates() {
        let r = json!({"Email": "Jane@Acme.com", "Amount": 5000, "LastModifiedDate": "2026-03-01T10:00:00.000+0000", "X": null});
        assert!(run("SELECT Id FROM Contact WHERE Email IN ('x', 'jane@acme.com')", &r));
        assert!(run("select Id from Contact where email = 'JANE@ACME.COM'", &r));
        assert!(run(
            "SELECT Id FROM Contact WHERE LastModifiedDate > 2026-01-01T00:00:00Z AND (Amount >= 5000 OR X != null)",
            &r
        ));
        assert!(!run("SELECT Id FROM Contact WHERE X != null", &r));
        assert!(run(
            "SELECT Id FROM Contact WHERE Email = 'it\\'s' OR Amount < 6000",
            &r
        ));
        let q = parse("SELECT Id, Name FROM Account ORDER BY Name DESC, Id LIMIT 5").unwrap();
        assert_eq!(q.order, vec![("Name".into(), true), ("Id".into(), false)]);
        assert_eq!(q.limit, Some(5));
        assert!(parse("SELECT FROM").is_err());
        assert!(parse("SELECT Id FROM Contact WHERE (Email = 'a'").is_err());
    }

    #[test]
    fn an_in_list_matches_exactly_what_comparing_each_value_matches() {
        let texts = [
            "Jane@Acme.com",
            "JANE@acme.COM",
            "12345",
            "12345.0",
            "1E3",
            "1000",
            "2026-01-01",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000+0000",
            "true",
            "TRUE",
            "inf",
            "INF",
            "x",
        ];
        let lits: Vec<Lit> = texts
            .iter()
            .flat_map(|t| [Lit::Text(t.to_string()), Lit::Other(t.to_string())])
            .chain([Lit::Null])
            .collect();
        let mut values: Vec<Value> = texts.iter().map(|t| json!(t)).collect();
        values.extend([json!(12345), json!(1000.0), json!(true), Value::Null]);
        for v in &values {
            for i in 0..lits.len() {
                // Every window of up to three literals, as an IN list.
                let list = &lits[i..(i + 3).min(lits.len())];
                let one_by_one = list.iter().any(|l| compare(v, l) == Some(Ordering::Equal));
                assert_eq!(InList::new(list.to_vec()).holds(v), one_by_one, "{v} IN {list:?}");
            }
        }
    }
}
