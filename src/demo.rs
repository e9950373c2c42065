//! demo: `ferry demo` — writes sample images and policies into OCI layouts on disk, then promotes through staging and prod, shows both gates refusing, rolls back and prints status and history: no server, no credentials.

use std::io::Write;
use std::path::PathBuf;

use crate::copy::CopyOptions;
use crate::error::{Error, Result};
use crate::policy::{Overrides, Policies};
use crate::promote::{Context, PromoteOptions};
use crate::report::{self, Format, Progress};
use crate::sample;
use crate::sigstore::{self, instance::Identity, instance::Options};
use crate::transport::TransportOptions;

/// The demo's policies: CI builds land in `ci`, staging is one layout, prod two.
const DEMO_POLICIES: [(&str, &str); 2] = [
    (
        "staging.yaml",
        "version: 1\nenvironment: staging\nsource: ocidir://../ci\ntargets:\n  - layout: ../registry-a\ntags: [staging]\n",
    ),
    (
        "prod.yaml",
        "version: 1\nenvironment: prod\nsource: ocidir://../ci\npromote_from: staging\ntargets:\n  - layout: ../registry-b\n  - layout: ../registry-c\ntags: [prod, \"{source_tag}\", semver]\nprotect: [\"v*\"]\nrequire:\n  trusted_root: trusted_root.json\n  attestation:\n    predicate_type: https://slsa.dev/provenance/v1\n    repository: acme/api\n    workflow: .github/workflows/release.yml\n  signature:\n    public_key: cosign.pub\n",
    ),
];

/// The commit the demo's release workflow "built".
const SHA: &str = "4f2c1d9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a392";

/// Runs the demo in `dir` (default: a new temporary directory, kept), printing each step as
/// the command it stands for (text), or only the reports (JSON).
pub async fn run(dir: Option<PathBuf>, output: Format) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("ferry-demo-")
            .tempdir()
            .map_err(Error::Output)?
            .keep(),
    };
    let ci = dir.join("ci");
    let layout = sample::Layout::create(&ci).map_err(Error::Output)?;
    // CI signs what it builds (cosign-style, with a sample key), and its release workflow attests
    // the provenance keylessly, as actions/attest-build-provenance does, with a Sigstore instance
    // of the demo's own (its CA, CT log, Rekor log and TSA, all in this process). Prod requires
    // both. The release candidate's provenance was signed by a fork's workflow: refused.
    let key = sample::signing_key(1);
    let mut instance = sigstore::instance::Instance::new();
    let workflow = ".github/workflows/release.yml";
    let release = instance.keyless(&Identity::github_workflow(
        "acme/api",
        workflow,
        "refs/heads/main",
        SHA,
    ));
    let fork = instance.keyless(&Identity::github_workflow(
        "mallory/api",
        workflow,
        "refs/heads/main",
        SHA,
    ));
    let mut attest = |w: &sample::Written, by: &sigstore::instance::Credential| {
        let statement = sample::provenance_statement(&w.digest, "acme/api", workflow);
        let bundle = instance.sign_dsse(by, crate::gate::IN_TOTO, &statement, &Options::default());
        layout.add_bundle(&w.digest, &bundle, sample::SLSA_PROVENANCE_V1)
    };
    let mut tags = Vec::new();
    for spec in sample::demo_specs() {
        let w = layout.add_image(&spec).map_err(Error::Output)?;
        layout
            .add_signature(&w.digest, "ci/api", &key)
            .map_err(Error::Output)?;
        attest(&w, &release).map_err(Error::Output)?;
        tags.push(w.tag);
    }
    let forked = sample::ImageSpec {
        tag: "v1.2.0-rc.1".into(),
        seed: 3,
        ..sample::ImageSpec::default()
    };
    let w = layout.add_image(&forked).map_err(Error::Output)?;
    layout
        .add_signature(&w.digest, "ci/api", &key)
        .map_err(Error::Output)?;
    attest(&w, &fork).map_err(Error::Output)?;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    for (name, text) in DEMO_POLICIES {
        std::fs::write(policies.join(name), text)?;
    }
    std::fs::write(policies.join("cosign.pub"), sample::public_key_pem(&key))?;
    std::fs::write(
        policies.join("trusted_root.json"),
        instance.trusted_root_json(),
    )?;
    let mut out = Transcript::new(output);
    out.line(&format!(
        "sample images {} written to {}; policies in {}",
        tags.join(", "),
        ci.display(),
        policies.display()
    ))?;
    let loaded = Policies::load(&policies, &Overrides::default())?;
    let transport = TransportOptions::default().with_default_cert_dirs();
    let options = CopyOptions::from_registries(&loaded, transport);
    let ctx = Context::new(loaded, options);
    let quiet = |names: &[String]| Progress::hidden(names.len());
    for tag in &tags {
        for env in ["staging", "prod"] {
            let r = ctx
                .promote(env, &format!(":{tag}"), &PromoteOptions::default(), &quiet)
                .await?;
            out.step(&format!("ferry promote {env} :{tag}"), &r)?;
        }
    }
    let command = "ferry promote prod :v1.0.0   # not staging's digest: the gate refuses";
    match ctx
        .promote("prod", ":v1.0.0", &PromoteOptions::default(), &quiet)
        .await
    {
        Err(e @ Error::Gate(_)) => out.refused(command, &e)?,
        Err(e) => return Err(e),
        Ok(_) => return Err(Error::DemoCheck { check: "gate" }),
    }
    let last = tags.last().expect("demo images");
    let r = ctx.verify("prod", &format!(":{last}")).await?;
    out.step(
        &format!("ferry verify :{last} --env prod   # who signed what prod requires"),
        &r,
    )?;
    let command = format!(
        "ferry verify :{} --env prod   # provenance signed by another repository's workflow: refused",
        forked.tag
    );
    match ctx.verify("prod", &format!(":{}", forked.tag)).await {
        Err(e @ Error::Gate(_)) => out.refused(&command, &e)?,
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(Error::DemoCheck {
                check: "identity gate",
            })
        }
    }
    out.step("ferry status prod", &ctx.status("prod").await?)?;
    let r = ctx.rollback("prod", None, 1, false, &quiet).await?;
    out.step("ferry rollback prod", &r)?;
    out.step("ferry status prod", &ctx.status("prod").await?)?;
    let records = ctx.history("prod").await?;
    let newest: Vec<_> = records.into_iter().rev().collect();
    out.step("ferry history prod", &newest[..])?;
    out.line(&format!(
        "\nthe three \"registries\" are OCI layouts in {}; try: ferry --policies {} status prod",
        dir.display(),
        policies.display()
    ))?;
    out.finish(&dir, &policies)
}

