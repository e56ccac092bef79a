//! `tokengate service-tokens`: Elasticsearch's `elasticsearch-service-tokens` for the data
//! directory's `service_tokens` file, with its output, messages and exit codes.
//!
//! Every change replaces the whole file crash-safely and owner-only; a running gateway picks it
//! up on its next poll (or at once on SIGHUP), so the tool is safe to use while it runs.

use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;

use crate::accounts::Accounts;
use crate::atomic_file;
use crate::config::Config;
use crate::file_tokens::{self, edit, hash};
use crate::identity::token;
use crate::identity::{AccountId, TokenName};

use super::ServiceTokensCommand;

/// Elasticsearch's CLI exit codes (`ExitCodes`).
const NO_USER: u8 = 67;
const CODE_ERROR: u8 = 70;
const IO_ERROR: u8 = 74;

/// A failed command: the exit code and Elasticsearch's message.
struct Failure(u8, String);

/// Runs one `service-tokens` command.
pub fn run(config: &Config, command: &ServiceTokensCommand) -> ExitCode {
    let accounts = match Accounts::new(&config.service_accounts) {
        Ok(accounts) => accounts,
        Err(error) => {
            eprintln!("ERROR: {error}");
            return ExitCode::from(CODE_ERROR);
        }
    };
    let dir = &config.server.data_dir;
    let outcome = match command {
        ServiceTokensCommand::Create { account, name } => create(dir, &accounts, account, name),
        ServiceTokensCommand::Delete { account, name } => delete(dir, &accounts, account, name),
        ServiceTokensCommand::List { account } => list(dir, &accounts, account.as_deref()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("ERROR: {message}");
            ExitCode::from(code)
        }
    }
}

#[allow(clippy::print_stdout)]
fn create(dir: &Path, accounts: &Accounts, account: &str, name: &str) -> Result<(), Failure> {
    let (account, name) = token_id(accounts, account, name)?;
    let qualified = account.qualify(&name);
    let secret = token::generate_secret();
    let text = read(dir)?;
    let hash = hash::pbkdf2_stretch(secret.as_bytes(), hash::DEFAULT_ITERATIONS);
    let text =
        edit::add(&text, &qualified, &hash).map_err(|e| Failure(CODE_ERROR, e.to_string()))?;
    write(dir, &text)?;
    println!(
        "SERVICE_TOKEN {qualified} = {}",
        token::encode(&account, &name, &secret)
    );
    Ok(())
}

fn delete(dir: &Path, accounts: &Accounts, account: &str, name: &str) -> Result<(), Failure> {
    let (account, name) = token_id(accounts, account, name)?;
    let text = read(dir)?;
    let text = edit::remove(&text, &account.qualify(&name))
        .map_err(|e| Failure(CODE_ERROR, e.to_string()))?;
    write(dir, &text)
}

#[allow(clippy::print_stdout)]
fn list(dir: &Path, accounts: &Accounts, account: Option<&str>) -> Result<(), Failure> {
    let account = account.map(|a| known(accounts, a)).transpose()?;
    let text = read(dir)?;
    for name in edit::names(&text, account.as_ref().map(AccountId::as_str)) {
        println!("{name}");
    }
    Ok(())
}

/// The account (known to the gateway) and the token name, checked in Elasticsearch's order.
fn token_id(
    accounts: &Accounts,
    account: &str,
    name: &str,
) -> Result<(AccountId, TokenName), Failure> {
    let account = known(accounts, account)?;
    let name = TokenName::new(name).map_err(|e| Failure(CODE_ERROR, e.reason()))?;
    Ok((account, name))
}

fn known(accounts: &Accounts, principal: &str) -> Result<AccountId, Failure> {
    AccountId::parse(principal)
        .and_then(|id| accounts.get(id.namespace(), id.service()).cloned())
        .ok_or_else(|| {
            let all: Vec<&str> = accounts
                .matching(None, None)
                .map(|(id, _)| id.as_str())
                .collect();
            Failure(
                NO_USER,
                format!(
                    "Unknown service account principal: [{principal}]. Must be one of [{}]",
                    all.join(",")
                ),
            )
        })
}

fn read(dir: &Path) -> Result<String, Failure> {
    let path = file_tokens::path_in(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Failure(IO_ERROR, format!("{}: {e}", path.display()))),
    }
}

fn write(dir: &Path, text: &str) -> Result<(), Failure> {
    let path = file_tokens::path_in(dir);
    atomic_file::create_private_dir(dir)
        .and_then(|()| atomic_file::replace(&path, text.as_bytes()))
        .map_err(|e| Failure(IO_ERROR, format!("{}: {e}", path.display())))
}
