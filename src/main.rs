//! The `firebell` binary: everything happens in [`firebell::cli`].

fn main() -> std::process::ExitCode {
    firebell::cli::main()
}
