//! `ferryctl`: Ferry from a terminal. Thin: the commands live in `ferry::cli`.

fn main() -> std::process::ExitCode {
    ferry::cli::main()
}
