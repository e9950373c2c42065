//! sample: generates deterministic test images (multi-arch, Docker and OCI media types, attestations, unknown artifacts) as OCI image layouts on disk.
//!
//! Same spec, same bytes, same digests. Layers are pseudo-random (incompressible) and written
//! streaming through a hasher, so a 1 GiB layer costs no memory. Manifests can be written with
//! odd but valid JSON whitespace, so any copier that re-serialises them changes their digest.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use base64::Engine as _;
use p256::ecdsa::signature::Signer;
pub use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;

use crate::digest::{Digest, Hasher};
use crate::gate;
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A deterministic ECDSA P-256 signing key for samples and tests (never for real use).
pub fn signing_key(seed: u8) -> SigningKey {
    let mut bytes = [seed.max(1); 32];
    bytes[0] = 0x42;
    SigningKey::from_bytes(&bytes.into()).expect("a valid scalar")
}

/// SLSA provenance v1's predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// An in-toto statement of SLSA v1 provenance for `digest`, shaped as GitHub's
/// `actions/attest-build-provenance` writes it for a workflow of `repository`.
pub fn provenance_statement(digest: &str, repository: &str, workflow: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": format!("ghcr.io/{repository}"), "digest": {"sha256": hex}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": format!("https://github.com/{repository}"), "path": workflow}},
            },
            "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}},
        },
    }))
    .expect("JSON values serialise")
}

/// The PEM public key (`-----BEGIN PUBLIC KEY-----`) of a signing key, as cosign writes `cosign.pub`.
pub fn public_key_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(Default::default())
        .expect("a P-256 key encodes")
}

/// A platform of a generated image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `linux`
    pub os: String,
    /// `amd64`, `arm64`
    pub architecture: String,
    /// `v8`
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let p = crate::manifest::Platform::parse(s)?;
        Some(Platform {
            os: p.os,
            architecture: p.architecture,
            variant: p.variant,
        })
    }

    fn json(&self) -> Value {
        let mut v = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(var) = &self.variant {
            v["variant"] = json!(var);
        }
        v
    }

    fn key(&self) -> u64 {
        self.os
            .bytes()
            .chain(self.architecture.bytes())
            .chain(self.variant.iter().flat_map(|v| v.bytes()))
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
    }
}

/// A layer: `size` pseudo-random bytes from `seed` (not a real tar; registries do not look inside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// Content seed: the same seed and size give the same blob.
    pub seed: u64,
    /// Size in bytes.
    pub size: u64,
}

/// An image to generate.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The tag in `index.json`.
    pub tag: String,
    /// Varies configs and own layers.
    pub seed: u64,
    /// Platforms of the index; empty means a single image manifest, no index.
    pub platforms: Vec<Platform>,
    /// Docker manifest list and v2 manifests instead of OCI.
    pub docker_media_types: bool,
    /// Add a BuildKit-style attestation manifest per platform (OCI only).
    pub attestation: bool,
    /// Write manifests with odd but valid whitespace.
    pub odd_whitespace: bool,
    /// Layers shared by every platform and every image that uses the same spec.
    pub base_layers: Vec<LayerSpec>,
    /// Layers unique to this image and platform.
    pub own_layers: Vec<LayerSpec>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            tag: "latest".into(),
            seed: 1,
            platforms: vec![
                Platform::parse("linux/amd64").expect("valid"),
                Platform::parse("linux/arm64").expect("valid"),
            ],
            docker_media_types: false,
            attestation: true,
            odd_whitespace: true,
            base_layers: vec![LayerSpec {
                seed: 0xba5e,
                size: 64 << 10,
            }],
            own_layers: vec![LayerSpec {
                seed: 0,
                size: 32 << 10,
            }],
        }
    }
}

/// The demo set: two small multi-arch images sharing a base layer (well under 2 MiB).
pub fn demo_specs() -> Vec<ImageSpec> {
    vec![
        ImageSpec {
            tag: "v1.0.0".into(),
            seed: 1,
            ..ImageSpec::default()
        },
        ImageSpec {
            tag: "v1.1.0".into(),
            seed: 2,
            ..ImageSpec::default()
        },
    ]
}

/// What was written for one tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The tag.
    pub tag: String,
    /// The root manifest's digest.
    pub digest: String,
    /// The root's media type.
    pub media_type: String,
    /// The root's size.
    pub size: u64,
    /// Child manifest digests, in index order.
    pub children: Vec<String>,
    /// Total bytes of the unique blobs (configs and layers) under the root.
    pub blob_bytes: u64,
}

