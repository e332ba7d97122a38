//! Entra ID error responses, byte for byte in the shape Entra sends them.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// One AADSTS error: the OAuth `error`, the numeric code and the message (without the
/// `AADSTSnnnn: ` prefix and the trace lines, which are added when it is sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AadError {
    /// HTTP status.
    pub status: StatusCode,
    /// OAuth error (`invalid_client`, `invalid_grant`, ...).
    pub error: &'static str,
    /// AADSTS code.
    pub code: u32,
    /// Message.
    pub message: String,
    /// `suberror`, where Entra sends one.
    pub suberror: Option<&'static str>,
}

impl AadError {
    /// An error; `invalid_client` gets 401, everything else 400.
    pub fn new(code: u32, error: &'static str, message: impl Into<String>) -> Self {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        AadError {
            status,
            error,
            code,
            message: message.into(),
            suberror: None,
        }
    }

    /// Adds a `suberror`.
    pub fn with_suberror(mut self, suberror: &'static str) -> Self {
        self.suberror = Some(suberror);
        self
    }

    /// The JSON body; `correlation_id` echoes the client's `client-request-id` when valid.
    pub fn body(&self, correlation_id: &str, trace_id: &str) -> serde_json::Value {
        let timestamp = entra_timestamp(OffsetDateTime::now_utc());
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            self.code, self.message
        );
        let mut body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let (Some(s), Some(obj)) = (self.suberror, body.as_object_mut()) {
            obj.insert("suberror".into(), json!(s));
        }
        body
    }

    /// The response, with the headers Entra sends on token endpoint responses.
    pub fn into_response_for(self, request_headers: &HeaderMap) -> Response {
        let correlation = correlation_id(request_headers);
        let trace = Uuid::new_v4().to_string();
        let body = self.body(&correlation, &trace);
        json_response(self.status, &body, &trace)
    }
}

/// `yyyy-MM-dd HH:mm:ssZ`, as in Entra error bodies.
pub fn entra_timestamp(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    t.format(&fmt).unwrap_or_default()
}

/// The correlation id: the request's `client-request-id` when it is a GUID, else a new one.
pub fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .unwrap_or_else(Uuid::new_v4)
        .to_string()
}

/// A JSON response with Entra's token-endpoint headers.
pub fn json_response(status: StatusCode, body: &serde_json::Value, trace: &str) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("-1"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "x-ms-ests-server",
        HeaderValue::from_static("2.1.0 - exgate emulator"),
    );
    if let Ok(v) = HeaderValue::from_str(trace) {
        h.insert("x-ms-request-id", v);
    }
    resp
}

// ---- the catalogue of errors the emulator produces -------------------------------------------

