//! The status page and the HTML report in a real browser (Debian's chromium, headless): the
//! daemon's server over a simulated sales month on the sandbox; the DOM after rendering is
//! checked (the charts drawn, their figures equal the store's) and screenshots are saved under
//! `target/` (`status-page.png`, `report.png`); the report is also printed to PDF
//! (`target/report.pdf`) as a browser's "Save as PDF" does, its pages counted and its text read
//! back with poppler's `pdftotext`. Skipped, saying so, only when `/usr/bin/chromium`
//! is missing and `LEADSYNC_REQUIRE_BROWSER` is unset; `.ci/run` sets it, so CI fails without it.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use leadsync::demo::Stack;
use leadsync::report::format::ReportFormat;

use crate::support::{month_options, month_stack_options, repo_root};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the browser is there; panics when it must be and is not.
fn browser() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("LEADSYNC_REQUIRE_BROWSER").is_none(),
        "LEADSYNC_REQUIRE_BROWSER is set and {CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium"
    );
    eprintln!(
        "SKIPPED: {CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium); set LEADSYNC_REQUIRE_BROWSER=1 to fail instead"
    );
    false
}

/// Runs headless chromium on `url` with `extra` flags (a fresh profile each time); its stdout.
async fn run_chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut a: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("--user-data-dir={}", profile.path().display()));
    a.extend_from_slice(extra);
    a.push(url.to_string());
    let out = tokio::time::timeout(
        StdDuration::from_secs(90),
        tokio::process::Command::new(CHROMIUM)
            .args(&a)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("chromium did not finish in 90 s: {a:?}"))
    .unwrap_or_else(|e| panic!("chromium: {e}"));
    assert!(
        out.status.success(),
        "chromium {a:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Loads `url` in headless chromium: the DOM after rendering, and a screenshot at `png`.
async fn chromium(url: &str, png: &Path) -> String {
    let _ = std::fs::remove_file(png);
    run_chromium(
        url,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,2000".into(),
        ],
    )
    .await;
    let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} is not a picture",
        png.display()
    );
    run_chromium(url, &["--dump-dom".into()]).await
}

/// Prints `url` to a PDF at `pdf` as a browser's "Save as PDF" does (print media, the page's
/// own `@page` margins, no header or footer lines): the file's bytes.
async fn print_to_pdf(url: &str, pdf: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(pdf);
    run_chromium(
        url,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
    )
    .await;
    std::fs::read(pdf).unwrap_or_else(|e| panic!("no PDF at {}: {e}", pdf.display()))
}

