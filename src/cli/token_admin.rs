//! `tokengate tokens list|revoke`: the store's tokens by name. On a stopped gateway's data
//! directory the journal is opened directly (as `tokens import` does); when a running gateway
//! holds it, the same question goes to that gateway's token API, since the journal has one
//! writer. Messages and exit codes are those of Elasticsearch's `elasticsearch-service-tokens`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use http::{Method, StatusCode};
use serde_json::Value;

use super::progress::{Loads, Progress};
use super::remote::{self, Remote};
use super::{EXIT_CONFIG, EXIT_START};
use crate::accounts::Accounts;
use crate::config::Config;
use crate::identity::{AccountId, TokenName};
use crate::store::{StoreError, StoreOptions, TokenStore};

/// Exit status for an unknown service account (Elasticsearch's `NO_USER`).
const EXIT_NO_ACCOUNT: u8 = 67;
/// Exit status for a missing token or a bad token name (Elasticsearch's `CODE_ERROR`).
const EXIT_NO_TOKEN: u8 = 70;
/// Where the password for the running gateway's API comes from when not asked for.
const PASSWORD_ENV: &str = "TOKENGATE_PASSWORD";
/// Names printed between two words to the listing's progress.
const PRINTED_PER_REPORT: usize = 4096;

/// How to reach a running gateway when it holds the data directory.
#[derive(Debug, Args, Clone)]
pub struct RemoteArgs {
    /// The running gateway's URL (default: the configured plain-HTTP listener).
    #[arg(long)]
    pub url: Option<String>,
    /// User for the running gateway's API (password from TOKENGATE_PASSWORD, else a prompt).
    #[arg(short = 'u', long = "username")]
    pub user: Option<String>,
}

/// An operator-facing failure with its exit status.
struct Failure(u8, String);

type Outcome = Result<(), Failure>;

fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("tokengate: {message}");
            ExitCode::from(code)
        }
    }
}

/// Prints `ns/svc/name` per token, of `account` or of all; progress on standard error unless
/// `quiet`.
pub fn list(config: &Config, account: Option<&str>, remote: &RemoteArgs, quiet: bool) -> ExitCode {
    finish(list_tokens(config, account, remote, quiet))
}

/// Deletes token `name` of `account`.
pub fn revoke(
    config: &Config,
    account: &str,
    name: &str,
    remote: &RemoteArgs,
    quiet: bool,
) -> ExitCode {
    finish(revoke_token(config, account, name, remote, quiet))
}

fn list_tokens(
    config: &Config,
    account: Option<&str>,
    remote: &RemoteArgs,
    quiet: bool,
) -> Outcome {
    let account = account.map(|a| principal(config, a)).transpose()?;
    let names = match open(config, quiet)? {
        Some(store) => {
            let names: Vec<String> = match &account {
                Some(id) => {
                    known(config, id)?;
                    let names = store.names_of(id);
                    names.into_iter().map(|n| format!("{id}/{n}")).collect()
                }
                None => store.names(),
            };
            store.close();
            names
        }
        None => {
            let gateway = connect(config, remote)?;
            let accounts = match account {
                Some(id) => vec![id.to_string()],
                None => remote_accounts(&gateway)?,
            };
            let asking = Progress::counting(
                "listing through the gateway",
                accounts.len() as u64,
                "accounts",
                quiet,
            );
            let mut names = Vec::new();
            for id in accounts {
                names.extend(remote_tokens(&gateway, &id)?);
                asking.advance(1);
            }
            asking.finish();
            names.sort_unstable();
            names
        }
    };
    print_names(&names, quiet)
}

