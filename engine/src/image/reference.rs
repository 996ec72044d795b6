//! Image references, pure: docker's normalisation of registry names
//! (`alpine` -> `docker.io/library/alpine:latest`) and skopeo's transports
//! for local files (`oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//! `docker-archive:FILE`). No file system is looked at here: whether a
//! plain directory or a catalog name is meant is the caller's (`engine run`
//! keeps both as they were, see `model::spec`).

use std::fmt;
use std::path::PathBuf;

/// Docker Hub's canonical host, and the namespace of its official images.
pub const DOCKER_HUB: &str = "docker.io";
const OFFICIAL: &str = "library";
const MAX_NAME: usize = 255;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A registry image, normalised.
    Registry(Named),
    /// An OCI image layout directory; the `org.opencontainers.image.ref.name`
    /// of one of its manifests, or none when it holds exactly one.
    Oci { dir: PathBuf, name: Option<String> },
    /// A tar of an OCI image layout.
    OciArchive { file: PathBuf, name: Option<String> },
    /// `docker save` / `podman save`: manifest.json, the config, layer tars.
    DockerArchive { file: PathBuf },
}

/// A registry name: `DOMAIN/PATH[:TAG][@DIGEST]`, with `latest` as the
/// tag when neither a tag nor a digest was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Named {
    /// `DOMAIN/PATH`, the repository without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, n: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            n.as_ref().map_or(Ok(()), |n| write!(f, ":{n}"))
        };
        match self {
            ImageRef::Registry(named) => named.fmt(f),
            ImageRef::Oci { dir, name } => with(f, "oci", dir, name),
            ImageRef::OciArchive { file, name } => with(f, "oci-archive", file, name),
            ImageRef::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
        }
    }
}

/// Why a reference was refused: one sentence naming it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{reference}` is not an image reference: {why}")]
pub struct Error {
    pub reference: String,
    pub why: String,
}

/// Parses a reference: a transport prefix, or a registry name.
pub fn parse(text: &str) -> Result<ImageRef, Error> {
    let refuse = |why: &str| Error {
        reference: text.to_string(),
        why: why.to_string(),
    };
    for (transport, archive) in [("oci:", false), ("oci-archive:", true)] {
        if let Some(rest) = text.strip_prefix(transport) {
            // skopeo's split: the path ends at the first colon.
            let (path, name) = match rest.split_once(':') {
                Some((path, name)) => (path, Some(name)),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(refuse(&format!("give a path after `{transport}`")));
            }
            if name.is_some_and(str::is_empty) {
                return Err(refuse("the name after the path is empty: drop the colon"));
            }
            let (path, name) = (PathBuf::from(path), name.map(str::to_string));
            return Ok(if archive {
                ImageRef::OciArchive { file: path, name }
            } else {
                ImageRef::Oci { dir: path, name }
            });
        }
    }
    if let Some(file) = text.strip_prefix("docker-archive:") {
        if file.is_empty() {
            return Err(refuse("give a file after `docker-archive:`"));
        }
        return Ok(ImageRef::DockerArchive { file: file.into() });
    }
    parse_named(text)
        .map(ImageRef::Registry)
        .map_err(|why| refuse(&why))
}

/// Docker's normalisation of `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`.
pub fn parse_named(text: &str) -> Result<Named, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
        None => (text, None),
    };
    // A tag is after the last colon that follows the last slash (a colon
    // before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (&rest[..at], Some(check_tag(&rest[at + 1..])?))
        }
        None => (rest, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), path.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = match domain.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => domain,
    };
    check_domain(&domain)?;
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL}/{path}")
    } else {
        path
    };
    for part in path.split('/') {
        check_component(part)?;
    }
    if domain.len() + 1 + path.len() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (tag, _) => tag,
    };
    Ok(Named {
        domain,
        path,
        tag,
        digest,
    })
}

/// `sha256:` and 64 lower-case hex digits.
pub fn check_digest(digest: &str) -> Result<String, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(digest.to_string()),
        _ => Err(format!(
            "digest `{digest}` is not sha256: and 64 lower-case hex digits"
        )),
    }
}

pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<String, String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = matches!(tag.as_bytes().first(), Some(&b) if word(b))
        && tag.len() <= 128
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(tag.to_string())
    } else {
        Err(format!(
            "tag `{tag}` must be up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        ))
    }
}

/// A path component: lower-case letters and digits, separated by one
/// `.`, one or two `_`, or any number of `-`.
fn check_component(part: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "`{part}` must be lower-case letters and digits, joined by `.`, `_`, `__` or dashes"
        ))
    };
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return bad();
        }
    }
    Ok(())
}

/// `HOST[:PORT]`: labels of letters, digits and dashes, a port of digits.
fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    if host.split('.').all(label_ok) && port_ok {
        Ok(())
    } else {
        Err(format!("`{domain}` is not a registry HOST[:PORT]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(text: &str) -> String {
        match parse(text).unwrap() {
            ImageRef::Registry(n) => n.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_normalisation() {
        let d = format!("sha256:{}", "a".repeat(64));
        for (given, want) in [
            ("alpine", "docker.io/library/alpine:latest".to_string()),
            ("alpine:3.20", "docker.io/library/alpine:3.20".into()),
            ("library/alpine", "docker.io/library/alpine:latest".into()),
            ("docker.io/alpine", "docker.io/library/alpine:latest".into()),
            ("index.docker.io/x/y:1", "docker.io/x/y:1".into()),
            ("user/app", "docker.io/user/app:latest".into()),
            ("quay.io/a/b/c:v1.0", "quay.io/a/b/c:v1.0".into()),
            ("localhost/app", "localhost/app:latest".into()),
            ("localhost:5000/app:t", "localhost:5000/app:t".into()),
            (
                "127.0.0.1:5000/a_b/c-d",
                "127.0.0.1:5000/a_b/c-d:latest".into(),
            ),
            (
                &format!("alpine@{d}"),
                format!("docker.io/library/alpine@{d}"),
            ),
            (
                &format!("alpine:3@{d}"),
                format!("docker.io/library/alpine:3@{d}"),
            ),
        ] {
            assert_eq!(named(given), want, "{given}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_a_sentence() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:.x",
            "a//b",
            "alpine@sha256:abc",
            "alpine@md5:aa",
            "-a",
            "a-",
            "a...b",
            "host:99999/a",
            "oci:",
            "oci-archive:",
            "docker-archive:",
            "oci:dir:",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(!err.to_string().contains('\n'), "{err}");
            assert!(err.to_string().starts_with(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn transports() {
        assert_eq!(
            parse("oci:/tmp/lay:v1").unwrap(),
            ImageRef::Oci {
                dir: "/tmp/lay".into(),
                name: Some("v1".into())
            }
        );
        assert_eq!(
            parse("oci:lay").unwrap(),
            ImageRef::Oci {
                dir: "lay".into(),
                name: None
            }
        );
        assert_eq!(
            parse("oci-archive:/a.tar:x:y").unwrap(),
            ImageRef::OciArchive {
                file: "/a.tar".into(),
                name: Some("x:y".into())
            }
        );
        assert_eq!(
            parse("docker-archive:/a:b.tar").unwrap(),
            ImageRef::DockerArchive {
                file: "/a:b.tar".into()
            }
        );
        for text in [
            "oci:/tmp/lay:v1",
            "oci-archive:/a.tar",
            "docker-archive:/a.tar",
        ] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
    }
}
