//! The Entra ID plane: discovery, JWKS, token, device code, authorize, admin consent.
//!
//! [`router`] builds the axum `Router` of this plane; the crate root merges it with the other
//! planes. Every handler derives the authority (`{scheme}://{Host}`) from the request, so
//! metadata, audiences and issuers name the host the client actually used.

pub mod assertion;
pub mod error;
pub mod form;
mod interactive;
mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use uuid::Uuid;

use crate::Stats;
use crate::scenario::{Application, Consent, RefreshTokenState, Scenario, SecretValue, Tenant};
use crate::tokens::SigningKey;
use error::AadError;

/// State shared by every handler of the emulator.
pub(crate) struct Shared {
    pub scenario: Scenario,
    pub key: Arc<SigningKey>,
    pub tls: bool,
    /// `{scheme}://{host}:{port}`, used when a request carries no `Host`.
    pub base_url: String,
    pub lifetime_secs: u64,
    pub counters: Counters,
    runtime: Mutex<Runtime>,
}

/// Request counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub token_requests: AtomicU64,
    pub tokens_issued: AtomicU64,
    pub token_errors: AtomicU64,
    pub client_credentials: AtomicU64,
    pub refresh_token: AtomicU64,
    pub device_code: AtomicU64,
    pub authorization_code: AtomicU64,
    pub password: AtomicU64,
    pub discovery_requests: AtomicU64,
    pub assertions_rs: AtomicU64,
    pub assertions_ps: AtomicU64,
    pub assertions_x5t_s256: AtomicU64,
    pub assertions_x5c: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            token_requests: g(&self.token_requests),
            tokens_issued: g(&self.tokens_issued),
            token_errors: g(&self.token_errors),
            client_credentials: g(&self.client_credentials),
            refresh_token: g(&self.refresh_token),
            device_code: g(&self.device_code),
            authorization_code: g(&self.authorization_code),
            password: g(&self.password),
            discovery_requests: g(&self.discovery_requests),
            assertions_rs: g(&self.assertions_rs),
            assertions_ps: g(&self.assertions_ps),
            assertions_x5t_s256: g(&self.assertions_x5t_s256),
            assertions_x5c: g(&self.assertions_x5c),
        }
    }
}

/// Mutable run-time state: issued refresh tokens, device codes, authorization codes, consent
/// granted at run time, seen assertion ids.
#[derive(Default)]
pub(crate) struct Runtime {
    pub refresh: HashMap<String, RefreshRecord>,
    pub devices: HashMap<String, DeviceRecord>,
    pub codes: HashMap<String, CodeRecord>,
    pub consents: Vec<(Uuid, Consent)>,
    pub jtis: HashMap<String, f64>,
}

pub(crate) struct RefreshRecord {
    pub tenant: Uuid,
    pub client_id: Uuid,
    pub upn: String,
    pub scopes: Vec<String>,
    pub state: RefreshTokenState,
    pub issued: time::OffsetDateTime,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved,
    Declined,
}

pub(crate) struct DeviceRecord {
    pub user_code: String,
    pub tenant: Option<Uuid>,
    pub client_id: Uuid,
    pub scope: String,
    pub expires_at: i64,
    pub polls: u32,
    pub status: DeviceStatus,
    pub upn: Option<String>,
    pub redeemed: bool,
}

pub(crate) struct CodeRecord {
    pub tenant: Uuid,
    pub client_id: Uuid,
    pub upn: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub challenge_method: String,
    pub nonce: Option<String>,
    pub created: i64,
    pub redeemed: bool,
}

impl Shared {
    pub(crate) fn new(
        scenario: Scenario,
        key: Arc<SigningKey>,
        tls: bool,
        base_url: String,
        lifetime_secs: u64,
    ) -> Shared {
        let mut runtime = Runtime::default();
        for t in &scenario.tenants {
            for rt in &t.refresh_tokens {
                runtime.refresh.insert(
                    rt.value.expose().to_string(),
                    RefreshRecord {
                        tenant: t.id,
                        client_id: rt.client_id,
                        upn: rt.user.clone(),
                        scopes: rt.scopes.clone(),
                        state: rt.state,
                        issued: time::OffsetDateTime::now_utc() - time::Duration::days(30),
                    },
                );
            }
        }
        Shared {
            scenario,
            key,
            tls,
            base_url,
            lifetime_secs,
            counters: Counters::default(),
            runtime: Mutex::new(runtime),
        }
    }

