//! One module per subcommand. Each defines its clap arguments and an async `run`.

pub(crate) mod app_token;
pub(crate) mod cert;
pub(crate) mod consent;
pub(crate) mod demo;
pub(crate) mod emulator;
pub(crate) mod explain;
pub(crate) mod gateway;
pub(crate) mod hma;
pub(crate) mod imap;
pub(crate) mod pop;
pub(crate) mod redact;
pub(crate) mod smtp;
pub(crate) mod token;
pub(crate) mod token_get;
pub(crate) mod token_inspect;
pub(crate) mod verify;
