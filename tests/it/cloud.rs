//! Integration tests for cloud registries with real parts: moto's ECR API in front of a Basic-auth docker-registry, gcp_auth against a local OAuth endpoint in front of a token-auth registry, a Docker Hub stand-in behind a proxy that adds RateLimit headers and injects 429s, and short-lived tokens mid-copy.

use crate::support;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::bed::{json, said, stderr, Bed};
use support::faultproxy::{Action, FaultProxy, Rule};
use support::moto::{ecr_password, MotoServer, ECR_HOST};
use support::oauth::OAuthServer;
use support::registry::{Mode, TestRegistry};
use support::skopeo::{manifest_digest, TlsOpt};

const GH_USER: &str = "octocat";
const GH_SECRET: &str = "ghp_test-secret-6f1d2c";
const HUB_USER: &str = "hubuser";
const HUB_SECRET: &str = "dckr_pat_test-secret-93ab";
const AWS_KEY_ID: &str = "AKIAFERRYTEST0000001";
const AWS_SECRET: &str = "aws-test-secret-0b4e5c8d";
const GAR_HOST: &str = "us-docker.pkg.dev";

fn check(user: &'static str, password: &'static str) -> support::tokenserver::Check {
    Arc::new(move |u: &str, p: &str| u == user && p == password)
}

/// A GHCR stand-in as the source, and stand-ins for ECR, Artifact Registry and Docker Hub.
struct Cloud {
    src: TestRegistry,
    moto: MotoServer,
    ecr: TestRegistry,
    oauth: OAuthServer,
    gar: TestRegistry,
    hub: TestRegistry,
    hub_proxy: FaultProxy,
    gar_proxy: FaultProxy,
    ecr_proxy: FaultProxy,
    bed: Bed,
}

impl Cloud {
    fn new(token_lifetime_s: u64) -> Cloud {
        let src = TestRegistry::start_token_with(check(GH_USER, GH_SECRET), 300);
        let moto = MotoServer::start();
        let ecr = TestRegistry::start_basic_with("AWS", &ecr_password());
        let oauth = OAuthServer::start(token_lifetime_s);
        let gar = TestRegistry::start_token_with(oauth.check(), token_lifetime_s);
        let hub = TestRegistry::start_token_with(check(HUB_USER, HUB_SECRET), token_lifetime_s);
        let hub_proxy = FaultProxy::start(&hub.host());
        let gar_proxy = FaultProxy::start(&gar.host());
        let ecr_proxy = FaultProxy::start(&ecr.host());
        // The bed's Docker config knows the source only by its loopback address (to seed it);
        // as ghcr.io, ferry must find GITHUB_TOKEN.
        let bed = Bed::with_logins(&[(src.host(), GH_USER.into(), GH_SECRET.into())]);
        oauth.write_service_account(&bed.dir.path().join("sa.json"));
        Cloud {
            src,
            moto,
            ecr,
            oauth,
            gar,
            hub,
            hub_proxy,
            gar_proxy,
            ecr_proxy,
            bed,
        }
    }

    fn write(&self, name: &str, text: &str) {
        self.bed.policies(&[(name, text.to_owned())]);
    }

    /// registries.yaml: every stand-in under its real name; `ecr_extra` adds keys to ECR's entry.
    fn write_registries(&self, ecr_extra: &str) {
        self.write(
            "registries.yaml",
            &format!(
                "version: 1\nregistries:\n  ghcr.io:\n    endpoint: http://{}\n  {ECR_HOST}:\n    endpoint: http://{}\n{ecr_extra}  {GAR_HOST}:\n    endpoint: http://{}\n  docker.io:\n    endpoint: http://{}\n",
                self.src.host(),
                self.ecr_proxy.host(),
                self.gar_proxy.host(),
                self.hub_proxy.host()
            ),
        );
    }

    /// ferry with every credential given the way CI gives them: environment variables only.
    fn ferry(&self, args: &[&str]) -> Output {
        self.ferry_with(args, &[])
    }

