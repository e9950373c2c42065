//! reference: image references (`HOST[:PORT]/REPO[:TAG][@DIGEST]`, `ocidir://PATH[:TAG|@DIGEST]`) and the Registry, Repository and Tag newtypes.
//!
//! Registry references are parsed with the distribution reference grammar from `oci-client`
//! (Docker Hub rules included: `nginx` is `docker.io/library/nginx`); ferry then re-checks the
//! digest strictly and remembers whether a tag was actually written, because a destination
//! without a tag means "copy by digest only".

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::digest::Digest;

/// The Docker Hub registry name as users write it.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// Why a reference could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct InvalidReference {
    input: String,
    reason: String,
}

impl InvalidReference {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        InvalidReference {
            input: input.chars().take(200).collect(),
            reason: reason.into(),
        }
    }

    /// Why, without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A registry host name with optional port, as written in references (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
#[serde(transparent)]
pub struct Registry(String);

impl Registry {
    /// Wraps a host[:port], lowercasing the host part and mapping Docker Hub aliases to `docker.io`.
    pub fn new(host: &str) -> Self {
        let lower = host.to_ascii_lowercase();
        match lower.as_str() {
            "index.docker.io" | "registry-1.docker.io" => Registry(DOCKER_HUB.to_owned()),
            _ => Registry(lower),
        }
    }

