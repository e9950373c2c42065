//! promote::plan: the pure decisions of a promotion or rollback — which tags each target gets, which move from which digest, which gates refuse — with no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cloud::RepoSettings;
use crate::digest::Digest;
use crate::history::{self, Record};
use crate::policy::tags::semver_tags;
use crate::policy::{EnvPolicy, TagRule};
use crate::reference::Tag;

/// What happens to one tag at one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagAction {
    /// The tag does not exist yet.
    Create,
    /// The tag points elsewhere and moves.
    Move,
    /// The tag already points at the digest.
    Keep,
}

/// One tag at one target: from which digest to which.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TagMove {
    /// The tag.
    pub tag: Tag,
    /// Where it points now.
    pub from: Option<Digest>,
    /// Where it will point.
    pub to: Digest,
    /// What that means.
    pub action: TagAction,
}

impl TagMove {
    /// A move of `tag` from `from` to `to`.
    pub fn new(tag: Tag, from: Option<Digest>, to: &Digest) -> TagMove {
        let action = match &from {
            None => TagAction::Create,
            Some(f) if f == to => TagAction::Keep,
            Some(_) => TagAction::Move,
        };
        TagMove {
            tag,
            from,
            to: to.clone(),
            action,
        }
    }
}

/// The tags a target gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetPlan {
    /// The target repository.
    pub target: String,
    /// Where the environment tag pointed before.
    pub previous: Option<Digest>,
    /// Every tag, in policy order.
    pub tags: Vec<TagMove>,
    /// Rolling version tags held back, with the newer version that keeps each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<(Tag, String)>,
}

impl TargetPlan {
    /// The tags that need a write.
    pub fn writes(&self) -> impl Iterator<Item = &TagMove> {
        self.tags.iter().filter(|m| m.action != TagAction::Keep)
    }

    /// Whether any tag needs a write (else every tag already names the digest there).
    pub fn moves(&self) -> bool {
        self.writes().next().is_some()
    }
}

/// Rolling version tags held back, each with the newer version that keeps it.
pub type Held = Vec<(Tag, String)>;

/// The tags a promotion wants at one target, before looking at where they point.
///
/// `existing` is the target's tag list (only needed for `semver`). Templates that need a source
/// tag are skipped when the image was given by digest.
pub fn wanted_tags(
    policy: &EnvPolicy,
    source_tag: Option<&Tag>,
    existing: &[Tag],
) -> Result<(Vec<Tag>, Held), String> {
    let mut tags: Vec<Tag> = Vec::new();
    let mut held = Vec::new();
    let add = |t: Tag, tags: &mut Vec<Tag>| {
        if !tags.contains(&t) {
            tags.push(t);
        }
    };
    for rule in &policy.tags {
        match rule {
            TagRule::Literal(t) => add(t.clone(), &mut tags),
            TagRule::Template(tpl) => {
                if let Some(t) = TagRule::render(tpl, source_tag, policy.environment.as_str()) {
                    add(t?, &mut tags);
                }
            }
            TagRule::Semver => {
                if let Some(st) = source_tag {
                    let s = semver_tags(st.as_str(), existing);
                    for t in s.apply {
                        add(t, &mut tags);
                    }
                    held.extend(s.held);
                }
            }
        }
    }
    Ok((tags, held))
}

/// Plans one target's tags from where they point now. A protected tag that exists at another
/// digest refuses (protected tags never move, `--force` or not).
pub fn plan_target(
    policy: &EnvPolicy,
    target: &str,
    digest: &Digest,
    current: &BTreeMap<Tag, Option<Digest>>,
    wanted: Vec<Tag>,
    held: Vec<(Tag, String)>,
    settings: Option<&RepoSettings>,
) -> Result<TargetPlan, Refusal> {
    let env_tag = policy.env_tag();
    let mut moves = Vec::new();
    for tag in wanted {
        let from = current.get(&tag).cloned().flatten();
        let m = TagMove::new(tag, from, digest);
        if m.action == TagAction::Move {
            let at = m.from.as_ref().expect("a move has a from");
            if policy.is_protected(&m.tag) {
                return Err(Refusal::Protected(format!(
                    "protected tag {} at {target} points at {at}, and protected tags never move (wanted {digest})",
                    m.tag
                )));
            }
            if let Some(s) = settings.filter(|s| s.is_immutable(m.tag.as_str())) {
                return Err(Refusal::Immutable(format!(
                    "tag {} at {target} points at {at}, and the repository's {} forbids moving it to {digest}",
                    m.tag,
                    s.describe()
                )));
            }
        }
        moves.push(m);
    }
    Ok(TargetPlan {
        target: target.to_owned(),
        previous: current.get(&env_tag).cloned().flatten(),
        tags: moves,
        held,
    })
}

