//! The status page and the HTML report in a real browser (Debian's chromium, headless): the
//! daemon's server over a simulated sales month on the sandbox; the DOM after rendering is
//! checked (the charts drawn, their figures equal the store's) and screenshots are saved under
//! `target/` (`status-page.png`, `report.png`). Skipped, saying so, only when `/usr/bin/chromium`
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

/// Loads `url` in headless chromium: the DOM after rendering, and a screenshot at `png`.
async fn chromium(url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let args = |extra: &[String]| {
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
        a
    };
    let run = |a: Vec<String>| async move {
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
    };
    let _ = std::fs::remove_file(png);
    run(args(&[
        format!("--screenshot={}", png.display()),
        "--window-size=1280,2000".into(),
    ]))
    .await;
    let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} is not a picture",
        png.display()
    );
    run(args(&["--dump-dom".into()])).await
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
    stack.shutdown().await.unwrap();
}
