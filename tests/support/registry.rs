//! A real registry for tests: Debian's `docker-registry` on an ephemeral loopback port, in plain, Basic, token or TLS mode, with its access log parsed.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::skopeo::TlsOpt;
use super::tls::{self, TlsFiles};
use super::tokenserver::{TokenServer, ISSUER, SERVICE};

/// The user every protected test registry knows.
pub const USER: &str = "ferry";
/// Basic and TLS registries' password.
pub const BASIC_PASSWORD: &str = "s3cret-basic-pw";
/// The token server's password.
pub const TOKEN_PASSWORD: &str = "s3cret-token-pw";

/// How the registry authenticates and connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No auth, plain HTTP.
    Plain,
    /// htpasswd Basic auth, plain HTTP.
    Basic,
    /// Token auth through [`TokenServer`], plain HTTP.
    Token,
    /// HTTPS with a generated CA, plus Basic auth.
    Tls,
}

/// One line of the registry's access log.
#[derive(Clone, Debug)]
pub struct AccessEntry {
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes written.
    pub bytes: u64,
    /// The client's User-Agent.
    pub user_agent: String,
}

impl AccessEntry {
    /// Whether the request could change the registry (PUT, POST, PATCH, DELETE).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "PATCH" | "DELETE")
    }
}

/// The User-Agent of the test bed's own "is it up?" request, left out of the access log.
const READY_PROBE: &str = "ferry-test-bed-ready";

/// A running registry; killed and removed when dropped.
pub struct TestRegistry {
    mode: Mode,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: Option<TlsFiles>,
    /// The token server, in token mode.
    pub token: Option<TokenServer>,
    /// Credentials other than the defaults (Basic: the htpasswd user; token: what clients should send).
    creds: Option<(String, String)>,
    /// The in-memory blob descriptor cache of Debian's shipped `/etc/docker/registry/config.yml`.
    cached: bool,
}

impl TestRegistry {
    /// Starts a registry in `mode`.
    pub fn start(mode: Mode) -> TestRegistry {
        Self::start_with_token_lifetime(mode, 300)
    }

