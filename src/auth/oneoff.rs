//! auth::oneoff: credentials given on the command line (`--creds HOST=USER[:PASS]`, `--src-creds`/`--dest-creds USER[:PASS]`), parsed without ever echoing a password, and gathered into the per-registry overrides [`super::Auth`] consults before any config file.
//!
//! A password left out is asked for by the caller (the command line prompts on a terminal);
//! this module only says which are missing. Nothing here prints a secret: `Debug` shows `***`,
//! and parse errors describe the shape expected, never the text given (it may hold a password).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::{Credential, Secret};
use crate::reference::Registry;

/// `USER[:PASS]`: a login for one registry; the password may be missing (then it is asked for).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user.
    pub username: String,
    /// The password or token, when it was given.
    pub password: Option<Secret>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// Prints `***` wherever a secret would be.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a one-off credential does not parse. Says what was expected, never what was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginSyntaxError {
    /// `USER[:PASS]` with nothing before the colon.
    #[error("expected USER[:PASS], and the user is empty")]
    EmptyUser,
    /// `HOST=USER[:PASS]` without its `=`, or with an empty host.
    #[error("expected HOST=USER[:PASS]")]
    NoHost,
    /// A host with a path or spaces in it.
    #[error("expected HOST=USER[:PASS], where HOST is a registry name such as ghcr.io or 127.0.0.1:5000")]
    BadHost,
}

impl FromStr for Login {
    type Err = LoginSyntaxError;

    /// `USER` or `USER:PASS`; the password is everything after the first colon (it may hold more).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (user, password) = match s.split_once(':') {
            Some((u, p)) => (u, Some(Secret::new(p))),
            None => (s, None),
        };
        if user.is_empty() {
            return Err(LoginSyntaxError::EmptyUser);
        }
        Ok(Login {
            username: user.to_owned(),
            password,
        })
    }
}

/// `HOST=USER[:PASS]`: a login for a named registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLogin {
    /// The registry (Docker Hub's aliases are `docker.io`).
    pub registry: Registry,
    /// The login.
    pub login: Login,
}

impl FromStr for HostLogin {
    type Err = LoginSyntaxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, login) = s.split_once('=').ok_or(LoginSyntaxError::NoHost)?;
        Ok(HostLogin {
            registry: registry_arg(host)?,
            login: login.parse()?,
        })
    }
}

/// A registry as written on a command line: `ghcr.io`, `https://ghcr.io/`, `127.0.0.1:5000`,
/// `https://index.docker.io/v1/` (Docker's config key for Docker Hub).
pub fn registry_arg(s: &str) -> Result<Registry, LoginSyntaxError> {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(LoginSyntaxError::NoHost);
    }
    if host.contains(|c: char| c.is_whitespace() || c == '@' || c == '=') {
        return Err(LoginSyntaxError::BadHost);
    }
    Ok(Registry::new(host))
}

/// Where one-off logins came from, for messages: `--creds`, `--src-creds`, `--dest-creds`.
pub type Flag = &'static str;

/// One-off logins per registry, before the missing passwords are filled in.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    logins: Vec<(Registry, Login, Flag)>,
}

/// Why one-off logins cannot be used as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// Two flags name different logins for one registry (ferry keeps one login per registry).
    #[error("{first} and {second} give different logins for {registry}: ferry uses one login per registry")]
    Conflict {
        /// The registry.
        registry: String,
        /// The first flag.
        first: Flag,
        /// The other flag.
        second: Flag,
    },
    /// A password was left out and could not be asked for.
    #[error("{flag}: no password for {user} at {registry}: {why}")]
    NoPassword {
        /// The flag.
        flag: Flag,
        /// The user.
        user: String,
        /// The registry.
        registry: String,
        /// Why it could not be asked for.
        why: String,
    },
}

impl Overrides {
    /// Adds a login for a registry, given by `flag`.
    pub fn add(&mut self, registry: Registry, login: Login, flag: Flag) {
        self.logins.push((registry, login, flag));
    }

    /// True when no login was given.
    pub fn is_empty(&self) -> bool {
        self.logins.is_empty()
    }

