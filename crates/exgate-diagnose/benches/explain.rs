//! Throughput of `explain` and `redact` on a generated HAR (MB/s). Peak memory on a 1 GB HAR is
//! measured by `cargo run --release --example har_memory`.

use std::io::Read;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exgate_diagnose::har::{HarOptions, explain_har, redact_har};
use exgate_diagnose::redact::TokenMode;

#[path = "support/har_gen.rs"]
mod har_gen;

fn bench(c: &mut Criterion) {
    let mut har = Vec::new();
    har_gen::GeneratedHar::new(8 * 1024 * 1024)
        .read_to_end(&mut har)
        .expect("generate");
    let mut g = c.benchmark_group("har");
    g.throughput(Throughput::Bytes(har.len() as u64));
    g.sample_size(10);
    g.bench_function("explain_8MiB", |b| {
        b.iter(|| {
            let r = explain_har(har.as_slice(), HarOptions::default()).expect("explain");
            assert!(!r.failures.is_empty());
            r
        })
    });
    g.bench_function("redact_8MiB", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(har.len());
            redact_har(har.as_slice(), &mut out, TokenMode::Summary).expect("redact");
            out
        })
    });
    g.finish();

    let text = "HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", error=\"invalid_token\"\nx-ms-diagnostics: 2000003;reason=\"The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.\";error_category=\"invalid_resource\"\n";
    c.bench_function("explain_text_401", |b| {
        b.iter(|| exgate_diagnose::explain_text(text, None))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
