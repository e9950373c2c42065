//! mirror::select: what one `ferry mirror` process runs — the mirror policies asked for by name (or every one), its shard (`--shard K/N`, or a Kubernetes Indexed Job's completion index and count), and the run's options, checked before anything is read from a registry.

use super::{MirrorOptions, Shard};
use crate::copy::CopyOptions;
use crate::error::{Error, Result};
use crate::policy::mirror::MirrorPolicy;
use crate::policy::Policies;

/// A mirror run as asked for, before it is checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// Mirror policies by name; empty: every mirror policy.
    pub names: &'a [String],
    /// `--shard K/N`: wins over `job_index`.
    pub shard: Option<&'a str>,
    /// A Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` (0-based), when set.
    pub job_index: Option<&'a str>,
    /// The number of completions that goes with `job_index` (`--shard-count`).
    pub shard_count: Option<u32>,
    /// Read and decide, write nothing.
    pub dry_run: bool,
    /// Stop starting new images after the first failure.
    pub fail_fast: bool,
    /// Images at once; at least 1.
    pub parallel: usize,
}

/// A checked mirror run: which policies, how.
#[derive(Clone, Debug)]
pub struct Selection<'p> {
    /// The policies, in name order (every one) or in the order they were named.
    pub policies: Vec<&'p MirrorPolicy>,
    /// How the run goes, shard included.
    pub options: MirrorOptions,
}

impl Request<'_> {
    /// Checks the request against the loaded policies: the shard first, then `parallel`, then
    /// the names. Every problem is a usage error.
    pub fn resolve<'p>(&self, policies: &'p Policies) -> Result<Selection<'p>> {
        let shard =
            Shard::resolve(self.shard, self.job_index, self.shard_count).map_err(Error::Usage)?;
        if self.parallel == 0 {
            return Err(Error::Usage("--parallel must be at least 1".into()));
        }
        let mirrors = &policies.mirrors;
        let chosen: Vec<&MirrorPolicy> = if self.names.is_empty() {
            mirrors.values().collect()
        } else {
            self.names
                .iter()
                .map(|n| {
                    mirrors.get(n).ok_or_else(|| {
                        Error::Usage(format!(
                            "no mirror policy {n:?} in {} (known: {})",
                            policies.dir.display(),
                            mirrors.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    })
                })
                .collect::<Result<_>>()?
        };
        if chosen.is_empty() {
            return Err(Error::Usage(format!(
                "no mirror policy (kind: mirror) in {}",
                policies.dir.display()
            )));
        }
        Ok(Selection {
            policies: chosen,
            options: MirrorOptions {
                dry_run: self.dry_run,
                shard,
                fail_fast: self.fail_fast,
                parallel: self.parallel,
            },
        })
    }
}

