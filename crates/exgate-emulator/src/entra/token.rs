//! The token endpoints (`/{tenant}/oauth2/v2.0/token`, `/{tenant}/oauth2/token`) and every
//! grant they serve.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use uuid::Uuid;

use super::assertion::{self, AssertionCheck, AssertionError};
use super::error::{self, AadError, json_response};
use super::form::{Form, Scopes, parse_basic};
use super::{DeviceStatus, Shared, TenantRef};
use crate::scenario::{
    Application, DeviceOutcome, RefreshTokenState, Tenant, User, normalize_resource,
};
use crate::tokens::{self, AccessTokenSpec, IdTokenSpec, ResourceKind, Subject};

/// Token endpoint protocol version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Version {
    /// `/oauth2/token`: `resource=`, numbers as strings.
    V1,
    /// `/oauth2/v2.0/token`: `scope=`.
    V2,
}

/// How the client authenticated; the value of `appidacr`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ClientAuth {
    None,
    Secret,
    Certificate,
}

impl ClientAuth {
    fn acr(self) -> &'static str {
        match self {
            ClientAuth::None => "0",
            ClientAuth::Secret => "1",
            ClientAuth::Certificate => "2",
        }
    }
}

pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) async fn token_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&shared, &tenant, &headers, &body, Version::V2)
}

pub(crate) async fn token_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&shared, &tenant, &headers, &body, Version::V1)
}

/// Handles one token request (also used by benchmarks through the router).
fn respond(
    shared: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
    version: Version,
) -> Response {
    shared
        .counters
        .token_requests
        .fetch_add(1, Ordering::Relaxed);
    let req = Req {
        shared,
        form: Form::parse(body),
        basic: parse_basic(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ),
        authority: shared.authority(headers),
        tenant_segment: tenant,
        version,
    };
    match req.handle() {
        Ok(body) => {
            shared
                .counters
                .tokens_issued
                .fetch_add(1, Ordering::Relaxed);
            json_response(StatusCode::OK, &body, &Uuid::new_v4().to_string())
        }
        Err(e) => {
            shared.counters.token_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(code = e.code, error = e.error, "token request refused");
            e.into_response_for(headers)
        }
    }
}

struct Req<'a> {
    shared: &'a Shared,
    form: Form,
    basic: Option<(String, String)>,
    authority: String,
    tenant_segment: &'a str,
    version: Version,
}

