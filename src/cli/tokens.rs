//! `tokengate tokens import`: loads existing token values (one per line) into the store, for
//! migrating tokens from a cluster or another gateway without re-issuing them.
//!
//! All lines are checked before anything is written: a file with a bad line imports nothing.
//!
//! `tokengate tokens migrate --to etcd`: copies the journal to etcd, for moving from one gateway
//! to several without re-issuing tokens.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::identity::is_valid_token_name;
use crate::identity::token;
use crate::store::{StoreOptions, TokenStore};

use super::progress::{Loads, Progress};
use super::{EXIT_CONFIG, EXIT_START};

/// Exit status for a token file with bad lines (BSD's EX_DATAERR).
const EXIT_DATA: u8 = 65;
/// Tokens handed to the store per durable batch.
const BATCH: usize = 50_000;

/// Reads `file` (`-` for standard input) and imports every token in it.
#[allow(clippy::print_stdout)]
pub fn import(config: &Config, file: &Path, quiet: bool) -> ExitCode {
    let text = match read(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("tokengate: {}: {error}", file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let accounts = match Accounts::new(&config.service_accounts) {
        Ok(accounts) => accounts,
        Err(error) => {
            eprintln!("tokengate: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let (tokens, problems) = parse(&text, &accounts);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("tokengate: {}:{problem}", file.display());
        }
        eprintln!(
            "tokengate: {} bad line(s); nothing imported",
            problems.len()
        );
        return ExitCode::from(EXIT_DATA);
    }
    let dir = &config.server.data_dir;
    let reading = Loads::new(quiet);
    let options = StoreOptions {
        serving: false,
        on_load: Some(reading.observer()),
        ..StoreOptions::default()
    };
    let opened = TokenStore::open_configured(&config.store, dir, options);
    reading.finish();
    let store = match opened {
        Ok(store) => store,
        Err(error) => {
            eprintln!("tokengate: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let total = tokens.len();
    let progress = Progress::new("importing", total as u64, quiet);
    let result = run_import(&store, tokens, &progress);
    progress.finish();
    store.close();
    match result {
        Ok(skipped) => {
            println!(
                "imported {} token(s), {} already present",
                total - skipped,
                skipped
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tokengate: import stopped: {error}");
            ExitCode::from(EXIT_START)
        }
    }
}

/// Copies the journal under the data directory to the etcd of `[store]`.
#[allow(clippy::print_stdout)]
pub fn migrate(config: &Config, quiet: bool) -> ExitCode {
    let etcd = &config.store.etcd;
    if etcd.endpoints.is_empty() {
        eprintln!("tokengate: [store] endpoints: name the etcd to copy the tokens to");
        return ExitCode::from(EXIT_CONFIG);
    }
    copy_to_etcd(config, quiet)
}

#[cfg(feature = "etcd")]
#[allow(clippy::print_stdout)]
fn copy_to_etcd(config: &Config, quiet: bool) -> ExitCode {
    let dir = &config.server.data_dir;
    if !dir.join("tokens.journal").is_file() {
        eprintln!("tokengate: {}: no token journal to migrate", dir.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    let reading = Loads::new(quiet);
    let mut progress = None;
    let copied = crate::store::etcd::migrate(
        dir,
        &config.store.etcd,
        reading.observer(),
        &mut |done, total| {
            progress
                .get_or_insert_with(|| {
                    reading.finish();
                    Progress::new("copying to etcd", total as u64, quiet)
                })
                .advance(done as u64);
        },
    );
    reading.finish();
    if let Some(progress) = progress {
        progress.finish();
    }
    match copied {
        Ok(done) => {
            println!(
                "copied {} token(s) to etcd prefix {}, {} already there",
                done.copied, config.store.etcd.prefix, done.present
            );
            if done.conflicts.is_empty() {
                return ExitCode::SUCCESS;
            }
            for name in &done.conflicts {
                eprintln!(
                    "tokengate: token [{name}] exists in etcd with another value; left as it is"
                );
            }
            ExitCode::from(EXIT_DATA)
        }
        Err(error) => {
            eprintln!("tokengate: migration stopped: {error}");
            ExitCode::from(EXIT_START)
        }
    }
}

#[cfg(not(feature = "etcd"))]
fn copy_to_etcd(_config: &Config, _quiet: bool) -> ExitCode {
    eprintln!("tokengate: this build has no etcd support (build with `--features etcd`)");
    ExitCode::from(EXIT_CONFIG)
}

fn read(file: &Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}

/// Checks every line and pairs each value with its qualified name; problems carry
/// `line: reason`. The store keeps only a fingerprint of each value.
fn parse(text: &str, accounts: &Accounts) -> (Vec<(String, String)>, Vec<String>) {
    let mut tokens = Vec::new();
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut buf = [0u8; token::MAX_DECODED_LEN];
        let Some(decoded) = token::decode(line.as_bytes(), &mut buf) else {
            problems.push(format!("{number}: not a service token value"));
            continue;
        };
        if !is_valid_token_name(decoded.name) {
            problems.push(format!("{number}: invalid token name [{}]", decoded.name));
        } else if !accounts.contains(decoded.namespace, decoded.service) {
            problems.push(format!(
                "{number}: service account [{}] does not exist",
                decoded.account
            ));
        } else {
            tokens.push((decoded.qualified.to_owned(), line.to_owned()));
        }
    }
    (tokens, problems)
}

/// Imports in durable batches; returns how many were already present.
fn run_import(
    store: &TokenStore,
    mut tokens: Vec<(String, String)>,
    progress: &Progress,
) -> Result<usize, crate::store::StoreError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| crate::store::StoreError::Io {
            path: "runtime".into(),
            source,
        })?;
    runtime.block_on(async {
        let mut skipped = 0;
        while !tokens.is_empty() {
            let rest = tokens.split_off(tokens.len().saturating_sub(BATCH));
            let batch = rest.len() as u64;
            skipped += store.import(rest).await?.len();
            progress.advance(batch);
        }
        Ok(skipped)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reports_every_bad_line_with_its_number() {
        let good = token::encode_raw("elastic/fleet-server", "t1", "secret");
        let other = token::encode_raw("nobody/here", "t2", "secret");
        let text = format!("# comment\n{good}\n\nnot-a-token\n{other}\n");
        let (tokens, problems) = parse(&text, &Accounts::new(&[]).unwrap());
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].0, "elastic/fleet-server/t1");
        assert_eq!(tokens[0].1, good);
        assert_eq!(
            problems,
            [
                "4: not a service token value",
                "5: service account [nobody/here] does not exist"
            ]
        );
    }
}
