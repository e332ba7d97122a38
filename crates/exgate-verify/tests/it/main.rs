//! Integration tests of exgate-verify: the state store on SQLite and PostgreSQL, re-runs, and
//! the HTML report in a real browser.

mod backends;
mod fake;
mod html;
mod live;
mod ntlm;
mod rerun;
mod store;
mod support;
mod write_check;
