//! Stand-ins for the registries' own REST APIs (the GitHub Packages API for GHCR, Docker Hub's API), shaped from their documentation and backed by a real docker-registry's storage: `tests/support/standins/*.py`, started on an ephemeral loopback port.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::registry::TestRegistry;

/// A running stand-in; killed when dropped.
pub struct StandIn {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// One request a stand-in answered.
#[derive(Clone, Debug)]
pub struct ApiCall {
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Response status.
    pub status: u16,
}

impl StandIn {
    /// The GitHub Packages API over `registry` (a plain one), taking `token` as a bearer token.
    pub fn ghcr(registry: &TestRegistry, token: &str) -> StandIn {
        Self::start("ghcr_api.py", registry, &["--token", token])
    }

    /// Docker Hub's API over `registry` (a plain one), whose login takes `secret` as the
    /// password or access token.
    pub fn hub(registry: &TestRegistry, secret: &str) -> StandIn {
        Self::start("hub_api.py", registry, &["--token", secret])
    }

    fn start(script: &str, registry: &TestRegistry, extra: &[&str]) -> StandIn {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = registry.storage_dir();
        let mut child = Command::new("python3")
            .arg(super::root().join("tests/support/standins").join(script))
            .args(["--port", &port.to_string()])
            .arg("--storage")
            .arg(&storage)
            .args(["--registry", &registry.url()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the API stand-ins");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "{script} did not start");
        StandIn {
            child,
            port,
            log: storage.parent().unwrap().join("standin-access.log"),
        }
    }

    /// `http://127.0.0.1:PORT`, for `api_endpoint` in registries.yaml.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<ApiCall> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| ApiCall {
                method: v["method"].as_str().unwrap_or_default().to_owned(),
                path: v["path"].as_str().unwrap_or_default().to_owned(),
                status: v["status"].as_u64().unwrap_or_default() as u16,
            })
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