/// One name a line, buffered. Progress only when standard output is no terminal (a file, a
/// pipe): on a terminal the names scrolling by are the progress, and a bar would be torn by them.
fn print_names(names: &[String], quiet: bool) -> Outcome {
    let stdout = std::io::stdout();
    let quiet = quiet || stdout.is_terminal();
    let printing = Progress::new("listing", names.len() as u64, quiet);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut written = Ok(());
    for chunk in names.chunks(PRINTED_PER_REPORT) {
        written = chunk.iter().try_for_each(|name| writeln!(out, "{name}"));
        if written.is_err() {
            break;
        }
        printing.advance(chunk.len() as u64);
    }
    printing.finish();
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // The reader has what it wanted (`tokens list | head`): not a failure of the listing.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(Failure(EXIT_START, format!("standard output: {error}"))),
    }
}

#[allow(clippy::print_stdout)]
fn revoke_token(
    config: &Config,
    account: &str,
    name: &str,
    remote: &RemoteArgs,
    quiet: bool,
) -> Outcome {
    let id = principal(config, account)?;
    let name = TokenName::new(name).map_err(|invalid| {
        // The API's validation message without its `Validation Failed: 1: …;` wrapping, as
        // Elasticsearch's tool prints it.
        let text = invalid.to_string();
        let text = text.strip_prefix("Validation Failed: 1: ").unwrap_or(&text);
        Failure(EXIT_NO_TOKEN, text.trim_end_matches(';').to_owned())
    })?;
    let qualified = id.qualify(&name);
    let found = match open(config, quiet)? {
        Some(store) => {
            known(config, &id)?;
            let deleted = block_on(store.delete(&qualified));
            store.close();
            deleted.map_err(|e| Failure(EXIT_START, e.to_string()))?
        }
        None => {
            let gateway = connect(config, remote)?;
            let path = Remote::path(&[
                "_security",
                "service",
                id.namespace(),
                id.service(),
                "credential",
                "token",
                name.as_str(),
            ]);
            let (status, body) = gateway
                .call(Method::DELETE, &path)
                .map_err(|e| failed(&e))?;
            match status {
                StatusCode::OK => true,
                StatusCode::NOT_FOUND if body.get("found") == Some(&Value::Bool(false)) => false,
                _ => return Err(refused(status, &body, gateway.user())),
            }
        }
    };
    if !found {
        return Err(Failure(
            EXIT_NO_TOKEN,
            format!("Service token [{qualified}] does not exist"),
        ));
    }
    println!("Service token [{qualified}] revoked");
    Ok(())
}

/// `ns/svc` as an account id; anything else gets Elasticsearch's unknown-principal message.
fn principal(config: &Config, text: &str) -> Result<AccountId, Failure> {
    AccountId::parse(text).ok_or_else(|| unknown(config, text))
}

/// Refuses an account the configuration does not declare (for the offline path; a running
/// gateway answers from its own configuration).
fn known(config: &Config, id: &AccountId) -> Outcome {
    let accounts =
        Accounts::new(&config.service_accounts).map_err(|e| Failure(EXIT_START, e.to_string()))?;
    if accounts.contains(id.namespace(), id.service()) {
        Ok(())
    } else {
        Err(unknown(config, id.as_str()))
    }
}

fn unknown(config: &Config, text: &str) -> Failure {
    let accounts = match Accounts::new(&config.service_accounts) {
        Ok(accounts) => accounts,
        Err(error) => return Failure(EXIT_START, error.to_string()),
    };
    let all: Vec<&str> = accounts
        .matching(None, None)
        .map(|(id, _)| id.as_str())
        .collect();
    Failure(
        EXIT_NO_ACCOUNT,
        format!(
            "Unknown service account principal: [{text}]. Must be one of [{}]",
            all.join(",")
        ),
    )
}

