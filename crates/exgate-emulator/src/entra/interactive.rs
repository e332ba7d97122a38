//! Browser-facing endpoints: authorize (sign-in form, auth code + PKCE, `form_post`, admin
//! consent), `/adminconsent`, the device-code issuance endpoint and the `/devicelogin` page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use uuid::Uuid;

use super::error::{self, AadError, json_response};
use super::form::Form;
use super::{CodeRecord, DeviceRecord, DeviceStatus, Shared, TenantRef};
use crate::scenario::{Application, Consent, Tenant, User};
use crate::tokens;

use exgate_wire::markup::escape;

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (status, Html(html)).into_response()
}

fn error_page(e: &AadError) -> Response {
    let trace = Uuid::new_v4();
    page(
        e.status,
        "Sign in",
        &format!(
            "<p id=\"error\">AADSTS{}: {}</p><p>Trace ID: {trace}</p>",
            e.code,
            escape(&e.message)
        ),
    )
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        buf = Uuid::new_v4().as_bytes().to_vec();
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// Looks up the tenant (`common` resolves later from the user) and the application.
fn resolve_app<'s>(
    shared: &'s Shared,
    tenant: &str,
    client_id: Option<&str>,
) -> Result<(Option<&'s Tenant>, &'s Application), AadError> {
    let client_id = client_id.ok_or_else(|| error::missing_parameter("client_id"))?;
    // A multi-tenant application can be signed in to (and consented to) in any tenant; whether
    // it may get tokens there is checked after sign-in.
    let tenant_ref = shared.tenant(tenant, false)?;
    let (tenant_opt, label) = match tenant_ref {
        TenantRef::Tenant(t) => (Some(t), t.id.to_string()),
        TenantRef::Common(name) => (None, name.to_string()),
    };
    let app = shared
        .scenario
        .application(client_id)
        .filter(|a| tenant_opt.is_none_or(|t| a.home_tenant == t.id || a.multi_tenant))
        .ok_or_else(|| error::app_not_found(client_id, &label))?;
    if !app.enabled {
        return Err(error::app_disabled(client_id, &app.name));
    }
    Ok((tenant_opt, app))
}

fn redirect_checked(app: &Application, form: &Form) -> Result<String, AadError> {
    match form.get("redirect_uri") {
        Some(r) if app.redirect_uris.iter().any(|u| u == r) => Ok(r.to_string()),
        Some(r) => Err(error::redirect_mismatch(r, &app.client_id.to_string())),
        None => match app.redirect_uris.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(error::missing_parameter("redirect_uri")),
        },
    }
}

fn sign_in_form(action: &str, form: &Form, note: &str) -> Response {
    let mut hidden = String::new();
    let mut fields: Vec<(&String, &String)> = form.iter().collect();
    fields.sort();
    for (k, v) in fields {
        if k == "username" || k == "password" {
            continue;
        }
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        ));
    }
    let hint = form.get("login_hint").unwrap_or("");
    page(
        StatusCode::OK,
        "Sign in",
        &format!(
            "<p>{}</p><form method=\"post\" action=\"{}\">{hidden}<label>User <input name=\"username\" value=\"{}\"></label><label>Password <input type=\"password\" name=\"password\"></label><button type=\"submit\">Sign in</button></form>",
            escape(note),
            escape(action),
            escape(hint)
        ),
    )
}

/// `GET /{tenant}/oauth2/v2.0/authorize`: checks client and redirect URI, shows the sign-in form.
pub(crate) async fn authorize_get(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut form = Form::default();
    for (k, v) in &query {
        form.insert(k, v);
    }
    let app = match resolve_app(&shared, &tenant, form.get("client_id")) {
        Ok((_, app)) => app,
        Err(e) => return error_page(&e),
    };
    if let Err(e) = redirect_checked(app, &form) {
        return error_page(&e);
    }
    let note = if form.get("prompt") == Some("admin_consent") {
        format!(
            "{} requests permissions for your whole organisation.",
            app.name
        )
    } else {
        format!("Sign in to continue to {}.", app.name)
    };
    let action = format!(
        "{}/{}/oauth2/v2.0/authorize",
        shared.authority(&headers),
        tenant
    );
    sign_in_form(&action, &form, &note)
}

/// `GET /{tenant}/adminconsent?client_id=..&redirect_uri=..&state=..`.
pub(crate) async fn admin_consent_get(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut form = Form::default();
    for (k, v) in &query {
        form.insert(k, v);
    }
    form.insert("exgate_flow", "admin_consent");
    let app = match resolve_app(&shared, &tenant, form.get("client_id")) {
        Ok((_, app)) => app,
        Err(e) => return error_page(&e),
    };
    if let Err(e) = redirect_checked(app, &form) {
        return error_page(&e);
    }
    let action = format!("{}/{}/adminconsent", shared.authority(&headers), tenant);
    sign_in_form(
        &action,
        &form,
        &format!(
            "{} requests permissions for your whole organisation. Sign in as an administrator.",
            app.name
        ),
    )
}