    pub(crate) fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `{scheme}://{host}` as the client addressed the emulator.
    pub(crate) fn authority(&self, headers: &HeaderMap) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::trim)
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            });
        match host {
            Some(h) => format!("{}://{}", if self.tls { "https" } else { "http" }, h),
            None => self.base_url.clone(),
        }
    }

    /// Resolves the `{tenant}` path segment.
    pub(crate) fn tenant(&self, segment: &str, metadata: bool) -> Result<TenantRef<'_>, AadError> {
        let lower = segment.trim().to_ascii_lowercase();
        if matches!(lower.as_str(), "common" | "organizations" | "consumers") {
            return Ok(TenantRef::Common(match lower.as_str() {
                "common" => "common",
                "organizations" => "organizations",
                _ => "consumers",
            }));
        }
        let well_formed = Uuid::parse_str(&lower).is_ok()
            || (lower.contains('.')
                && lower
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
        if !well_formed {
            return Err(error::tenant_malformed(segment));
        }
        self.scenario
            .tenant(&lower)
            .map(TenantRef::Tenant)
            .ok_or_else(|| error::tenant_not_found(segment, metadata))
    }

    /// Consent in `tenant` for `client` and `resource`: scenario grants plus run-time grants.
    pub(crate) fn consent(
        &self,
        tenant: &Tenant,
        client: Uuid,
        resource: &str,
    ) -> (Vec<String>, Vec<String>, bool) {
        let mut roles = Vec::new();
        let mut scopes = Vec::new();
        let mut any = false;
        let mut add = |c: &Consent| {
            if c.client_id == client && c.resource == resource {
                any = true;
                for r in &c.roles {
                    if !roles.contains(r) {
                        roles.push(r.clone());
                    }
                }
                for s in &c.scopes {
                    if !scopes.contains(s) {
                        scopes.push(s.clone());
                    }
                }
            }
        };
        for c in &tenant.consent {
            add(c);
        }
        for (tid, c) in &self.runtime().consents {
            if *tid == tenant.id {
                add(c);
            }
        }
        (roles, scopes, any)
    }

    /// Whether the application has any consent in the tenant (service principal exists there).
    pub(crate) fn has_any_consent(&self, tenant: &Tenant, client: Uuid) -> bool {
        tenant.consent.iter().any(|c| c.client_id == client)
            || self
                .runtime()
                .consents
                .iter()
                .any(|(t, c)| *t == tenant.id && c.client_id == client)
    }

    /// The application `client_id` as it exists in `tenant`: registered there, or multi-tenant
    /// with consent there (AADSTS700016 otherwise); disabled gives AADSTS7000112.
    pub(crate) fn app_in_tenant(
        &self,
        client_id: &str,
        tenant: &Tenant,
    ) -> Result<&Application, AadError> {
        let app = self
            .scenario
            .application(client_id)
            .filter(|a| {
                a.home_tenant == tenant.id
                    || (a.multi_tenant && self.has_any_consent(tenant, a.client_id))
            })
            .ok_or_else(|| error::app_not_found(client_id, &tenant.id.to_string()))?;
        if !app.enabled {
            return Err(error::app_disabled(client_id, &app.name));
        }
        Ok(app)
    }

    /// Records a new refresh token and returns its value.
    pub(crate) fn issue_refresh_token(
        &self,
        tenant: Uuid,
        client_id: Uuid,
        upn: &str,
        scopes: Vec<String>,
    ) -> SecretValue {
        let value = format!(
            "0.{}",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                [
                    Uuid::new_v4().as_bytes().as_slice(),
                    Uuid::new_v4().as_bytes()
                ]
                .concat()
            )
        );
        self.runtime().refresh.insert(
            value.clone(),
            RefreshRecord {
                tenant,
                client_id,
                upn: upn.to_string(),
                scopes,
                state: RefreshTokenState::Valid,
                issued: time::OffsetDateTime::now_utc(),
            },
        );
        SecretValue::new(value)
    }
}

/// The tenant a request addresses.
pub(crate) enum TenantRef<'a> {
    /// `common`, `organizations` or `consumers`.
    Common(&'static str),
    /// A real tenant.
    Tenant(&'a Tenant),
}

/// Builds the router of the Entra ID plane.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_v2),
        )
        .route("/{tenant}/.well-known/openid-configuration", get(openid_v1))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/discovery/keys", get(jwks))
        .route("/common/discovery/instance", get(instance_discovery))
        .route("/common/userrealm/{username}", get(user_realm))
        .route("/_exgate/stats", get(stats))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_v2))
        .route("/{tenant}/oauth2/token", post(token::token_v1))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(interactive::device_code_v2),
        )
        .route(
            "/{tenant}/oauth2/devicecode",
            post(interactive::device_code_v1),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(interactive::authorize_get).post(interactive::authorize_post),
        )
        .route(
            "/{tenant}/oauth2/authorize",
            get(interactive::authorize_get).post(interactive::authorize_post),
        )
        .route(
            "/{tenant}/adminconsent",
            get(interactive::admin_consent_get).post(interactive::authorize_post),
        )
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(interactive::admin_consent_get).post(interactive::authorize_post),
        )
        .route(
            "/devicelogin",
            get(interactive::device_login_get).post(interactive::device_login_post),
        )
        .with_state(shared)
}

