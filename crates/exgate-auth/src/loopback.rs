//! A one-shot loopback HTTP listener that receives a browser redirect (query string or
//! `form_post` body) and answers with a short page. Binds 127.0.0.1 only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::response::Html;
use axum::routing::get;
use tokio::sync::oneshot;

use crate::error::AuthError;

/// The parameters of a received redirect (query or form fields).
pub type RedirectParams = BTreeMap<String, String>;

type Slot = Arc<Mutex<Option<oneshot::Sender<RedirectParams>>>>;

/// A bound loopback listener waiting for one redirect.
#[derive(Debug)]
pub struct RedirectListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl RedirectListener {
    /// Binds `127.0.0.1:port` (`0` picks a free port).
    pub async fn bind(port: u16) -> Result<RedirectListener, AuthError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| AuthError::Flow {
                flow: "loopback",
                message: format!("cannot listen on 127.0.0.1:{port}: {e}"),
            })?;
        let addr = listener.local_addr().map_err(|e| AuthError::Flow {
            flow: "loopback",
            message: e.to_string(),
        })?;
        Ok(RedirectListener { listener, addr })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits for one redirect (GET with a query, or POST form) for up to `timeout`, then stops
    /// listening.
    pub async fn receive(self, timeout: Duration) -> Result<RedirectParams, AuthError> {
        let (tx, rx) = oneshot::channel();
        let slot: Slot = Arc::new(Mutex::new(Some(tx)));
        let app = Router::new()
            .route("/", get(on_get).post(on_post))
            .fallback(get(on_get).post(on_post))
            .with_state(slot);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(self.listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        let result = tokio::time::timeout(timeout, rx).await;
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        match result {
            Ok(Ok(params)) => Ok(params),
            Ok(Err(_)) => Err(AuthError::Flow {
                flow: "loopback",
                message: "the listener stopped before a redirect arrived".into(),
            }),
            Err(_) => Err(AuthError::Flow {
                flow: "loopback",
                message: format!("no redirect arrived within {} s", timeout.as_secs()),
            }),
        }
    }
}

const PAGE: &str = "<!doctype html><html><head><title>exgate</title></head><body><p>exgate received the response. You can close this window.</p></body></html>";

async fn on_get(State(slot): State<Slot>, Query(q): Query<RedirectParams>) -> Html<&'static str> {
    deliver(&slot, q);
    Html(PAGE)
}

async fn on_post(State(slot): State<Slot>, Form(f): Form<RedirectParams>) -> Html<&'static str> {
    deliver(&slot, f);
    Html(PAGE)
}

fn deliver(slot: &Slot, params: RedirectParams) {
    // Browsers also ask for /favicon.ico; only a request with parameters counts.
    if params.is_empty() {
        return;
    }
    if let Some(tx) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
        let _ = tx.send(params);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_query_and_form_post() {
        let l = RedirectListener::bind(0).await.expect("bind");
        let port = l.port();
        let task = tokio::spawn(l.receive(Duration::from_secs(10)));
        let http = reqwest::Client::new();
        // An empty request (favicon) does not end the wait.
        let _ = http
            .get(format!("http://127.0.0.1:{port}/favicon.ico"))
            .send()
            .await;
        let r = http
            .get(format!("http://127.0.0.1:{port}/?code=abc&state=xyz"))
            .send()
            .await
            .expect("sent");
        assert!(r.status().is_success());
        let p = task.await.expect("join").expect("params");
        assert_eq!(p.get("code").map(String::as_str), Some("abc"));
        assert_eq!(p.get("state").map(String::as_str), Some("xyz"));

        let l = RedirectListener::bind(0).await.expect("bind");
        let port = l.port();
        let task = tokio::spawn(l.receive(Duration::from_secs(10)));
        http.post(format!("http://127.0.0.1:{port}/"))
            .form(&[("id_token", "a.b.c"), ("state", "s")])
            .send()
            .await
            .expect("sent");
        let p = task.await.expect("join").expect("params");
        assert_eq!(p.get("id_token").map(String::as_str), Some("a.b.c"));
    }

    #[tokio::test]
    async fn times_out() {
        let l = RedirectListener::bind(0).await.expect("bind");
        let err = l
            .receive(Duration::from_millis(50))
            .await
            .expect_err("timeout");
        assert!(matches!(err, AuthError::Flow { .. }));
    }
}
