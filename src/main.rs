//! The `tessera` binary: relay, client, load generator and simulators behind one command.

/// mimalloc: thread-local free lists suit one-executor-per-core; measured in docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(tessera::cli::run());
}