fn discovery_response(body: serde_json::Value) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    resp
}

/// The tenant id as it appears in metadata: the GUID, or `{tenantid}` for `common`.
fn metadata_tenant(
    shared: &Shared,
    segment: &str,
    headers: &HeaderMap,
) -> Result<(String, String), Box<Response>> {
    match shared.tenant(segment, true) {
        Ok(TenantRef::Tenant(t)) => Ok((t.id.to_string(), t.id.to_string())),
        Ok(TenantRef::Common(name)) => Ok((name.to_string(), "{tenantid}".to_string())),
        Err(e) => Err(Box::new(e.into_response_for(headers))),
    }
}

async fn openid_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared
        .counters
        .discovery_requests
        .fetch_add(1, Ordering::Relaxed);
    let (path_tenant, issuer_tenant) = match metadata_tenant(&shared, &tenant, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let a = shared.authority(&headers);
    let t = path_tenant;
    discovery_response(json!({
        "token_endpoint": format!("{a}/{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{a}/{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{a}/{issuer_tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{a}/oidc/userinfo"),
        "authorization_endpoint": format!("{a}/{t}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{a}/{t}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{a}/{t}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{a}/{t}/kerberos"),
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
}

async fn openid_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared
        .counters
        .discovery_requests
        .fetch_add(1, Ordering::Relaxed);
    let (t, issuer_tenant) = match metadata_tenant(&shared, &tenant, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let a = shared.authority(&headers);
    discovery_response(json!({
        "token_endpoint": format!("{a}/{t}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{a}/common/discovery/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": format!("https://sts.windows.net/{issuer_tenant}/"),
        "microsoft_multi_refresh_token": true,
        "authorization_endpoint": format!("{a}/{t}/oauth2/authorize"),
        "device_authorization_endpoint": format!("{a}/{t}/oauth2/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{a}/{t}/oauth2/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "amr", "nonce", "email", "given_name", "family_name", "nickname"],
        "check_session_iframe": format!("{a}/{t}/oauth2/checksession"),
        "userinfo_endpoint": format!("{a}/{t}/openid/userinfo"),
        "kerberos_endpoint": format!("{a}/{t}/kerberos"),
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
}

async fn jwks(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = metadata_tenant(&shared, &tenant, &headers) {
        return *r;
    }
    discovery_response(shared.key.jwks())
}

async fn instance_discovery(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let a = shared.authority(&headers);
    let host = a
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(&a)
        .to_string();
    // The tenant is the first path segment of the `authorization_endpoint` parameter.
    let tenant = query
        .get("authorization_endpoint")
        .and_then(|e| url::Url::parse(e).ok())
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next().map(str::to_string))
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "common".to_string());
    discovery_response(json!({
        "tenant_discovery_endpoint": format!("{a}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [
            {"preferred_network": host, "preferred_cache": host, "aliases": [host]},
            {"preferred_network": "login.microsoftonline.com", "preferred_cache": "login.windows.net",
             "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"]},
        ]
    }))
}

async fn user_realm(State(shared): State<Arc<Shared>>, Path(username): Path<String>) -> Response {
    let upn = username.trim().to_ascii_lowercase();
    let domain = upn.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let tenant = shared.scenario.tenant(domain);
    let federated = tenant
        .and_then(|t| t.user(&upn))
        .is_some_and(|u| u.federated);
    let account_type = match tenant {
        None => "Unknown",
        Some(_) if federated => "Federated",
        Some(_) => "Managed",
    };
    discovery_response(json!({
        "ver": "1.0",
        "account_type": account_type,
        "domain_name": domain,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }))
}

/// The emulator's counters as JSON (`GET /_exgate/stats`), for out-of-process tests.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let body = serde_json::to_value(shared.counters.snapshot()).unwrap_or_default();
    error::json_response(StatusCode::OK, &body, &Uuid::new_v4().to_string())
}
