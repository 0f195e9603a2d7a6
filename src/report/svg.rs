//! Inline SVG charts, drawn on the server (no JavaScript, no external asset): horizontal bars
//! (the funnel, time to first touch per week) and stacked bars (SLA compliance). The HTML
//! report and the status page both draw with these; every text is escaped.

use std::fmt::Write;

/// Escapes text for HTML and SVG (element content and attribute values alike).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One bar: its label, its length (any unit, scaled to the longest) and the text beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Left of the bar.
    pub label: String,
    /// The bar's length before scaling.
    pub value: f64,
    /// Right of the bar (the figure, a conversion rate).
    pub text: String,
}

const WIDTH: f64 = 640.0;
const LABEL: f64 = 130.0;
const TEXT: f64 = 190.0;
const ROW: f64 = 26.0;
/// A generous width of one character of the charts' 12 px sans-serif text: what a text beside
/// a bar needs, so that the longest bar leaves it room inside the picture.
const CHAR: f64 = 7.0;

/// A chart's opening `<svg>` tag and title, `height` tall; `class` names it for CSS and tests.
fn open(class: &str, title: &str, height: f64) -> String {
    format!(
        r#"<svg class="chart {c}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{t}"><title>{t}</title>"#,
        c = escape(class),
        t = escape(title)
    )
}

/// Horizontal bars, one per row, scaled to the longest; `class` names the chart for CSS and tests.
pub fn bars(class: &str, title: &str, bars: &[Bar]) -> String {
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let longest = bars.iter().map(|b| b.text.chars().count()).max().unwrap_or(0);
    let span = WIDTH - LABEL - TEXT.max(CHAR * longest as f64 + 12.0);
    let mut out = open(class, title, ROW * bars.len().max(1) as f64 + 30.0);
    for (i, b) in bars.iter().enumerate() {
        let y = 24.0 + ROW * i as f64;
        let w = if max > 0.0 {
            (b.value.max(0.0) / max * span).max(1.0)
        } else {
            1.0
        };
        let _ = write!(
            out,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text><rect class="bar" x="{LABEL}" y="{y}" width="{w:.1}" height="{h}" data-value="{v}"/><text x="{tx:.1}" y="{ty}">{text}</text>"#,
            lx = LABEL - 8.0,
            ty = y + 14.0,
            label = escape(&b.label),
            h = ROW - 8.0,
            v = b.value,
            tx = LABEL + w + 6.0,
            text = escape(&b.text),
        );
    }
    if bars.is_empty() {
        let _ = write!(out, r#"<text x="{LABEL}" y="38">no data</text>"#);
    }
    out.push_str("</svg>");
    out
}

/// Met, breached and open side by side in one bar per row, each part as wide as its share.
pub fn stacked(class: &str, title: &str, rows: &[(String, [u64; 3])]) -> String {
    let span = WIDTH - LABEL - TEXT;
    let mut out = open(class, title, ROW * rows.len().max(1) as f64 + 50.0);
    for (i, (label, parts)) in rows.iter().enumerate() {
        let y = 24.0 + ROW * i as f64;
        let total: u64 = parts.iter().sum();
        let mut x = LABEL;
        let _ = write!(
            out,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text>"#,
            lx = LABEL - 8.0,
            ty = y + 14.0,
            l = escape(label)
        );
        for (part, class) in parts.iter().zip(["met", "breached", "open"]) {
            if total == 0 || *part == 0 {
                continue;
            }
            let w = *part as f64 / total as f64 * span;
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{x:.1}" y="{y}" width="{w:.1}" height="{h}" data-value="{part}"/>"#,
                h = ROW - 8.0
            );
            x += w;
        }
        let _ = write!(
            out,
            r#"<text x="{tx}" y="{ty}">{m} met · {b} breached · {o} open</text>"#,
            tx = WIDTH - TEXT + 6.0,
            ty = y + 14.0,
            m = parts[0],
            b = parts[1],
            o = parts[2]
        );
    }
    if rows.is_empty() {
        let _ = write!(out, r#"<text x="{LABEL}" y="38">no data</text>"#);
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"a"&'b'"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
        );
    }

    #[test]
    fn the_longest_bar_spans_the_chart_and_labels_are_escaped() {
        let svg = bars(
            "funnel",
            "t",
            &[
                Bar {
                    label: "<b>".into(),
                    value: 10.0,
                    text: "10".into(),
                },
                Bar {
                    label: "x".into(),
                    value: 5.0,
                    text: "5".into(),
                },
            ],
        );
        assert!(svg.contains(r#"width="320.0" height="18" data-value="10""#), "{svg}");
        assert!(svg.contains(r#"width="160.0" height="18" data-value="5""#), "{svg}");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }

    #[test]
    fn a_long_text_beside_the_longest_bar_stays_inside_the_picture() {
        let text = "median 5.5 h, p90 11.8 h (n=6)";
        let svg = bars(
            "ttft",
            "t",
            &[Bar {
                label: "2026-10-05".into(),
                value: 5.5,
                text: text.into(),
            }],
        );
        // The bar shrinks so that the text (at most 7 px a character) ends inside the 640 px.
        let w: f64 = svg.split(r#"class="bar" x="130" y="24" width=""#).nth(1).unwrap()[..5]
            .trim_end_matches('"')
            .parse()
            .unwrap();
        assert!(
            130.0 + w + 6.0 + 7.0 * text.len() as f64 <= 640.0,
            "bar {w} leaves the text no room: {svg}"
        );
    }

    #[test]
    fn stacked_parts_are_shares_of_the_row() {
        let svg = stacked("sla", "t", &[("team".into(), [3, 1, 0])]);
        assert!(svg.contains(r#"class="met" x="130.0" y="24" width="240.0""#), "{svg}");
        assert!(
            svg.contains(r#"class="breached" x="370.0" y="24" width="80.0""#),
            "{svg}"
        );
        assert!(!svg.contains(r#"class="open""#));
    }
}