/// Why a target's tags cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A protected tag would move: a policy gate (exit 3).
    Protected(String),
    /// The registry never moves this tag (ECR tag immutability): the work fails (exit 1).
    Immutable(String),
}

/// The tags an environment moves by name, its environment tag and its ledger among them, that a
/// repository with these settings never lets move. Non-empty means the policy cannot work there.
pub fn immutable_moving_tags(policy: &EnvPolicy, settings: &RepoSettings) -> Vec<Tag> {
    policy
        .moving_tags()
        .into_iter()
        .chain(std::iter::once(history::ledger_tag(&policy.environment)))
        .filter(|t| settings.is_immutable(t.as_str()))
        .collect()
}

/// The gate of `promote_from`: the upstream environment's tag must point at `digest` at every
/// one of its targets. `upstream` holds, per upstream target, where its tag points.
pub fn check_upstream(
    env: &str,
    upstream_env: &str,
    digest: &Digest,
    upstream: &[(String, Option<Digest>)],
) -> Result<(), String> {
    let off: Vec<String> = upstream
        .iter()
        .filter(|(_, d)| d.as_ref() != Some(digest))
        .map(|(t, d)| match d {
            Some(d) => format!("{t} has {upstream_env} at {d}"),
            None => format!("{t} has no {upstream_env} tag"),
        })
        .collect();
    if off.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{env} promotes from {upstream_env}, and {digest} is not {upstream_env}'s: {}",
            off.join("; ")
        ))
    }
}

