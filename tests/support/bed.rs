//! The test bed: a temporary directory with a Docker config for chosen registries, generated images, and ferry run as a process.

use std::path::PathBuf;
use std::process::Output;

use ferry::sample::{ImageSpec, LayerSpec, Layout, Written};
use serde_json::Value;

use super::registry::TestRegistry;

/// A place for generated layouts and the Docker config ferry reads credentials from.
pub struct Bed {
    /// Layouts, the Docker config, policies.
    pub dir: tempfile::TempDir,
}

impl Bed {
    pub fn new(regs: &[&TestRegistry]) -> Bed {
        let logins: Vec<(String, String, String)> = regs
            .iter()
            .filter_map(|r| Some((r.host(), r.username()?.to_owned(), r.password()?.to_owned())))
            .collect();
        Bed::with_logins(&logins)
    }

    /// A bed whose Docker config holds exactly these (host, user, password) logins.
    pub fn with_logins(logins: &[(String, String, String)]) -> Bed {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let mut auths = serde_json::Map::new();
        for (host, u, p) in logins {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            auths.insert(host.clone(), serde_json::json!({ "auth": auth }));
        }
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::write(
            dir.path().join("docker/config.json"),
            serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap(),
        )
        .unwrap();
        // Empty AWS config files: the machine's profiles must not be used, and aws-config warns
        // about files named but missing.
        std::fs::write(dir.path().join("aws-config"), "").unwrap();
        std::fs::write(dir.path().join("aws-credentials"), "").unwrap();
        Bed { dir }
    }

    pub fn layout(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Adds a default sample image under `tag` to the bed's "images" layout; returns it and its `ocidir://` reference.
    pub fn image(&self, tag: &str, seed: u64) -> (Written, String) {
        let layout = Layout::create(&self.layout("images")).unwrap();
        let w = layout
            .add_image(&ImageSpec {
                tag: tag.into(),
                seed,
                ..ImageSpec::default()
            })
            .unwrap();
        (
            w,
            format!("ocidir://{}:{tag}", self.layout("images").display()),
        )
    }

    /// The bed's `policies` directory (made by [`Bed::policies`]).
    pub fn policies_dir(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// Writes policy files (name, text) into the bed's `policies` directory; returns it.
    pub fn policies(&self, files: &[(&str, String)]) -> PathBuf {
        let dir = self.policies_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    /// ferry as a command reading this bed's Docker config, not the machine's.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> std::process::Command {
        let mut c = super::ferry();
        c.args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("RUST_LOG");
        // Credentials of the machine running the tests (a CI's GITHUB_TOKEN, an AWS profile) must
        // not reach ferry: each test sets what it means to use.
        for var in [
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "GITHUB_ACTOR",
            "DOCKERHUB_USERNAME",
            "DOCKERHUB_TOKEN",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_ECR",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
        ] {
            c.env_remove(var);
        }
        c.env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("aws-credentials"),
            )
            .env("CLOUDSDK_CONFIG", self.dir.path().join("gcloud"));
        c
    }

    pub fn ferry(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn ferry_ok(&self, args: &[&str]) -> Value {
        let out = self.ferry(args);
        assert!(
            out.status.success(),
            "ferry {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        json(&out)
    }

    /// `args` after `--policies` naming the bed's policy directory.
    pub fn with_policies(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            "--policies".to_owned(),
            self.policies_dir().display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// [`Bed::ferry`] with the bed's policies.
    pub fn ferry_policies(&self, args: &[&str]) -> Output {
        self.command(&self.with_policies(args)).output().unwrap()
    }

    /// [`Bed::ferry_ok`] with the bed's policies.
    pub fn ferry_policies_ok(&self, args: &[&str]) -> Value {
        let a = self.with_policies(args);
        self.ferry_ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stderr and stdout together: per-destination errors are in the report on stdout.
pub fn said(o: &Output) -> String {
    format!("{}{}", stderr(o), String::from_utf8_lossy(&o.stdout))
}

/// A command's stdout as JSON (`Null` if it is not JSON).
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// A single-platform image without attestations: `base` layers, then its `own`, each a
/// (seed, size) of generated bytes.
pub fn single_platform(tag: &str, seed: u64, base: &[(u64, u64)], own: &[(u64, u64)]) -> ImageSpec {
    let layers = |l: &[(u64, u64)]| {
        l.iter()
            .map(|&(seed, size)| LayerSpec { seed, size })
            .collect()
    };
    ImageSpec {
        tag: tag.into(),
        seed,
        platforms: vec![],
        attestation: false,
        base_layers: layers(base),
        own_layers: layers(own),
        ..ImageSpec::default()
    }
}
