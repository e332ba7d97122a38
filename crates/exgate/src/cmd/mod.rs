//! One module per subcommand. Each defines its clap arguments and an async `run`.

pub mod app_token;
pub mod cert;
pub mod consent;
pub mod demo;
pub mod emulator;
pub mod explain;
pub mod imap;
pub mod redact;
pub mod smtp;
pub mod token;
pub mod token_get;
pub mod token_inspect;
pub mod verify;
