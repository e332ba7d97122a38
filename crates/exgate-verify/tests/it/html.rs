//! The HTML report rendered by headless Chromium: a screenshot is taken and the summary numbers
//! are read back from the DOM after the page's script ran.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use exgate_verify::{NoProgress, Side, StepName, VerifyOptions, verify_project};
use tokio::sync::watch;

use crate::fake::{self, Fake};

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("EXGATE_CHROMIUM")
        && !p.is_empty()
    {
        return Some(PathBuf::from(p));
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "headless_shell",
    ]
    .iter()
    .find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    })
}

fn headless(browser: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

fn data_value(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let v = tag.split("data-value=\"").nth(1)?;
    Some(v.split('"').next()?.to_owned())
}

#[tokio::test]
async fn html_report_renders_in_headless_chromium() {
    // Build a real report: 30 mailboxes, two with a mailbox fault.
    let dir = tempfile::tempdir().unwrap();
    let store = exgate_verify::store::Store::open(&exgate_verify::store::sqlite_url(
        &dir.path().join("s.sqlite"),
    ))
    .await
    .unwrap();
    let project = fake::project("html <report>", 30);
    let fake = Arc::new(Fake::default());
    fake.mailbox_faults
        .lock()
        .unwrap()
        .extend([3, 9].map(|i| (Side::Source, StepName::Open, format!("user{i}@contoso.com"))));
    let (_tx, cancel) = watch::channel(false);
    let report = verify_project(
        fake,
        &project,
        &store,
        &VerifyOptions::default(),
        cancel,
        &mut NoProgress,
    )
    .await
    .unwrap();
    let page = dir.path().join("report.html");
    // Written as `exgate verify --html` writes it: the mailboxes read from the store.
    let rows = exgate_verify::report::write_html_from(
        &store,
        &project,
        &report,
        exgate_verify::store::Listing::Project,
        std::fs::File::create(&page).unwrap(),
        &mut NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(rows, 30);

    let Some(browser) = chromium() else {
        eprintln!(
            "\n!!!!! HTML browser test did NOT run: no chromium on PATH \
             (apt-get install chromium, or set EXGATE_CHROMIUM) !!!!!\n"
        );
        return;
    };
    let url = format!("file://{}#status=failed", page.display());
    let profile = dir.path().join("profile");

    // The DOM after the script ran: the summary numbers, and the filter applied from the URL.
    let out = headless(&browser, &profile, &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(data_value(&dom, "summary-total").as_deref(), Some("30"));
    assert_eq!(data_value(&dom, "summary-ok").as_deref(), Some("28"));
    assert_eq!(data_value(&dom, "summary-failed").as_deref(), Some("2"));
    assert_eq!(data_value(&dom, "summary-blocked").as_deref(), Some("0"));
    assert_eq!(
        data_value(&dom, "rows-shown").as_deref(),
        Some("2"),
        "the page script filtered the table to the failed mailboxes"
    );
    assert!(dom.contains("exgate verify: html &lt;report&gt;"));

    // A screenshot of the page.
    let shot = dir.path().join("report.png");
    let out = headless(
        &browser,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,900",
            &format!("file://{}", page.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
    assert!(png.len() > 10_000, "a non-blank page: {} bytes", png.len());
    if let Ok(keep) = std::env::var("EXGATE_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
    store.close().await;
}