/// The PDF's text as poppler's `pdftotext -layout` reads it (a table's row on one line); `None`,
/// saying so, when poppler-utils is missing and `LEADSYNC_REQUIRE_BROWSER` is unset.
async fn pdf_text(pdf: &Path) -> Option<String> {
    const PDFTOTEXT: &str = "/usr/bin/pdftotext";
    if !Path::new(PDFTOTEXT).exists() {
        assert!(
            std::env::var_os("LEADSYNC_REQUIRE_BROWSER").is_none(),
            "LEADSYNC_REQUIRE_BROWSER is set and {PDFTOTEXT} is missing: apt-get install -y --no-install-recommends poppler-utils"
        );
        eprintln!("SKIPPED the PDF's text: {PDFTOTEXT} is missing (apt-get install poppler-utils)");
        return None;
    }
    let out = tokio::process::Command::new(PDFTOTEXT)
        .arg("-layout")
        .arg(pdf)
        .arg("-")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{PDFTOTEXT}: {e}"));
    assert!(out.status.success(), "pdftotext {}: {}", pdf.display(), out.status);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The PDF's page objects (`/Type /Page`, not the `/Pages` tree nodes) and their media boxes,
/// in points, read from the uncompressed object dictionaries.
fn pdf_pages(pdf: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/Type /Page")
        .filter(|(i, m)| !text[i + m.len()..].starts_with('s'))
        .map(|(i, _)| {
            let dict = &text[i..i + text[i..].find("endobj").unwrap_or(text.len() - i)];
            dict.split("/MediaBox [")
                .nth(1)
                .and_then(|b| b.split(']').next())
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// The `<svg class="chart CLASS …">…</svg>` elements of the DOM, each as its text.
fn charts<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let needle = format!("<svg class=\"chart {class}\"");
    dom.match_indices(&needle)
        .map(|(i, _)| &dom[i..i + dom[i..].find("</svg>").map_or(dom.len() - i, |e| e + 6)])
        .collect()
}

/// The `data-value`s of a chart's bars, as the browser parsed them.
fn bar_values(svg: &str) -> Vec<f64> {
    svg.split("<rect")
        .skip(1)
        .filter_map(|r| {
            let v = r.split("data-value=\"").nth(1)?;
            v[..v.find('"')?].parse().ok()
        })
        .collect()
}

fn target() -> PathBuf {
    let t = repo_root().join("target");
    std::fs::create_dir_all(&t).unwrap();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// README (The status page, Reports): drawn in a real browser, figures equal to the store's.
async fn the_status_page_and_the_report_render_in_chromium_with_the_stores_figures() {
    if !browser() {
        return;
    }
    let stack = Stack::start(month_stack_options(None)).await.unwrap();
    let run = stack.simulate_month(month_options()).await.unwrap();

    // The status page, as the browser rendered it.
    let url = format!("http://{}/", stack.addr);
    let dom = chromium(&url, &target().join("status-page.png")).await;
    let status: serde_json::Value = reqwest::get(format!("http://{}/status.json", stack.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let funnel = charts(&dom, "funnel");
    assert_eq!(funnel.len(), 1, "one funnel chart drawn: {dom}");
    let shown = bar_values(funnel[0]);
    let stored: Vec<f64> = status["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["contacts"].as_f64().unwrap())
        .collect();
    assert_eq!(shown, stored, "the bars are the store's contacts per stage");
    assert!(
        shown.iter().filter(|v| **v > 0.0).count() >= 6,
        "the month populated the funnel: {shown:?}"
    );
    let breaches = status["open_breaches"].as_u64().unwrap();
    assert!(breaches > 0, "the month left open breaches");
    assert!(dom.contains(&format!("Open SLA breaches ({breaches})")), "{dom}");
    let (counted, _) = stack.syncer.store.open_breaches(0).await.unwrap();
    assert_eq!(counted, breaches, "the page's breaches are the store's");

    // The HTML report of the month, opened the same way.
    let rows = stack.syncer.store.report_rows(run.to).await.unwrap();
    let report =
        leadsync::report::figures::compute(&rows, run.from, run.to, None, &stack.syncer.sla.marketing).unwrap();
    let html = leadsync::report::format::render(&report, ReportFormat::Html);
    let file = target().join("report.html");
    std::fs::write(&file, html).unwrap();
    let dom = chromium(&format!("file://{}", file.display()), &target().join("report.png")).await;
    let funnel = charts(&dom, "funnel");
    assert_eq!(funnel.len(), 1, "the report's funnel drawn: {dom}");
    let entered: Vec<f64> = report.groups[0].stages.iter().map(|s| s.entered as f64).collect();
    assert_eq!(
        bar_values(funnel[0]),
        entered,
        "the report's bars are its entries per stage"
    );
    assert!(
        dom.matches("<svg class=\"chart ").count() >= 3,
        "the funnel, first touch and SLA charts"
    );

    // The report printed to PDF (saved as `target/report.pdf`): a few A4 or Letter pages,
    // titled as the report is, its sections and figures in the printed text.
    let pdf = print_to_pdf(&format!("file://{}", file.display()), &target().join("report.pdf")).await;
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF: {:?}", &pdf[..pdf.len().min(16)]);
    let pages = pdf_pages(&pdf);
    assert!(
        (1..=4).contains(&pages.len()),
        "the month's report on 1 to 4 pages, not {}",
        pages.len()
    );
    for b in &pages {
        assert!(
            b == "0 0 595 842" || b == "0 0 612 792",
            "every page A4 (595 × 842 pt) or Letter (612 × 792 pt), not [{b}]"
        );
    }
    let text = String::from_utf8_lossy(&pdf);
    assert!(
        text.contains("/Title (leadsync monthly report)"),
        "the PDF is titled as the report"
    );
    if let Some(printed) = pdf_text(&target().join("report.pdf")).await {
        for heading in [
            "Funnel",
            "Time to first touch per week",
            "Sales SLA compliance",
            "Stages and KPIs",
        ] {
            assert!(
                printed.contains(heading),
                "the printed report has “{heading}”:\n{printed}"
            );
        }
        // Each week's time to first touch printed whole beside its bar (none cut off at the
        // chart's edge).
        for w in &report.first_touch_weeks {
            let text = w.first_touch.to_string();
            assert!(
                printed.contains(&text),
                "the printed report shows “{text}” whole:\n{printed}"
            );
        }
        // Each stage's row as printed: its name, then the contacts that entered it and those
        // that skipped it (a shortcut), the store's figures.
        for s in &report.groups[0].stages {
            let row = printed.lines().any(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.len() >= 3
                    && cells[0] == s.stage.as_str()
                    && cells[1] == s.entered.to_string()
                    && cells[2] == s.skipped.to_string()
            });
            assert!(
                row,
                "the printed report's {} row reads {} entered, {} skipped:\n{printed}",
                s.stage.as_str(),
                s.entered,
                s.skipped
            );
        }
    }
    stack.shutdown().await.unwrap();
}
