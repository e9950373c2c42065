//! moto's server (PyPI `moto[server]`) as the ECR API for tests: started on an ephemeral loopback port, with direct JSON calls to set up and inspect repositories.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// moto's default account: the registry id of `ECR_HOST`.
pub const ECR_ACCOUNT: &str = "123456789012";
/// The region tests use.
pub const ECR_REGION: &str = "us-east-1";
/// The ECR registry name tests point at the stand-in registry.
pub const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// The password moto's `GetAuthorizationToken` hands out (base64 of `AWS:<registryId>-auth-token`,
/// with an `expiresAt` in 2015, see moto/ecr/responses.py): the stand-in registry's htpasswd holds it.
pub fn ecr_password() -> String {
    format!("{ECR_ACCOUNT}-auth-token")
}

/// A running moto server; killed when dropped.
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts `moto_server` (or `python3 -m moto.server`) and waits until it answers.
    pub fn start() -> MotoServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spawn = |program: &str, pre: &[&str]| {
            Command::new(program)
                .args(pre)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child = spawn("moto_server", &[])
            .or_else(|_| spawn("python3", &["-m", "moto.server"]))
            .expect("moto must be installed (pip install 'moto[server]')");
        let server = MotoServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls an ECR operation; returns the status and the JSON answer.
    pub fn call(&self, operation: &str, body: Value) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = reqwest::Client::new()
                .post(self.endpoint())
                .header(
                    "x-amz-target",
                    format!("AmazonEC2ContainerRegistry_V20150921.{operation}"),
                )
                .header("content-type", "application/x-amz-json-1.1")
                .header(
                    "authorization",
                    format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{ECR_REGION}/ecr/aws4_request, SignedHeaders=host, Signature=0"),
                )
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    /// Creates a repository as an operator would, outside ferry.
    pub fn create_repository(&self, name: &str, mutability: &str, exclusions: &[&str]) {
        let mut body = json!({ "repositoryName": name, "imageTagMutability": mutability });
        if !exclusions.is_empty() {
            body["imageTagMutabilityExclusionFilters"] = exclusions
                .iter()
                .map(|f| json!({ "filterType": "WILDCARD", "filter": f }))
                .collect();
        }
        let (status, answer) = self.call("CreateRepository", body);
        assert_eq!(status, 200, "CreateRepository: {answer}");
    }

    /// A repository as ECR describes it, or `None`.
    pub fn describe_repository(&self, name: &str) -> Option<Value> {
        let (status, answer) =
            self.call("DescribeRepositories", json!({ "repositoryNames": [name] }));
        match status {
            200 => answer["repositories"].get(0).cloned(),
            _ => None,
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