/// An OCI image layout being written.
pub struct Layout {
    root: PathBuf,
}

struct Blob {
    digest: Digest,
    size: u64,
}

impl Layout {
    /// Creates (or opens) a layout directory.
    pub fn create(dir: &Path) -> io::Result<Layout> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        if !dir.join("index.json").exists() {
            std::fs::write(
                dir.join("index.json"),
                serde_json::to_vec(
                    &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
                )?,
            )?;
        }
        Ok(Layout {
            root: dir.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn write_bytes(&self, bytes: &[u8]) -> io::Result<Blob> {
        let digest = Digest::of(bytes);
        let path = self.root.join("blobs/sha256").join(digest.hex());
        if !path.exists() {
            std::fs::write(&path, bytes)?;
        }
        Ok(Blob {
            digest,
            size: bytes.len() as u64,
        })
    }

    fn write_layer(&self, spec: LayerSpec) -> io::Result<Blob> {
        let tmp = self
            .root
            .join(format!("blobs/sha256/.gen-{}-{}", spec.seed, spec.size));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut hasher = Hasher::new();
        let mut rng = SplitMix(spec.seed ^ spec.size.rotate_left(17));
        let mut buf = vec![0u8; 1 << 16];
        let mut left = spec.size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            for word in buf[..n].chunks_mut(8) {
                let r = rng.next().to_le_bytes();
                word.copy_from_slice(&r[..word.len()]);
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        out.flush()?;
        drop(out);
        let digest = hasher.finish();
        std::fs::rename(&tmp, self.root.join("blobs/sha256").join(digest.hex()))?;
        Ok(Blob {
            digest,
            size: spec.size,
        })
    }

    fn write_manifest(&self, doc: &Value, odd: bool) -> io::Result<Blob> {
        let bytes = if odd {
            odd_json(doc)
        } else {
            serde_json::to_vec(doc)?
        };
        self.write_bytes(&bytes)
    }

    fn tag(
        &self,
        tag: &str,
        media_type: &str,
        blob: &Blob,
        artifact_type: Option<&str>,
    ) -> io::Result<()> {
        let path = self.root.join("index.json");
        let mut index: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let entries = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| io::Error::other("index.json has no manifests"))?;
        entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag));
        let mut entry = json!({"mediaType": media_type, "digest": blob.digest.as_str(), "size": blob.size, "annotations": {REF_NAME: tag}});
        if let Some(a) = artifact_type {
            entry["artifactType"] = json!(a);
        }
        entries.push(entry);
        std::fs::write(&path, serde_json::to_vec_pretty(&index)?)
    }

