//! The `tokengate` binary: everything lives in the library; this only parses the command line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tokengate::cli::main(tokengate::cli::Cli::parse())
}
