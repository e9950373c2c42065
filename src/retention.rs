//! retention: which tags and manifests of one repository a prune deletes, which it keeps, and why — pure: the caller lists the repository, reads the environments, and deletes.
//!
//! The rules (`keep_last`, `max_age`, `keep:` patterns, untagged manifests) only ever choose
//! among what no protection holds: a digest an environment's tag points at, a digest in an
//! environment's rollback window, a protected tag, and everything under or attached to something
//! kept. Attachment tags (`sha256-HEX`, `sha256-HEX.sig`, …) are never versions: they go with
//! the image they belong to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::Digest;
use crate::pattern::version_of;
use crate::pattern::Pattern;
use crate::reference::Tag;
use crate::referrers::is_attachment_tag;

/// What to do with manifests no tag points at.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Untagged {
    /// Leave them.
    #[default]
    Keep,
    /// Delete them (unless protected or under something kept).
    Delete,
    /// Delete them once older than this.
    KeepFor(#[serde(serialize_with = "ser_duration")] Duration),
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// One repository's retention rules.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rules {
    /// Tags the rules apply to (empty: every tag that is not an attachment tag).
    pub consider: Vec<Pattern>,
    /// Keep the newest N considered tags: version tags by semver, the others by creation time,
    /// each kind its own N.
    pub keep_last: Option<usize>,
    /// Keep considered tags younger than this. With `keep_last`, a tag goes only when it is
    /// both beyond the last N and older than this.
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_age: Option<Duration>,
    /// Tags never deleted by the rules.
    pub keep: Vec<Pattern>,
    /// Manifests no tag points at.
    pub untagged: Untagged,
}

/// A tag as listed, with the manifest it names.
#[derive(Clone, Debug)]
pub struct TagInfo {
    /// The tag.
    pub tag: Tag,
    /// The manifest it points at.
    pub digest: Digest,
    /// When the image was created (its config's `created`), if known.
    pub created: Option<SystemTime>,
}

/// A manifest of the repository and what hangs off it.
#[derive(Clone, Debug)]
pub struct ManifestInfo {
    /// Its digest.
    pub digest: Digest,
    /// When it was created, if known.
    pub created: Option<SystemTime>,
    /// The manifests an index lists (platform images, attestation manifests).
    pub children: Vec<Digest>,
    /// Manifests attached to it (referrers, cosign signatures and attestations).
    pub attachments: Vec<Digest>,
}

/// What no rule may delete.
#[derive(Clone, Debug, Default)]
pub struct Protections {
    /// Digests and why: `prod runs it`, `staging's rollback window`.
    pub digests: BTreeMap<Digest, String>,
    /// Tag patterns that never move, so never go (environments' `protect`).
    pub tags: Vec<Pattern>,
}

/// Why something stays or goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "why", content = "detail")]
pub enum Why {
    /// No `consider` pattern matches the tag.
    NotConsidered,
    /// A `keep` pattern matches it.
    KeepPattern(String),
    /// A protected tag pattern matches it.
    ProtectedTag(String),
    /// Its digest is protected (an environment runs it, or could roll back to it).
    Protected(String),
    /// Among the newest `keep_last` (its rank, 1 = newest).
    Newest(usize),
    /// Younger than `max_age`, or of unknown age.
    Young,
    /// A tag the rules delete: its rank in its kind when `keep_last` is set (beyond the N
    /// newest), its age in whole days when `max_age` is set (older).
    Old {
        /// 1 = newest.
        rank: Option<usize>,
        /// Days since its image was created.
        days: Option<u64>,
    },
    /// A manifest every tag of which goes.
    TagsGo,
    /// A tag still kept points at it.
    Tagged(Tag),
    /// Listed by a kept index, or attached to something kept.
    Under(Digest),
    /// No tag points at it and the rules keep untagged manifests (for now).
    UntaggedKept,
    /// No tag points at it and the rules delete untagged manifests.
    Untagged,
    /// It belongs to a deleted manifest (listed by it, or attached to it).
    With(Digest),
    /// It is attached to a manifest that is no longer in the repository.
    Orphan(Digest),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |d: &Digest| d.short().to_owned();
        match self {
            Why::NotConsidered => f.write_str("no rule applies"),
            Why::KeepPattern(p) => write!(f, "keep pattern {p}"),
            Why::ProtectedTag(p) => write!(f, "protected tag {p}"),
            Why::Protected(r) => f.write_str(r),
            Why::Newest(n) => write!(f, "newest #{n}"),
            Why::Young => f.write_str("younger than max_age"),
            Why::Old { rank, days } => {
                let rank = rank.map(|r| format!("beyond keep_last (#{r})"));
                let days = days.map(|d| format!("older than max_age ({d} days)"));
                match (rank, days) {
                    (Some(r), Some(d)) => write!(f, "{r} and {d}"),
                    (Some(x), None) | (None, Some(x)) => f.write_str(&x),
                    (None, None) => f.write_str("old"),
                }
            }
            Why::TagsGo => f.write_str("every tag naming it goes"),
            Why::Tagged(t) => write!(f, "tag {t} stays"),
            Why::Under(d) => write!(f, "belongs to {}", short(d)),
            Why::UntaggedKept => f.write_str("untagged, kept by the rules"),
            Why::Untagged => f.write_str("untagged"),
            Why::With(d) => write!(f, "goes with {}", short(d)),
            Why::Orphan(d) => write!(f, "left behind: {} is gone", short(d)),
        }
    }
}

