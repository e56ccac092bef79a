//! `tokengate users …`: the file realm's users from the command line, with the subcommands,
//! options, messages and exit codes of Elasticsearch's `elasticsearch-users` (whose `useradd`
//! and `userdel` are accepted as aliases). Editing the files is [`crate::users`]' business; this
//! reads passwords and prints.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::users::{self, EditError};

use super::EXIT_START;

/// Exit status for a bad name, password or role (Elasticsearch's `DATA_ERROR`).
const EXIT_DATA: u8 = 65;
/// Exit status for a user that does not exist (Elasticsearch's `NO_USER`).
const EXIT_NO_USER: u8 = 67;
/// Exit status for a user that already exists (Elasticsearch's `CODE_ERROR`).
const EXIT_EXISTS: u8 = 70;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (prompts for the password unless -p; reads one line when input is not a terminal).
    #[command(visible_alias = "useradd")]
    Add {
        username: String,
        /// The user's password.
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Comma-separated roles of the user.
        #[arg(short = 'r', long, default_value = "")]
        roles: String,
    },
    /// Change the password of an existing user.
    Passwd {
        username: String,
        /// The new password.
        #[arg(short = 'p', long)]
        password: Option<String>,
    },
    /// Add or remove roles of an existing user (without -a/-r: show them).
    Roles {
        username: String,
        /// Comma-separated roles to add.
        #[arg(short = 'a', long, default_value = "")]
        add: String,
        /// Comma-separated roles to remove.
        #[arg(short = 'r', long, default_value = "")]
        remove: String,
    },
    /// List users and their roles (or one user's).
    List { username: Option<String> },
    /// Delete a user and its roles.
    #[command(visible_alias = "userdel")]
    Delete { username: String },
}

/// Runs `command` on the configured data directory.
pub fn run(config: &Config, command: UsersCommand) -> ExitCode {
    let dir = config.server.data_dir.as_path();
    let edits = match &command {
        UsersCommand::List { .. } => false,
        UsersCommand::Roles { add, remove, .. } => !(add.is_empty() && remove.is_empty()),
        _ => true,
    };
    let outcome = match command {
        UsersCommand::Add {
            username,
            password,
            roles,
        } => add(dir, &username, password, &roles),
        UsersCommand::Passwd { username, password } => users::validate_username(&username)
            .and_then(|()| new_password(password))
            .and_then(|password| users::passwd(dir, &username, &password)),
        UsersCommand::Roles {
            username,
            add,
            remove,
        } => roles(dir, &username, &add, &remove),
        UsersCommand::List { username } => list(dir, username.as_deref()),
        UsersCommand::Delete { username } => users::delete(dir, &username),
    };
    match outcome {
        Ok(()) => {
            if let Some(warning) = edits.then(|| users::ownership_warning(dir)).flatten() {
                eprintln!("tokengate: warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// Checks in Elasticsearch's order: name, password, roles, then the files.
fn add(dir: &Path, user: &str, password: Option<String>, roles: &str) -> Result<(), EditError> {
    users::validate_username(user)?;
    let password = new_password(password)?;
    let roles = users::parse_roles(roles)?;
    users::add(dir, user, &password, &roles)
}

fn roles(dir: &Path, user: &str, add: &str, remove: &str) -> Result<(), EditError> {
    users::validate_username(user)?;
    let (add, remove) = (users::parse_roles(add)?, users::parse_roles(remove)?);
    if add.is_empty() && remove.is_empty() {
        return list(dir, Some(user));
    }
    users::change_roles(dir, user, &add, &remove).map(drop)
}

/// Elasticsearch's layout: the name padded to 15 columns, roles joined by commas, `-` for none.
#[allow(clippy::print_stdout)]
fn list(dir: &Path, only: Option<&str>) -> Result<(), EditError> {
    let listed = users::list(dir, only)?;
    if listed.is_empty() {
        println!("No users found");
    }
    for (user, roles) in listed {
        let roles = if roles.is_empty() {
            "-".to_owned()
        } else {
            roles.join(",")
        };
        println!("{user:<15}: {roles}");
    }
    Ok(())
}

/// The password from `-p`, else asked twice at a terminal, else one line of standard input
/// (for scripts: `echo "$PW" | tokengate users add bob`).
fn new_password(given: Option<String>) -> Result<String, EditError> {
    if let Some(password) = given {
        users::validate_password(&password)?;
        return Ok(password);
    }
    let io = |source| {
        EditError::Realm(users::RealmError::Io {
            path: "standard input".into(),
            source,
        })
    };
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(io)?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        users::validate_password(&password)?;
        return Ok(password);
    }
    let password = rpassword::prompt_password("Enter new password: ").map_err(io)?;
    users::validate_password(&password)?;
    let again = rpassword::prompt_password("Retype new password: ").map_err(io)?;
    if again != password {
        return Err(EditError::Mismatch);
    }
    Ok(password)
}

fn fail(error: &EditError) -> ExitCode {
    eprintln!("tokengate: {error}");
    let code = match error {
        EditError::InvalidUsername(_)
        | EditError::InvalidPassword
        | EditError::InvalidRole(_)
        | EditError::Mismatch => EXIT_DATA,
        EditError::NoUser(_) => EXIT_NO_USER,
        EditError::Exists(_) => EXIT_EXISTS,
        EditError::Realm(_) => EXIT_START,
    };
    ExitCode::from(code)
}