    /// The name as written in references.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host[:port] that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.0 == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.0
        }
    }

    /// The host part without the port.
    pub fn hostname(&self) -> &str {
        let s = self.0.as_str();
        if let Some(rest) = s.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        s.rsplit_once(':').map_or(s, |(h, _)| h)
    }

    /// True for localhost, 127.0.0.0/8 and ::1: such registries default to plain HTTP, as crane does.
    pub fn is_loopback(&self) -> bool {
        let h = self.hostname();
        h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// True for Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.0 == DOCKER_HUB
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository path inside a registry (`library/nginx`, `acme/api`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Repository(String);

impl Repository {
    /// Validates a repository path: lowercase path components of `[a-z0-9]` separated by `.`, `_`, `__` or `-`, joined by `/`.
    pub fn parse(s: &str) -> Result<Self, InvalidReference> {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && c.bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && !c.contains("..")
        };
        if s.len() > 255 || !s.split('/').all(component_ok) {
            return Err(InvalidReference::new(
                s,
                "repository must be lowercase path components",
            ));
        }
        Ok(Repository(s.to_owned()))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    /// Validates a tag.
    pub fn parse(s: &str) -> Result<Self, InvalidReference> {
        let mut bytes = s.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if first_ok && rest_ok && s.len() <= 128 {
            Ok(Tag(s.to_owned()))
        } else {
            Err(InvalidReference::new(
                s,
                "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
            ))
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An image in a registry.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RemoteRef {
    /// Where it lives.
    pub registry: Registry,
    /// Its repository.
    pub repository: Repository,
    /// The tag, if one was written.
    pub tag: Option<Tag>,
    /// The digest, if one was written.
    pub digest: Option<Digest>,
}

/// An image in an OCI image layout directory.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LayoutRef {
    /// The layout's root directory.
    pub path: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name` in `index.json`), if one was written.
    pub tag: Option<Tag>,
    /// The digest, if one was written.
    pub digest: Option<Digest>,
}

/// Where an image is: a registry repository or an OCI layout on disk.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ImageRef {
    /// `HOST[:PORT]/REPO[:TAG][@DIGEST]`
    Remote(RemoteRef),
    /// `ocidir://PATH[:TAG|@DIGEST]`
    Layout(LayoutRef),
}

/// What to write instead of another tool's reference syntax (skopeo's transports).
fn foreign_syntax(input: &str) -> Option<String> {
    if let Some(rest) = input.strip_prefix("docker://") {
        return Some(format!(
            "skopeo's docker:// transport: ferry takes the reference without it ({rest})"
        ));
    }
    // `oci:5000/x` is a registry host named oci on port 5000, not a transport.
    let port = |rest: &str| rest.starts_with(|c: char| c.is_ascii_digit());
    if let Some(path) = input.strip_prefix("oci:").filter(|p| !port(p)) {
        return Some(format!(
            "skopeo's oci: transport: an OCI layout is ocidir://{path} here"
        ));
    }
    for t in [
        "oci-archive:",
        "docker-archive:",
        "dir:",
        "containers-storage:",
        "docker-daemon:",
    ] {
        if input.strip_prefix(t).is_some_and(|r| !port(r)) {
            return Some(format!(
                "{} is skopeo's; ferry reads registries and OCI layouts (ocidir://PATH)",
                t.trim_end_matches(':')
            ));
        }
    }
    None
}

/// Why a registry reference with capitals does not parse: repository names are lowercase.
fn uppercase_hint(rest: &str) -> Option<String> {
    let path = rest.split(['@']).next().unwrap_or(rest);
    let (host, repo) = match path.split_once('/') {
        Some((h, r)) if h.contains(['.', ':']) || h == "localhost" => (Some(h), r),
        _ => (None, path),
    };
    let repo = repo.rsplit_once(':').map_or(repo, |(r, _)| r);
    if !repo.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let lower = repo.to_ascii_lowercase();
    Some(format!(
        "repository names are lowercase: {repo} is not one (did you mean {}{lower}?)",
        host.map(|h| format!("{h}/")).unwrap_or_default()
    ))
}

/// The URL-like prefix of OCI layout references.
pub const OCIDIR_PREFIX: &str = "ocidir://";

impl ImageRef {
    /// Parses a reference; a missing tag stays missing (see [`ImageRef::or_latest`]).
    pub fn parse(input: &str) -> Result<Self, InvalidReference> {
        if input.trim() != input || input.is_empty() {
            return Err(InvalidReference::new(
                input,
                "empty or surrounded by whitespace",
            ));
        }
        let (rest, digest) = split_digest(input)?;
        if let Some(path) = rest.strip_prefix(OCIDIR_PREFIX) {
            let (path, tag) = split_tag(path);
            if path.is_empty() {
                return Err(InvalidReference::new(input, "ocidir:// needs a path"));
            }
            let tag = tag
                .map(Tag::parse)
                .transpose()
                .map_err(|e| InvalidReference::new(input, e.reason))?;
            return Ok(ImageRef::Layout(LayoutRef {
                path: PathBuf::from(path),
                tag,
                digest,
            }));
        }
        if let Some(hint) = foreign_syntax(input) {
            return Err(InvalidReference::new(input, hint));
        }
        if input.contains("://") {
            return Err(InvalidReference::new(
                input,
                "only ocidir:// is a known scheme; registry references have none",
            ));
        }
        let (_, tag_written) = split_tag(rest);
        let parsed: oci_client::Reference = rest.parse().map_err(|e: oci_client::ParseError| {
            InvalidReference::new(input, uppercase_hint(rest).unwrap_or_else(|| e.to_string()))
        })?;
        let registry = Registry::new(parsed.registry());
        // Docker Hub's aliases (index.docker.io, registry-1.docker.io) name official images
        // under library/ too, so every spelling of one image prints (and compares) the same.
        let path = match parsed.repository() {
            p if registry.is_docker_hub() && !p.contains('/') => format!("library/{p}"),
            p => p.to_owned(),
        };
        let repository =
            Repository::parse(&path).map_err(|e| InvalidReference::new(input, e.reason))?;
        let tag = tag_written
            .map(Tag::parse)
            .transpose()
            .map_err(|e| InvalidReference::new(input, e.reason))?;
        Ok(ImageRef::Remote(RemoteRef {
            registry,
            repository,
            tag,
            digest,
        }))
    }

    /// For a source: with neither tag nor digest, means `:latest`, as Docker does.
    pub fn or_latest(mut self) -> Self {
        let latest = || Some(Tag("latest".to_owned()));
        match &mut self {
            ImageRef::Remote(r) if r.tag.is_none() && r.digest.is_none() => r.tag = latest(),
            ImageRef::Layout(l) if l.tag.is_none() && l.digest.is_none() => l.tag = latest(),
            _ => {}
        }
        self
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            ImageRef::Remote(r) => r.tag.as_ref(),
            ImageRef::Layout(l) => l.tag.as_ref(),
        }
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            ImageRef::Remote(r) => r.digest.as_ref(),
            ImageRef::Layout(l) => l.digest.as_ref(),
        }
    }

    /// The same image with the digest pinned and the tag dropped.
    pub fn pinned(&self, digest: &Digest) -> ImageRef {
        self.with(None, Some(digest.clone()))
    }

    /// The same repository with another tag and digest.
    pub fn with(&self, tag: Option<Tag>, digest: Option<Digest>) -> ImageRef {
        match self {
            ImageRef::Remote(r) => ImageRef::Remote(RemoteRef {
                tag,
                digest,
                ..r.clone()
            }),
            ImageRef::Layout(l) => ImageRef::Layout(LayoutRef {
                tag,
                digest,
                ..l.clone()
            }),
        }
    }

    /// The registry, for remote references.
    pub fn registry(&self) -> Option<&Registry> {
        match self {
            ImageRef::Remote(r) => Some(&r.registry),
            ImageRef::Layout(_) => None,
        }
    }

    /// A short name of where the image lives, for messages: the registry host or the layout path.
    pub fn location(&self) -> String {
        match self {
            ImageRef::Remote(r) => r.registry.to_string(),
            ImageRef::Layout(l) => format!("{OCIDIR_PREFIX}{}", l.path.display()),
        }
    }

    /// The repository without tag or digest (`ghcr.io/acme/api`, `ocidir://out`).
    pub fn repository_name(&self) -> String {
        match self {
            ImageRef::Remote(r) => format!("{}/{}", r.registry, r.repository),
            ImageRef::Layout(l) => format!("{OCIDIR_PREFIX}{}", l.path.display()),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository_name())?;
        if let Some(tag) = self.tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = self.digest() {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = InvalidReference;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Splits `…@sha256:…` and validates the digest strictly before anything else sees it.
fn split_digest(input: &str) -> Result<(&str, Option<Digest>), InvalidReference> {
    match input.rsplit_once('@') {
        Some((rest, d)) => {
            let digest =
                Digest::parse(d).map_err(|e| InvalidReference::new(input, e.to_string()))?;
            Ok((rest, Some(digest)))
        }
        None => Ok((input, None)),
    }
}

/// Splits a `:tag` off the last path component, if there is one.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_tools_syntax_and_capitals_get_a_hint() {
        let why = |s: &str| ImageRef::parse(s).unwrap_err().to_string();
        assert!(
            why("oci:/tmp/x:v1").contains("ocidir:///tmp/x:v1"),
            "{}",
            why("oci:/tmp/x:v1")
        );
        assert!(why("docker://ghcr.io/acme/api:v1").contains("without it (ghcr.io/acme/api:v1)"));
        assert!(why("docker-archive:/tmp/x.tar").contains("skopeo's"));
        let e = why("ghcr.io/Acme/api:v1");
        assert!(
            e.contains("lowercase") && e.contains("did you mean ghcr.io/acme/api?"),
            "{e}"
        );
        // A registry host that happens to be called oci, with a port, is still a registry.
        assert!(ImageRef::parse("oci:5000/acme/api:v1").is_ok());
    }

    fn remote(s: &str) -> RemoteRef {
        match ImageRef::parse(s).unwrap() {
            ImageRef::Remote(r) => r,
            other => panic!("not remote: {other:?}"),
        }
    }

    #[test]
    fn docker_hub_rules() {
        let r = remote("nginx");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_ref()),
            ("docker.io", "library/nginx", None)
        );
        assert_eq!(r.registry.api_host(), "registry-1.docker.io");
        let r = remote("acme/api:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "acme/api")
        );
        assert_eq!(r.tag.unwrap().as_str(), "v1");
        let r = remote("index.docker.io/library/busybox");
        assert_eq!(r.registry.as_str(), "docker.io");
        // Found by the reference fuzzer: an alias host with an official image printed as
        // docker.io/as, which parses back as docker.io/library/as.
        for alias in [
            "registry-1.docker.io/as",
            "index.docker.io/as",
            "docker.io/as",
            "as",
        ] {
            let r = ImageRef::parse(alias).unwrap();
            assert_eq!(r.to_string(), "docker.io/library/as", "{alias}");
            assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r, "{alias}");
        }
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let d = format!("sha256:{}", "0".repeat(64));
        let r = remote(&format!("127.0.0.1:5000/a/b:sha-abc1234@{d}"));
        assert_eq!(r.registry.as_str(), "127.0.0.1:5000");
        assert!(r.registry.is_loopback());
        assert_eq!(r.repository.as_str(), "a/b");
        assert_eq!(r.tag.unwrap().as_str(), "sha-abc1234");
        assert_eq!(r.digest.unwrap().as_str(), d);
        let r = remote("localhost:5000/x");
        assert!(r.registry.is_loopback() && r.tag.is_none());
        assert!(!remote("ghcr.io/acme/api").registry.is_loopback());
        assert!(Registry::new("[::1]:5000").is_loopback());
    }

    #[test]
    fn or_latest_only_when_nothing_written() {
        let r = ImageRef::parse("ghcr.io/acme/api").unwrap().or_latest();
        assert_eq!(r.to_string(), "ghcr.io/acme/api:latest");
        let d = format!("sha256:{}", "1".repeat(64));
        let r = ImageRef::parse(&format!("ghcr.io/acme/api@{d}"))
            .unwrap()
            .or_latest();
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "",
            " nginx",
            "ghcr.io/acme/api@sha256:../../x",
            "ghcr.io/Acme/api",
            "ghcr.io/acme/api:bad tag",
            "ghcr.io/acme/api:-leading",
            "https://ghcr.io/acme/api",
            "ocidir://",
            "ocidir://x@sha256:../../etc",
            "ghcr.io/acme//api",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn ocidir_forms() {
        let d = format!("sha256:{}", "2".repeat(64));
        for (input, path, tag, digest) in [
            ("ocidir://out", "out", None, None),
            ("ocidir:///tmp/a.b/out:v1", "/tmp/a.b/out", Some("v1"), None),
            (&*format!("ocidir://./x@{d}"), "./x", None, Some(d.as_str())),
        ] {
            match ImageRef::parse(input).unwrap() {
                ImageRef::Layout(l) => {
                    assert_eq!(l.path, PathBuf::from(path));
                    assert_eq!(l.tag.as_ref().map(Tag::as_str), tag);
                    assert_eq!(l.digest.as_ref().map(Digest::as_str), digest);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "ghcr.io/acme/api:v1.2.3",
            "127.0.0.1:5000/x",
            "ocidir://out:latest",
        ] {
            assert_eq!(ImageRef::parse(s).unwrap().to_string(), s);
        }
    }
}