/// What the demo prints. As text: each step as the command it stands for, then its report. As
/// JSON: one document holding every step's report (or refusal), so a script reads one value.
struct Transcript {
    format: Format,
    steps: Vec<serde_json::Value>,
}

impl Transcript {
    fn new(format: Format) -> Self {
        Transcript {
            format,
            steps: Vec::new(),
        }
    }

    /// A line for people (text only).
    fn line(&mut self, text: &str) -> Result<()> {
        if self.format == Format::Text {
            writeln!(std::io::stdout().lock(), "{text}")?;
        }
        Ok(())
    }

    /// One step's report; its result (an error when some of its work failed) is returned.
    fn step<R: report::Report + ?Sized>(&mut self, command: &str, r: &R) -> Result<()> {
        match self.format {
            Format::Text => {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "\n$ {command}")?;
                r.write(&mut stdout, Format::Text)?;
            }
            Format::Json => {
                let mut buf = Vec::new();
                r.write(&mut buf, Format::Json)?;
                let value: serde_json::Value =
                    serde_json::from_slice(&buf).map_err(std::io::Error::other)?;
                self.steps
                    .push(serde_json::json!({ "command": command, "report": value }));
            }
        }
        r.result()
    }

    /// A step the demo expects a gate to refuse.
    fn refused(&mut self, command: &str, e: &Error) -> Result<()> {
        match self.format {
            Format::Text => writeln!(
                std::io::stdout().lock(),
                "\n$ {command}\nferry: {e} (exit {})",
                e.exit_code()
            )?,
            Format::Json => self.steps.push(serde_json::json!({
                "command": command,
                "refused": e.to_string(),
                "exit": e.exit_code(),
            })),
        }
        Ok(())
    }

    /// Ends the output: the JSON document, or nothing more for text.
    fn finish(self, dir: &std::path::Path, policies: &std::path::Path) -> Result<()> {
        if self.format == Format::Json {
            let doc = DemoReport(serde_json::json!({
                "dir": dir,
                "policies": policies,
                "steps": self.steps,
            }));
            return report::finish(&doc, Format::Json);
        }
        Ok(std::io::stdout().lock().flush()?)
    }
}

/// The demo's one JSON document.
struct DemoReport(serde_json::Value);

impl report::Report for DemoReport {
    fn write(&self, out: &mut dyn Write, _format: Format) -> std::io::Result<()> {
        report::write_json(out, &self.0)
    }
}
