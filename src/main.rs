//! The `marketsim` command line: parses arguments, calls the library, maps errors to exit codes
//! (0 success, 1 differences found, 2 error). What each verb does is in `cli::commands`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve(args),
        Command::Run(args) => commands::run(args),
        Command::Eval(args) => commands::eval(args),
        Command::Inspect(args) => commands::inspect(args),
        Command::Scenarios(args) => commands::scenarios(args),
        Command::Validate(args) => commands::validate(args),
        Command::Generate(args) => commands::generate(args),
        Command::Streams(args) => commands::streams(args),
        Command::Diff(args) => commands::diff(args),
        Command::Report(args) => commands::report(args),
        Command::Export(args) => commands::export_rows(args),
        Command::WsClient(args) => commands::watch_websocket(args),
        Command::Api(args) => commands::call_api(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