    /// The credential for each registry. `ask(registry, user)` supplies a password left out
    /// (a prompt on a terminal); one left out once counts for every flag naming the same login.
    /// Two different logins for one registry are refused, before anything is asked.
    pub fn resolve(
        self,
        mut ask: impl FnMut(&Registry, &str) -> Result<Secret, String>,
    ) -> Result<HashMap<String, Credential>, OverrideError> {
        let mut chosen: HashMap<String, (Login, Flag)> = HashMap::new();
        for (registry, login, flag) in self.logins {
            match chosen.get_mut(registry.as_str()) {
                None => {
                    chosen.insert(registry.to_string(), (login, flag));
                }
                Some((have, first)) => {
                    let same_user = have.username == login.username;
                    match (&have.password, &login.password) {
                        _ if !same_user => {}
                        (Some(a), Some(b)) if a != b => {}
                        (None, Some(_)) => {
                            have.password = login.password;
                            continue;
                        }
                        _ => continue,
                    }
                    return Err(OverrideError::Conflict {
                        registry: registry.to_string(),
                        first,
                        second: flag,
                    });
                }
            }
        }
        let mut out = HashMap::new();
        let mut names: Vec<_> = chosen.into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (registry, (login, flag)) in names {
            let password = match login.password {
                Some(p) => p,
                None => ask(&Registry::new(&registry), &login.username).map_err(|why| {
                    OverrideError::NoPassword {
                        flag,
                        user: login.username.clone(),
                        registry: registry.clone(),
                        why,
                    }
                })?,
            };
            out.insert(
                registry,
                Credential::Basic {
                    username: login.username,
                    password,
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(u: &str, p: Option<&str>) -> Login {
        Login {
            username: u.into(),
            password: p.map(Secret::new),
        }
    }

    #[test]
    fn user_with_and_without_a_password() {
        assert_eq!("ci".parse::<Login>().unwrap(), login("ci", None));
        assert_eq!(
            "ci:pa:ss=word".parse::<Login>().unwrap(),
            login("ci", Some("pa:ss=word"))
        );
        assert_eq!("ci:".parse::<Login>().unwrap(), login("ci", Some("")));
        assert_eq!(
            ":hunter2".parse::<Login>().unwrap_err(),
            LoginSyntaxError::EmptyUser
        );
    }

    #[test]
    fn host_equals_login() {
        let h: HostLogin = "Ghcr.IO=bot:tok=en".parse().unwrap();
        assert_eq!(h.registry.as_str(), "ghcr.io");
        assert_eq!(h.login, login("bot", Some("tok=en")));
        let h: HostLogin = "https://index.docker.io/v1/=me".parse().unwrap();
        assert_eq!(h.registry.as_str(), "docker.io");
        assert_eq!(h.login, login("me", None));
        let h: HostLogin = "127.0.0.1:5000=u:p".parse().unwrap();
        assert_eq!(h.registry.as_str(), "127.0.0.1:5000");
        assert_eq!(
            "hostuser:hunter2".parse::<HostLogin>().unwrap_err(),
            LoginSyntaxError::NoHost
        );
        assert_eq!(
            "=u:hunter2".parse::<HostLogin>().unwrap_err(),
            LoginSyntaxError::NoHost
        );
        for bad in ["a b=u:hunter2", "u@h=u:hunter2"] {
            let e = bad.parse::<HostLogin>().unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let h: HostLogin = "r.example=u:hunter2".parse().unwrap();
        let shown = format!("{h:?}");
        assert!(
            shown.contains("***") && !shown.contains("hunter2"),
            "{shown}"
        );
        let mut o = Overrides::default();
        o.add(h.registry, h.login, "--creds");
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn resolves_asks_for_missing_passwords_once_and_refuses_conflicts() {
        let r = |s: &str| Registry::new(s);
        let mut o = Overrides::default();
        o.add(r("a.example"), login("u", Some("p")), "--src-creds");
        o.add(r("b.example"), login("v", None), "--dest-creds");
        o.add(r("b.example"), login("v", None), "--creds");
        let mut asked = Vec::new();
        let got = o
            .resolve(|reg, user| {
                asked.push(format!("{user}@{reg}"));
                Ok(Secret::new("typed"))
            })
            .unwrap();
        assert_eq!(asked, ["v@b.example"]);
        assert_eq!(
            got["a.example"],
            Credential::Basic {
                username: "u".into(),
                password: Secret::new("p")
            }
        );
        assert_eq!(
            got["b.example"],
            Credential::Basic {
                username: "v".into(),
                password: Secret::new("typed")
            }
        );

        // The same user, once with a password and once without: the password is used.
        let mut o = Overrides::default();
        o.add(r("a.example"), login("u", None), "--src-creds");
        o.add(r("a.example"), login("u", Some("p")), "--creds");
        let got = o.resolve(|_, _| Err("not asked".into())).unwrap();
        assert!(
            matches!(&got["a.example"], Credential::Basic { password, .. } if password.expose() == "p")
        );

        for (a, b) in [
            (login("u", Some("p")), login("w", Some("p"))),
            (login("u", Some("p")), login("u", Some("q"))),
        ] {
            let mut o = Overrides::default();
            o.add(r("a.example"), a, "--src-creds");
            o.add(r("a.example"), b, "--dest-creds");
            let e = o.resolve(|_, _| Ok(Secret::new("x"))).unwrap_err();
            assert_eq!(
                e.to_string(),
                "--src-creds and --dest-creds give different logins for a.example: ferry uses one login per registry"
            );
        }

        let mut o = Overrides::default();
        o.add(r("a.example"), login("u", None), "--creds");
        let e = o
            .resolve(|_, _| Err("not on a terminal".into()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--creds: no password for u at a.example: not on a terminal"
        );
    }
}