impl Req<'_> {
    fn handle(&self) -> Result<Value, AadError> {
        let grant = self
            .form
            .get("grant_type")
            .ok_or_else(|| error::missing_parameter("grant_type"))?;
        let tenant = self.shared.tenant(self.tenant_segment, false)?;
        let c = &self.shared.counters;
        match grant {
            "client_credentials" => {
                c.client_credentials.fetch_add(1, Ordering::Relaxed);
                self.client_credentials(tenant)
            }
            "password" => {
                c.password.fetch_add(1, Ordering::Relaxed);
                self.password(tenant)
            }
            "refresh_token" => {
                c.refresh_token.fetch_add(1, Ordering::Relaxed);
                self.refresh(tenant)
            }
            DEVICE_GRANT | "device_code" => {
                c.device_code.fetch_add(1, Ordering::Relaxed);
                self.device(tenant)
            }
            "authorization_code" => {
                c.authorization_code.fetch_add(1, Ordering::Relaxed);
                self.authorization_code(tenant)
            }
            other => Err(error::unsupported_grant(other)),
        }
    }

    /// The client id: the parameter, else the Basic user name, else the assertion's `iss`.
    fn client_id(&self) -> Result<String, AadError> {
        if let Some(id) = self.form.get("client_id") {
            return Ok(id.to_string());
        }
        if let Some((id, _)) = &self.basic
            && !id.is_empty()
        {
            return Ok(id.clone());
        }
        if let Some(a) = self.form.get("client_assertion")
            && let Ok((_, claims)) = assertion::peek(a)
            && let Some(iss) = claims.get("iss").and_then(Value::as_str)
        {
            return Ok(iss.to_string());
        }
        Err(error::missing_parameter("client_id"))
    }

    fn app_in_tenant<'s>(
        &'s self,
        client_id: &str,
        tenant: &'s Tenant,
    ) -> Result<&'s Application, AadError> {
        self.shared.app_in_tenant(client_id, tenant)
    }

    fn audiences(&self, tenant: &Tenant) -> Vec<String> {
        let a = self.authority.to_ascii_lowercase();
        let mut names = vec![
            tenant.id.to_string(),
            self.tenant_segment.to_ascii_lowercase(),
        ];
        names.extend(tenant.domains.iter().cloned());
        let mut out = vec![
            format!("{a}/oauth2/token"),
            format!("{a}/oauth2/v2.0/token"),
        ];
        for n in names {
            out.push(format!("{a}/{n}/oauth2/token"));
            out.push(format!("{a}/{n}/oauth2/v2.0/token"));
        }
        out
    }

    fn authenticate(&self, app: &Application, tenant: &Tenant) -> Result<ClientAuth, AadError> {
        let client_id = app.client_id.to_string();
        if let Some(a) = self.form.get("client_assertion") {
            match self.form.get("client_assertion_type") {
                None => return Err(error::missing_parameter("client_assertion_type")),
                Some(t) if t != JWT_BEARER => {
                    return Err(AadError::new(
                        50027,
                        "invalid_client",
                        format!(
                            "JWT token is invalid or malformed. Unsupported client_assertion_type '{t}'."
                        ),
                    ));
                }
                Some(_) => {}
            }
            let audiences = self.audiences(tenant);
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
            let settings = &self.shared.scenario.settings;
            let check = AssertionCheck {
                client_id: &client_id,
                audiences: &audiences,
                certificates: &app.certificates,
                now,
                skew: settings.clock_skew.as_secs_f64(),
            };
            let valid = assertion::validate(a, &check).map_err(assertion_error)?;
            let c = &self.shared.counters;
            let bump = |n: &std::sync::atomic::AtomicU64| {
                n.fetch_add(1, Ordering::Relaxed);
            };
            bump(if valid.pss {
                &c.assertions_ps
            } else {
                &c.assertions_rs
            });
            if valid.sha256_thumbprint {
                bump(&c.assertions_x5t_s256);
            }
            if valid.x5c {
                bump(&c.assertions_x5c);
            }
            if settings.reject_reused_jti
                && let Some(jti) = valid.jti
            {
                let mut rt = self.shared.runtime();
                rt.jtis.retain(|_, exp| *exp + 300.0 > now);
                let key = format!("{client_id}:{jti}");
                if rt.jtis.contains_key(&key) {
                    return Err(assertion_error(AssertionError::Replay));
                }
                rt.jtis.insert(key, valid.exp);
            }
            return Ok(ClientAuth::Certificate);
        }
        let body_secret = self.form.get("client_secret");
        let basic_secret = self
            .basic
            .as_ref()
            .map(|(_, s)| s.as_str())
            .filter(|s| !s.is_empty());
        let secret = match (body_secret, basic_secret) {
            (Some(b), Some(h)) if b != h => return Err(error::bad_secret(&client_id)),
            (Some(s), _) | (None, Some(s)) => s,
            (None, None) => return Ok(ClientAuth::None),
        };
        let now = time::OffsetDateTime::now_utc();
        let mut expired = false;
        for s in &app.secrets {
            if s.value.matches(secret) {
                if s.expires.is_some_and(|e| e <= now) {
                    expired = true;
                } else {
                    return Ok(ClientAuth::Secret);
                }
            }
        }
        if expired {
            Err(error::expired_secret(&client_id))
        } else {
            Err(error::bad_secret(&client_id))
        }
    }

    fn ca_blocks(&self, tenant: &Tenant, client: Uuid, upn: Option<&str>, grant: &str) -> bool {
        tenant.conditional_access.iter().any(|r| {
            let user_ok = if r.users.is_empty() {
                true
            } else {
                upn.is_some_and(|u| r.users.iter().any(|x| x == u))
            };
            let app_ok = r.applications.is_empty() || r.applications.contains(&client);
            let grant_ok = r.grants.is_empty() || r.grants.iter().any(|g| g == grant);
            user_ok && app_ok && grant_ok
        })
    }

    fn lifetime(&self) -> u64 {
        self.shared.lifetime_secs
    }

    // ---- client credentials -----------------------------------------------------------------

    fn client_credentials(&self, tenant: TenantRef<'_>) -> Result<Value, AadError> {
        let tenant = match tenant {
            TenantRef::Common(_) => return Err(error::no_tenant()),
            TenantRef::Tenant(t) => t,
        };
        let client_id = self.client_id()?;
        let app = self.app_in_tenant(&client_id, tenant)?;
        let auth = self.authenticate(app, tenant)?;
        if auth == ClientAuth::None {
            return Err(error::credential_required_cc());
        }
        // The resource: `scope={resource}/.default` (v2) or `resource=` (v1).
        let audience = match self.version {
            Version::V2 => {
                let scope = self
                    .form
                    .get("scope")
                    .ok_or_else(|| error::missing_parameter("scope"))?;
                let parsed = Scopes::parse(scope);
                if let Some(o) = parsed.oidc.first() {
                    return Err(error::invalid_scope(o));
                }
                match parsed.resource.as_slice() {
                    [(res, perm)] if perm == ".default" => res.clone(),
                    _ => return Err(error::invalid_scope(scope)),
                }
            }
            Version::V1 => self
                .form
                .get("resource")
                .ok_or_else(|| error::missing_parameter("resource"))?
                .to_string(),
        };
        let (resource, kind) = resolve_resource(tenant, &audience)
            .ok_or_else(|| error::resource_not_found(&audience, &tenant.display_name))?;
        if self.ca_blocks(tenant, app.client_id, None, "client_credentials") {
            return Err(error::blocked_by_ca());
        }
        let (roles, _, _) = self.shared.consent(tenant, app.client_id, &resource);
        let service_principal = if tenant.id == app.home_tenant {
            app.object_id
        } else {
            crate::scenario::derived_guid(&[
                "sp",
                &app.client_id.to_string(),
                &tenant.id.to_string(),
            ])
        };
        let spec = AccessTokenSpec {
            tenant: tenant.id,
            audience: &audience,
            client_id: app.client_id,
            app_name: &app.name,
            client_auth: auth.acr(),
            subject: Subject::App {
                service_principal,
                roles,
            },
            lifetime_secs: self.lifetime(),
        };
        let claims = tokens::access_token_claims(&spec);
        let token = self
            .shared
            .key
            .sign(&claims, kind == ResourceKind::Exchange)
            .map_err(internal)?;
        Ok(self.app_response(token, &audience, &claims))
    }

    fn app_response(&self, token: String, audience: &str, claims: &Value) -> Value {
        let life = self.lifetime();
        match self.version {
            Version::V2 => json!({
                "token_type": "Bearer",
                "expires_in": life,
                "ext_expires_in": life,
                "access_token": token,
            }),
            Version::V1 => json!({
                "token_type": "Bearer",
                "expires_in": life.to_string(),
                "ext_expires_in": life.to_string(),
                "expires_on": claims["exp"].as_i64().unwrap_or(0).to_string(),
                "not_before": claims["nbf"].as_i64().unwrap_or(0).to_string(),
                "resource": audience,
                "access_token": token,
            }),
        }
    }

    // ---- user flows -------------------------------------------------------------------------

    fn user_tenant<'s>(&'s self, tenant: TenantRef<'s>, upn: &str) -> Result<&'s Tenant, AadError> {
        match tenant {
            TenantRef::Tenant(t) => Ok(t),
            TenantRef::Common(_) => {
                let domain = upn.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                self.shared
                    .scenario
                    .tenant(domain)
                    .or_else(|| {
                        self.shared
                            .scenario
                            .tenants
                            .iter()
                            .find(|t| t.user(upn).is_some())
                    })
                    .ok_or_else(|| error::user_not_found(domain))
            }
        }
    }

    /// Account checks that do not involve the password.
    fn account_usable<'t>(&self, tenant: &'t Tenant, upn: &str) -> Result<&'t User, AadError> {
        let user = tenant
            .user(upn)
            .filter(|u| u.exists)
            .ok_or_else(|| error::user_not_found(tenant.default_domain()))?;
        if user.disabled {
            return Err(error::user_disabled());
        }
        if user.locked {
            return Err(error::user_locked());
        }
        Ok(user)
    }

    fn password(&self, tenant: TenantRef<'_>) -> Result<Value, AadError> {
        let username = self
            .form
            .get("username")
            .ok_or_else(|| error::missing_parameter("username"))?
            .to_ascii_lowercase();
        let password = self
            .form
            .get("password")
            .ok_or_else(|| error::missing_parameter("password"))?;
        let tenant = self.user_tenant(tenant, &username)?;
        let client_id = self.client_id()?;
        let app = self.app_in_tenant(&client_id, tenant)?;
        let auth = self.authenticate(app, tenant)?;
        if auth == ClientAuth::None && !app.public_client {
            return Err(error::credential_required());
        }
        let user = self.account_usable(tenant, &username)?;
        if user.federated || user.password.expose().is_empty() || !user.password.matches(password) {
            return Err(error::bad_password());
        }
        if user.password_expired {
            return Err(error::password_expired());
        }
        self.user_tokens(UserGrant {
            tenant,
            app,
            user,
            scope: self
                .form
                .get("scope")
                .unwrap_or("openid profile offline_access"),
            auth,
            grant: "password",
            interactive: false,
            nonce: None,
            rotate_from: None,
        })
    }

    fn refresh(&self, tenant: TenantRef<'_>) -> Result<Value, AadError> {
        let presented = self
            .form
            .get("refresh_token")
            .ok_or_else(|| error::missing_parameter("refresh_token"))?
            .to_string();
        let client_id = self.client_id()?;
        let (rt_tenant, rt_client, upn, scopes, state, issued) = {
            let rt = self.shared.runtime();
            let r = rt
                .refresh
                .get(&presented)
                .ok_or_else(error::grant_invalid)?;
            (
                r.tenant,
                r.client_id,
                r.upn.clone(),
                r.scopes.clone(),
                r.state,
                r.issued,
            )
        };
        if !rt_client.to_string().eq_ignore_ascii_case(client_id.trim()) {
            return Err(error::grant_invalid());
        }
        if let TenantRef::Tenant(t) = tenant
            && t.id != rt_tenant
        {
            return Err(error::grant_invalid());
        }
        let issued_text = error::entra_timestamp(issued);
        match state {
            RefreshTokenState::Valid => {}
            RefreshTokenState::Revoked => return Err(error::grant_revoked(&issued_text)),
            RefreshTokenState::Inactive => return Err(error::rt_inactive(&issued_text)),
            RefreshTokenState::SignInFrequency => {
                return Err(error::rt_sign_in_frequency(&issued_text));
            }
        }
        let tenant = self
            .shared
            .scenario
            .tenants
            .iter()
            .find(|t| t.id == rt_tenant)
            .ok_or_else(error::grant_invalid)?;
        let app = self.app_in_tenant(&client_id, tenant)?;
        let auth = self.authenticate(app, tenant)?;
        if auth == ClientAuth::None && !app.public_client {
            return Err(error::credential_required());
        }
        let user = self.account_usable(tenant, &upn)?;
        let joined = scopes.join(" ");
        let scope = self.form.get("scope").unwrap_or(&joined).to_string();
        self.user_tokens(UserGrant {
            tenant,
            app,
            user,
            scope: &scope,
            auth,
            grant: "refresh_token",
            interactive: true,
            nonce: None,
            rotate_from: Some(&presented),
        })
    }

    fn device(&self, tenant: TenantRef<'_>) -> Result<Value, AadError> {
        let code = self
            .form
            .get("device_code")
            .or_else(|| self.form.get("code"))
            .ok_or_else(|| error::missing_parameter("device_code"))?
            .to_string();
        let client_id = self.client_id()?;
        let now = tokens::now_secs();
        let flow = self.shared.scenario.device_flow.clone();
        let (upn, scope, rec_tenant) = {
            let mut rt = self.shared.runtime();
            let rec = rt
                .devices
                .get_mut(&code)
                .filter(|r| r.client_id.to_string().eq_ignore_ascii_case(&client_id))
                .ok_or_else(error::bad_verification_code)?;
            if rec.redeemed {
                return Err(error::bad_verification_code());
            }
            if now >= rec.expires_at {
                return Err(error::device_code_expired());
            }
            rec.polls += 1;
            if rec.status == DeviceStatus::Pending
                && let Some(df) = &flow
            {
                let threshold = df.pending_polls + u32::from(df.slow_down);
                if df.slow_down && rec.polls == 1 {
                    return Err(error::slow_down());
                }
                if rec.polls > threshold {
                    match df.outcome {
                        DeviceOutcome::Approve => {
                            rec.status = DeviceStatus::Approved;
                            rec.upn = Some(df.user.clone());
                        }
                        DeviceOutcome::Decline => rec.status = DeviceStatus::Declined,
                        DeviceOutcome::Expire => {
                            rec.expires_at = now;
                            return Err(error::device_code_expired());
                        }
                        DeviceOutcome::Pending => {}
                    }
                }
            }
            match rec.status {
                DeviceStatus::Pending => return Err(error::authorization_pending()),
                DeviceStatus::Declined => return Err(error::authorization_declined()),
                DeviceStatus::Approved => {}
            }
            rec.redeemed = true;
            (
                rec.upn.clone().unwrap_or_default(),
                rec.scope.clone(),
                rec.tenant,
            )
        };
        let tenant = match rec_tenant {
            Some(id) => self
                .shared
                .scenario
                .tenants
                .iter()
                .find(|t| t.id == id)
                .ok_or_else(error::bad_verification_code)?,
            None => self.user_tenant(tenant, &upn)?,
        };
        let app = self.app_in_tenant(&client_id, tenant)?;
        let auth = self.authenticate(app, tenant)?;
        if auth == ClientAuth::None && !app.public_client {
            return Err(error::credential_required());
        }
        let user = self.account_usable(tenant, &upn)?;
        self.user_tokens(UserGrant {
            tenant,
            app,
            user,
            scope: &scope,
            auth,
            grant: "device_code",
            interactive: true,
            nonce: None,
            rotate_from: None,
        })
    }

    fn authorization_code(&self, tenant: TenantRef<'_>) -> Result<Value, AadError> {
        let code = self
            .form
            .get("code")
            .ok_or_else(|| error::missing_parameter("code"))?
            .to_string();
        let client_id = self.client_id()?;
        let now = tokens::now_secs();
        let (rec_tenant, upn, redirect, scope, challenge, method, nonce) = {
            let mut rt = self.shared.runtime();
            let rec = rt.codes.get_mut(&code).ok_or_else(error::grant_invalid)?;
            if rec.redeemed {
                return Err(error::code_redeemed());
            }
            if now - rec.created > 600 {
                return Err(error::code_expired());
            }
            if !rec.client_id.to_string().eq_ignore_ascii_case(&client_id) {
                return Err(error::grant_invalid());
            }
            (
                rec.tenant,
                rec.upn.clone(),
                rec.redirect_uri.clone(),
                rec.scope.clone(),
                rec.code_challenge.clone(),
                rec.challenge_method.clone(),
                rec.nonce.clone(),
            )
        };
        if let TenantRef::Tenant(t) = tenant
            && t.id != rec_tenant
        {
            return Err(error::grant_invalid());
        }
        let redirect_uri = self
            .form
            .get("redirect_uri")
            .ok_or_else(|| error::missing_parameter("redirect_uri"))?;
        if redirect_uri != redirect {
            return Err(error::redirect_mismatch(redirect_uri, &client_id));
        }
        if let Some(ch) = challenge {
            let verifier = self
                .form
                .get("code_verifier")
                .ok_or_else(|| error::missing_parameter("code_verifier"))?;
            let computed = if method.eq_ignore_ascii_case("plain") {
                verifier.to_string()
            } else {
                URL_SAFE_NO_PAD.encode(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes())
                        .as_ref(),
                )
            };
            if computed != ch {
                return Err(error::pkce_mismatch());
            }
        }
        let tenant = self
            .shared
            .scenario
            .tenants
            .iter()
            .find(|t| t.id == rec_tenant)
            .ok_or_else(error::grant_invalid)?;
        let app = self.app_in_tenant(&client_id, tenant)?;
        let auth = self.authenticate(app, tenant)?;
        if auth == ClientAuth::None && !app.public_client {
            return Err(error::credential_required());
        }
        if let Some(r) = self.shared.runtime().codes.get_mut(&code) {
            r.redeemed = true;
        }
        let user = self.account_usable(tenant, &upn)?;
        let scope = self.form.get("scope").unwrap_or(&scope).to_string();
        self.user_tokens(UserGrant {
            tenant,
            app,
            user,
            scope: &scope,
            auth,
            grant: "authorization_code",
            interactive: true,
            nonce: nonce.as_deref(),
            rotate_from: None,
        })
    }

    /// Common end of every user flow: MFA, Conditional Access, consent, then the tokens.
    fn user_tokens(&self, g: UserGrant<'_>) -> Result<Value, AadError> {
        let scopes = match self.version {
            Version::V2 => Scopes::parse(g.scope),
            Version::V1 => {
                let mut s = Scopes::parse(g.scope);
                if let Some(res) = self.form.get("resource") {
                    s.resource = vec![(res.to_string(), ".default".to_string())];
                }
                s
            }
        };
        let (audience, requested) = {
            let mut resources: Vec<String> = Vec::new();
            for (r, _) in &scopes.resource {
                let n = normalize_resource(r);
                if !resources.contains(&n) {
                    resources.push(n);
                }
            }
            if resources.len() > 1 {
                return Err(error::invalid_scope(&scopes.raw));
            }
            match scopes.resource.first() {
                Some((r, _)) => (
                    r.clone(),
                    scopes
                        .resource
                        .iter()
                        .map(|(_, p)| p.clone())
                        .collect::<Vec<_>>(),
                ),
                None => (
                    crate::scenario::GRAPH_RESOURCE.to_string(),
                    vec!["User.Read".to_string()],
                ),
            }
        };
        let (resource, kind) = resolve_resource(g.tenant, &audience)
            .ok_or_else(|| error::resource_not_found(&audience, &g.tenant.display_name))?;
        let resource_app = kind.app_id();
        if !g.interactive {
            if g.user.mfa_registration_pending {
                return Err(error::mfa_registration(resource_app));
            }
            if g.user.mfa_required || g.tenant.security_defaults {
                return Err(error::mfa_required(resource_app));
            }
        }
        if self.ca_blocks(g.tenant, g.app.client_id, Some(&g.user.upn), g.grant) {
            return Err(error::blocked_by_ca());
        }
        let granted_scopes = if scopes.resource.is_empty() {
            requested.clone()
        } else {
            let (_, consented, any) = self.shared.consent(g.tenant, g.app.client_id, &resource);
            let mut out = Vec::new();
            for p in &requested {
                if p == ".default" {
                    if !any || consented.is_empty() {
                        return Err(error::consent_required(
                            &g.app.client_id.to_string(),
                            &g.app.name,
                        ));
                    }
                    for c in &consented {
                        if !out.contains(c) {
                            out.push(c.clone());
                        }
                    }
                } else if let Some(c) = consented.iter().find(|c| c.eq_ignore_ascii_case(p)) {
                    if !out.contains(c) {
                        out.push(c.clone());
                    }
                } else {
                    return Err(error::consent_required(
                        &g.app.client_id.to_string(),
                        &g.app.name,
                    ));
                }
            }
            out
        };
        let amr = if g.interactive {
            vec!["pwd", "mfa"]
        } else {
            vec!["pwd"]
        };
        let spec = AccessTokenSpec {
            tenant: g.tenant.id,
            audience: &audience,
            client_id: g.app.client_id,
            app_name: &g.app.name,
            client_auth: g.auth.acr(),
            subject: Subject::User {
                oid: g.user.object_id,
                upn: g.user.upn.clone(),
                name: g.user.display_name.clone(),
                scopes: granted_scopes,
                amr,
            },
            lifetime_secs: self.lifetime(),
        };
        let claims = tokens::access_token_claims(&spec);
        let access = self
            .shared
            .key
            .sign(&claims, kind == ResourceKind::Exchange)
            .map_err(internal)?;
        let life = self.lifetime();
        let mut body = match self.version {
            Version::V2 => json!({
                "token_type": "Bearer",
                "scope": scopes.raw,
                "expires_in": life,
                "ext_expires_in": life,
                "access_token": access,
            }),
            Version::V1 => json!({
                "token_type": "Bearer",
                "scope": claims["scp"].clone(),
                "expires_in": life.to_string(),
                "ext_expires_in": life.to_string(),
                "expires_on": claims["exp"].as_i64().unwrap_or(0).to_string(),
                "not_before": claims["nbf"].as_i64().unwrap_or(0).to_string(),
                "resource": audience,
                "access_token": access,
            }),
        };
        let Some(obj) = body.as_object_mut() else {
            return Err(internal("response is not an object"));
        };
        // Refresh tokens: always on refresh, else when offline_access was asked for (v1: always).
        let wants_rt =
            scopes.has("offline_access") || g.rotate_from.is_some() || self.version == Version::V1;
        if let Some(old) = g.rotate_from
            && self.shared.scenario.settings.rotate_refresh_tokens
        {
            self.shared.runtime().refresh.remove(old);
        }
        if wants_rt {
            let keep: Vec<String> = g.scope.split_whitespace().map(str::to_string).collect();
            let rt =
                self.shared
                    .issue_refresh_token(g.tenant.id, g.app.client_id, &g.user.upn, keep);
            obj.insert("refresh_token".into(), json!(rt.expose()));
        }
        if scopes.has("openid") || self.version == Version::V1 {
            let id = tokens::id_token_claims(&IdTokenSpec {
                authority: &self.authority,
                tenant: g.tenant.id,
                client_id: g.app.client_id,
                oid: g.user.object_id,
                upn: &g.user.upn,
                name: &g.user.display_name,
                nonce: g.nonce,
            });
            let id_token = self.shared.key.sign(&id, false).map_err(internal)?;
            obj.insert("id_token".into(), json!(id_token));
        }
        if self.form.get("client_info") == Some("1") {
            obj.insert(
                "client_info".into(),
                json!(tokens::client_info(&g.user.object_id, &g.tenant.id)),
            );
        }
        Ok(body)
    }
}

