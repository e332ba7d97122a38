//! Verifies a generated project of N mailboxes with an instant prober and a SQLite state file,
//! and prints the time per run: the cost of the engine and the state store alone.
//!
//! Run with `cargo run --release -p exgate-verify --example bulk_verify -- 2000 5`
//! (mailboxes, runs).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use exgate_verify::{
    NoProgress, Prober, Resolved, StepFailure, StepOutput, Target, TokenKey, VerifyOptions,
    verify_project,
};
use tokio::sync::watch;

struct Instantly;

impl Prober for Instantly {
    type Token = ();
    async fn resolve(&self, _: &Target) -> Result<Resolved, StepFailure> {
        Ok(Resolved {
            url: "https://ews.example/EWS/Exchange.asmx".into(),
        })
    }
    fn token_key(&self, t: &Target, r: &Resolved) -> TokenKey {
        TokenKey {
            side: t.side,
            tenant: String::new(),
            resource: r.url.clone(),
            principal: None,
        }
    }
    async fn acquire_token(&self, _: &Target, _: &TokenKey) -> Result<(), StepFailure> {
        Ok(())
    }
    async fn open(&self, _: &Target, _: &Resolved, _: &()) -> Result<StepOutput, StepFailure> {
        Ok(StepOutput::detail("opened"))
    }
    async fn inbox_count(
        &self,
        _: &Target,
        _: &Resolved,
        _: &(),
    ) -> Result<StepOutput, StepFailure> {
        Ok(StepOutput {
            detail: None,
            item_count: Some(1),
        })
    }
    async fn write_probe(
        &self,
        _: &Target,
        _: &Resolved,
        _: &(),
    ) -> Result<StepOutput, StepFailure> {
        Ok(StepOutput::default())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    let mut text = String::from(
        "[source]\nkind = \"exchange-onprem\"\nurl = \"https://mail.contoso.com/EWS/Exchange.asmx\"\n\
         [source.auth]\nmode = \"basic\"\nusername = \"svc@contoso.com\"\npassword = \"x\"\n\
         [destination]\nkind = \"exchange-online\"\nurl = \"https://graph.microsoft.com/v1.0\"\n\
         tenant = \"fabrikam.com\"\n[destination.auth]\nmode = \"app-secret\"\n\
         client_id = \"11111111-2222-3333-4444-555555555555\"\nsecret = \"x\"\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[mailboxes]]\nsource = \"u{i}@contoso.com\"\ndestination = \"u{i}@fabrikam.com\"\n"
        ));
    }
    let project = exgate_verify::project::parse(
        &text,
        Path::new("bulk.toml"),
        &HashMap::<String, String>::new(),
    )?;
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let store = exgate_verify::store::Store::open(&exgate_verify::store::sqlite_url(
            &dir.path().join("bulk.sqlite"),
        ))
        .await?;
        let (_tx, cancel) = watch::channel(false);
        let start = Instant::now();
        let report = verify_project(
            Arc::new(Instantly),
            &project,
            &store,
            &VerifyOptions::default(),
            cancel,
            &mut NoProgress,
        )
        .await?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "run {run}: {} mailboxes ok in {secs:.3} s ({:.0} mailboxes/s)",
            report.summary.ok,
            n as f64 / secs
        );
        store.close().await;
    }
    Ok(())
}