/// The digest a rollback goes back to: `steps` distinct digests before the newest in history.
pub fn rollback_digest(history: &[Record], steps: usize) -> Result<Digest, String> {
    let mut distinct: Vec<&Digest> = Vec::new();
    for r in history {
        if distinct.last() != Some(&&r.digest) {
            distinct.push(&r.digest);
        }
    }
    let Some(newest) = distinct.len().checked_sub(1) else {
        return Err("history is empty: nothing to roll back to (give --to DIGEST)".into());
    };
    if steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    newest
        .checked_sub(steps)
        .map(|i| distinct[i].clone())
        .ok_or_else(|| {
            format!(
                "history holds {} distinct digest{} only: cannot go back {steps} step{}",
                distinct.len(),
                if distinct.len() == 1 { "" } else { "s" },
                if steps == 1 { "" } else { "s" }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Kind;
    use crate::policy::{Environment, Overrides, Policies};

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }
    fn t(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    fn policy(tags: &str, protect: &str) -> EnvPolicy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("prod.yaml"),
            format!("version: 1\nsource: a.io/x\ntargets:\n  - layout: out\ntags: {tags}\nprotect: {protect}\n"),
        )
        .unwrap();
        Policies::load(dir.path(), &Overrides::default())
            .unwrap()
            .env("prod")
            .unwrap()
            .clone()
    }

    #[test]
    fn wanted_tags_fill_templates_and_semver() {
        let p = policy("[prod, \"{source_tag}\", semver]", "[]");
        let (tags, held) = wanted_tags(&p, Some(&t("v1.2.3")), &[t("1.3.0")]).unwrap();
        let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(names, ["prod", "v1.2.3", "1.2.3", "1.2"]);
        assert_eq!(held.len(), 2);
        let (tags, _) = wanted_tags(&p, None, &[]).unwrap();
        assert_eq!(tags, vec![t("prod")]);
    }

    #[test]
    fn protected_tags_may_be_created_or_kept_but_never_moved() {
        let p = policy("[prod, \"{source_tag}\"]", "[\"v*\", \"sha-*\"]");
        let wanted = vec![t("prod"), t("sha-1")];
        // (current state, expected actions or refusal)
        type Case<'a> = (Vec<(&'a str, u8)>, Result<Vec<TagAction>, &'a str>);
        let cases: Vec<Case> = vec![
            (vec![], Ok(vec![TagAction::Create, TagAction::Create])),
            (
                vec![("prod", 2)],
                Ok(vec![TagAction::Move, TagAction::Create]),
            ),
            (
                vec![("prod", 1), ("sha-1", 1)],
                Ok(vec![TagAction::Keep, TagAction::Keep]),
            ),
            (vec![("prod", 2), ("sha-1", 2)], Err("protected tag sha-1")),
        ];
        for (state, want) in cases {
            let current: BTreeMap<Tag, Option<Digest>> =
                state.iter().map(|(n, x)| (t(n), Some(d(*x)))).collect();
            let got = plan_target(&p, "r/x", &d(1), &current, wanted.clone(), vec![], None);
            match (got, want) {
                (Ok(plan), Ok(actions)) => {
                    assert_eq!(
                        plan.tags.iter().map(|m| m.action).collect::<Vec<_>>(),
                        actions
                    );
                    assert_eq!(plan.previous, current.get(&t("prod")).cloned().flatten());
                }
                (Err(Refusal::Protected(e)), Err(w)) => assert!(e.contains(w), "{e}"),
                (got, want) => panic!("state {state:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn immutable_tags_are_kept_at_the_same_digest_and_refused_elsewhere() {
        use crate::cloud::{Mutability, RepoSettings};
        let p = policy("[prod, \"{source_tag}\"]", "[]");
        let iwe = RepoSettings {
            mutability: Mutability::ImmutableWithExclusion,
            exclusions: vec!["prod".into(), "ferry-history-*".into()],
            scan_on_push: false,
        };
        assert!(immutable_moving_tags(&p, &iwe).is_empty());
        let imm = RepoSettings {
            mutability: Mutability::Immutable,
            ..iwe.clone()
        };
        let names: Vec<String> = immutable_moving_tags(&p, &imm)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["prod", "ferry-history-prod"]);

        let wanted = vec![t("prod"), t("v1.0.0")];
        let same: BTreeMap<Tag, Option<Digest>> =
            [(t("prod"), Some(d(1))), (t("v1.0.0"), Some(d(1)))].into();
        let plan =
            plan_target(&p, "r/x", &d(1), &same, wanted.clone(), vec![], Some(&iwe)).unwrap();
        assert!(plan.tags.iter().all(|m| m.action == TagAction::Keep));
        let moved = plan_target(&p, "r/x", &d(2), &same, wanted, vec![], Some(&iwe)).unwrap_err();
        match moved {
            Refusal::Immutable(m) => assert!(
                m.contains("tag v1.0.0") && m.contains("IMMUTABLE_WITH_EXCLUSION"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn upstream_gate_names_both_digests() {
        let ok = [
            ("s/a".to_owned(), Some(d(1))),
            ("s/b".to_owned(), Some(d(1))),
        ];
        assert!(check_upstream("prod", "staging", &d(1), &ok).is_ok());
        let bad = [("s/a".to_owned(), Some(d(1))), ("s/b".to_owned(), None)];
        let e = check_upstream("prod", "staging", &d(2), &bad).unwrap_err();
        assert!(
            e.contains(d(2).as_str()) && e.contains(d(1).as_str()),
            "{e}"
        );
        assert!(e.contains("s/b has no staging tag"), "{e}");
    }

    #[test]
    fn rollback_goes_back_by_distinct_digests() {
        let env = Environment::parse("prod").unwrap();
        let h: Vec<Record> = [1, 2, 2, 3]
            .iter()
            .map(|&n| Record::new(Kind::Promote, &env, &d(n)))
            .collect();
        assert_eq!(rollback_digest(&h, 1).unwrap(), d(2));
        assert_eq!(rollback_digest(&h, 2).unwrap(), d(1));
        assert!(rollback_digest(&h, 3)
            .unwrap_err()
            .contains("3 distinct digests only"));
        assert!(rollback_digest(&[], 1)
            .unwrap_err()
            .contains("history is empty"));
    }
}