/// One decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision<T> {
    /// The tag or digest.
    pub what: T,
    /// True when it goes.
    pub delete: bool,
    /// Why.
    #[serde(flatten)]
    pub why: Why,
}

/// Everything decided for one repository.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Every tag, in listing order.
    pub tags: Vec<Decision<Tag>>,
    /// Every manifest, in digest order.
    pub manifests: Vec<Decision<Digest>>,
}

impl Plan {
    /// The tags to delete.
    pub fn tag_deletes(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter().filter(|d| d.delete).map(|d| &d.what)
    }

    /// The manifests to delete.
    pub fn manifest_deletes(&self) -> impl Iterator<Item = &Digest> {
        self.manifests.iter().filter(|d| d.delete).map(|d| &d.what)
    }
}

/// Decides, for one repository at `now`, which tags and manifests go.
///
/// `absent` are digests known to be gone from the repository: attachment tags naming one
/// (a signature left behind by an earlier, interrupted prune) go, with what they name. An
/// attachment tag whose subject is neither listed nor known absent stays.
///
/// Whatever the rules say, no tag that stays names a manifest that goes.
pub fn plan(
    rules: &Rules,
    protections: &Protections,
    tags: &[TagInfo],
    manifests: &[ManifestInfo],
    absent: &BTreeSet<Digest>,
    now: SystemTime,
) -> Plan {
    let by_digest: HashMap<&Digest, &ManifestInfo> =
        manifests.iter().map(|m| (&m.digest, m)).collect();
    let age = |t: Option<SystemTime>| t.and_then(|t| now.duration_since(t).ok());

    // 1. Tags: protections first, then the rules, ranked within their kind.
    let considered: Vec<&TagInfo> = tags
        .iter()
        .filter(|t| !is_attachment_tag(t.tag.as_str()))
        .filter(|t| {
            rules.consider.is_empty() || rules.consider.iter().any(|p| p.matches(t.tag.as_str()))
        })
        .collect();
    // Each version parsed once, not in every comparison.
    let (mut versions, others): (Vec<_>, Vec<_>) = considered
        .iter()
        .map(|t| (version_of(t.tag.as_str()), *t))
        .partition(|(v, _)| v.is_some());
    versions
        .sort_by(|(va, a), (vb, b)| vb.cmp(va).then_with(|| a.tag.as_str().cmp(b.tag.as_str())));
    let versions: Vec<&TagInfo> = versions.into_iter().map(|(_, t)| t).collect();
    let mut others: Vec<&TagInfo> = others.into_iter().map(|(_, t)| t).collect();
    others.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.tag.as_str().cmp(b.tag.as_str()))
    });
    let rank: HashMap<&str, usize> = versions
        .iter()
        .enumerate()
        .chain(others.iter().enumerate())
        .map(|(i, t)| (t.tag.as_str(), i + 1))
        .collect();

    let mut tag_decisions = Vec::new();
    for t in tags {
        let name = t.tag.as_str();
        let keep = |why| Decision {
            what: t.tag.clone(),
            delete: false,
            why,
        };
        let d = if is_attachment_tag(name) {
            // Decided below, with the image it belongs to.
            None
        } else if let Some(p) = protections.tags.iter().find(|p| p.matches(name)) {
            Some(keep(Why::ProtectedTag(String::from(p.clone()))))
        } else if let Some(reason) = protections.digests.get(&t.digest) {
            Some(keep(Why::Protected(reason.clone())))
        } else if !rank.contains_key(name) {
            Some(keep(Why::NotConsidered))
        } else if let Some(p) = rules.keep.iter().find(|p| p.matches(name)) {
            Some(keep(Why::KeepPattern(String::from(p.clone()))))
        } else {
            let r = rank[name];
            let within_last = rules.keep_last.is_some_and(|n| r <= n);
            let young = rules
                .max_age
                .is_some_and(|max| age(t.created).is_none_or(|a| a <= max));
            Some(if within_last {
                keep(Why::Newest(r))
            } else if young {
                keep(Why::Young)
            } else if rules.keep_last.is_none() && rules.max_age.is_none() {
                keep(Why::NotConsidered)
            } else {
                Decision {
                    what: t.tag.clone(),
                    delete: true,
                    why: Why::Old {
                        rank: rules.keep_last.map(|_| r),
                        days: rules
                            .max_age
                            .and_then(|_| age(t.created))
                            .map(|a| a.as_secs() / 86_400),
                    },
                }
            })
        };
        tag_decisions.push(d);
    }

    // 2. Manifests: what a kept tag names, or a protection holds, stays; so does everything
    //    under it (children, attachments, recursively).
    let mut kept: BTreeMap<Digest, Why> = BTreeMap::new();
    // Protections first: they are the reason a manifest stays, whatever tags name it.
    for (d, reason) in &protections.digests {
        kept.entry(d.clone())
            .or_insert_with(|| Why::Protected(reason.clone()));
    }
    for (t, d) in tags.iter().zip(&tag_decisions) {
        if let Some(d) = d {
            if !d.delete {
                kept.entry(t.digest.clone())
                    .or_insert_with(|| Why::Tagged(t.tag.clone()));
            }
        }
    }
    // Attachment tags of a subject this listing does not show (and that is not known gone).
    let mut orphaned: BTreeMap<Digest, Digest> = BTreeMap::new();
    for t in tags.iter().filter(|t| is_attachment_tag(t.tag.as_str())) {
        match subject_of(t.tag.as_str()) {
            Some(s) if by_digest.contains_key(&s) => {}
            Some(s) if absent.contains(&s) => {
                orphaned.insert(t.digest.clone(), s);
            }
            _ => {
                kept.entry(t.digest.clone())
                    .or_insert_with(|| Why::Tagged(t.tag.clone()));
            }
        }
    }
    let tagged: BTreeSet<&Digest> = tags.iter().map(|t| &t.digest).collect();
    // Listed by another manifest, or attached to one: decided with that one.
    let under: BTreeSet<&Digest> = manifests
        .iter()
        .flat_map(|m| m.children.iter().chain(&m.attachments))
        .collect();
    for m in manifests {
        if tagged.contains(&m.digest) || kept.contains_key(&m.digest) || under.contains(&m.digest) {
            continue;
        }
        match &rules.untagged {
            Untagged::Keep => {
                kept.insert(m.digest.clone(), Why::UntaggedKept);
            }
            Untagged::KeepFor(d) if age(m.created).is_none_or(|a| a <= *d) => {
                kept.insert(m.digest.clone(), Why::UntaggedKept);
            }
            _ => {}
        }
    }
    let mut queue: Vec<Digest> = kept.keys().cloned().collect();
    while let Some(d) = queue.pop() {
        let Some(m) = by_digest.get(&d) else { continue };
        for c in m.children.iter().chain(&m.attachments) {
            if !kept.contains_key(c) {
                kept.insert(c.clone(), Why::Under(d.clone()));
                queue.push(c.clone());
            }
        }
    }
    // What is not kept goes: a deleted root's children and attachments with it.
    let mut gone: BTreeMap<Digest, Why> = BTreeMap::new();
    for m in manifests {
        if kept.contains_key(&m.digest) {
            continue;
        }
        let why = if let Some(s) = orphaned.get(&m.digest) {
            Why::Orphan(s.clone())
        } else if tagged.contains(&m.digest) {
            Why::TagsGo
        } else {
            Why::Untagged
        };
        gone.entry(m.digest.clone()).or_insert(why);
        for c in m.children.iter().chain(&m.attachments) {
            if !kept.contains_key(c) {
                gone.insert(c.clone(), Why::With(m.digest.clone()));
            }
        }
    }
    let mut manifest_decisions: Vec<Decision<Digest>> = kept
        .into_iter()
        .filter(|(d, _)| by_digest.contains_key(d))
        .map(|(what, why)| Decision {
            what,
            delete: false,
            why,
        })
        .chain(gone.into_iter().map(|(what, why)| Decision {
            what,
            delete: true,
            why,
        }))
        .collect();
    manifest_decisions.sort_by(|a, b| a.what.as_str().cmp(b.what.as_str()));

    // 3. Attachment tags follow the image their name points at.
    let fate: HashMap<&Digest, bool> = manifest_decisions
        .iter()
        .map(|d| (&d.what, d.delete))
        .collect();
    let tags_out = tags
        .iter()
        .zip(tag_decisions)
        .map(|(t, d)| {
            d.unwrap_or_else(|| {
                let subject = subject_of(t.tag.as_str());
                let orphan = subject.as_ref().is_some_and(|s| absent.contains(s))
                    && fate.get(&t.digest).copied().unwrap_or(true);
                let delete = orphan
                    || subject
                        .as_ref()
                        .and_then(|s| fate.get(s).copied())
                        .unwrap_or(false);
                Decision {
                    what: t.tag.clone(),
                    delete,
                    why: match subject {
                        Some(s) if orphan => Why::Orphan(s),
                        Some(s) if delete => Why::With(s),
                        Some(s) => Why::Under(s),
                        None => Why::NotConsidered,
                    },
                }
            })
        })
        .collect();
    let mut plan = Plan {
        tags: tags_out,
        manifests: manifest_decisions,
    };
    keep_what_kept_tags_name(&mut plan, tags);
    plan
}