struct UserGrant<'a> {
    tenant: &'a Tenant,
    app: &'a Application,
    user: &'a User,
    scope: &'a str,
    auth: ClientAuth,
    grant: &'a str,
    /// The user signed in interactively (MFA satisfied).
    interactive: bool,
    nonce: Option<&'a str>,
    rotate_from: Option<&'a str>,
}

/// The resource a requested audience names in `tenant`: its consent key (normalised URI) and
/// kind. On-premises Exchange URLs registered as hybrid SPNs count as Exchange Online.
fn resolve_resource(tenant: &Tenant, audience: &str) -> Option<(String, ResourceKind)> {
    let resource = normalize_resource(audience);
    if let Some(kind) = ResourceKind::from_resource(&resource) {
        return Some((resource, kind));
    }
    tenant.hybrid_exchange_urls.contains(&resource).then(|| {
        (
            crate::scenario::EXCHANGE_RESOURCE.to_string(),
            ResourceKind::Exchange,
        )
    })
}

fn assertion_error(e: AssertionError) -> AadError {
    AadError::new(e.code(), "invalid_client", e.to_string())
}

fn internal(e: impl std::fmt::Display) -> AadError {
    let mut err = AadError::new(
        90033,
        "temporarily_unavailable",
        format!("A transient error has occurred. Please try again. ({e})"),
    );
    err.status = StatusCode::INTERNAL_SERVER_ERROR;
    err
}
