//! Mailbox-open requests per second, EWS and Graph, against the loopback fixture server.
//!
//! Run with `cargo bench -p exgate-mail --bench mailbox_open`. Criterion reports the
//! throughput in elements per second: one element is one mailbox open (EWS: `GetFolder
//! msgfolderroot` with impersonation; Graph: `GET /users/{upn}`), a full HTTP round trip
//! over a pooled loopback connection including request building and response parsing.

#[path = "../tests/it/fixture.rs"]
mod fixture;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exgate_mail::ews::ConnectingSid;
use exgate_mail::{Bearer, HttpClient, MailEndpoint, open_mailbox};
use secrecy::SecretString;

const USER: &str = "user@example.com";

fn mailbox_open(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fx = rt.block_on(fixture::Fixture::start(fixture::exchange()));
    let http = HttpClient::new().expect("client");
    let creds = Arc::new(Bearer::fixed(SecretString::from("app-token")));
    let endpoints = [
        (
            "ews",
            MailEndpoint::Ews {
                url: fx.url("/EWS/Exchange.asmx"),
                impersonation: Some(ConnectingSid::PrimarySmtpAddress(USER.into())),
                server_version: None,
            },
        ),
        (
            "graph",
            MailEndpoint::Graph {
                base: format!("{}/v1.0", fx.base),
            },
        ),
    ];
    let mut group = c.benchmark_group("mailbox_open");
    group.throughput(Throughput::Elements(1));
    for (name, ep) in &endpoints {
        let mb = open_mailbox(ep, &http, creds.clone(), USER).expect("mailbox");
        // Fail loudly rather than measure errors.
        rt.block_on(mb.open())
            .expect("open works against the fixture");
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                let info = mb.open().await.expect("open");
                black_box(info);
            });
        });
    }
    group.finish();
    drop(fx);
}

criterion_group!(benches, mailbox_open);
criterion_main!(benches);