/// Password checks of an interactive sign-in (MFA counts as done).
fn sign_in<'t>(tenant: &'t Tenant, upn: &str, password: &str) -> Result<&'t User, AadError> {
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
    if user.federated || user.password.expose().is_empty() || !user.password.matches(password) {
        return Err(error::bad_password());
    }
    if user.password_expired {
        return Err(error::password_expired());
    }
    Ok(user)
}

fn user_tenant<'s>(
    shared: &'s Shared,
    tenant: Option<&'s Tenant>,
    upn: &str,
) -> Option<&'s Tenant> {
    tenant.or_else(|| {
        let domain = upn.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        shared.scenario.tenant(domain)
    })
}

fn redirect_with(redirect_uri: &str, params: &[(&str, &str)], fragment: bool) -> Response {
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let sep = if fragment {
        "#"
    } else if redirect_uri.contains('?') {
        "&"
    } else {
        "?"
    };
    let location = format!("{redirect_uri}{sep}{encoded}");
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn form_post(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut inputs = String::new();
    for (k, v) in params {
        inputs.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        ));
    }
    let html = format!(
        "<!DOCTYPE html><html><head><title>Working...</title></head><body onload=\"document.forms[0].submit()\"><form method=\"POST\" name=\"hiddenform\" action=\"{}\">{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\"></noscript></form></body></html>",
        escape(redirect_uri)
    );
    (StatusCode::OK, Html(html)).into_response()
}

/// `POST` of the sign-in form (authorize and admin consent).
pub(crate) async fn authorize_post(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut form = Form::parse(&body);
    for (k, v) in &query {
        if form.get(k).is_none() {
            form.insert(k, v);
        }
    }
    let (tenant_opt, app) = match resolve_app(&shared, &tenant, form.get("client_id")) {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let redirect_uri = match redirect_checked(app, &form) {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    let upn = form.get("username").unwrap_or("").to_ascii_lowercase();
    let password = form.get("password").unwrap_or("");
    let Some(user_tenant) = user_tenant(&shared, tenant_opt, &upn) else {
        return error_page(&error::user_not_found("common"));
    };
    // A multi-tenant app signing in a user of another tenant must exist there (or be consented
    // to now, by an admin).
    let user = match sign_in(user_tenant, &upn, password) {
        Ok(u) => u,
        Err(e) => return error_page(&e),
    };
    let state = form.get("state").unwrap_or("").to_string();
    let admin_flow = form.get("exgate_flow") == Some("admin_consent")
        || form.get("prompt") == Some("admin_consent");
    if admin_flow {
        if !user.admin {
            return redirect_with(
                &redirect_uri,
                &[
                    ("error", "access_denied"),
                    (
                        "error_description",
                        "AADSTS90094: Admin consent is required for the permissions requested by this application. An admin consent request may be sent to the admin.",
                    ),
                    ("state", &state),
                ],
                false,
            );
        }
        if app.home_tenant != user_tenant.id && !app.multi_tenant {
            return error_page(&error::app_not_found(
                &app.client_id.to_string(),
                &user_tenant.id.to_string(),
            ));
        }
        {
            let mut rt = shared.runtime();
            for p in &app.permissions {
                rt.consents.push((
                    user_tenant.id,
                    Consent {
                        client_id: app.client_id,
                        resource: p.resource.clone(),
                        roles: p.roles.clone(),
                        scopes: p.scopes.clone(),
                    },
                ));
            }
            if app.permissions.is_empty() {
                // Consent creates the service principal even without permissions.
                rt.consents.push((
                    user_tenant.id,
                    Consent {
                        client_id: app.client_id,
                        resource: crate::scenario::GRAPH_RESOURCE.to_string(),
                        roles: Vec::new(),
                        scopes: Vec::new(),
                    },
                ));
            }
        }
        if form.get("exgate_flow") == Some("admin_consent") {
            let tid = user_tenant.id.to_string();
            let scope = form.get("scope").unwrap_or("").to_string();
            let mut params = vec![("admin_consent", "True"), ("tenant", tid.as_str())];
            if !scope.is_empty() {
                params.push(("scope", scope.as_str()));
            }
            params.push(("state", state.as_str()));
            return redirect_with(&redirect_uri, &params, false);
        }
    } else if let Err(e) = shared.app_in_tenant(&app.client_id.to_string(), user_tenant) {
        return error_page(&e);
    }
    if form.get("response_type").is_some_and(|r| r != "code") {
        return redirect_with(
            &redirect_uri,
            &[
                ("error", "unsupported_response_type"),
                (
                    "error_description",
                    "AADSTS70005: response_type 'token' is not enabled for the application.",
                ),
                ("state", &state),
            ],
            false,
        );
    }
    let code = format!("0.{}", random_token(48));
    shared.runtime().codes.insert(
        code.clone(),
        CodeRecord {
            tenant: user_tenant.id,
            client_id: app.client_id,
            upn: user.upn.clone(),
            redirect_uri: redirect_uri.clone(),
            scope: form.get("scope").unwrap_or("openid profile").to_string(),
            code_challenge: form.get("code_challenge").map(str::to_string),
            challenge_method: form
                .get("code_challenge_method")
                .unwrap_or("plain")
                .to_string(),
            nonce: form.get("nonce").map(str::to_string),
            created: tokens::now_secs(),
            redeemed: false,
        },
    );
    let session = Uuid::new_v4().to_string();
    let client_info = tokens::client_info(&user.object_id, &user_tenant.id);
    let mut params: Vec<(&str, &str)> = vec![("code", &code)];
    if form.get("client_info") == Some("1") {
        params.push(("client_info", &client_info));
    }
    params.push(("state", &state));
    params.push(("session_state", &session));
    match form.get("response_mode").unwrap_or("query") {
        "form_post" => form_post(&redirect_uri, &params),
        "fragment" => redirect_with(&redirect_uri, &params, true),
        _ => redirect_with(&redirect_uri, &params, false),
    }
}

// ---- device code ----------------------------------------------------------------------------

pub(crate) async fn device_code_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    device_code(&shared, &tenant, &headers, &body, "scope")
}

pub(crate) async fn device_code_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    device_code(&shared, &tenant, &headers, &body, "resource")
}

