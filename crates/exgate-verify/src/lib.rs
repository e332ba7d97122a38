//! Migration projects, the per-mailbox verification runner, its state store and reports.
//!
//! A migration or sync operator describes source and destination endpoints and a list of
//! mailboxes in a [project file](project). [`runner::run`] proves, mailbox by mailbox and without
//! moving data, that each can be reached: resolve, token, open, inbox and (optionally) a write
//! probe, on both sides. Every failure carries its evidence and ranked causes. The [`store`] keeps
//! one row per line item with its history of runs, so a re-run verifies only what failed, changed
//! or was never verified. [`report`] renders the results as text, JSON and a self-contained HTML
//! page.
//!
//! The protocols sit behind the [`Prober`] trait; the runner never does I/O itself.
//!
//! The public interface is:

// Libraries never print: output belongs to the binary (see ARCHITECTURE.md).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod live;
mod model;
mod probe;
pub mod project;
pub mod report;
mod runner;
mod secret;
pub mod store;
mod verify;

pub use model::{
    Cause, Evidence, Fault, MailboxResult, Side, Status, StepName, StepResult, now_ms,
};
pub use probe::{FailureScope, Prober, Resolved, StepFailure, StepOutput, Target, TokenKey};
pub use project::{
    Api, AuthProfile, Discovery, Endpoint, EndpointKind, LineItem, Project, ProjectError,
    UserCredentials,
};
pub use runner::{RunOptions, RunOutcome, run};
pub use secret::Secret;
pub use verify::{NoProgress, Progress, VerifyOptions, verify_project};
