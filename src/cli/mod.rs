//! The command line: run the gateway (default), check a configuration, reset a password, manage
//! file-realm users, import, list and revoke tokens, manage file service tokens. Parsing and exit
//! codes only; the gateway itself is [`crate::app`], the files and the store are [`crate::users`]
//! and [`crate::store`].

mod file_users;
mod progress;
mod reload;
mod remote;
mod service_tokens;
mod token_admin;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::{self, ConfigSource, Gateway};
use crate::config::{Config, ConfigError, Env, Overrides};
use crate::observe::audit::Audit;
use crate::users;

/// Exit status for an unusable configuration or command line (BSD's EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit status when a valid configuration could not be brought up (ports, files).
pub const EXIT_START: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "tokengate",
    version,
    about = "Authentication gateway for Elasticsearch service tokens"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand understands.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(long, short = 'c', global = true, env = "TOKENGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 (replaces server.listen).
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// Upstream node URL, e.g. http://127.0.0.1:9200; repeat it for several nodes (replaces
    /// upstream.url and upstream.nodes).
    #[arg(long, global = true)]
    pub upstream: Vec<String>,
    /// Directory for tokens and users (replaces server.data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Admin listener for /livez, /readyz, /metrics, e.g. 127.0.0.1:9901, or "" for none
    /// (replaces admin.listen).
    #[arg(long, global = true, env = "TOKENGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// No progress on long commands (import, migrate, list).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and exit (0 when valid, 64 otherwise).
    CheckConfig,
    /// Make the gateway running on this data directory reload its configuration (SIGHUP).
    Reload,
    /// Set a new password for a file-realm user (random unless -i).
    ResetPassword {
        /// The user whose password changes.
        #[arg(short = 'u', long = "username")]
        user: String,
        /// Prompt for the new password instead of generating one.
        #[arg(short = 'i', long)]
        interactive: bool,
    },
    /// Manage the file realm's users (`users` and `users_roles` in the data directory).
    Users {
        #[command(subcommand)]
        action: file_users::UsersCommand,
    },
    /// Manage the token store: import offline; list and revoke offline or through a running gateway.
    Tokens {
        #[command(subcommand)]
        action: TokensCommand,
    },
    /// Manage file service tokens (`service_tokens` in the data dir), as Elasticsearch's
    /// `elasticsearch-service-tokens`; safe while the gateway runs (it reloads the file).
    ServiceTokens {
        #[command(subcommand)]
        action: ServiceTokensCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceTokensCommand {
    /// Create a file token for the service account and print its value.
    Create {
        /// The service account, `namespace/service`.
        account: String,
        /// The token's name.
        name: String,
    },
    /// Remove a file token.
    Delete {
        /// The service account, `namespace/service`.
        account: String,
        /// The token's name.
        name: String,
    },
    /// List file tokens, of one service account or of all.
    List {
        /// The service account, `namespace/service`.
        account: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Import existing token values, one per line (`-` reads standard input).
    Import {
        /// File of token values.
        file: PathBuf,
    },
    /// List tokens as `ns/svc/name`, of one account or all (through a running gateway's API
    /// when it holds the data directory).
    List {
        /// The service account, `namespace/service`.
        account: Option<String>,
        #[command(flatten)]
        remote: token_admin::RemoteArgs,
    },
    /// Copy the journal's tokens and pepper to the store `[store]` names (`--to etcd`), for
    /// moving one gateway to several; the gateway must be stopped.
    Migrate {
        /// The backend to copy to.
        #[arg(long, value_parser = ["etcd"])]
        to: String,
    },
    /// Delete a token (through a running gateway's API when it holds the data directory).
    Revoke {
        /// The service account, `namespace/service`.
        account: String,
        /// The token's name.
        name: String,
        #[command(flatten)]
        remote: token_admin::RemoteArgs,
    },
}

impl Common {
    /// The file and the overrides, as a reload reads them again.
    fn source(&self) -> ConfigSource {
        ConfigSource {
            path: self.config.clone(),
            overrides: Overrides {
                listen: self.listen.clone(),
                admin_listen: self.admin_listen.clone(),
                upstream: self.upstream.clone(),
                data_dir: self.data_dir.clone(),
            },
            env: environment(),
        }
    }

    fn load(&self) -> Result<Config, ExitCode> {
        self.source().load().map_err(|error| {
            eprint!("tokengate: {error}");
            ExitCode::from(EXIT_CONFIG)
        })
    }
}

/// The process environment, the one place it is read whole: `TOKENGATE_*` key overrides and
/// the variables `*_env` keys name. Variables that are not UTF-8 cannot be either.
fn environment() -> Env {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// Prints clap's message for a command line it refused: help and version are successes, anything
/// else is a usage error (64, like a bad configuration) rather than clap's own 2.
pub fn usage(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    let config = match cli.common.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    match cli.command {
        None => run(cli.common.source(), config),
        Some(Command::CheckConfig) => check(&config),
        Some(Command::Reload) => reload::run(&config),
        Some(Command::ResetPassword { user, interactive }) => {
            reset_password(&config, &user, interactive)
        }
        Some(Command::Users { action }) => file_users::run(&config, action),
        Some(Command::Tokens {
            action: TokensCommand::Import { file },
        }) => tokens::import(&config, &file, cli.common.quiet),
        Some(Command::Tokens {
            action: TokensCommand::Migrate { to: _ },
        }) => tokens::migrate(&config, cli.common.quiet),
        Some(Command::ServiceTokens { action }) => service_tokens::run(&config, &action),
        Some(Command::Tokens {
            action: TokensCommand::List { account, remote },
        }) => token_admin::list(&config, account.as_deref(), &remote, cli.common.quiet),
        Some(Command::Tokens {
            action:
                TokensCommand::Revoke {
                    account,
                    name,
                    remote,
                },
        }) => token_admin::revoke(&config, &account, &name, &remote, cli.common.quiet),
    }
}

/// Validates what a start would load besides the file itself: every file the configuration
/// names and the data directory (all problems at once), then the certificates' and keys' content.
fn check(config: &Config) -> ExitCode {
    let problems = config.check_files();
    if !problems.is_empty() {
        eprint!("tokengate: {}", ConfigError { problems });
        return ExitCode::from(EXIT_CONFIG);
    }
    match Gateway::check(config) {
        Ok(()) => {
            eprintln!("tokengate: configuration {} is valid", config.source);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tokengate: {}: {error}", config.source);
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Runs the gateway until SIGTERM or SIGINT; SIGHUP reloads from `source`.
fn run(source: ConfigSource, config: Config) -> ExitCode {
    app::init_logging(&config.log);
    let runtime = match app::runtime(&config.server) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::from(EXIT_START);
        }
    };
    let bootstrap = std::env::var("ELASTIC_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    runtime.block_on(async {
        let terminate = app::signals::terminate();
        let mut gateway =
            match Gateway::start_from(Some(source), config, bootstrap.as_deref()).await {
                Ok(gateway) => gateway,
                Err(error) => {
                    tracing::error!(%error, "cannot start");
                    let code = if error.is_config() {
                        EXIT_CONFIG
                    } else {
                        EXIT_START
                    };
                    return ExitCode::from(code);
                }
            };
        if let Some(password) = gateway.take_generated_password() {
            show_generated_password(&password);
        }
        #[cfg(unix)]
        app::notify::ready();
        gateway
            .run(async {
                terminate.await;
                #[cfg(unix)]
                app::notify::stopping();
            })
            .await;
        ExitCode::SUCCESS
    })
}

/// The one time a generated password is visible.
#[allow(clippy::print_stdout)]
fn show_generated_password(password: &str) {
    println!(
        "\nGenerated password for the [{}] user (shown once; change it with `tokengate reset-password -u {} -i`):\n\n  {password}\n",
        users::BOOTSTRAP_USER,
        users::BOOTSTRAP_USER
    );
}

#[allow(clippy::print_stdout)]
fn reset_password(config: &Config, user: &str, interactive: bool) -> ExitCode {
    // Before anything changes: a change the audit log cannot record is not made.
    let audit = match Audit::open(&config.audit) {
        Ok(audit) => audit,
        Err(error) => {
            eprintln!("tokengate: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let password = if interactive {
        let first = rpassword::prompt_password(format!("Enter password for [{user}]: "));
        let second = rpassword::prompt_password(format!("Re-enter password for [{user}]: "));
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("tokengate: passwords do not match");
                return ExitCode::from(EXIT_CONFIG);
            }
            (Err(error), _) | (_, Err(error)) => {
                eprintln!("tokengate: cannot read the password: {error}");
                return ExitCode::from(EXIT_START);
            }
        }
    } else {
        users::generate_password()
    };
    match users::set_password(&config.server.data_dir, user, &password) {
        Ok(()) => {
            audit.password_changed(user);
            audit.close();
            if interactive {
                println!("Password for the [{user}] user successfully reset.");
            } else {
                println!(
                    "Password for the [{user}] user successfully reset.\nNew value: {password}"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tokengate: {error}");
            ExitCode::from(EXIT_START)
        }
    }
}
