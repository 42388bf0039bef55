//! The harness shared by the fuzz targets in fuzz_targets/: a fixed test
//! identity (CA, server and client certificates), the engine run in-process
//! over a socketpair and two pipes, reference models for the command line
//! and the subject formatter, and the seeds each target starts from.
//!
//! Nothing here is a secret: every key is derived from a constant in this
//! file, so that a crash found today still reproduces tomorrow.

pub mod cli_model;
pub mod engine;
#[cfg(test)]
mod findings;
#[cfg(test)]
mod fixtures;
pub mod identity;
pub mod records;
pub mod relay;
pub mod revocation;
pub mod seeds;
pub mod subject_model;

/// A directory for the few files the harness needs (key files): tmpfs when
/// there is one, one per process and use. Whoever asks removes it.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let base = ["/dev/shm", "/run/shm"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("s6-tlsd-io-fuzz-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Libraries embedding the engine must ignore SIGPIPE themselves: the Rust
/// runtime does it for a Rust `main`, but a fuzz target's `main` is
/// libFuzzer's.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
