//! cli::prompt: asking the person at the terminal for what was left off the command line (a user, a password without echo), and reading a password from standard input.

use std::io::{BufRead, IsTerminal, Read};

use crate::auth::Secret;
use crate::error::{Error, Result};
use crate::reference::Registry;

/// True when standard input is a terminal someone can type at.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// The password for `user` at `registry`, typed at the terminal without echo; why not when
/// there is no terminal.
pub fn password(registry: &Registry, user: &str) -> std::result::Result<Secret, String> {
    if !interactive() {
        return Err(
            "there is no terminal to ask on: give USER:PASS (or use ferry login --password-stdin)"
                .into(),
        );
    }
    rpassword::prompt_password(format!("password for {user} at {registry}: "))
        .map(Secret::new)
        .map_err(|e| format!("cannot read it from the terminal: {e}"))
}

/// A user name typed at the terminal (echoed).
pub fn username(registry: &Registry) -> Result<String> {
    eprint!("username for {registry}: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::Usage(format!("cannot read the user from the terminal: {e}")))?;
    let user = line.trim().to_owned();
    if user.is_empty() {
        return Err(Error::Usage("the user is empty".into()));
    }
    Ok(user)
}

/// A password from all of standard input, without one trailing newline (`\n` or `\r\n`), as
/// `docker login --password-stdin` reads it.
pub fn password_from_stdin() -> Result<Secret> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| Error::Usage(format!("--password-stdin: cannot read standard input: {e}")))?;
    let password = trim_one_newline(&text);
    if password.is_empty() {
        return Err(Error::Usage(
            "--password-stdin: standard input held no password".into(),
        ));
    }
    Ok(Secret::new(password))
}

fn trim_one_newline(s: &str) -> &str {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.strip_suffix('\r').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(trim_one_newline("pw\n"), "pw");
        assert_eq!(trim_one_newline("pw\r\n"), "pw");
        assert_eq!(trim_one_newline("pw\n\n"), "pw\n");
        assert_eq!(trim_one_newline(" pw "), " pw ");
    }
}
