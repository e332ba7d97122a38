//! Integration tests: the clients against a loopback fixture server.

mod autodiscover;
mod ews;
mod failures;
mod fixture;
mod graph;
mod http;
mod imap;
mod mailbox;
mod ntlm;
mod smtp;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use exgate_mail::{Bearer, Credentials, HttpClient, HttpClientBuilder, RetryPolicy};
use secrecy::SecretString;

/// A client with quick retries (3 attempts, millisecond back-off, 2 s cap).
pub fn http() -> HttpClient {
    HttpClientBuilder::new()
        .retry(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(2),
            jitter: true,
        })
        .build()
        .expect("client")
}

pub(crate) fn bearer(token: &str) -> Arc<dyn Credentials> {
    Arc::new(Bearer::fixed(SecretString::from(token.to_owned())))
}