    /// Writes an image (an index of platform manifests, or one manifest) and tags it.
    pub fn add_image(&self, spec: &ImageSpec) -> io::Result<Written> {
        let docker = spec.docker_media_types;
        let (manifest_type, config_type, layer_type) = if docker {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        };
        let mut unique = std::collections::HashMap::new();
        let single = spec.platforms.is_empty();
        let platforms = if single {
            vec![Platform::parse("linux/amd64").expect("valid")]
        } else {
            spec.platforms.clone()
        };
        let mut entries = Vec::new();
        let mut children = Vec::new();
        let mut root = None;
        for p in &platforms {
            let mut layers = Vec::new();
            for l in &spec.base_layers {
                layers.push(self.write_layer(*l)?);
            }
            for (i, l) in spec.own_layers.iter().enumerate() {
                let seed = l.seed
                    ^ spec.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ p.key()
                    ^ (i as u64) << 40;
                layers.push(self.write_layer(LayerSpec { seed, size: l.size })?);
            }
            let diff_ids: Vec<&str> = layers.iter().map(|b| b.digest.as_str()).collect();
            let config = json!({
                "architecture": p.architecture, "os": p.os, "created": "2026-01-01T00:00:00Z",
                "config": {"Env": [format!("FERRY_SAMPLE_SEED={}", spec.seed)]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            });
            let config = self.write_bytes(&serde_json::to_vec(&config)?)?;
            let mut doc = json!({
                "schemaVersion": 2, "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": config.digest.as_str(), "size": config.size},
                "layers": layers.iter().map(|b| json!({"mediaType": layer_type, "digest": b.digest.as_str(), "size": b.size})).collect::<Vec<_>>(),
            });
            if !docker {
                doc["annotations"] = json!({"org.opencontainers.image.title": spec.tag, "ferry.sample.platform": p.json().to_string()});
            }
            for b in std::iter::once(&config).chain(&layers) {
                unique.insert(b.digest.clone(), b.size);
            }
            let m = self.write_manifest(&doc, spec.odd_whitespace)?;
            if single {
                root = Some((m, manifest_type));
                break;
            }
            entries.push(json!({"mediaType": manifest_type, "digest": m.digest.as_str(), "size": m.size, "platform": p.json()}));
            children.push(m.digest.to_string());
            if spec.attestation && !docker {
                let statement = json!({"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://slsa.dev/provenance/v0.2",
                    "subject": [{"name": spec.tag, "digest": {"sha256": m.digest.hex()}}], "predicate": {"builder": {"id": "ferry-sample"}}});
                let layer = self.write_bytes(&serde_json::to_vec(&statement)?)?;
                let cfg = self.write_bytes(br#"{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":[]}}"#)?;
                unique.insert(layer.digest.clone(), layer.size);
                unique.insert(cfg.digest.clone(), cfg.size);
                let att = json!({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": cfg.digest.as_str(), "size": cfg.size},
                    "layers": [{"mediaType": IN_TOTO, "digest": layer.digest.as_str(), "size": layer.size,
                                "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}],
                });
                let a = self.write_manifest(&att, spec.odd_whitespace)?;
                entries.push(json!({"mediaType": OCI_MANIFEST, "digest": a.digest.as_str(), "size": a.size,
                    "platform": {"architecture": "unknown", "os": "unknown"},
                    "annotations": {"vnd.docker.reference.digest": m.digest.as_str(), "vnd.docker.reference.type": "attestation-manifest"}}));
                children.push(a.digest.to_string());
            }
        }
        let (root, media_type) = match root {
            Some(r) => r,
            None => {
                let index_type = if docker { DOCKER_LIST } else { OCI_INDEX };
                let doc =
                    json!({"schemaVersion": 2, "mediaType": index_type, "manifests": entries});
                (self.write_manifest(&doc, spec.odd_whitespace)?, index_type)
            }
        };
        self.tag(&spec.tag, media_type, &root, None)?;
        Ok(Written {
            tag: spec.tag.clone(),
            digest: root.digest.to_string(),
            media_type: media_type.into(),
            size: root.size,
            children,
            blob_bytes: unique.values().sum(),
        })
    }

    /// Writes an OCI artifact of an unknown type (empty config, one payload layer) and tags it.
    pub fn add_artifact(&self, tag: &str, artifact_type: &str, seed: u64) -> io::Result<Written> {
        let empty = self.write_bytes(b"{}")?;
        let payload = self.write_layer(LayerSpec {
            seed: seed ^ 0xa27f,
            size: 4096 + seed % 1024,
        })?;
        let doc = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": empty.digest.as_str(), "size": empty.size},
            "layers": [{"mediaType": "application/vnd.acme.rocket.payload.v1", "digest": payload.digest.as_str(), "size": payload.size}],
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        });
        let m = self.write_manifest(&doc, true)?;
        self.tag(tag, OCI_MANIFEST, &m, Some(artifact_type))?;
        Ok(Written {
            tag: tag.into(),
            digest: m.digest.to_string(),
            media_type: OCI_MANIFEST.into(),
            size: m.size,
            children: vec![],
            blob_bytes: empty.size + payload.size,
        })
    }

    /// Signs `subject` as cosign does: the simple-signing payload as the one layer of a manifest
    /// tagged `sha256-HEX.sig`, its ECDSA signature in the layer's annotation.
    pub fn add_signature(
        &self,
        subject: &str,
        reference: &str,
        key: &SigningKey,
    ) -> io::Result<Written> {
        let digest = Digest::parse(subject).map_err(io::Error::other)?;
        let payload = gate::simple_signing_payload(reference, &digest);
        let signature: p256::ecdsa::Signature = key.sign(&payload);
        let sig = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
        let layer = self.write_bytes(&payload)?;
        self.add_cosign(
            &digest,
            "sig",
            json!({"mediaType": COSIGN_SIMPLESIGNING, "digest": layer.digest.as_str(), "size": layer.size,
                   "annotations": {gate::COSIGN_SIGNATURE_ANNOTATION: sig}}),
            &layer,
        )
    }

    /// A cosign 2 keyless signature of `subject`: the simple-signing payload, with the signature,
    /// certificate, chain and Rekor bundle that `sign` returns for it as layer annotations.
    pub fn add_keyless_signature(
        &self,
        subject: &str,
        reference: &str,
        sign: impl FnOnce(&[u8]) -> Vec<(&'static str, String)>,
    ) -> io::Result<Written> {
        let digest = Digest::parse(subject).map_err(io::Error::other)?;
        let payload = gate::simple_signing_payload(reference, &digest);
        let annotations: serde_json::Map<String, Value> = sign(&payload)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        let layer = self.write_bytes(&payload)?;
        self.add_cosign(
            &digest,
            "sig",
            json!({"mediaType": COSIGN_SIMPLESIGNING, "digest": layer.digest.as_str(), "size": layer.size,
                   "annotations": annotations}),
            &layer,
        )
    }

    /// An unsigned in-toto statement attached to `subject` as a referrer (what a bare
    /// `oras attach` of a provenance file makes).
    pub fn add_statement(&self, subject: &str, statement: &[u8]) -> io::Result<Written> {
        self.add_referrer_layer(
            subject,
            gate::IN_TOTO,
            statement,
            json!({"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}),
        )
    }

    /// Attests `subject` as `cosign attest` does: an in-toto statement of `predicate_type` in a
    /// DSSE envelope (signed with `key`), the one layer of a manifest tagged `sha256-HEX.att`.
    pub fn add_cosign_attestation(
        &self,
        subject: &str,
        predicate_type: &str,
        predicate: Value,
        key: &SigningKey,
    ) -> io::Result<Written> {
        use base64::Engine as _;
        let digest = Digest::parse(subject).map_err(io::Error::other)?;
        let statement = serde_json::to_vec(&json!({"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image", "digest": {"sha256": digest.hex()}}],
            "predicateType": predicate_type, "predicate": predicate}))?;
        let payload_type = "application/vnd.in-toto+json";
        // DSSE's pre-authentication encoding is what is signed.
        let mut pae = format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            statement.len()
        )
        .into_bytes();
        pae.extend_from_slice(&statement);
        let signature: p256::ecdsa::Signature = key.sign(&pae);
        let b64 = base64::engine::general_purpose::STANDARD;
        let envelope = serde_json::to_vec(&json!({"payloadType": payload_type,
            "payload": b64.encode(&statement),
            "signatures": [{"keyid": "", "sig": b64.encode(signature.to_der().as_bytes())}]}))?;
        let layer = self.write_bytes(&envelope)?;
        self.add_cosign(
            &digest,
            "att",
            json!({"mediaType": gate::DSSE, "digest": layer.digest.as_str(), "size": layer.size,
                   "annotations": {"predicateType": predicate_type}}),
            &layer,
        )
    }

    fn add_cosign(
        &self,
        subject: &Digest,
        suffix: &str,
        layer: Value,
        blob: &Blob,
    ) -> io::Result<Written> {
        let config = json!({"architecture": "", "created": "0001-01-01T00:00:00Z", "os": "",
            "rootfs": {"type": "layers", "diff_ids": [blob.digest.as_str()]}, "config": {}});
        let config = self.write_bytes(&serde_json::to_vec(&config)?)?;
        let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest.as_str(), "size": config.size},
            "layers": [layer]});
        let m = self.write_manifest(&doc, false)?;
        let tag = crate::referrers::cosign_tag(subject, suffix);
        self.tag(tag.as_str(), OCI_MANIFEST, &m, None)?;
        Ok(Written {
            tag: tag.to_string(),
            digest: m.digest.to_string(),
            media_type: OCI_MANIFEST.into(),
            size: m.size,
            children: vec![],
            blob_bytes: config.size + blob.size,
        })
    }

    /// Attaches an SBOM-like artifact of `artifact_type` to `subject` as an OCI 1.1 referrer,
    /// listed in the `sha256-HEX` fallback index (a layout has no referrers API).
    pub fn add_referrer(
        &self,
        subject: &str,
        artifact_type: &str,
        seed: u64,
    ) -> io::Result<Written> {
        let payload = serde_json::to_vec(
            &json!({"spdxVersion": "SPDX-2.3", "name": format!("sample-{seed}"), "subject": subject}),
        )?;
        self.add_referrer_layer(
            subject,
            artifact_type,
            &payload,
            json!({"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "dev.ferry.sample.seed": seed.to_string()}),
        )
    }

    /// Attaches a Sigstore bundle to `subject` as `actions/attest-build-provenance` and cosign 3
    /// do: a referrer whose artifact type and one layer are the bundle's media type, in the
    /// `sha256-HEX` fallback index.
    pub fn add_bundle(
        &self,
        subject: &str,
        bundle: &str,
        predicate_type: &str,
    ) -> io::Result<Written> {
        // A broken bundle (tests attach those too) goes under the v0.3 type.
        let media_type = serde_json::from_str::<Value>(bundle)
            .ok()
            .and_then(|b| b["mediaType"].as_str().map(str::to_owned))
            .filter(|t| t.starts_with(crate::gate::SIGSTORE_BUNDLE))
            .unwrap_or_else(|| "application/vnd.dev.sigstore.bundle.v0.3+json".to_owned());
        self.add_referrer_layer(
            subject,
            &media_type,
            bundle.as_bytes(),
            json!({"dev.sigstore.bundle.content": "dsse-envelope",
                   "dev.sigstore.bundle.predicateType": predicate_type,
                   "org.opencontainers.image.created": "2026-01-01T00:00:00Z"}),
        )
    }

    /// A referrer to `subject`: one layer of `artifact_type` holding `payload`, listed in the
    /// fallback index.
    fn add_referrer_layer(
        &self,
        subject: &str,
        artifact_type: &str,
        payload: &[u8],
        annotations: Value,
    ) -> io::Result<Written> {
        let digest = Digest::parse(subject).map_err(io::Error::other)?;
        let bytes = std::fs::read(self.root.join("blobs/sha256").join(digest.hex()))?;
        let media_type = serde_json::from_slice::<Value>(&bytes)?["mediaType"]
            .as_str()
            .unwrap_or(OCI_MANIFEST)
            .to_owned();
        let empty = self.write_bytes(b"{}")?;
        let payload = self.write_bytes(payload)?;
        let doc = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": empty.digest.as_str(), "size": empty.size},
            "layers": [{"mediaType": artifact_type, "digest": payload.digest.as_str(), "size": payload.size}],
            "subject": {"mediaType": media_type, "digest": subject, "size": bytes.len()},
            "annotations": annotations,
        });
        let m = self.write_manifest(&doc, true)?;
        let manifest = crate::manifest::Manifest::parse(
            bytes::Bytes::from(std::fs::read(
                self.root.join("blobs/sha256").join(m.digest.hex()),
            )?),
            None,
        )
        .map_err(io::Error::other)?;
        let (_, entry) = crate::referrers::describe(&manifest);
        let fallback = crate::referrers::fallback_tag(&digest);
        let existing = self.manifest_by_tag(fallback.as_str())?;
        if let Some(index) = crate::referrers::merge_fallback(existing.as_ref(), &[entry]) {
            let blob = self.write_bytes(&index)?;
            self.tag(fallback.as_str(), OCI_INDEX, &blob, None)?;
        }
        Ok(Written {
            tag: String::new(),
            digest: m.digest.to_string(),
            media_type: OCI_MANIFEST.into(),
            size: m.size,
            children: vec![],
            blob_bytes: empty.size + payload.size,
        })
    }

    fn manifest_by_tag(&self, tag: &str) -> io::Result<Option<crate::manifest::Manifest>> {
        let index: Value = serde_json::from_slice(&std::fs::read(self.root.join("index.json"))?)?;
        let Some(d) = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["annotations"][REF_NAME].as_str() == Some(tag))
            .and_then(|e| e["digest"].as_str())
            .and_then(|d| Digest::parse(d).ok())
        else {
            return Ok(None);
        };
        let bytes = std::fs::read(self.root.join("blobs/sha256").join(d.hex()))?;
        crate::manifest::Manifest::parse(bytes::Bytes::from(bytes), None)
            .map(Some)
            .map_err(io::Error::other)
    }

    /// Writes a Docker schema 1 signed manifest, which copiers must refuse, and tags it.
    pub fn add_schema1(&self, tag: &str) -> io::Result<Written> {
        let media_type = "application/vnd.docker.distribution.manifest.v1+prettyjws";
        let doc = json!({"schemaVersion": 1, "name": "sample/old", "tag": tag, "architecture": "amd64", "fsLayers": [], "history": [],
            "signatures": [{"header": {"alg": "ES256"}, "signature": "AAAA", "protected": "e30"}]});
        let m = self.write_bytes(&serde_json::to_vec_pretty(&doc)?)?;
        self.tag(tag, media_type, &m, None)?;
        Ok(Written {
            tag: tag.into(),
            digest: m.digest.to_string(),
            media_type: media_type.into(),
            size: m.size,
            children: vec![],
            blob_bytes: 0,
        })
    }
}

