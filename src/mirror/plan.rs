//! mirror::plan: the pure decisions of a mirror run — which shard owns a tag, and what happens to one tag at one target given the digests on both sides.

use serde::Serialize;

use crate::digest::Digest;
use crate::policy::mirror::Existing;
use crate::reference::Tag;

/// A worker's share: shard `index` of `count` (1-based, as written `K/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// This worker's shard, 1..=count.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

impl Shard {
    /// Parses `K/N` with 1 ≤ K ≤ N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard {s:?}: expected K/N, e.g. 1/4"))?;
        let (index, count) = match (k.trim().parse::<u32>(), n.trim().parse::<u32>()) {
            (Ok(k), Ok(n)) if n >= 1 && (1..=n).contains(&k) => (k, n),
            _ => return Err(format!("--shard {s:?}: expected K/N with 1 <= K <= N")),
        };
        Ok(Shard { index, count })
    }

    /// From a Kubernetes Indexed Job: `JOB_COMPLETION_INDEX` (0-based) and the completion count.
    pub fn from_job_index(index: &str, count: u32) -> Result<Shard, String> {
        let i: u32 = index
            .trim()
            .parse()
            .map_err(|_| format!("JOB_COMPLETION_INDEX {index:?} is not a number"))?;
        if count == 0 || i >= count {
            return Err(format!(
                "JOB_COMPLETION_INDEX {i} does not fit {count} completions"
            ));
        }
        Ok(Shard {
            index: i + 1,
            count,
        })
    }

    /// The shard a run asks for: `--shard K/N` (`flag`) wins; else a Kubernetes Indexed Job's
    /// `JOB_COMPLETION_INDEX` (`job_index`) with the completion `count`; else none.
    pub fn resolve(
        flag: Option<&str>,
        job_index: Option<&str>,
        count: Option<u32>,
    ) -> Result<Option<Shard>, String> {
        match (flag, job_index) {
            (Some(s), _) => Shard::parse(s).map(Some),
            (None, Some(index)) => {
                let count = count.ok_or(
                    "JOB_COMPLETION_INDEX is set: give the completion count with --shard-count or FERRY_SHARD_COUNT",
                )?;
                Shard::from_job_index(index, count).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// True when this shard owns `key`: a tag's [`tag_key`] or a digest's [`digest_key`]. Each
    /// key has exactly one owner, so two shards never write the same tag.
    pub fn owns(&self, key: &str) -> bool {
        shard_of(key, self.count) == self.index
    }
}

/// The shard (1-based) of a key: FNV-1a 64 of it, stable across runs, machines and Rust
/// versions (unlike `DefaultHasher`).
pub fn shard_of(key: &str, count: u32) -> u32 {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    (h % count.max(1) as u64) as u32 + 1
}

/// What a tag is sharded by: `registry/repository:tag` of the source.
pub fn tag_key(source: &str, tag: &Tag) -> String {
    format!("{source}:{tag}")
}

/// What an explicit digest of a policy is sharded by: `registry/repository@digest`.
pub fn digest_key(source: &str, digest: &Digest) -> String {
    format!("{source}@{digest}")
}

/// The share of a repository's selected tags that `shard` copies (all of them unsharded).
///
/// Every shard lists and selects over the whole tag list first, so filters that look at the
/// whole set (`newest: N`, semver ranges) choose the same tags everywhere; the selection is then
/// split tag by tag, so one big repository spreads over every shard.
pub fn shard_tags(source: &str, selected: Vec<Tag>, shard: Option<Shard>) -> Vec<Tag> {
    match shard {
        None => selected,
        Some(s) => selected
            .into_iter()
            .filter(|t| s.owns(&tag_key(source, t)))
            .collect(),
    }
}

/// What happens to one tag at one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum TagStep {
    /// The target's tag already names the source's digest.
    UpToDate,
    /// The tag is missing: copy.
    Copy,
    /// The tag points elsewhere and moves (`existing: overwrite`).
    Overwrite {
        /// Where it pointed.
        from: Digest,
    },
    /// The old digest is kept under `backup`, then the tag moves (`existing: backup`).
    Backup {
        /// Where it pointed.
        from: Digest,
        /// The tag that keeps it.
        backup: Tag,
    },
    /// The tag points elsewhere and stays (`existing: skip`).
    Skip {
        /// Where it points.
        at: Digest,
    },
}

impl TagStep {
    /// True when the step writes to the target.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            TagStep::Copy | TagStep::Overwrite { .. } | TagStep::Backup { .. }
        )
    }
}

/// Decides one tag at one target.
pub fn decide(tag: &Tag, source: &Digest, target: Option<&Digest>, existing: Existing) -> TagStep {
    match target {
        None => TagStep::Copy,
        Some(d) if d == source => TagStep::UpToDate,
        Some(d) => match existing {
            Existing::Skip => TagStep::Skip { at: d.clone() },
            Existing::Overwrite => TagStep::Overwrite { from: d.clone() },
            Existing::Backup => TagStep::Backup {
                from: d.clone(),
                backup: backup_tag(tag, d),
            },
        },
    }
}

