//! `chime policy check | replay | eval`.

use crate::policy::{replay, Policy};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

pub enum Command {
    Check {
        files: Vec<PathBuf>,
    },
    Replay {
        input: PathBuf,
        policy: Option<PathBuf>,
        ignore_budgets: bool,
    },
    Eval {
        input: PathBuf,
        policy: Option<PathBuf>,
    },
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => Policy::load(&p),
        None => Ok(Policy::default_policy()),
    }
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { files } => check(files),
        Command::Replay {
            input,
            policy,
            ignore_budgets,
        } => {
            let policy = load(policy)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            replay::run(&policy, &input, ignore_budgets, &mut out)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { input, policy } => {
            let policy = load(policy)?;
            let mut buf = vec![];
            let inputs = replay::read_input(&input, &mut buf)?;
            print!("{}", replay::report(&replay::evaluate(&policy, &inputs)?));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(mut files: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    if files.is_empty() {
        let dir = std::path::Path::new("policies");
        let entries = std::fs::read_dir(dir).map_err(|e| {
            anyhow::anyhow!(
                "no files given, and cannot read ./policies ({e}); name the files to check"
            )
        })?;
        files = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
    }
    let mut bad = 0;
    for f in &files {
        match Policy::load(f) {
            Ok(p) => println!(
                "ok  {} ({} actions, {} scopes)",
                f.display(),
                p.file.actions.len(),
                p.file.scopes.len()
            ),
            Err(e) => {
                bad += 1;
                println!("error  {e}");
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
