//! The in-memory token cache with single flight.
//!
//! Each key has a slot holding the current token and, while a request is running, a broadcast
//! sender. Callers that miss while a request is in flight subscribe to it, so N concurrent callers
//! cause exactly one token request; they all get its result, error included. The request runs in
//! its own task, so a caller that gives up does not cancel it for the others. A failed request
//! stores nothing: the next caller starts a new one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::error::AuthError;
use crate::token::AccessToken;

/// A source of "now", replaceable in tests.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// When cached tokens are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Renew when less than this is left (default 5 minutes).
    pub renew_ahead: Duration,
    /// Never serve a cached token with less than this left (default 60 s), even when renewal
    /// fails.
    pub min_remaining: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            renew_ahead: Duration::from_secs(300),
            min_remaining: Duration::from_secs(60),
        }
    }
}

/// The cache key: authority, tenant, client, scopes (sorted) and user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    /// Authority host, tenant and endpoint version.
    pub authority: String,
    /// Client id.
    pub client_id: String,
    /// Scopes, sorted and space-joined (or the v1 resource).
    pub scopes: String,
    /// User, for delegated tokens.
    pub user: Option<String>,
}

impl CacheKey {
    /// Builds a key; scopes are sorted and de-duplicated so their order does not matter.
    pub fn new(authority: &str, client_id: &str, scopes: &[String], user: Option<&str>) -> Self {
        let mut s: Vec<String> = scopes.iter().map(|s| s.to_ascii_lowercase()).collect();
        s.sort();
        s.dedup();
        CacheKey {
            authority: authority.to_string(),
            client_id: client_id.to_ascii_lowercase(),
            scopes: s.join(" "),
            user: user.map(str::to_ascii_lowercase),
        }
    }

    /// A single-string form, used as the persistent store's key.
    pub fn as_text(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.authority,
            self.client_id,
            self.scopes,
            self.user.as_deref().unwrap_or("")
        )
    }
}

type Flight = broadcast::Sender<Result<AccessToken, AuthError>>;

#[derive(Default)]
struct SlotState {
    token: Option<AccessToken>,
    inflight: Option<Flight>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
}

/// A token cache with single flight per key.
#[derive(Clone)]
pub struct TokenCache {
    slots: Arc<Mutex<HashMap<CacheKey, Arc<Slot>>>>,
    policy: CachePolicy,
    clock: Clock,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// An empty cache.
    pub fn new(policy: CachePolicy, clock: Clock) -> Self {
        TokenCache {
            slots: Arc::default(),
            policy,
            clock,
        }
    }

    /// The renewal policy.
    pub fn policy(&self) -> CachePolicy {
        self.policy
    }