/// `TAG-backup-<12 hex of the old digest>`, shortened to fit the 128-character tag limit.
pub fn backup_tag(tag: &Tag, old: &Digest) -> Tag {
    let suffix = format!("-backup-{}", &old.hex()[..12]);
    let keep = 128 - suffix.len();
    let base: String = tag.as_str().chars().take(keep).collect();
    Tag::parse(&format!("{base}{suffix}")).expect("a tag plus hex is a tag")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    #[test]
    fn shards_split_repositories_stably_and_completely() {
        let repos: Vec<String> = (0..200).map(|i| format!("acme/repo-{i}")).collect();
        let mut counts = [0usize; 4];
        for r in &repos {
            let owners: Vec<u32> = (1..=4)
                .filter(|k| {
                    Shard {
                        index: *k,
                        count: 4,
                    }
                    .owns(r)
                })
                .collect();
            assert_eq!(owners.len(), 1, "{r} has exactly one owner");
            counts[owners[0] as usize - 1] += 1;
        }
        assert!(
            counts.iter().all(|c| *c >= 30),
            "balanced enough: {counts:?}"
        );
        assert_eq!(shard_of("acme/api", 4), shard_of("acme/api", 4));
        assert_eq!(shard_of("x", 1), 1);
    }

    fn tags(n: usize) -> Vec<Tag> {
        (0..n)
            .map(|i| Tag::parse(&format!("v1.{i}.0")).unwrap())
            .collect()
    }

    #[test]
    fn shards_split_a_repository_by_tag_completely_disjointly_and_evenly() {
        let src = "ghcr.io/acme/api";
        // (tags, shards, each shard at least this share of an even split)
        for (n, count, fair) in [(3000, 3, 0.9), (3000, 4, 0.85), (500, 2, 0.85), (7, 1, 1.0)] {
            let all = tags(n);
            let mut union: Vec<Tag> = Vec::new();
            let mut sizes = Vec::new();
            for index in 1..=count {
                let part = shard_tags(src, all.clone(), Some(Shard { index, count }));
                sizes.push(part.len());
                union.extend(part);
            }
            union.sort();
            let mut whole = shard_tags(src, all.clone(), None);
            whole.sort();
            assert_eq!(union.len(), n, "disjoint: {n} tags over {count}: {sizes:?}");
            assert_eq!(union, whole, "complete: {n} tags over {count}");
            let even = n as f64 / count as f64;
            assert!(
                sizes.iter().all(|s| *s as f64 >= fair * even),
                "{n} tags over {count} shards: {sizes:?}"
            );
        }
    }

    #[test]
    fn a_tag_belongs_to_the_same_shard_on_every_run_and_names_count() {
        let t = Tag::parse("v1.2.3").unwrap();
        assert_eq!(tag_key("ghcr.io/acme/api", &t), "ghcr.io/acme/api:v1.2.3");
        // FNV-1a 64 (published test vectors): fixed, whatever the machine or the Rust version.
        for (key, fnv) in [
            ("", 0xcbf2_9ce4_8422_2325u64),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            assert_eq!(
                shard_of(key, 1_000_003),
                (fnv % 1_000_003) as u32 + 1,
                "{key:?}"
            );
        }
        // The same tag in another repository is another key.
        let a = (1..=64).map(|c| shard_of(&tag_key("r/a", &t), c));
        let b = (1..=64).map(|c| shard_of(&tag_key("r/b", &t), c));
        assert!(a.zip(b).any(|(x, y)| x != y));
        assert_eq!(
            digest_key("r/a", &d(1)),
            format!("r/a@sha256:{}", "01".repeat(32))
        );
    }

    #[test]
    fn shard_arguments() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert!(Shard::parse("0/4").is_err());
        assert!(Shard::parse("5/4").is_err());
        assert!(Shard::parse("1").is_err());
        assert_eq!(
            Shard::from_job_index("0", 3),
            Ok(Shard { index: 1, count: 3 })
        );
        assert!(Shard::from_job_index("3", 3).is_err());
    }

    #[test]
    fn existing_tags() {
        let t = Tag::parse("v1").unwrap();
        assert_eq!(decide(&t, &d(1), None, Existing::Skip), TagStep::Copy);
        assert_eq!(
            decide(&t, &d(1), Some(&d(1)), Existing::Backup),
            TagStep::UpToDate
        );
        assert_eq!(
            decide(&t, &d(1), Some(&d(2)), Existing::Skip),
            TagStep::Skip { at: d(2) }
        );
        assert_eq!(
            decide(&t, &d(1), Some(&d(2)), Existing::Overwrite),
            TagStep::Overwrite { from: d(2) }
        );
        match decide(&t, &d(1), Some(&d(2)), Existing::Backup) {
            TagStep::Backup { from, backup } => {
                assert_eq!(from, d(2));
                assert_eq!(backup.as_str(), "v1-backup-020202020202");
            }
            other => panic!("{other:?}"),
        }
        let long = Tag::parse(&"x".repeat(128)).unwrap();
        assert_eq!(backup_tag(&long, &d(3)).as_str().len(), 128);
    }
}