/// The guarantee, enforced: a manifest that a staying tag names stays (with what is under it,
/// which the decisions above already keep for every tag they keep).
fn keep_what_kept_tags_name(plan: &mut Plan, tags: &[TagInfo]) {
    let staying: HashMap<&Digest, &Tag> = tags
        .iter()
        .zip(&plan.tags)
        .filter(|(_, d)| !d.delete)
        .map(|(t, _)| (&t.digest, &t.tag))
        .collect();
    for m in plan.manifests.iter_mut().filter(|m| m.delete) {
        if let Some(tag) = staying.get(&m.what) {
            debug_assert!(false, "tag {tag} stays but {} would go", m.what);
            m.delete = false;
            m.why = Why::Tagged((*tag).clone());
        }
    }
}

/// The digest an attachment tag (`sha256-HEX`, `sha256-HEX.sig`) names.
fn subject_of(tag: &str) -> Option<Digest> {
    let hex = tag.strip_prefix("sha256-")?;
    let hex = hex.split('.').next()?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + 1_000 * DAY
    }

    /// A tag created `days` ago, naming manifest `n`.
    fn tag(name: &str, n: u8, days: u64) -> TagInfo {
        TagInfo {
            tag: Tag::parse(name).unwrap(),
            digest: d(n),
            created: Some(now() - DAY * days as u32),
        }
    }

    fn image_of(digest: &Digest) -> ManifestInfo {
        ManifestInfo {
            digest: digest.clone(),
            created: None,
            children: Vec::new(),
            attachments: Vec::new(),
        }
    }

    fn image(n: u8, days: u64) -> ManifestInfo {
        ManifestInfo {
            created: Some(now() - DAY * days as u32),
            ..image_of(&d(n))
        }
    }

    fn pats(p: &[&str]) -> Vec<Pattern> {
        p.iter().map(|p| Pattern::parse(p).unwrap()).collect()
    }

    fn deleted_tags(p: &Plan) -> Vec<&str> {
        p.tag_deletes().map(Tag::as_str).collect()
    }

    #[test]
    fn selection_table() {
        // (case, rules, tags (name, manifest, age in days), protections, tags deleted)
        type Case<'a> = (&'a str, Rules, Vec<TagInfo>, Protections, Vec<&'a str>);
        let shas = || {
            vec![
                tag("sha-1", 1, 40),
                tag("sha-2", 2, 30),
                tag("sha-3", 3, 20),
                tag("sha-4", 4, 10),
                tag("sha-5", 5, 1),
            ]
        };
        let cases: Vec<Case> = vec![
            (
                "keep_last by creation time",
                Rules {
                    keep_last: Some(2),
                    ..Rules::default()
                },
                shas(),
                Protections::default(),
                vec!["sha-1", "sha-2", "sha-3"],
            ),
            (
                "max_age alone",
                Rules {
                    max_age: Some(25 * DAY),
                    ..Rules::default()
                },
                shas(),
                Protections::default(),
                vec!["sha-1", "sha-2"],
            ),
            (
                "keep_last and max_age: beyond the last N and old",
                Rules {
                    keep_last: Some(1),
                    max_age: Some(15 * DAY),
                    ..Rules::default()
                },
                shas(),
                Protections::default(),
                vec!["sha-1", "sha-2", "sha-3"],
            ),
            (
                "consider and keep patterns",
                Rules {
                    consider: pats(&["sha-*"]),
                    keep: pats(&["sha-2"]),
                    keep_last: Some(1),
                    ..Rules::default()
                },
                [shas(), vec![tag("nightly", 9, 90)]].concat(),
                Protections::default(),
                vec!["sha-1", "sha-3", "sha-4"],
            ),
            (
                "semver order, pre-releases below their release, each kind its own N",
                Rules {
                    keep_last: Some(2),
                    ..Rules::default()
                },
                vec![
                    tag("v1.10.0", 1, 50),
                    tag("v1.9.0", 2, 5),
                    tag("v2.0.0-rc.1", 3, 1),
                    tag("v2.0.0", 4, 60),
                    tag("sha-a", 5, 3),
                    tag("sha-b", 6, 2),
                    tag("sha-c", 7, 1),
                ],
                Protections::default(),
                vec!["v1.9.0", "v1.10.0", "sha-a"],
            ),
            (
                "protections: what prod runs, the rollback window, protected tags",
                Rules {
                    keep_last: Some(1),
                    ..Rules::default()
                },
                shas(),
                Protections {
                    digests: [
                        (d(1), "prod runs it".to_owned()),
                        (d(3), "prod's rollback window".to_owned()),
                    ]
                    .into(),
                    tags: pats(&["sha-2"]),
                },
                vec!["sha-4"],
            ),
            (
                "no rule: nothing goes",
                Rules::default(),
                shas(),
                Protections::default(),
                vec![],
            ),
            (
                "unknown age counts as young",
                Rules {
                    max_age: Some(DAY),
                    ..Rules::default()
                },
                vec![TagInfo {
                    created: None,
                    ..tag("sha-x", 1, 0)
                }],
                Protections::default(),
                vec![],
            ),
        ];
        for (name, rules, tags, protections, want) in cases {
            let manifests: Vec<ManifestInfo> = tags
                .iter()
                .map(|t| ManifestInfo {
                    created: t.created,
                    ..image_of(&t.digest)
                })
                .collect();
            let p = plan(
                &rules,
                &protections,
                &tags,
                &manifests,
                &BTreeSet::new(),
                now(),
            );
            let mut got = deleted_tags(&p);
            got.sort();
            let mut want = want;
            want.sort();
            assert_eq!(got, want, "{name}: {:#?}", p.tags);
        }
    }

    #[test]
    fn a_manifest_goes_only_when_no_kept_tag_names_it_and_takes_its_children_and_attachments() {
        let rules = Rules {
            keep_last: Some(1),
            ..Rules::default()
        };
        // Index 1 (old) and index 2 (new) share platform manifest 10; index 1 has its own 11,
        // a signature 20 and a cosign tag; index 3 is untagged; index 4 is named by an old tag
        // and by a kept one.
        let mut i1 = image(1, 30);
        i1.children = vec![d(10), d(11)];
        i1.attachments = vec![d(20)];
        let mut i2 = image(2, 1);
        i2.children = vec![d(10), d(12)];
        i2.attachments = vec![d(21)];
        let manifests = vec![
            i1,
            i2,
            image(3, 50),
            image(4, 40),
            image(10, 30),
            image(11, 30),
            image(12, 1),
            image(20, 30),
            image(21, 1),
        ];
        let sig1 = format!("sha256-{}.sig", d(1).hex());
        let sig2 = format!("sha256-{}.sig", d(2).hex());
        let tags = vec![
            tag("sha-1", 1, 30),
            tag("sha-2", 2, 1),
            tag("old", 4, 40),
            TagInfo {
                tag: Tag::parse("stable").unwrap(),
                ..tag("x", 4, 40)
            },
            tag(&sig1, 20, 30),
            tag(&sig2, 21, 1),
        ];
        let rules = Rules {
            consider: pats(&["sha-*", "old"]),
            untagged: Untagged::Delete,
            ..rules
        };
        let p = plan(
            &rules,
            &Protections::default(),
            &tags,
            &manifests,
            &BTreeSet::new(),
            now(),
        );
        let mut gone: Vec<Digest> = p.manifest_deletes().cloned().collect();
        gone.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut want = vec![d(1), d(3), d(11), d(20)];
        want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(gone, want, "{:#?}", p.manifests);
        let mut tags_gone = deleted_tags(&p);
        tags_gone.sort();
        let mut want_tags = vec!["sha-1", "old", sig1.as_str()];
        want_tags.sort();
        assert_eq!(tags_gone, want_tags);
        // Manifest 4 stays: `stable` still names it though `old` goes.
        assert!(p.manifests.iter().any(|m| m.what == d(4)
            && !m.delete
            && m.why == Why::Tagged(Tag::parse("stable").unwrap())));
        // The shared platform manifest stays with the kept index.
        assert!(p.manifests.iter().any(|m| m.what == d(10) && !m.delete));
    }

    #[test]
    fn signatures_left_behind_by_a_gone_image_go_and_unknown_subjects_stay() {
        // sha-1's image is gone (an interrupted prune); its signature and fallback index are
        // still tagged. Image 2's subject is simply not listed here: its signature stays.
        let sig = |n: u8, suffix: &str| format!("sha256-{}{suffix}", d(n).hex());
        let tags = vec![
            tag(&sig(1, ".sig"), 20, 30),
            tag(&sig(1, ""), 21, 30),
            tag(&sig(2, ".sig"), 22, 30),
        ];
        let manifests = vec![image(20, 30), image(21, 30), image(22, 30)];
        let absent: BTreeSet<Digest> = [d(1)].into();
        let p = plan(
            &Rules::default(),
            &Protections::default(),
            &tags,
            &manifests,
            &absent,
            now(),
        );
        let mut gone = deleted_tags(&p);
        gone.sort();
        let mut want = vec![sig(1, ".sig"), sig(1, "")];
        want.sort();
        assert_eq!(gone, want);
        let mut gone: Vec<Digest> = p.manifest_deletes().cloned().collect();
        gone.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(gone, vec![d(20), d(21)]);
        assert!(p.tags.iter().all(|t| t.delete || t.why == Why::Under(d(2))));
        assert!(p
            .manifests
            .iter()
            .any(|m| m.what == d(20) && m.why == Why::Orphan(d(1))));
    }

    #[test]
    fn a_deleted_tag_says_which_rule_and_by_how_much() {
        let rules = Rules {
            keep_last: Some(1),
            max_age: Some(15 * DAY),
            ..Rules::default()
        };
        let tags = vec![tag("sha-1", 1, 40), tag("sha-2", 2, 1)];
        let manifests = vec![image(1, 40), image(2, 1)];
        let p = plan(
            &rules,
            &Protections::default(),
            &tags,
            &manifests,
            &BTreeSet::new(),
            now(),
        );
        let why = &p.tags[0].why;
        assert_eq!(
            why,
            &Why::Old {
                rank: Some(2),
                days: Some(40)
            }
        );
        assert_eq!(
            why.to_string(),
            "beyond keep_last (#2) and older than max_age (40 days)"
        );
        assert_eq!(
            p.manifests.iter().find(|m| m.what == d(1)).map(|m| &m.why),
            Some(&Why::TagsGo)
        );
    }

    #[test]
    fn untagged_manifests_are_kept_for_a_while_when_asked() {
        let manifests = vec![image(1, 3), image(2, 10)];
        let rules = Rules {
            untagged: Untagged::KeepFor(7 * DAY),
            ..Rules::default()
        };
        let p = plan(
            &rules,
            &Protections::default(),
            &[],
            &manifests,
            &BTreeSet::new(),
            now(),
        );
        let gone: Vec<&Digest> = p.manifest_deletes().collect();
        assert_eq!(gone, vec![&d(2)]);
        // A protected untagged manifest (a rollback target whose tag moved on) stays.
        let protections = Protections {
            digests: [(d(2), "prod's rollback window".to_owned())].into(),
            tags: Vec::new(),
        };
        let p = plan(
            &rules,
            &protections,
            &[],
            &manifests,
            &BTreeSet::new(),
            now(),
        );
        assert_eq!(p.manifest_deletes().count(), 0);
    }
}
