//! Well-known identifiers of Microsoft's services, and GUIDs.

/// Office 365 Exchange Online's first-party application id: the resource of EWS, IMAP, POP and
/// SMTP tokens, the `client_id` of Exchange's Bearer challenge, and the service principal whose
/// SPNs list the on-premises namespaces of Hybrid Modern Authentication.
pub const EXCHANGE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";

/// Microsoft Graph's application id.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// The resource URI of Exchange Online tokens.
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";

/// The resource URI of Microsoft Graph tokens.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// The tenant that issues tokens to personal Microsoft accounts.
pub const MSA_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Whether `s` is a GUID in its usual 8-4-4-4-12 hexadecimal form (either case).
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids() {
        assert!(is_guid(EXCHANGE_APP_ID));
        assert!(is_guid("AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee"));
        assert!(!is_guid("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeeeaaaaaaaa"));
        assert!(!is_guid("john@contoso.com"));
        assert!(!is_guid("gggggggg-bbbb-cccc-dddd-eeeeeeeeeeee"));
        assert!(!is_guid(""));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,60}") {
            let _ = is_guid(&s);
        }
    }
}