/// Serialises with tabs, CRLF, spaces before colons and a trailing newline: valid JSON that no
/// serialiser would produce, so re-serialisation is caught by the digest.
fn odd_json(v: &Value) -> Vec<u8> {
    fn walk(v: &Value, depth: usize, out: &mut String) {
        let pad = "\t".repeat(depth + 1);
        match v {
            Value::Object(m) => {
                out.push_str("{\r\n");
                for (i, (k, val)) in m.iter().enumerate() {
                    out.push_str(&pad);
                    out.push_str(&serde_json::to_string(k).expect("string serialises"));
                    out.push_str(" :  ");
                    walk(val, depth + 1, out);
                    if i + 1 < m.len() {
                        out.push(',');
                    }
                    out.push_str("\r\n");
                }
                out.push_str(&"\t".repeat(depth));
                out.push('}');
            }
            Value::Array(a) => {
                out.push_str("[ ");
                for (i, val) in a.iter().enumerate() {
                    walk(val, depth + 1, out);
                    if i + 1 < a.len() {
                        out.push_str(" ,\n");
                        out.push_str(&pad);
                    }
                }
                out.push_str(" ]");
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    walk(v, 0, &mut s);
    s.push('\n');
    s.into_bytes()
}

/// splitmix64: tiny, fast, deterministic.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_blobs(root: &Path) {
        for entry in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert_eq!(Digest::of(&std::fs::read(&path).unwrap()).hex(), name);
        }
    }

    #[test]
    fn deterministic_and_verifiable() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (la, lb) = (
            Layout::create(a.path()).unwrap(),
            Layout::create(b.path()).unwrap(),
        );
        for spec in demo_specs() {
            assert_eq!(la.add_image(&spec).unwrap(), lb.add_image(&spec).unwrap());
        }
        check_blobs(a.path());
    }

    #[test]
    fn odd_whitespace_survives_parsing_but_not_reserialisation() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let w = l.add_image(&ImageSpec::default()).unwrap();
        assert_eq!(w.children.len(), 4, "two platforms, two attestations");
        let bytes = std::fs::read(dir.path().join("blobs/sha256").join(&w.digest[7..])).unwrap();
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_ne!(serde_json::to_vec(&parsed).unwrap(), bytes);
        let m = crate::manifest::Manifest::parse(bytes.into(), None).unwrap();
        assert_eq!(m.children.len(), 4);
    }

    #[test]
    fn base_layers_are_shared_across_images() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let base = vec![LayerSpec {
            seed: 5,
            size: 100_000,
        }];
        l.add_image(&ImageSpec {
            tag: "a".into(),
            seed: 1,
            base_layers: base.clone(),
            attestation: false,
            ..ImageSpec::default()
        })
        .unwrap();
        let count = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count();
        l.add_image(&ImageSpec {
            tag: "b".into(),
            seed: 2,
            base_layers: base,
            attestation: false,
            ..ImageSpec::default()
        })
        .unwrap();
        let more = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count()
            - count;
        assert_eq!(
            more,
            2 * 3 + 1,
            "per platform: config, own layer, manifest; plus the index; no base layer again"
        );
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn docker_types_single_images_and_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let d = l
            .add_image(&ImageSpec {
                docker_media_types: true,
                ..ImageSpec::default()
            })
            .unwrap();
        assert_eq!(d.media_type, DOCKER_LIST);
        assert_eq!(d.children.len(), 2, "no attestations with Docker types");
        let s = l
            .add_image(&ImageSpec {
                tag: "one".into(),
                platforms: vec![],
                ..ImageSpec::default()
            })
            .unwrap();
        assert_eq!(s.media_type, OCI_MANIFEST);
        let a = l
            .add_artifact("art", "application/vnd.acme.rocket.v1+json", 3)
            .unwrap();
        let bytes = std::fs::read(dir.path().join("blobs/sha256").join(&a.digest[7..])).unwrap();
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("application/vnd.acme.rocket.v1+json"));
        check_blobs(dir.path());
    }
}