    fn ferry_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.bed.command(args);
        c.env("FERRY_POLICIES", self.bed.policies_dir())
            .env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .env(
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.bed.dir.path().join("sa.json"),
            )
            .env("DOCKERHUB_USERNAME", HUB_USER)
            .env("DOCKERHUB_TOKEN", HUB_SECRET)
            .env("GITHUB_ACTOR", GH_USER)
            .env("GITHUB_TOKEN", GH_SECRET);
        // The test's own variables last: they may replace the defaults above.
        c.envs(env.iter().copied());
        let out = c.output().unwrap();
        self.assert_no_secrets(&out);
        out
    }

    /// No credential, token or private key in anything ferry printed.
    fn assert_no_secrets(&self, out: &Output) {
        let text = said(out);
        let key_line = self
            .oauth
            .private_key_pem()
            .lines()
            .nth(1)
            .unwrap()
            .to_owned();
        let mut secrets = vec![
            GH_SECRET.to_owned(),
            HUB_SECRET.to_owned(),
            AWS_SECRET.to_owned(),
            ecr_password(),
            {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", ecr_password()))
            },
            key_line,
            "_state=".to_owned(),
        ];
        secrets.extend(self.oauth.issued());
        secrets.extend(self.oauth.federated());
        secrets.push(support::oauth::OIDC_REQUEST_TOKEN.to_owned());
        secrets.push(support::oauth::OIDC_TOKEN.to_owned());
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "output leaks a secret ({s}):\n{text}"
            );
        }
    }

    /// Seeds the source with a generated image under `tag`; returns its digest.
    fn seed(&self, tag: &str, seed: u64) -> String {
        let (w, from) = self.bed.image(tag, seed);
        let to = format!("{}/acme/api:{tag}", self.src.host());
        let out = self.bed.ferry(&["copy", &from, &to]);
        assert!(out.status.success(), "seeding: {}", stderr(&out));
        w.digest.to_string()
    }

    /// Writes (PUT/POST/PATCH/DELETE) a registry has received so far.
    fn writes(r: &TestRegistry) -> usize {
        r.access_log().iter().filter(|e| e.is_write()).count()
    }
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "ferry failed ({:?}): {}\n{}",
        out.status.code(),
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
    json(out)
}

fn digest_at(reference: &str, creds: (&str, &str)) -> String {
    manifest_digest(reference, Some(creds), TlsOpt::Insecure)
}