fn device_code(
    shared: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
    scope_field: &str,
) -> Response {
    let form = Form::parse(body);
    let result = (|| -> Result<serde_json::Value, AadError> {
        let (tenant_opt, app) = resolve_app(shared, tenant, form.get("client_id"))?;
        let scope = form
            .get(scope_field)
            .ok_or_else(|| error::missing_parameter(scope_field))?;
        let scope = if scope_field == "resource" {
            format!("{}/.default openid", scope.trim_end_matches('/'))
        } else {
            scope.to_string()
        };
        let device_code = format!("DAQABAAEAAAD--{}", random_token(48));
        let user_code = user_code();
        let settings = &shared.scenario.settings;
        let authority = shared.authority(headers);
        let verification = format!("{authority}/devicelogin");
        shared.runtime().devices.insert(
            device_code.clone(),
            DeviceRecord {
                user_code: user_code.clone(),
                tenant: tenant_opt.map(|t| t.id),
                client_id: app.client_id,
                scope,
                expires_at: tokens::now_secs()
                    + i64::try_from(settings.device_code_lifetime).unwrap_or(900),
                polls: 0,
                status: DeviceStatus::Pending,
                upn: None,
                redeemed: false,
            },
        );
        Ok(json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": verification,
            "expires_in": settings.device_code_lifetime,
            "interval": settings.device_code_interval,
            "message": format!("To sign in, use a web browser to open the page {verification} and enter the code {user_code} to authenticate."),
        }))
    })();
    match result {
        Ok(body) => json_response(StatusCode::OK, &body, &Uuid::new_v4().to_string()),
        Err(e) => e.into_response_for(headers),
    }
}

fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 9];
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        buf.copy_from_slice(&Uuid::new_v4().as_bytes()[..9]);
    }
    buf.iter()
        .map(|b| {
            let i = usize::from(*b) % ALPHABET.len();
            char::from(ALPHABET.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

/// `GET /devicelogin`: the form where a user enters the code and signs in.
pub(crate) async fn device_login_get() -> Response {
    page(
        StatusCode::OK,
        "Enter code",
        "<form method=\"post\" action=\"devicelogin\"><label>Code <input name=\"user_code\"></label><label>User <input name=\"username\"></label><label>Password <input type=\"password\" name=\"password\"></label><button name=\"action\" value=\"approve\">Sign in</button><button name=\"action\" value=\"decline\">Cancel</button></form>",
    )
}

/// `POST /devicelogin`: signs a device code in (or declines it).
pub(crate) async fn device_login_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let code = form.get("user_code").unwrap_or("").to_ascii_uppercase();
    let upn = form.get("username").unwrap_or("").to_ascii_lowercase();
    let password = form.get("password").unwrap_or("");
    let decline = form.get("action") == Some("decline");
    let tenant_id = {
        let rt = shared.runtime();
        match rt.devices.values().find(|d| d.user_code == code) {
            Some(d) if d.status == DeviceStatus::Pending => d.tenant,
            _ => {
                return error_page(&error::bad_verification_code());
            }
        }
    };
    let tenant = tenant_id.and_then(|id| shared.scenario.tenants.iter().find(|t| t.id == id));
    if !decline {
        let Some(t) = user_tenant(&shared, tenant, &upn) else {
            return error_page(&error::user_not_found("common"));
        };
        if let Err(e) = sign_in(t, &upn, password) {
            return error_page(&e);
        }
    }
    let mut rt = shared.runtime();
    if let Some(d) = rt.devices.values_mut().find(|d| d.user_code == code) {
        if decline {
            d.status = DeviceStatus::Declined;
        } else {
            d.status = DeviceStatus::Approved;
            d.upn = Some(upn);
        }
    }
    page(
        StatusCode::OK,
        "Done",
        if decline {
            "<p id=\"result\">declined</p>"
        } else {
            "<p id=\"result\">You have signed in. You can close this window.</p>"
        },
    )
}
