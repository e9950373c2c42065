//! The policy JSON Schemas: the committed files equal what the code generates, every example
//! policy in the repository (and the demo's) validates, each names its schema for editors, and
//! the schema and the loader refuse the same typos.

use std::path::{Path, PathBuf};

use ferry::policy::schema::{schema, schema_text, SchemaKind};
use serde_json::{json, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{ferry, root};

fn schema_dir() -> PathBuf {
    root().join("policies/schema")
}

/// YAML as JSON, the way an editor's YAML language server sees it.
fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(r.clone()), Value::Number),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unexpected YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML value {other:?}"),
    }
}

fn parse_yaml(text: &str) -> Vec<Value> {
    YamlLoader::load_from_str(text)
        .expect("valid YAML")
        .iter()
        .map(to_json)
        .collect()
}

/// The schema's complaints about one document (empty: valid).
fn complaints(kind: SchemaKind, doc: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(&schema(kind)).expect("the schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn committed_schemas_equal_the_generated_ones() {
    let mut committed: Vec<String> = std::fs::read_dir(schema_dir())
        .expect("policies/schema exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut expected: Vec<String> = SchemaKind::ALL.iter().map(|k| k.file_name()).collect();
    expected.sort();
    assert_eq!(
        committed, expected,
        "policies/schema holds one file per kind"
    );
    for kind in SchemaKind::ALL {
        let path = schema_dir().join(kind.file_name());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text == schema_text(kind),
            "{} is stale: run `cargo run -- policy schema --out policies/schema` and commit it",
            path.display()
        );
    }
}

#[test]
fn policy_schema_prints_and_writes_what_is_committed() {
    let out = ferry()
        .args(["policy", "schema", "--kind", "mirror"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        schema_text(SchemaKind::Mirror)
    );

    let dir = tempfile::tempdir().unwrap();
    let out = ferry()
        .args(["policy", "schema", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for kind in SchemaKind::ALL {
        let written = std::fs::read_to_string(dir.path().join(kind.file_name())).unwrap();
        assert_eq!(written, schema_text(kind), "{kind}");
    }

    let out = ferry().args(["policy", "schema"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "neither --kind nor --out: {out:?}"
    );
}

/// The `# yaml-language-server: $schema=PATH` line of a policy file, resolved against its directory.
fn named_schema(file: &Path, text: &str) -> Option<PathBuf> {
    text.lines()
        .take(3)
        .find_map(|l| l.strip_prefix("# yaml-language-server: $schema="))
        .map(|rel| file.parent().unwrap().join(rel.trim()))
}

#[test]
fn every_example_policy_validates_and_names_its_schema() {
    let dirs = [root().join("policies"), root().join(".github/ferry")];
    let mut checked = Vec::new();
    for dir in &dirs {
        for file in yaml_files(dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            let kind = SchemaKind::of_file(&file, &text);
            let named = named_schema(&file, &text).unwrap_or_else(|| {
                panic!(
                    "{} does not start with `# yaml-language-server: $schema=…/{}`",
                    file.display(),
                    kind.file_name()
                )
            });
            let named = named.canonicalize().unwrap_or_else(|e| {
                panic!("{}: its $schema {}: {e}", file.display(), named.display())
            });
            assert_eq!(
                named,
                schema_dir().join(kind.file_name()).canonicalize().unwrap(),
                "{} names the wrong schema",
                file.display()
            );
            for doc in parse_yaml(&text) {
                let errs = complaints(kind, &doc);
                assert!(errs.is_empty(), "{}: {errs:#?}", file.display());
            }
            checked.push(file);
        }
        // The loader agrees: the same directory loads (ECR is not asked).
        let out = policy_check(dir);
        assert!(
            out.status.success(),
            "{}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(checked.len() >= 6, "checked {checked:?}");
    println!("validated {} policy files", checked.len());
}

#[test]
fn the_kubernetes_examples_policies_validate() {
    // The CronJob example carries its policies in a ConfigMap: each `*.yaml` entry is a policy.
    let text = std::fs::read_to_string(root().join("examples/kubernetes/mirror-cronjob.yaml"))
        .expect("the Kubernetes example");
    let mut n = 0;
    for doc in parse_yaml(&text) {
        if doc["kind"] != "ConfigMap" {
            continue;
        }
        for (name, body) in doc["data"].as_object().unwrap() {
            let file = PathBuf::from(name);
            let body = body.as_str().unwrap();
            let kind = SchemaKind::of_file(&file, body);
            for policy in parse_yaml(body) {
                let errs = complaints(kind, &policy);
                assert!(errs.is_empty(), "ConfigMap {name}: {errs:#?}");
                n += 1;
            }
        }
    }
    assert!(n >= 2, "found {n} policies in the ConfigMap");
}

#[test]
fn the_demos_policies_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry()
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = yaml_files(&dir.path().join("policies"));
    assert!(files.len() >= 2);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let kind = SchemaKind::of_file(&file, &text);
        for doc in parse_yaml(&text) {
            let errs = complaints(kind, &doc);
            assert!(errs.is_empty(), "{}: {errs:#?}", file.display());
        }
    }
}

/// Writes a policy directory with one file and asks ferry to load it.
fn loader_accepts(name: &str, text: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    policy_check(dir.path()).status.success()
}

/// `ferry policy check --offline` on a policy directory: the loader's verdict, no registry asked.
fn policy_check(dir: &Path) -> std::process::Output {
    ferry()
        .arg("--policies")
        .arg(dir)
        .args(["policy", "check", "--offline"])
        .output()
        .unwrap()
}

#[test]
fn the_schema_and_the_loader_refuse_the_same_mistakes() {
    const ENV: &str = "version: 1\nsource: ghcr.io/acme/api\ntargets:\n  - registry: r.example\n    repository: acme/api\ntags: [prod]\n";
    const MIRROR: &str =
        "version: 1\nkind: mirror\nsource: ghcr.io/acme\ntargets:\n  - registry: r.example\n";
    const REGISTRIES: &str = "version: 1\nregistries:\n  r.example:\n    retries: 3\n";
    // (file, kind, text, what is wrong): each base is valid; each case is one mistake.
    let env = |text: String, mistake| ("prod.yaml", SchemaKind::Environment, text, mistake);
    let mirror = |text: String, mistake| ("nightly.yaml", SchemaKind::Mirror, text, mistake);
    let registries =
        |text: String, mistake| ("registries.yaml", SchemaKind::Registries, text, mistake);
    let cases: Vec<(&str, SchemaKind, String, &str)> = vec![
        env(ENV.into(), ""),
        env(ENV.replace("tags:", "tagz:"), "unknown key"),
        env(ENV.replace("version: 1", "version: 2"), "version"),
        env(ENV.replace("source: ghcr.io/acme/api\n", ""), "no source"),
        env(format!("{ENV}platforms: [amd64]\n"), "platform"),
        env(
            format!("{ENV}referrers: {{artifact_typez: [x]}}\n"),
            "referrers typo",
        ),
        env(format!("{ENV}referrers: {{depth: 0}}\n"), "depth 0"),
        env(
            format!("{ENV}require:\n  attestation: {{predicate_type: x, feilds: {{}}}}\n"),
            "attestation typo",
        ),
        env(
            format!("{ENV}require:\n  signatures: {{}}\n"),
            "require typo",
        ),
        env(
            ENV.replace("    repository: acme/api\n", "    repo: acme/api\n"),
            "target typo",
        ),
        env(
            ENV.replace(
                "targets:\n  - registry: r.example\n    repository: acme/api\n",
                "",
            ),
            "no targets",
        ),
        mirror(MIRROR.into(), ""),
        mirror(
            MIRROR.replace("targets:\n  - registry: r.example\n", ""),
            "no targets",
        ),
        mirror(format!("{MIRROR}existing: replace\n"), "existing"),
        mirror(format!("{MIRROR}tags: {{newest: 0}}\n"), "newest 0"),
        mirror(
            format!("{MIRROR}tags: {{include: '^v'}}\n"),
            "include not a list",
        ),
        mirror(
            MIRROR.replace("r.example\n", "r.example\n    prefix: mirror\n"),
            "prefix without /",
        ),
        mirror(
            format!("{MIRROR}digests: [api@sha256:abc]\n"),
            "short digest",
        ),
        registries(REGISTRIES.into(), ""),
        registries(
            REGISTRIES.replace("retries: 3", "auth: kerberos"),
            "auth kind",
        ),
        registries(REGISTRIES.replace("retries: 3", "retries: 0"), "retries 0"),
        registries(REGISTRIES.replace("retries: 3", "retry: 3"), "unknown key"),
        registries(
            REGISTRIES.replace("retries: 3", "endpoint: http://127.0.0.1:5000/v2"),
            "endpoint path",
        ),
        registries(REGISTRIES.replace("version: 1\n", ""), "no version"),
    ];
    for (name, kind, text, mistake) in &cases {
        // Environment files need a registries.yaml-free directory; the mirror and registries
        // bases are checked alone too.
        let docs = parse_yaml(text);
        let schema_ok = docs.iter().all(|d| complaints(*kind, d).is_empty());
        let loader_ok = loader_accepts(name, text);
        let valid = mistake.is_empty();
        assert_eq!(schema_ok, valid, "schema on {mistake:?}:\n{text}");
        assert_eq!(loader_ok, valid, "loader on {mistake:?}:\n{text}");
    }
}

/// `policy check` reads files only unless `--online`: the repository's own example policies
/// (ECR, Artifact Registry and Docker Hub targets) check with no network and no AWS credentials,
/// and values print in their YAML spelling.
#[test]
fn policy_check_is_offline_by_default_and_speaks_yaml() {
    let out = ferry()
        .arg("--policies")
        .arg(root().join("policies"))
        .args(["policy", "check"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.trim().is_empty(),
        "no warnings, no credential errors: {err}"
    );
    assert!(
        text.contains("auth auto") && text.contains("existing: overwrite"),
        "{text}"
    );
    assert!(
        !text.contains("Auto") && !text.contains("Overwrite"),
        "{text}"
    );
}