    fn slot(&self, key: &CacheKey) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // Look up first: cloning the key (four strings) only on the first use of a key.
        if let Some(slot) = slots.get(key) {
            return Arc::clone(slot);
        }
        Arc::clone(slots.entry(key.clone()).or_default())
    }

    /// The cached token for `key` when it has more than the renew-ahead window left.
    pub fn peek(&self, key: &CacheKey) -> Option<AccessToken> {
        let slot = self.slot(key);
        let st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = (self.clock)();
        st.token
            .as_ref()
            .filter(|t| left(t, now) > self.policy.renew_ahead)
            .cloned()
    }

    /// Puts a token in the cache (for tokens obtained outside `get_or_fetch`).
    pub fn insert(&self, key: &CacheKey, token: AccessToken) {
        let slot = self.slot(key);
        let mut st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.token = Some(token);
    }

    /// Drops the cached token for `key` (after the resource rejected it).
    pub fn invalidate(&self, key: &CacheKey) {
        let slot = self.slot(key);
        let mut st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.token = None;
    }

    /// Returns the cached token, or runs `fetch` once for all concurrent callers of this key.
    ///
    /// While a token still has more than `min_remaining` left, a failed renewal returns the old
    /// token instead of the error.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: &CacheKey,
        fetch: F,
    ) -> Result<AccessToken, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, AuthError>> + Send + 'static,
    {
        let slot = self.slot(key);
        let mut rx = {
            let mut st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = (self.clock)();
            if let Some(t) = &st.token
                && left(t, now) > self.policy.renew_ahead
            {
                return Ok(t.clone());
            }
            match &st.inflight {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = broadcast::channel(1);
                    st.inflight = Some(tx);
                    let fut = fetch();
                    let slot = Arc::clone(&slot);
                    let clock = Arc::clone(&self.clock);
                    let policy = self.policy;
                    tokio::spawn(async move {
                        // Should the fetch panic or the runtime drop this task, the guard ends
                        // the flight so that waiters get an error instead of waiting forever.
                        let mut guard = FlightGuard(Some(Arc::clone(&slot)));
                        let result = fut.await;
                        guard.0 = None;
                        let mut st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
                        let result = match result {
                            Ok(token) => {
                                st.token = Some(token.clone());
                                Ok(token)
                            }
                            Err(err) => {
                                let now = clock();
                                match &st.token {
                                    Some(old) if left(old, now) > policy.min_remaining => {
                                        tracing::warn!(error = %err, "token renewal failed; serving the current token until it nears expiry");
                                        Ok(old.clone())
                                    }
                                    _ => Err(err),
                                }
                            }
                        };
                        if let Some(tx) = st.inflight.take() {
                            let _ = tx.send(result);
                        }
                    });
                    rx
                }
            }
        };
        match rx.recv().await {
            Ok(result) => result,
            Err(_) => Err(AuthError::Flow {
                flow: "token_cache",
                message: "the token request ended without a result (its task was cancelled)".into(),
            }),
        }
    }
}

/// Ends an unfinished flight when dropped (its sender is dropped, so receivers see `Closed`).
struct FlightGuard(Option<Arc<Slot>>);

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            let mut st = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.inflight = None;
        }
    }
}

