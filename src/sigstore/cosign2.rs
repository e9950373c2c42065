//! sigstore::cosign2: cosign 2's keyless `.sig` layers (a certificate and Rekor's signed entry timestamp in annotations) as the v0.1 bundle they amount to.
//!
//! cosign 2 stores a keyless signature as a layer whose blob is the simple-signing payload, with
//! the signature, the Fulcio certificate (and chain) and the Rekor "bundle" (the entry and its
//! signed entry timestamp) in annotations. That is exactly a v0.1 Sigstore bundle with a
//! message signature and an inclusion promise, so it is verified as one.

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The layer annotation holding the signature (base64 DER).
pub const SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The signing certificate (PEM).
pub const CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// Its chain (PEM), Fulcio's intermediate and root.
pub const CHAIN: &str = "dev.sigstore.cosign/chain";
/// Rekor's entry and signed entry timestamp (JSON).
pub const REKOR_BUNDLE: &str = "dev.sigstore.cosign/bundle";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a cosign 2 layer signed.
#[derive(Clone, Copy, Debug)]
pub enum Signed<'a> {
    /// A `.sig` layer's simple-signing payload (the signature is in the annotations).
    Payload(&'a [u8]),
    /// A `.att` layer's DSSE envelope (signatures inside it).
    Envelope(&'a Value),
}

/// The v0.1 bundle JSON for a cosign 2 signature layer (`annotations`) over `payload`, when it
/// carries a certificate and a Rekor bundle; `None` for a key-only signature.
pub fn bundle(annotations: &Value, payload: &[u8]) -> Result<Option<String>, String> {
    signed_bundle(annotations, Signed::Payload(payload))
}

/// The v0.1 bundle JSON for a cosign 2 layer (`.sig` or `.att`) whose annotations carry a
/// certificate and a Rekor bundle; `None` when they do not (a signature by key).
pub fn signed_bundle(annotations: &Value, signed: Signed<'_>) -> Result<Option<String>, String> {
    let (Some(cert), Some(rekor)) = (
        annotations[CERTIFICATE].as_str(),
        annotations[REKOR_BUNDLE].as_str(),
    ) else {
        return Ok(None);
    };
    let cert_der = pem_der(cert)?;
    let rekor: Value = serde_json::from_str(rekor)
        .map_err(|e| format!("the {REKOR_BUNDLE} annotation is not JSON: {e}"))?;
    let p = &rekor["Payload"];
    let body = p["body"].as_str().ok_or("the Rekor bundle has no body")?;
    let body_doc: Value = serde_json::from_slice(
        &B64.decode(body)
            .map_err(|_| "the Rekor entry's body is not base64")?,
    )
    .map_err(|_| "the Rekor entry's body is not JSON")?;
    let log_id = hex::decode(p["logID"].as_str().unwrap_or(""))
        .map_err(|_| "the Rekor bundle's logID is not hex")?;
    let set = rekor["SignedEntryTimestamp"]
        .as_str()
        .ok_or("the Rekor bundle has no SignedEntryTimestamp")?;
    let (Some(integrated), Some(index)) = (p["integratedTime"].as_i64(), p["logIndex"].as_i64())
    else {
        return Err("the Rekor bundle lacks integratedTime or logIndex".to_owned());
    };
    let mut doc = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": [{"rawBytes": B64.encode(cert_der)}]},
            "tlogEntries": [{
                "logIndex": index.to_string(),
                "logId": {"keyId": B64.encode(log_id)},
                "kindVersion": {
                    "kind": body_doc["kind"].as_str().unwrap_or("hashedrekord"),
                    "version": body_doc["apiVersion"].as_str().unwrap_or("0.0.1"),
                },
                "integratedTime": integrated.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": set},
                "canonicalizedBody": body,
            }],
        },
    });
    match signed {
        Signed::Payload(payload) => {
            let signature = annotations[SIGNATURE]
                .as_str()
                .ok_or("the layer has a certificate but no signature annotation")?;
            doc["messageSignature"] = json!({
                "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(Sha256::digest(payload))},
                "signature": signature.trim(),
            });
        }
        Signed::Envelope(envelope) => doc["dsseEnvelope"] = envelope.clone(),
    }
    Ok(Some(doc.to_string()))
}

/// The DER of the first PEM block in `pem`.
fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return Err(format!(
            "the {CERTIFICATE} annotation holds no PEM certificate"
        ));
    }
    B64.decode(body.trim())
        .map_err(|_| format!("the {CERTIFICATE} annotation is not valid PEM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_only_signatures_are_not_bundles() {
        assert_eq!(bundle(&json!({SIGNATURE: "MEU="}), b"{}"), Ok(None));
    }

    #[test]
    fn broken_annotations_are_one_line_refusals() {
        let cases = [
            json!({CERTIFICATE: "x", REKOR_BUNDLE: "{}", SIGNATURE: "MEU="}),
            json!({CERTIFICATE: "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----", REKOR_BUNDLE: "{}", SIGNATURE: "MEU="}),
            json!({CERTIFICATE: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----", REKOR_BUNDLE: "nope", SIGNATURE: "MEU="}),
            json!({CERTIFICATE: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----", REKOR_BUNDLE: "{}"}),
        ];
        for c in cases {
            let e = bundle(&c, b"{}").unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
