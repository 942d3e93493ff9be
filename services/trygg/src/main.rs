//! The `trygg` command. Everything lives in the library; see `trygg::cli`.

fn main() -> std::process::ExitCode {
    trygg::cli::main()
}
