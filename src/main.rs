//! The `tokengate` binary: everything lives in the library; this only parses the command line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tokengate::cli::main(tokengate::cli::Cli::parse())
}

/// Fewer CPU cycles per request than the system allocator under load (see README, Performance).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
