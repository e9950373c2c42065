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
    let text = output == Format::Text;
    let say = |s: String| -> std::io::Result<()> {
        if text {
            writeln!(std::io::stdout().lock(), "\n$ {s}")?;
        }
        Ok(())
    };
    if text {
        writeln!(
            std::io::stdout().lock(),
            "sample images {} written to {}; policies in {}",
            tags.join(", "),
            ci.display(),
            policies.display()
        )?;
    }
    let loaded = Policies::load(&policies, &Overrides::default())?;
    let transport = TransportOptions::default().with_default_cert_dirs();
    let ctx = Context {
        options: CopyOptions::from_registries(&loaded, transport),
        policies: loaded,
    };
    let quiet = |names: &[String]| Progress::hidden(names.len());
    for tag in &tags {
        for env in ["staging", "prod"] {
            say(format!("ferry promote {env} :{tag}"))?;
            let r = ctx
                .promote(env, &format!(":{tag}"), &PromoteOptions::default(), &quiet)
                .await?;
            report::finish(&r, output)?;
        }
    }
    say("ferry promote prod :v1.0.0   # not staging's digest: the gate refuses".into())?;
    match ctx
        .promote("prod", ":v1.0.0", &PromoteOptions::default(), &quiet)
        .await
    {
        Err(e @ Error::Gate(_)) if text => writeln!(
            std::io::stdout().lock(),
            "ferry: {e} (exit {})",
            e.exit_code()
        )?,
        Err(Error::Gate(_)) => {}
        Err(e) => return Err(e),
        Ok(_) => return Err(Error::DemoCheck { check: "gate" }),
    }
    let last = tags.last().expect("demo images");
    say(format!(
        "ferry verify :{last} --env prod   # who signed what prod requires"
    ))?;
    report::finish(&ctx.verify("prod", &format!(":{last}")).await?, output)?;
    say(format!(
        "ferry verify :{} --env prod   # provenance signed by another repository's workflow: refused",
        forked.tag
    ))?;
    match ctx.verify("prod", &format!(":{}", forked.tag)).await {
        Err(e @ Error::Gate(_)) if text => writeln!(
            std::io::stdout().lock(),
            "ferry: {e} (exit {})",
            e.exit_code()
        )?,
        Err(Error::Gate(_)) => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(Error::DemoCheck {
                check: "identity gate",
            })
        }
    }
    say("ferry status prod".into())?;
    let mut stdout = std::io::stdout().lock();
    report::write_status(&mut stdout, &ctx.status("prod").await?, output)?;
    drop(stdout);
    say("ferry rollback prod".into())?;
    let r = ctx.rollback("prod", None, 1, false, &quiet).await?;
    report::finish(&r, output)?;
    say("ferry status prod".into())?;
    let status = ctx.status("prod").await?;
    let records = ctx.history("prod").await?;
    let mut stdout = std::io::stdout().lock();
    report::write_status(&mut stdout, &status, output)?;
    drop(stdout);
    say("ferry history prod".into())?;
    let newest: Vec<_> = records.into_iter().rev().collect();
    let mut stdout = std::io::stdout().lock();
    report::write_history(&mut stdout, &newest, output)?;
    if text {
        writeln!(
            stdout,
            "\nthe three \"registries\" are OCI layouts in {}; try: ferry --policies {} status prod",
            dir.display(),
            policies.display()
        )?;
    }
    Ok(stdout.flush()?)
}
