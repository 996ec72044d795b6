//! Manifests, indexes and the platform an index is resolved to.

use super::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The Accept header of a manifest request: every type this client reads.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformJson {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest or an index: the fields read of either.
#[derive(Debug, Deserialize)]
struct Any {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

pub enum Parsed {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index(Vec<Descriptor>),
}

/// Parses a manifest body; `content_type` is the server's Content-Type
/// (the body's own `mediaType`, when present, wins).
pub fn parse(body: &[u8], content_type: &str, reference: &str) -> Result<Parsed, Error> {
    let bad = |why: String| Error::BadManifest {
        reference: reference.to_string(),
        why,
    };
    let any: Any = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "its manifest is not valid JSON ({e}): check the reference"
        ))
    })?;
    let media_type = any
        .media_type
        .clone()
        .unwrap_or_else(|| bare_media_type(content_type));
    if any.schema_version != Some(2) {
        return Err(bad(format!(
            "its manifest has schemaVersion {:?}, only 2 is read (Docker schema 1 is obsolete): push it again with a current tool",
            any.schema_version
        )));
    }
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_LIST
        || (any.manifests.is_some() && any.layers.is_none());
    if is_index {
        return Ok(Parsed::Index(any.manifests.unwrap_or_default()));
    }
    // OCI manifests may leave mediaType out; a registry then says JSON.
    let image_type =
        [OCI_MANIFEST, DOCKER_MANIFEST, "", "application/json"].contains(&media_type.as_str());
    match (any.config, any.layers) {
        (Some(config), Some(layers)) if image_type => Ok(Parsed::Image { config, layers }),
        _ => Err(bad(format!(
            "its manifest (media type `{media_type}`) is neither an image manifest nor an index: check the reference"
        ))),
    }
}

/// OS/ARCH[/VARIANT], as `--platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform, Error> {
        let bad = || Error::BadPlatform {
            given: text.to_string(),
        };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// linux and the host's architecture in Go's names (amd64, arm64…).
    pub fn host() -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: crate::sys::arch::host_arch().to_string(),
            variant: None,
        }
    }

    /// Whether an index entry serves this platform: the same OS and
    /// architecture, and the variant when one was asked for (arm64's
    /// entries say `v8` or nothing).
    fn matches(&self, p: &PlatformJson) -> bool {
        self.serves(&p.os, &p.architecture, p.variant.as_deref())
    }

    /// [`Self::matches`] of an entry's fields (an OCI layout's index too).
    pub fn serves(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        os == self.os
            && architecture == self.architecture
            && match (self.variant.as_deref(), variant) {
                (None, _) => true,
                (Some(want), Some(got)) => want == got,
                (Some(want), None) => self.architecture == "arm64" && want == "v8",
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The index entry for `platform`: the first image manifest that matches
/// (indexes list the preferred variant first).
pub fn choose<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, Error> {
    let images = || {
        entries
            .iter()
            .filter(|d| d.media_type != OCI_INDEX && d.media_type != DOCKER_LIST)
    };
    if let Some(found) = images().find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
    {
        return Ok(found);
    }
    let mut available: Vec<String> = images()
        .filter_map(|d| d.platform.as_ref())
        // Attestation manifests (buildx) say unknown/unknown: not a choice.
        .filter(|p| p.os != "unknown")
        .map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    available.dedup();
    Err(Error::NoPlatform {
        reference: reference.to_string(),
        platform: platform.to_string(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    })
}

/// A Content-Type header's media type, without its parameters.
pub(super) fn bare_media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.to_string(),
            digest: format!("sha256:{arch}"),
            size: 1,
            platform: Some(PlatformJson {
                architecture: arch.to_string(),
                os: "linux".to_string(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn platform_is_parsed_and_chosen() {
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v8").is_err());
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        let entries = [entry("amd64", None), entry("arm64", None)];
        assert_eq!(choose(&entries, &arm, "r").unwrap().digest, "sha256:arm64");
        let s390 = Platform::parse("linux/s390x").unwrap();
        let err = choose(&entries, &s390, "r").unwrap_err().to_string();
        assert!(err.contains("linux/amd64, linux/arm64"), "{err}");
        let armv7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(choose(&[entry("arm", Some("v6"))], &armv7, "r").is_err());
    }
}
