//! Hybrid Modern Authentication readiness of on-premises Exchange.
//!
//! An administrator pastes (or redirects) the output of the cmdlets of Microsoft's HMA guide;
//! [`text::decode`] reads the bytes (UTF-16 with a BOM, UTF-8, any line end), [`layout::read`]
//! reads PowerShell's list and table layouts back into records, [`model::Org::add`] recognises
//! each record by its content and types it, and [`checks::check`] runs the guide's checks over
//! the whole organisation. Every finding carries a cause id of the diagnosis catalog, the line it
//! was read from, and the cmdlet that fixes it.
//!
//! [`probe`] asks each virtual directory of the namespaces given with an empty `Bearer` and
//! reads the challenges; [`signin`] asks Entra ID for a token for each namespace and makes one
//! EWS call with it (the two modules that do I/O; each reads its answers in a pure function).
//!
//! The collection script ([`COLLECT_SCRIPT`]) runs every cmdlet the checks read and writes one
//! file in the layout this crate reads.

pub mod checks;
pub mod html;
pub mod layout;
pub mod model;
pub mod probe;
pub mod signin;
pub mod text;
pub mod text_report;

pub use checks::{Check, Finding, Live, Report, Severity, Status, check, check_all};
pub use model::Org;

/// The PowerShell script `exgate hma collect-script` prints.
pub const COLLECT_SCRIPT: &str = include_str!("collect.ps1");

/// Runs every check over `org` and the live probes' answers now (certificate expiry is judged
/// against the clock, in UTC).
pub fn check_now(org: &Org, live: &Live<'_>) -> Report {
    let now = time::OffsetDateTime::now_utc();
    check_all(
        org,
        live,
        time::PrimitiveDateTime::new(now.date(), now.time()),
    )
}

/// Reads every file's bytes (name, bytes) into one organisation.
pub fn read_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Org {
    let mut org = Org::default();
    for (name, bytes) in files {
        org.add(name, &text::decode(bytes));
    }
    org
}