#[test]
fn promote_to_ecr_artifact_registry_and_docker_hub_in_one_command() {
    let c = Cloud::new(300);
    c.write_registries(
        "    create_repositories: true\n    tag_mutability: immutable_with_exclusion\n    mutability_exclusions: [prod, \"ferry-history-*\"]\n    scan_on_push: true\n",
    );
    c.write(
        "prod.yaml",
        &format!(
            "version: 1\nsource: ghcr.io/acme/api\ntargets:\n  - registry: {ECR_HOST}\n    repository: acme/api\n  - registry: {GAR_HOST}\n    repository: acme-proj/images/api\n  - registry: docker.io\n    repository: acme/api\ntags: [prod, \"{{source_tag}}\"]\n"
        ),
    );
    let digest = c.seed("v1.0.0", 1);
    assert!(c.moto.describe_repository("acme/api").is_none());
    // ECR says its token expired once (as a 403): ferry asks for a new one and goes on.
    c.ecr_proxy.add(Rule {
        name: "expired".into(),
        method: None,
        path_contains: "/v2/".into(),
        with_header: Some("authorization".into()),
        times: 1,
        action: Action::Reply {
            code: 403,
            body: r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#.into(),
        },
    });

    // One command, no login step: ECR through moto, Google through the OAuth endpoint, Docker Hub
    // and GHCR from their environment variables. The ECR repository is created on the way.
    let report = ok(&c.ferry(&["promote", "prod", ":v1.0.0", "--output", "json", "-vvv"]));
    assert_eq!(report["digest"], digest.as_str());
    assert!(c
        .ecr_proxy
        .log()
        .iter()
        .any(|e| e.injected.as_deref() == Some("expired")));
    let gar_token = c.oauth.issued()[0].clone();
    let places = [
        (
            format!("{}/acme/api", c.ecr.host()),
            ("AWS", ecr_password()),
        ),
        (
            format!("{}/acme-proj/images/api", c.gar.host()),
            ("oauth2accesstoken", gar_token),
        ),
        (
            format!("{}/acme/api", c.hub.host()),
            (HUB_USER, HUB_SECRET.to_owned()),
        ),
    ];
    for (repo, (user, password)) in &places {
        for tag in ["prod", "v1.0.0"] {
            assert_eq!(
                digest_at(&format!("{repo}:{tag}"), (user, password)),
                digest,
                "{repo}:{tag}"
            );
        }
    }
    let created = c.moto.describe_repository("acme/api").expect("created");
    eprintln!("created: {created}");
    assert_eq!(created["imageTagMutability"], "IMMUTABLE_WITH_EXCLUSION");
    assert_eq!(created["imageScanningConfiguration"]["scanOnPush"], true);
    let filters: Vec<&str> = created["imageTagMutabilityExclusionFilters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filter"].as_str().unwrap())
        .collect();
    assert_eq!(filters, ["prod", "ferry-history-*"]);

    // The same digest again: success, and no tag PUT to the immutable repository (ECR would
    // refuse it even for the same digest).
    let puts = |r: &TestRegistry| {
        r.access_log()
            .iter()
            .filter(|e| e.method == "PUT" && e.path.contains("/manifests/"))
            .count()
    };
    let before = puts(&c.ecr);
    // (Everything every library logs, too: still no secret.)
    let again = ok(&c.ferry_with(
        &["promote", "prod", ":v1.0.0", "--output", "json"],
        &[("RUST_LOG", "trace")],
    ));
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(puts(&c.ecr), before, "nothing re-tagged in ECR");

    // v1.0.0 re-pointed at the source: the immutable tag refuses, before anything is written.
    let other = c.seed("v1.0.0", 2);
    assert_ne!(other, digest);
    let writes = [
        Cloud::writes(&c.ecr),
        Cloud::writes(&c.gar),
        Cloud::writes(&c.hub),
    ];
    let out = c.ferry(&["promote", "prod", ":v1.0.0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tag v1.0.0") && err.contains("IMMUTABLE_WITH_EXCLUSION"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(
        [
            Cloud::writes(&c.ecr),
            Cloud::writes(&c.gar),
            Cloud::writes(&c.hub)
        ],
        writes,
        "nothing written"
    );
}

#[test]
fn workload_identity_federation_reaches_artifact_registry_without_a_key() {
    // No service-account key anywhere: the job's OIDC token (from GitHub's token URL, or a
    // projected token file as on Kubernetes) is exchanged at STS, then for the service
    // account's token (or used as the federated principal's own), as
    // google-github-actions/auth's credential file tells Google's client libraries to.
    let c = Cloud::new(300);
    c.write_registries("");
    let digest = c.seed("v1.0.0", 7);
    let dir = c.bed.dir.path();
    let cases = [
        ("url-impersonated", None, true, (1, 1, 1)),
        (
            "file-federated",
            Some(dir.join("oidc-token")),
            false,
            (0, 1, 0),
        ),
    ];
    let mut before = (0, 0, 0);
    for (name, token_file, impersonate, (oidc, sts, sa)) in cases {
        let cred = dir.join(format!("{name}.json"));
        c.oauth
            .write_external_account(&cred, token_file.as_deref(), impersonate);
        let to = format!("{GAR_HOST}/acme-proj/images/{name}:v1.0.0");
        let out = c.ferry_with(
            &[
                "-vv",
                "copy",
                "ghcr.io/acme/api:v1.0.0",
                &to,
                "--output",
                "json",
            ],
            &[("GOOGLE_APPLICATION_CREDENTIALS", cred.to_str().unwrap())],
        );
        let report = ok(&out);
        assert_eq!(report["digest"], digest.as_str(), "{name}");
        assert!(
            stderr(&out).contains("workload identity federation"),
            "{name}: {}",
            stderr(&out)
        );
        let now = c.oauth.federation_counts();
        let used = (now.0 - before.0, now.1 - before.1, now.2 - before.2);
        // Once each per run at least (more if a token is renewed mid-run).
        assert!(
            used.0 >= oidc && used.1 >= sts && used.2 >= sa && (oidc > 0 || used.0 == 0),
            "{name}: (oidc, sts, impersonations) = {used:?}"
        );
        before = now;
        eprintln!("{name}: oidc requests, STS tokens, impersonations = {used:?}");
        let token = if impersonate {
            c.oauth
                .issued()
                .into_iter()
                .find(|t| t.starts_with("ya29.sa-"))
                .unwrap()
        } else {
            c.oauth.federated().pop().unwrap()
        };
        assert_eq!(
            digest_at(
                &format!("{}/acme-proj/images/{name}:v1.0.0", c.gar.host()),
                ("oauth2accesstoken", &token)
            ),
            digest,
            "{name}"
        );
    }

    // A refused exchange is one line naming Google's STS and its reason, and no token.
    let cred = dir.join("wrong-audience.json");
    c.oauth.write_external_account(&cred, None, true);
    let mut json: Value = serde_json::from_slice(&std::fs::read(&cred).unwrap()).unwrap();
    json["audience"] = json["audience"]
        .as_str()
        .unwrap()
        .replace("github", "other")
        .into();
    std::fs::write(&cred, json.to_string()).unwrap();
    let out = c.ferry_with(
        &[
            "copy",
            "ghcr.io/acme/api:v1.0.0",
            &format!("{GAR_HOST}/acme-proj/images/x:v1"),
        ],
        &[("GOOGLE_APPLICATION_CREDENTIALS", cred.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = said(&out);
    let line = text
        .lines()
        .find(|l| l.contains("exchange the subject token (STS)"))
        .unwrap_or_else(|| panic!("no STS error in:\n{text}"));
    assert!(
        line.contains("400") && line.contains("invalid_grant") && line.contains(GAR_HOST),
        "{line}"
    );
    eprintln!("refused: {line}");
}

#[test]
fn ecr_immutability_rejects_moving_policies_and_missing_repositories_say_name_unknown() {
    let c = Cloud::new(300);
    c.moto.create_repository("acme/frozen", "IMMUTABLE", &[]);
    c.write_registries("");
    c.write(
        "prod.yaml",
        &format!(
            "version: 1\nsource: ghcr.io/acme/api\ntargets:\n  - registry: {ECR_HOST}\n    repository: acme/frozen\ntags: [prod]\n"
        ),
    );
    c.seed("v1", 1);

    let out = c.ferry(&["policy", "check", "--online"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("prod.yaml: targets[0]")
            && err.contains("tag mutability IMMUTABLE")
            && err.contains("prod, ferry-history-prod"),
        "{err}"
    );
    // Without --online, the files alone: no call to AWS.
    assert!(c.ferry(&["policy", "check"]).status.success());

    let out = c.ferry(&["promote", "prod", ":v1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("tag mutability IMMUTABLE"), "{err}");
    assert!(
        c.ecr.access_log().is_empty(),
        "no request reached ECR's registry"
    );

    // A repository that does not exist, with creation off: NAME_UNKNOWN, saying how to allow it.
    c.write(
        "prod.yaml",
        &format!(
            "version: 1\nsource: ghcr.io/acme/api\ntargets:\n  - registry: {ECR_HOST}\n    repository: acme/missing\ntags: [prod]\n"
        ),
    );
    let out = c.ferry(&["promote", "prod", ":v1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("NAME_UNKNOWN: repository acme/missing does not exist")
            && err.contains("create_repositories"),
        "{err}"
    );
    assert_eq!(Cloud::writes(&c.ecr), 0);
    assert!(c.moto.describe_repository("acme/missing").is_none());
}

#[test]
fn throttled_docker_hub_and_three_second_tokens_mid_copy() {
    let c = Cloud::new(3);
    c.write_registries("");
    c.seed("v1", 1);
    // Docker Hub stand-in: quota headers on every answer, and five 429s with Retry-After: 1 on
    // blob and manifest requests (one on a streamed blob upload, one on a manifest PUT).
    c.hub_proxy.set_ratelimit(200, 3600);
    c.hub_proxy
        .throttle("upload-429", Some("PUT"), "/blobs/uploads/", 1, 1);
    c.hub_proxy.throttle("blob-429", None, "/blobs/", 2, 1);
    c.hub_proxy
        .throttle("manifest-put-429", Some("PUT"), "/manifests/", 1, 1);
    c.hub_proxy
        .throttle("manifest-429", Some("HEAD"), "/manifests/", 1, 1);
    // Slow both destinations so the copy outlives the 3 s tokens (registry and OAuth).
    for p in [&c.hub_proxy, &c.gar_proxy] {
        p.add(Rule {
            name: "slow".into(),
            method: None,
            path_contains: "/blobs/".into(),
            with_header: None,
            times: 1000,
            action: Action::Delay(Duration::from_millis(300)),
        });
    }

    let started = std::time::Instant::now();
    let out = c.ferry(&[
        "copy",
        "ghcr.io/acme/api:v1",
        "docker.io/acme/api:v1",
        &format!("{GAR_HOST}/acme-proj/images/api:v1"),
        "--jobs",
        "1",
        "--output",
        "json",
        "-vv",
    ]);
    let elapsed = started.elapsed();
    let report = ok(&out);
    let err = stderr(&out);
    for d in report["destinations"].as_array().unwrap() {
        assert_eq!(d["status"], "copied", "{d}");
    }
    let digest = report["digest"].as_str().unwrap();
    assert_eq!(
        digest_at(
            &format!("{}/acme/api:v1", c.hub.host()),
            (HUB_USER, HUB_SECRET)
        ),
        digest
    );
    eprintln!("copy took {elapsed:?}");
    assert!(
        elapsed > Duration::from_secs(3),
        "the copy must outlive the tokens"
    );

    // Every 429 was waited out: nothing reached the proxy for a second after it (stragglers
    // already on the wire within 50 ms aside).
    let log = c.hub_proxy.log();
    let injected: Vec<_> = log
        .iter()
        .filter(|e| e.status == 429)
        .map(|e| (e.at, e.injected.clone().unwrap_or_default()))
        .collect();
    assert_eq!(injected.len(), 5, "{injected:?}");
    for (at, rule) in &injected {
        let next = log
            .iter()
            .filter(|e| e.at > *at + Duration::from_millis(50))
            .map(|e| e.at)
            .min()
            .expect("requests after the 429");
        let gap = next - *at;
        eprintln!("429 from {rule} at {at:?}: next request {gap:?} later");
        assert!(gap >= Duration::from_millis(950), "{rule}: waited {gap:?}");
    }
    assert!(log
        .iter()
        .all(|e| e.injected.as_deref() != Some("ratelimit")));

    // Tokens renewed mid-copy, logged at debug; OAuth tokens too.
    let refreshed = err
        .lines()
        .filter(|l| l.contains("token refreshed") && l.contains("docker.io"))
        .count();
    assert!(
        refreshed >= 2,
        "registry tokens renewed {refreshed} times:\n{err}"
    );
    let renewed = err
        .lines()
        .filter(|l| l.contains("cloud credential refreshed") && l.contains(GAR_HOST))
        .count();
    assert!(renewed >= 2, "oauth tokens renewed {renewed} times:\n{err}");
    assert!(c.oauth.issued().len() >= 2);
    eprintln!(
        "registry tokens renewed {refreshed}x, oauth credentials {renewed}x, oauth tokens issued {}",
        c.oauth.issued().len()
    );
    // No Authorization header ever reached the proxy for a host other than the one challenging.
    assert!(log
        .iter()
        .flat_map(|e| &e.headers)
        .filter(|(k, _)| k == "authorization")
        .all(|(_, v)| v.starts_with("Bearer ")));
}

#[test]
fn ghcr_public_pulls_fall_back_to_anonymous_tokens() {
    // A token server that refuses the given token but lets anyone pull public/*.
    let src = TestRegistry::start(Mode::Token);
    let dest = TestRegistry::start(Mode::Plain);
    let bed = Bed::with_logins(&[(
        src.host(),
        src.username().unwrap().into(),
        src.password().unwrap().into(),
    )]);
    let (w, from) = bed.image("v1", 3);
    let seeded = bed.ferry(&["copy", &from, &format!("{}/public/api:v1", src.host())]);
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    let dir = bed.policies(&[(
        "registries.yaml",
        format!(
            "version: 1\nregistries:\n  ghcr.io:\n    endpoint: http://{}\n",
            src.host()
        ),
    )]);
    let out = bed
        .command(&[
            "copy",
            "ghcr.io/public/api:v1",
            &format!("{}/mirror/api:v1", dest.host()),
            "--output",
            "json",
        ])
        .env("FERRY_POLICIES", &dir)
        .env("GITHUB_TOKEN", "ghp_wrong-token")
        .output()
        .unwrap();
    let report = ok(&out);
    assert_eq!(report["digest"], w.digest.as_str());
    assert!(stderr(&out).contains("asking for an anonymous token"));
}