/// AADSTS90002: unknown tenant (`invalid_tenant` on metadata, `invalid_request` on tokens).
pub fn tenant_not_found(tenant: &str, metadata: bool) -> AadError {
    AadError::new(
        90002,
        if metadata {
            "invalid_tenant"
        } else {
            "invalid_request"
        },
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// AADSTS900023: tenant identifier of the wrong shape.
pub fn tenant_malformed(tenant: &str) -> AadError {
    AadError::new(
        900023,
        "invalid_request",
        format!(
            "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain."
        ),
    )
}

/// AADSTS50059: client credentials (or another tenant-less grant) on `/common`.
pub fn no_tenant() -> AadError {
    AadError::new(
        50059,
        "invalid_request",
        "No tenant-identifying information found in either the request or implied by any provided credentials.",
    )
}

/// AADSTS900144: a required form parameter is missing.
pub fn missing_parameter(name: &str) -> AadError {
    AadError::new(
        900144,
        "invalid_request",
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// AADSTS70003: unknown grant type.
pub fn unsupported_grant(grant: &str) -> AadError {
    AadError::new(
        70003,
        "unsupported_grant_type",
        format!("The app requested an unsupported grant type '{grant}'."),
    )
}

/// AADSTS700016: application not found in the tenant.
pub fn app_not_found(client_id: &str, tenant: &str) -> AadError {
    AadError::new(
        700016,
        "unauthorized_client",
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

/// AADSTS7000112: application disabled.
pub fn app_disabled(client_id: &str, name: &str) -> AadError {
    AadError::new(
        7000112,
        "unauthorized_client",
        format!("Application '{client_id}'({name}) is disabled."),
    )
}

/// AADSTS7000215: wrong client secret.
pub fn bad_secret(client_id: &str) -> AadError {
    AadError::new(
        7000215,
        "invalid_client",
        format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
        ),
    )
}

/// AADSTS7000222: expired client secret.
pub fn expired_secret(client_id: &str) -> AadError {
    AadError::new(
        7000222,
        "invalid_client",
        format!(
            "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
        ),
    )
}

/// AADSTS7000218: confidential client without a credential.
pub fn credential_required() -> AadError {
    AadError::new(
        7000218,
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

/// AADSTS7000216: client credentials grant without any credential.
pub fn credential_required_cc() -> AadError {
    AadError::new(
        7000216,
        "invalid_client",
        "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
    )
}

/// AADSTS70011: invalid scope.
pub fn invalid_scope(scope: &str) -> AadError {
    AadError::new(
        70011,
        "invalid_scope",
        format!(
            "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
        ),
    )
}

/// AADSTS500011: unknown resource.
pub fn resource_not_found(resource: &str, tenant_name: &str) -> AadError {
    AadError::new(
        500011,
        "invalid_resource",
        format!(
            "The resource principal named {resource} was not found in the tenant named {tenant_name}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ),
    )
}

/// AADSTS65001: delegated permission without consent.
pub fn consent_required(client_id: &str, app_name: &str) -> AadError {
    AadError::new(
        65001,
        "invalid_grant",
        format!(
            "The user or administrator has not consented to use the application with ID '{client_id}' named '{app_name}'. Send an interactive authorization request for this user and resource."
        ),
    )
    .with_suberror("consent_required")
}

/// AADSTS50011: redirect URI not registered.
pub fn redirect_mismatch(uri: &str, client_id: &str) -> AadError {
    AadError::new(
        50011,
        "invalid_request",
        format!(
            "The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
        ),
    )
}

/// AADSTS50126: bad user name or password.
pub fn bad_password() -> AadError {
    AadError::new(
        50126,
        "invalid_grant",
        "Error validating credentials due to invalid username or password.",
    )
}

/// AADSTS50034: user does not exist.
pub fn user_not_found(tenant_name: &str) -> AadError {
    AadError::new(
        50034,
        "invalid_grant",
        format!(
            "The user account {{EUII Hidden}} does not exist in the {tenant_name} directory. To sign into this application, the account must be added to the directory."
        ),
    )
}

/// AADSTS50053: account locked.
pub fn user_locked() -> AadError {
    AadError::new(
        50053,
        "invalid_grant",
        "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
    )
}

/// AADSTS50055: password expired.
pub fn password_expired() -> AadError {
    AadError::new(50055, "invalid_grant", "The password is expired.")
        .with_suberror("user_password_expired")
}

/// AADSTS50057: account disabled.
pub fn user_disabled() -> AadError {
    AadError::new(50057, "invalid_grant", "The user account is disabled.")
}

/// AADSTS50076: MFA required.
pub fn mfa_required(resource_app: &str) -> AadError {
    AadError::new(
        50076,
        "invalid_grant",
        format!(
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{resource_app}'."
        ),
    )
    .with_suberror("basic_action")
}

/// AADSTS50079: MFA registration required.
pub fn mfa_registration(resource_app: &str) -> AadError {
    AadError::new(
        50079,
        "interaction_required",
        format!(
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '{resource_app}'."
        ),
    )
    .with_suberror("basic_action")
}

/// AADSTS53003: blocked by Conditional Access.
pub fn blocked_by_ca() -> AadError {
    AadError::new(
        53003,
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
    )
    .with_suberror("message_only")
}

/// AADSTS70000: grant invalid or malformed.
pub fn grant_invalid() -> AadError {
    AadError::new(
        70000,
        "invalid_grant",
        "Provided grant is invalid or malformed.",
    )
}

/// AADSTS50173: refresh token revoked.
pub fn grant_revoked(issued: &str) -> AadError {
    AadError::new(
        50173,
        "invalid_grant",
        format!(
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{issued}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{issued}'."
        ),
    )
}

/// AADSTS700082: refresh token expired by inactivity.
pub fn rt_inactive(issued: &str) -> AadError {
    AadError::new(
        700082,
        "invalid_grant",
        format!(
            "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for 90.00:00:00."
        ),
    )
}

/// AADSTS70043: refresh token expired by sign-in frequency.
pub fn rt_sign_in_frequency(issued: &str) -> AadError {
    AadError::new(
        70043,
        "invalid_grant",
        format!(
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on {issued} and the maximum allowed lifetime for this request is 43200."
        ),
    )
    .with_suberror("token_expired")
}

/// AADSTS70016: device code not yet approved.
pub fn authorization_pending() -> AadError {
    AadError::new(
        70016,
        "authorization_pending",
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    )
}

/// `slow_down` (RFC 8628).
pub fn slow_down() -> AadError {
    AadError::new(
        70016,
        "slow_down",
        "OAuth 2.0 device flow error. Polling too frequently; increase the interval by 5 seconds.",
    )
}

/// AADSTS70019: device code expired.
pub fn device_code_expired() -> AadError {
    AadError::new(70019, "expired_token", "Verification code expired.")
}

/// Device code declined by the user.
pub fn authorization_declined() -> AadError {
    AadError::new(
        70000,
        "authorization_declined",
        "The end user denied the authorization request.",
    )
}

/// AADSTS70018: unknown device code.
pub fn bad_verification_code() -> AadError {
    AadError::new(
        70018,
        "bad_verification_code",
        "Invalid verification code entered.",
    )
}

/// AADSTS501481: PKCE verifier mismatch.
pub fn pkce_mismatch() -> AadError {
    AadError::new(
        501481,
        "invalid_grant",
        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    )
}

/// AADSTS54005: authorization code redeemed twice.
pub fn code_redeemed() -> AadError {
    AadError::new(
        54005,
        "invalid_grant",
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
    )
}

/// AADSTS70008: code expired.
pub fn code_expired() -> AadError {
    AadError::new(
        70008,
        "invalid_grant",
        "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_entra_shape() {
        let e = bad_secret("app-id");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let body = e.body("corr", "trace");
        let desc = body["error_description"].as_str().unwrap_or("");
        assert!(desc.starts_with("AADSTS7000215: Invalid client secret provided."));
        assert!(desc.contains("\r\nTrace ID: trace\r\nCorrelation ID: corr\r\nTimestamp: "));
        assert_eq!(body["error_codes"][0], 7000215);
        assert_eq!(
            body["error_uri"],
            "https://login.microsoftonline.com/error?code=7000215"
        );
        let ts = body["timestamp"].as_str().unwrap_or("");
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes().get(10) == Some(&b' '));
    }

    #[test]
    fn non_client_errors_are_400() {
        assert_eq!(bad_password().status, StatusCode::BAD_REQUEST);
        assert_eq!(no_tenant().status, StatusCode::BAD_REQUEST);
    }
}
