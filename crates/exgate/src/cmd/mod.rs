//! One module per subcommand. Each defines its clap arguments and an async `run`.

pub(crate) mod app_token;
pub(crate) mod cert;
pub(crate) mod consent;
pub(crate) mod demo;
pub(crate) mod emulator;
pub(crate) mod explain;
pub(crate) mod flags;
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

/// The device-code prompt of every command that may sign a user in: Entra ID's message (or the
/// address and the code) on stderr, so stdout stays the command's output.
pub(crate) fn device_prompt() -> exgate_auth::DevicePrompt {
    std::sync::Arc::new(|info| {
        if info.message.is_empty() {
            eprintln!(
                "To sign in, open {} and enter the code {}",
                info.verification_uri, info.user_code
            );
        } else {
            eprintln!("{}", info.message);
        }
    })
}
