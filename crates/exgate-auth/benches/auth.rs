//! Benchmarks: the cost of a cache hit through `TokenCache::get_or_fetch`, and of building and
//! signing one client assertion (RS256 + `x5t`, PS256 + `x5t#S256`).

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use exgate_auth::{
    AccessToken, AssertionAlgorithm, AssertionOptions, CacheKey, CachePolicy, ClientCertificate,
    TokenCache, build_assertion, system_clock,
};
use secrecy::SecretString;
use time::OffsetDateTime;

fn fixture_cert() -> Option<ClientCertificate> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    ClientCertificate::from_file(
        &dir.join("cert.pem"),
        Some(&dir.join("key-pkcs8.pem")),
        None,
    )
    .ok()
}

fn cache_hit(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let cache = TokenCache::new(CachePolicy::default(), system_clock());
    let key = CacheKey::new(
        "https://login.microsoftonline.com|contoso|v2",
        "app",
        &["https://outlook.office365.com/.default".to_string()],
        None,
    );
    cache.insert(
        &key,
        AccessToken::new(
            SecretString::from("token"),
            OffsetDateTime::now_utc() + time::Duration::hours(1),
            vec!["https://outlook.office365.com/.default".into()],
            None,
            "Bearer".into(),
        ),
    );
    c.bench_function("cache_hit_get_or_fetch", |b| {
        b.to_async(&rt).iter(|| async {
            cache
                .get_or_fetch(&key, || async {
                    Err(exgate_auth::AuthError::Unsupported("miss".into()))
                })
                .await
        });
    });
}

fn assertions(c: &mut Criterion) {
    let Some(cert) = fixture_cert() else {
        return;
    };
    let aud =
        "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token";
    for (name, algorithm) in [
        ("assertion_rs256_x5t", AssertionAlgorithm::Rs256),
        ("assertion_ps256_x5t_s256", AssertionAlgorithm::Ps256),
    ] {
        let options = AssertionOptions {
            algorithm,
            ..AssertionOptions::default()
        };
        c.bench_function(name, |b| {
            b.iter(|| build_assertion(&cert, "app", aud, &options, 1_700_000_000));
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = cache_hit, assertions
}
criterion_main!(benches);