/// The store, or `None` when a running gateway holds the data directory. A directory that does
/// not exist is an error rather than created: it is more likely a wrong path than an empty store.
/// Reading a large store shows progress unless `quiet`.
fn open(config: &Config, quiet: bool) -> Result<Option<TokenStore>, Failure> {
    let dir = &config.server.data_dir;
    if !dir.is_dir() {
        return Err(Failure(
            EXIT_CONFIG,
            format!("{}: no such data directory", dir.display()),
        ));
    }
    let reading = Loads::new(quiet);
    let options = StoreOptions {
        serving: false,
        on_load: Some(reading.observer()),
        ..StoreOptions::default()
    };
    let opened = TokenStore::open_configured(&config.store, dir, options);
    reading.finish();
    match opened {
        Ok(store) => Ok(Some(store)),
        Err(StoreError::Locked { .. }) => Ok(None),
        Err(error) => Err(Failure(EXIT_START, error.to_string())),
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime.block_on(future),
        // A runtime without timers or sockets only fails to build when threads cannot start.
        Err(error) => {
            eprintln!("tokengate: cannot start a runtime: {error}");
            std::process::exit(i32::from(EXIT_START))
        }
    }
}

/// The running gateway's API: `--url` or the configured listener, `-u` with its password.
fn connect(config: &Config, args: &RemoteArgs) -> Result<Remote, Failure> {
    let dir = config.server.data_dir.display();
    let url = match (&args.url, config.server.listen) {
        (Some(url), _) => url.clone(),
        (None, Some(addr)) => {
            // A wildcard listener is reached on the loopback address of its family.
            let ip = match addr.ip() {
                ip if !ip.is_unspecified() => ip,
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            };
            format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
        }
        (None, None) => {
            return Err(Failure(
                EXIT_CONFIG,
                format!(
                "{dir} is in use by a running gateway without a plain-HTTP listener; pass --url"
            ),
            ))
        }
    };
    let Some(user) = &args.user else {
        return Err(Failure(
            EXIT_CONFIG,
            format!(
                "{dir} is in use by a running gateway; pass -u <user> (password from \
                 {PASSWORD_ENV} or a prompt) to go through its API at {url}"
            ),
        ));
    };
    let password = match std::env::var(PASSWORD_ENV) {
        Ok(password) => password,
        Err(_) => rpassword::prompt_password(format!("Enter password for [{user}]: "))
            .map_err(|e| Failure(EXIT_START, format!("cannot read the password: {e}")))?,
    };
    Remote::new(&url, user, &password).map_err(|e| Failure(EXIT_CONFIG, e.to_string()))
}

fn failed(error: &remote::RemoteError) -> Failure {
    Failure(EXIT_START, error.to_string())
}

fn refused(status: StatusCode, body: &Value, user: &str) -> Failure {
    let message = match status {
        StatusCode::UNAUTHORIZED => format!("the gateway refused the credentials of [{user}]"),
        _ => format!("the gateway answered {status}: {}", remote::reason(body)),
    };
    Failure(EXIT_START, message)
}

/// `GET /_security/service`: the running gateway's accounts.
fn remote_accounts(gateway: &Remote) -> Result<Vec<String>, Failure> {
    let path = Remote::path(&["_security", "service"]);
    let (status, body) = gateway.call(Method::GET, &path).map_err(|e| failed(&e))?;
    match (status, body.as_object()) {
        (StatusCode::OK, Some(accounts)) => Ok(accounts.keys().cloned().collect()),
        _ => Err(refused(status, &body, gateway.user())),
    }
}

/// `GET …/credential`: `ns/svc/name` of each token of `account`.
fn remote_tokens(gateway: &Remote, account: &str) -> Result<Vec<String>, Failure> {
    let (namespace, service) = account.split_once('/').unwrap_or((account, ""));
    let path = Remote::path(&["_security", "service", namespace, service, "credential"]);
    let (status, body) = gateway.call(Method::GET, &path).map_err(|e| failed(&e))?;
    match (status, body.get("tokens").and_then(Value::as_object)) {
        (StatusCode::OK, Some(tokens)) => {
            Ok(tokens.keys().map(|n| format!("{account}/{n}")).collect())
        }
        _ => Err(refused(status, &body, gateway.user())),
    }
}