    /// Starts a registry; in token mode tokens live `lifetime_s` seconds.
    pub fn start_with_token_lifetime(mode: Mode, lifetime_s: u64) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let token = (mode == Mode::Token).then(|| {
            TokenServer::start(
                &dir.path().join("token-cert.pem"),
                USER,
                TOKEN_PASSWORD,
                lifetime_s,
            )
        });
        Self::launch(mode, dir, token, None)
    }

    /// A plain registry with the blob descriptor cache Debian's packaged configuration turns on
    /// (`storage.cache.blobdescriptor: inmemory`): for measurements of many small requests,
    /// where the test default (no cache, so deletions show at once) would measure the disk.
    pub fn start_cached() -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        Self::launch_with(Mode::Plain, dir, None, None, true)
    }

    /// A Basic-auth registry whose htpasswd holds this user and password.
    pub fn start_basic_with(user: &str, password: &str) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        Self::launch(
            Mode::Basic,
            dir,
            None,
            Some((user.to_owned(), password.to_owned())),
        )
    }

    /// A token-auth registry whose token server grants what `check` accepts; tokens live `lifetime_s`.
    pub fn start_token_with(check: super::tokenserver::Check, lifetime_s: u64) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let token = TokenServer::start_with(&dir.path().join("token-cert.pem"), check, lifetime_s);
        Self::launch(Mode::Token, dir, Some(token), None)
    }

    fn launch(
        mode: Mode,
        dir: tempfile::TempDir,
        token: Option<TokenServer>,
        creds: Option<(String, String)>,
    ) -> TestRegistry {
        Self::launch_with(mode, dir, token, creds, false)
    }

    fn launch_with(
        mode: Mode,
        dir: tempfile::TempDir,
        token: Option<TokenServer>,
        creds: Option<(String, String)>,
        cached: bool,
    ) -> TestRegistry {
        let tls = (mode == Mode::Tls).then(|| tls::generate(dir.path()));
        if matches!(mode, Mode::Basic | Mode::Tls) {
            let (user, password) = creds
                .clone()
                .unwrap_or((USER.to_owned(), BASIC_PASSWORD.to_owned()));
            let hash = bcrypt::hash(password, 5).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
        }
        let mut reg = TestRegistry {
            mode,
            port: 0,
            dir,
            child: None,
            tls,
            token,
            creds,
            cached,
        };
        for attempt in 0..5 {
            reg.port = free_port();
            reg.write_config();
            if reg.spawn_and_wait() {
                return reg;
            }
            eprintln!(
                "registry did not start on port {} (attempt {attempt}); retrying",
                reg.port
            );
        }
        panic!("registry failed to start:\n{}", reg.log_text());
    }

    fn write_config(&self) {
        let root = self.dir.path().join("storage");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: ferry-test-secret\n  headers:\n    X-Ferry-Test-Registry: [{}]\n",
            root.display(),
            self.port,
            self.id()
        );
        if self.cached {
            cfg = cfg.replace(
                "storage:\n",
                "storage:\n  cache:\n    blobdescriptor: inmemory\n",
            );
        }
        if let Some(t) = &self.tls {
            cfg += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            );
        }
        match self.mode {
            Mode::Basic | Mode::Tls => {
                cfg += &format!(
                    "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
                    self.dir.path().join("htpasswd").display()
                )
            }
            Mode::Token => {
                let t = self.token.as_ref().unwrap();
                cfg += &format!(
                    "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    t.realm,
                    self.dir.path().join("token-cert.pem").display()
                );
            }
            Mode::Plain => {}
        }
        std::fs::write(self.dir.path().join("config.yml"), cfg).unwrap();
    }

    fn spawn_and_wait(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry must be installed (apt-get install docker-registry)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("registry exited with {status}");
                self.child = None;
                return false;
            }
            if self.answers_as_itself() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.stop();
        false
    }

    /// What this registry puts in its `X-Ferry-Test-Registry` header: its directory's name.
    fn id(&self) -> String {
        self.dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether this registry, and not another test's registry or proxy that took the port
    /// between `free_port` and the bind, answers on the port. Over TLS: whether anything does.
    fn answers_as_itself(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls.is_some() {
            return true;
        }
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let asked = conn.write_all(
            format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: {READY_PROBE}\r\n\r\n")
                .as_bytes(),
        );
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        asked.is_ok()
            && answer.to_ascii_lowercase().contains(&format!(
                "x-ferry-test-registry: {}",
                self.id().to_ascii_lowercase()
            ))
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `http://…` or `https://…`
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls.is_some() { "https" } else { "http" },
            self.host()
        )
    }

    /// The user, for protected registries.
    pub fn username(&self) -> Option<&str> {
        if let Some((u, _)) = &self.creds {
            return Some(u);
        }
        (self.mode != Mode::Plain).then_some(USER)
    }

    /// The password, for protected registries.
    pub fn password(&self) -> Option<&str> {
        if let Some((_, p)) = &self.creds {
            return Some(p);
        }
        match self.mode {
            Mode::Plain => None,
            Mode::Basic | Mode::Tls => Some(BASIC_PASSWORD),
            Mode::Token => Some(TOKEN_PASSWORD),
        }
    }

    /// The (user, password) a client logs in with, for protected registries.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.username().zip(self.password())
    }

    /// How skopeo should connect.
    pub fn tls(&self) -> TlsOpt {
        match &self.tls {
            Some(t) => TlsOpt::CertDir(t.cert_dir.clone()),
            None => TlsOpt::Insecure,
        }
    }

    /// The CA certificate (TLS mode).
    pub fn ca_cert_path(&self) -> &Path {
        &self.tls.as_ref().expect("TLS mode").ca_cert
    }

    /// A directory with `ca.crt` (TLS mode).
    pub fn cert_dir(&self) -> &Path {
        &self.tls.as_ref().expect("TLS mode").cert_dir
    }

    /// Where the registry keeps its data.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Everything the registry printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The access log so far.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        self.log_text()
            .lines()
            .filter_map(parse_access)
            .filter(|e| e.user_agent != READY_PROBE)
            .collect()
    }

    /// Stops the process, keeping the storage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same storage.
    /// Restarts the registry with deletes turned off (`storage.delete.enabled: false`, the
    /// distribution default): every DELETE then answers 405 UNSUPPORTED.
    pub fn turn_deletes_off(&mut self) {
        let path = self.dir.path().join("config.yml");
        let cfg = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            cfg.replace(
                "  delete:\n    enabled: true\n",
                "  delete:\n    enabled: false\n",
            ),
        )
        .unwrap();
        self.restart();
    }

    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn_and_wait(),
            "registry failed to restart:\n{}",
            self.log_text()
        );
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parses an Apache combined log line: `IP - - [time] "METHOD PATH PROTO" STATUS BYTES "REF" "UA"`.
fn parse_access(line: &str) -> Option<AccessEntry> {
    if !line.starts_with("127.0.0.1 - ") {
        return None;
    }
    let mut quoted = line.split('"');
    let _prefix = quoted.next()?;
    let request = quoted.next()?;
    let status_bytes = quoted.next()?;
    let _referer = quoted.next()?;
    let _gap = quoted.next()?;
    let user_agent = quoted.next().unwrap_or_default().to_owned();
    let mut req = request.split(' ');
    let (method, path) = (req.next()?.to_owned(), req.next()?.to_owned());
    let mut sb = status_bytes.split_whitespace();
    let status = sb.next()?.parse().ok()?;
    let bytes = sb.next().and_then(|b| b.parse().ok()).unwrap_or(0);
    Some(AccessEntry {
        method,
        path,
        status,
        bytes,
        user_agent,
    })
}

#[test]
fn parses_access_lines() {
    let e = parse_access(r#"127.0.0.1 - - [24/Nov/2026:09:22:41 +0000] "GET /v2/a/src/blobs/sha256:fc HTTP/1.1" 200 3145728 "" "ferry/0.1.0""#).unwrap();
    assert_eq!(
        (
            e.method.as_str(),
            e.path.as_str(),
            e.status,
            e.bytes,
            e.user_agent.as_str()
        ),
        (
            "GET",
            "/v2/a/src/blobs/sha256:fc",
            200,
            3145728,
            "ferry/0.1.0"
        )
    );
}