fn left(token: &AccessToken, now: OffsetDateTime) -> Duration {
    let secs = (token.expires_at() - now).whole_seconds();
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    fn token(text: &str, lifetime_secs: i64, now: OffsetDateTime) -> AccessToken {
        AccessToken::new(
            SecretString::from(text.to_string()),
            now + time::Duration::seconds(lifetime_secs),
            vec!["s".into()],
            None,
            "Bearer".into(),
        )
    }

    fn key() -> CacheKey {
        CacheKey::new("a", "c", &["s".into()], None)
    }

    struct FakeClock(AtomicU64);
    impl FakeClock {
        fn clock(self: &Arc<Self>) -> Clock {
            let me = Arc::clone(self);
            Arc::new(move || {
                OffsetDateTime::from_unix_timestamp(me.0.load(Ordering::SeqCst) as i64)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            })
        }
        fn now(&self) -> OffsetDateTime {
            OffsetDateTime::from_unix_timestamp(self.0.load(Ordering::SeqCst) as i64)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        }
        fn advance(&self, secs: u64) {
            self.0.fetch_add(secs, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_cause_one_fetch() {
        let cache = TokenCache::new(CachePolicy::default(), system_clock());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut handles = Vec::new();
        for _ in 0..200 {
            let cache = cache.clone();
            let calls = Arc::clone(&calls);
            let gate = Arc::clone(&gate);
            handles.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&key(), move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(token("t1", 3600, OffsetDateTime::now_utc()))
                    })
                    .await
            }));
        }
        // Let every caller subscribe, then release the one fetch.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.notify_waiters();
        gate.notify_one();
        for h in handles {
            let t = h.await.expect("joins").expect("token");
            assert_eq!(t.secret(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A hit does not fetch.
        let t = cache
            .get_or_fetch(&key(), || async {
                Err(AuthError::Unsupported("no".into()))
            })
            .await
            .expect("hit");
        assert_eq!(t.secret(), "t1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_reaches_every_waiter_and_does_not_poison() {
        let cache = TokenCache::new(CachePolicy::default(), system_clock());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut handles = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let calls = Arc::clone(&calls);
            let gate = Arc::clone(&gate);
            handles.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&key(), move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _p = gate.acquire().await;
                        Err(AuthError::Entra {
                            status: 400,
                            body: Box::new(crate::error::EntraError {
                                error: "invalid_grant".into(),
                                error_codes: vec![70008],
                                ..Default::default()
                            }),
                        })
                    })
                    .await
            }));
        }
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.add_permits(1);
        for h in handles {
            let err = h.await.expect("joins").expect_err("fails");
            assert_eq!(err.aadsts_codes(), &[70008]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let t = cache
            .get_or_fetch(&key(), || async {
                Ok(token("t2", 3600, OffsetDateTime::now_utc()))
            })
            .await
            .expect("recovers");
        assert_eq!(t.secret(), "t2");
    }

    #[tokio::test]
    async fn renews_ahead_of_expiry_and_falls_back_while_time_is_left() {
        let clock = Arc::new(FakeClock(AtomicU64::new(1_700_000_000)));
        let cache = TokenCache::new(CachePolicy::default(), clock.clock());
        let now = clock.now();
        let t = cache
            .get_or_fetch(&key(), move || async move { Ok(token("first", 3600, now)) })
            .await
            .expect("first");
        assert_eq!(t.secret(), "first");
        // 10 minutes before expiry: still served from cache.
        clock.advance(3000);
        let t = cache
            .get_or_fetch(&key(), || async { Err(AuthError::Unsupported("x".into())) })
            .await
            .expect("hit");
        assert_eq!(t.secret(), "first");
        // 4 minutes before expiry: renewal is attempted; it fails, the old token is served.
        clock.advance(360);
        let t = cache
            .get_or_fetch(&key(), || async {
                Err(AuthError::Unsupported("down".into()))
            })
            .await
            .expect("fallback");
        assert_eq!(t.secret(), "first");
        // Renewal succeeds.
        let now = clock.now();
        let t = cache
            .get_or_fetch(
                &key(),
                move || async move { Ok(token("second", 3600, now)) },
            )
            .await
            .expect("renewed");
        assert_eq!(t.secret(), "second");
        // Under 60 s left, a failed renewal is an error, never the old token.
        clock.advance(3600 - 50);
        let err = cache
            .get_or_fetch(&key(), || async {
                Err(AuthError::Unsupported("down".into()))
            })
            .await
            .expect_err("too close to expiry");
        assert!(matches!(err, AuthError::Unsupported(_)));
    }

    #[tokio::test]
    async fn a_panicking_fetch_ends_the_flight_and_the_next_call_works() {
        let cache = TokenCache::new(CachePolicy::default(), system_clock());
        let err = cache
            .get_or_fetch(&key(), || async {
                if key().client_id == "c" {
                    panic!("fetch bug");
                }
                Ok(token("never", 3600, OffsetDateTime::now_utc()))
            })
            .await
            .expect_err("no result");
        assert!(
            matches!(
                err,
                AuthError::Flow {
                    flow: "token_cache",
                    ..
                }
            ),
            "{err:?}"
        );
        let t = cache
            .get_or_fetch(&key(), || async {
                Ok(token("ok", 3600, OffsetDateTime::now_utc()))
            })
            .await
            .expect("next call fetches again");
        assert_eq!(t.secret(), "ok");
    }

    #[test]
    fn key_ignores_scope_order_and_case() {
        let a = CacheKey::new("x", "C", &["b".into(), "A".into()], Some("U@X"));
        let b = CacheKey::new("x", "c", &["a".into(), "b".into(), "b".into()], Some("u@x"));
        assert_eq!(a, b);
        assert_ne!(a, CacheKey::new("x", "c", &["a".into()], Some("u@x")));
    }
}
