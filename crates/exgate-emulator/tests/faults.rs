//! Injected faults and latency (`[[faults]]`): statuses with and without `Retry-After`, hangs,
//! dropped connections and added latency, in their window and at their rate.

mod common;

use std::time::{Duration, Instant};

use common::*;
use exgate_emulator::EmulatorOptions;

fn with_faults(cert: &TestCert, faults: &str) -> String {
    format!("{}\n{faults}", scenario_toml(cert, "", ""))
}

async fn post_token(
    client: &reqwest::Client,
    base: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    client
        .post(format!("{base}/contoso.onmicrosoft.com/oauth2/v2.0/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "x")])
        .send()
        .await
}

#[tokio::test]
async fn statuses_in_their_window_then_the_real_answer() {
    let cert = TestCert::new("faults");
    let emu = start_with(
        &with_faults(
            &cert,
            "[[faults]]\nendpoint = \"token\"\nstatus = 503\nretry_after = 7\ncount = 2\n",
        ),
        EmulatorOptions::default(),
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let r = post_token(&client, emu.base_url()).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
    }
    // Past the window: Entra's own answer (an unknown client id).
    let r = post_token(&client, emu.base_url()).await.unwrap();
    assert_eq!(r.status(), 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn latency_hang_and_reset() {
    let cert = TestCert::new("faults2");
    let emu = start_with(
        &with_faults(
            &cert,
            "[[faults]]\nendpoint = \"token\"\nlatency_ms = 300\ncount = 1\n\n\
             [[faults]]\nendpoint = \"token\"\nreset = true\nfrom = 1\ncount = 1\n\n\
             [[faults]]\nendpoint = \"token\"\nhang = true\nfrom = 2\ncount = 1\n",
        ),
        EmulatorOptions::default(),
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    // 1: delayed, then the real answer.
    let started = Instant::now();
    let r = post_token(&client, emu.base_url()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // 2: the connection is dropped without an answer.
    let e = post_token(&client, emu.base_url()).await.unwrap_err();
    assert!(!e.is_timeout(), "{e:?}");
    // 3: no answer at all.
    let e = post_token(&client, emu.base_url()).await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    // 4: past every window.
    let r = post_token(&client, emu.base_url()).await.unwrap();
    assert_eq!(r.status(), 400);
    emu.shutdown().await;
}

#[test]
fn a_fault_that_is_two_things_at_once_is_refused_with_its_field() {
    let cert = TestCert::new("faults3");
    let err = exgate_emulator::Scenario::from_toml_str(
        &with_faults(
            &cert,
            "[[faults]]\nendpoint = \"graph\"\nstatus = 500\nhang = true\n",
        ),
        std::path::Path::new("f.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("status") && err.contains("one of status, reply, hang or reset"),
        "{err}"
    );
    let err = exgate_emulator::Scenario::from_toml_str(
        &with_faults(&cert, "[[faults]]\nendpoint = \"smtp\"\nstatus = 500\n"),
        std::path::Path::new("f.toml"),
    )
    .unwrap_err()
    .to_string();
    // SMTP takes faults, but not an HTTP status: the error says what to write instead.
    assert!(
        err.contains("no HTTP status") && err.contains("reply = "),
        "{err}"
    );
}
