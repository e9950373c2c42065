//! copy::request: a copy as asked for (`ferry copy`) — references and platforms as written, limits, which attachments travel — checked before anything is read and turned into the engine's options, over the policy directory's registry settings.

use super::CopyOptions;
use crate::error::{Error, Result};
use crate::manifest::Platform;
use crate::policy::Policies;
use crate::reference::ImageRef;
use crate::referrers::Filter;
use crate::transport::TransportOptions;

/// A copy as asked for, before it is checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// The image: `HOST/REPO[:TAG][@DIGEST]` or `ocidir://PATH[:TAG|@DIGEST]` (no tag: `latest`).
    pub source: &'a str,
    /// Where to, each a reference.
    pub dests: &'a [String],
    /// Only these platforms (`OS/ARCH[/VARIANT]`); none: all of them.
    pub platforms: &'a [String],
    /// Read and plan, write nothing.
    pub dry_run: bool,
    /// Blobs in flight at once; at least 1.
    pub jobs: usize,
    /// Blob transfers per registry host at once; at least 1.
    pub per_host: usize,
    /// Leave signatures, attestations and SBOMs behind.
    pub no_referrers: bool,
    /// Only attached artifacts of these types; none: every type.
    pub artifact_types: &'a [String],
}

/// A checked copy: what goes where and how, short of how to reach the registries.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The source.
    pub source: ImageRef,
    /// The destinations, in the order given.
    pub dests: Vec<ImageRef>,
    platforms: Vec<Platform>,
    dry_run: bool,
    jobs: usize,
    per_host: usize,
    referrers: Filter,
}

impl Request<'_> {
    /// Parses the references, then the platforms, then checks the limits; every problem is a
    /// usage error (or an invalid reference).
    pub fn check(&self) -> Result<Checked> {
        let source = ImageRef::parse(self.source)?.or_latest();
        let dests = self
            .dests
            .iter()
            .map(|d| ImageRef::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let platforms = self
            .platforms
            .iter()
            .map(|p| platform_arg(p))
            .collect::<Result<Vec<_>>>()?;
        if self.jobs == 0 || self.per_host == 0 {
            return Err(Error::Usage(
                "--jobs and --per-host must be at least 1".into(),
            ));
        }
        let referrers = match self.no_referrers {
            true => Filter::off(),
            false => Filter {
                artifact_types: self.artifact_types.to_vec(),
                ..Filter::default()
            },
        };
        Ok(Checked {
            source,
            dests,
            platforms,
            dry_run: self.dry_run,
            jobs: self.jobs,
            per_host: self.per_host,
            referrers,
        })
    }
}

impl Checked {
    /// The engine's options: this copy's, with the registry settings of `registries` over
    /// the command line's `transport` (see [`CopyOptions::from_registries`]).
    pub fn options(&self, registries: &Policies, transport: TransportOptions) -> CopyOptions {
        CopyOptions {
            platforms: self.platforms.clone(),
            dry_run: self.dry_run,
            jobs: self.jobs,
            per_host: self.per_host,
            referrers: self.referrers.clone(),
            ..CopyOptions::from_registries(registries, transport)
        }
    }
}

impl CopyOptions {
    /// Default options with a policy directory's registry settings (`registries.yaml`) over the
    /// command line's transport options: how to reach, authenticate to and pace each registry,
    /// and which ECR repositories to create.
    pub fn from_registries(registries: &Policies, transport: TransportOptions) -> CopyOptions {
        CopyOptions {
            transport: registries.transport(transport),
            host_limits: registries.host_limits(),
            auth_sources: registries.auth_sources(),
            ecr_create: registries.ecr_create(),
            ..CopyOptions::default()
        }
    }
}

/// A `--platform` value (`OS/ARCH[/VARIANT]`), or the usage error saying what was expected.
pub fn platform_arg(p: &str) -> Result<Platform> {
    Platform::parse(p)
        .ok_or_else(|| Error::Usage(format!("--platform {p:?}: expected OS/ARCH[/VARIANT]")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_request_is_parsed_into_options_over_the_base() {
        let dests = strings(&["127.0.0.1:5000/a/api:v1", "127.0.0.1:5001/b/api"]);
        let platforms = strings(&["linux/arm64/v8"]);
        let types = strings(&["application/vnd.dev.cosign.artifact.sig.v1+json"]);
        let checked = Request {
            source: "ghcr.io/acme/api",
            dests: &dests,
            platforms: &platforms,
            dry_run: true,
            jobs: 3,
            per_host: 2,
            no_referrers: false,
            artifact_types: &types,
        }
        .check()
        .unwrap();
        assert_eq!(checked.source.to_string(), "ghcr.io/acme/api:latest");
        assert_eq!(checked.dests.len(), 2);
        let none = Policies::registries_only(std::path::Path::new("/nonexistent")).unwrap();
        let mut flags = TransportOptions::default();
        flags.plain_http.insert("ghcr.io".into());
        let o = checked.options(&none, flags);
        assert_eq!(o.platforms, [Platform::parse("linux/arm64/v8").unwrap()]);
        assert!(o.dry_run && o.jobs == 3 && o.per_host == 2);
        assert_eq!(o.referrers.artifact_types, types);
        assert!(o.referrers.enabled);
        assert!(o.transport.plain_http.contains("ghcr.io"));
        let off = Request {
            source: "ghcr.io/acme/api",
            jobs: 1,
            per_host: 1,
            no_referrers: true,
            ..Request::default()
        };
        let o = off
            .check()
            .unwrap()
            .options(&none, TransportOptions::default());
        assert!(!o.referrers.enabled);
    }

    #[test]
    fn registry_settings_go_over_the_flags() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("registries.yaml"),
            "version: 1\nregistries:\n  reg.internal:\n    plain_http: true\n    max_concurrency: 2\n    auth: anonymous\n",
        )
        .unwrap();
        let registries = Policies::registries_only(d.path()).unwrap();
        let mut flags = TransportOptions::default();
        flags.plain_http.insert("other:5000".into());
        let o = CopyOptions::from_registries(&registries, flags);
        assert!(o.transport.plain_http.contains("reg.internal"));
        assert!(o.transport.plain_http.contains("other:5000"));
        assert_eq!(o.host_limits["reg.internal"], 2);
        assert_eq!(
            o.auth_sources["reg.internal"],
            crate::policy::AuthKind::Anonymous
        );
        assert!(o.ecr_create.is_empty());
        assert_eq!(o.jobs, super::super::DEFAULT_JOBS);
        assert!(!o.dry_run);
    }

    #[test]
    fn bad_platforms_and_limits_are_usage_errors() {
        let platforms = strings(&["linux"]);
        let base = Request {
            source: "ghcr.io/acme/api",
            jobs: 1,
            per_host: 1,
            ..Request::default()
        };
        let usage = |r: Request| match r.check() {
            Err(e @ Error::Usage(_)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            usage(Request {
                platforms: &platforms,
                ..base
            }),
            "--platform \"linux\": expected OS/ARCH[/VARIANT]"
        );
        assert_eq!(
            usage(Request { jobs: 0, ..base }),
            "--jobs and --per-host must be at least 1"
        );
        assert_eq!(
            usage(Request {
                per_host: 0,
                ..base
            }),
            "--jobs and --per-host must be at least 1"
        );
        let bad = strings(&["UPPER/case"]);
        assert!(matches!(
            Request {
                dests: &bad,
                ..base
            }
            .check(),
            Err(Error::Reference(_))
        ));
    }
}