impl Selection<'_> {
    /// The copy engine's options for this run: `base`'s, reading only on a dry run.
    pub fn copy_options(&self, base: &CopyOptions) -> CopyOptions {
        CopyOptions {
            dry_run: self.options.dry_run,
            ..base.clone()
        }
    }

    /// Every target registry of the selected policies, sorted, once each.
    pub fn target_registries(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .policies
            .iter()
            .flat_map(|p| p.targets.iter().map(|t| t.registry.to_string()))
            .collect();
        t.sort();
        t.dedup();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Overrides;

    fn mirror(name: &str, target: &str) -> String {
        format!("version: 1\nkind: mirror\nname: {name}\nsource: ghcr.io/acme\nrepositories: [api]\ntargets:\n  - registry: {target}\n    prefix: m/\n")
    }

    fn policies(files: &[(&str, String)]) -> (tempfile::TempDir, Policies) {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        let p = Policies::load(d.path(), &Overrides::default()).unwrap();
        (d, p)
    }

    fn request() -> Request<'static> {
        Request {
            parallel: 8,
            ..Request::default()
        }
    }

    fn usage(r: Result<Selection<'_>>) -> String {
        match r {
            Err(e @ Error::Usage(_)) => e.to_string(),
            Err(e) => panic!("not a usage error: {e}"),
            Ok(s) => panic!("selected {} policies", s.policies.len()),
        }
    }

    #[test]
    fn names_select_policies_and_none_selects_every_one() {
        let (_d, p) = policies(&[
            ("b.yaml", mirror("nightly", "127.0.0.1:5000")),
            ("a.yaml", mirror("hourly", "127.0.0.1:5001")),
            ("c.yaml", mirror("weekly", "127.0.0.1:5000")),
        ]);
        let names = |s: &Selection| {
            s.policies
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        let all = request().resolve(&p).unwrap();
        assert_eq!(names(&all), ["hourly", "nightly", "weekly"]);
        assert_eq!(
            all.target_registries(),
            ["127.0.0.1:5000", "127.0.0.1:5001"]
        );
        assert_eq!(all.options.shard, None);
        let asked = ["weekly".to_string(), "nightly".to_string()];
        let some = Request {
            names: &asked,
            dry_run: true,
            fail_fast: true,
            parallel: 3,
            ..request()
        }
        .resolve(&p)
        .unwrap();
        assert_eq!(names(&some), ["weekly", "nightly"]);
        assert_eq!(some.target_registries(), ["127.0.0.1:5000"]);
        let o = &some.options;
        assert!(o.dry_run && o.fail_fast && o.parallel == 3);
        let base = CopyOptions {
            jobs: 2,
            ..CopyOptions::default()
        };
        let c = some.copy_options(&base);
        assert!(c.dry_run && c.jobs == 2);
        assert!(!all.copy_options(&base).dry_run);
    }

    #[test]
    fn unknown_names_and_no_policies_are_usage_errors() {
        let (d, p) = policies(&[
            ("b.yaml", mirror("nightly", "127.0.0.1:5000")),
            ("a.yaml", mirror("hourly", "127.0.0.1:5001")),
        ]);
        let asked = ["nightly".to_string(), "daily".to_string()];
        assert_eq!(
            usage(
                Request {
                    names: &asked,
                    ..request()
                }
                .resolve(&p)
            ),
            format!(
                "no mirror policy \"daily\" in {} (known: hourly, nightly)",
                d.path().display()
            )
        );
        let (d, p) = policies(&[]);
        assert_eq!(
            usage(request().resolve(&p)),
            format!("no mirror policy (kind: mirror) in {}", d.path().display())
        );
    }

    #[test]
    fn the_shard_comes_from_the_flag_or_the_job_index() {
        let (_d, p) = policies(&[("a.yaml", mirror("nightly", "127.0.0.1:5000"))]);
        let shard = |r: Request| r.resolve(&p).map(|s| s.options.shard);
        let flag = Request {
            shard: Some("2/4"),
            job_index: Some("0"),
            ..request()
        };
        assert_eq!(shard(flag).unwrap(), Some(Shard { index: 2, count: 4 }));
        let job = Request {
            job_index: Some("2"),
            shard_count: Some(3),
            ..request()
        };
        assert_eq!(shard(job).unwrap(), Some(Shard { index: 3, count: 3 }));
        assert_eq!(
            usage(Request { job_index: Some("2"), ..request() }.resolve(&p)),
            "JOB_COMPLETION_INDEX is set: give the completion count with --shard-count or FERRY_SHARD_COUNT"
        );
        assert_eq!(
            usage(
                Request {
                    job_index: Some("3"),
                    shard_count: Some(3),
                    ..request()
                }
                .resolve(&p)
            ),
            "JOB_COMPLETION_INDEX 3 does not fit 3 completions"
        );
        assert!(usage(
            Request {
                shard: Some("5/4"),
                ..request()
            }
            .resolve(&p)
        )
        .contains("K/N"));
    }

    #[test]
    fn the_shard_is_checked_before_parallel_and_parallel_before_names() {
        let (_d, p) = policies(&[]);
        let bad = Request {
            shard: Some("0/4"),
            parallel: 0,
            ..request()
        };
        assert!(usage(bad.resolve(&p)).starts_with("--shard"));
        let bad = Request {
            parallel: 0,
            ..request()
        };
        assert_eq!(usage(bad.resolve(&p)), "--parallel must be at least 1");
    }
}
