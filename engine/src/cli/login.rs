//! `engine login` / `engine logout`: where the user and password come from
//! (the options, stdin, or a prompt on the terminal with the echo off).

use engine::Error;
use std::io::{BufRead, IsTerminal, Read, Write};

pub struct LoginArgs {
    pub host: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_stdin: bool,
}

pub fn login(args: LoginArgs) -> Result<i32, Error> {
    let tty = std::io::stdin().is_terminal();
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => {
            return Err(Error::Input(
                "--password and --password-stdin both give the password: use one".into(),
            ))
        }
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::Input(format!("cannot read the password from stdin: {e}")))?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if tty => String::new(),
        (None, false) => {
            return Err(Error::Input(
                "no password: give it on stdin with --password-stdin (stdin is not a terminal to ask on)".into(),
            ))
        }
    };
    let user = match args.user {
        Some(user) => user,
        None if tty => prompt("Username: ", true)?,
        None => {
            return Err(Error::Input(
                "no user: give it with -u USER (stdin is not a terminal to ask on)".into(),
            ))
        }
    };
    let password = if password.is_empty() && args.password.is_none() && !args.password_stdin {
        prompt("Password: ", false)?
    } else {
        password
    };
    if password.is_empty() {
        return Err(Error::Input(format!(
            "an empty password for {}: give the account's password",
            args.host
        )));
    }
    engine::login(&args.host, &user, &password)?;
    println!("Login Succeeded!");
    Ok(0)
}

pub fn logout(host: &str) -> Result<i32, Error> {
    engine::logout(host)?;
    println!("Removed login credentials for {host}");
    Ok(0)
}

/// Reads a line from the terminal on stdin, echoing it only when `echo`.
fn prompt(what: &str, echo: bool) -> Result<String, Error> {
    let failed = |e: std::io::Error| Error::Input(format!("cannot read from the terminal: {e}"));
    eprint!("{what}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = if echo {
        None
    } else {
        let saved = rustix::termios::tcgetattr(&stdin).map_err(|e| failed(e.into()))?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Flush, &quiet)
            .map_err(|e| failed(e.into()))?;
        Some(saved)
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Flush, &saved);
        eprintln!();
    }
    read.map_err(failed)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
