use std::process::ExitCode;

fn main() -> ExitCode {
    kiln::cli::main_with(std::env::args_os(), &kiln::Registry::default())
}
