//! Credentials (the containers-auth.json files podman, skopeo and docker
//! write) and the `WWW-Authenticate` challenges of a registry.

use super::{Error, Options};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// Where they came from, for the sentence of a refused login
    /// (` of FILE`, ` given`).
    pub from: String,
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
}

/// The file `login` writes and `logout` edits, as podman chooses it:
/// `$REGISTRY_AUTH_FILE`, else `${XDG_RUNTIME_DIR}/containers/auth.json`,
/// else (root without a runtime dir, as under sudo) podman's
/// `/run/containers/0/auth.json`.
pub fn login_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(f));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("containers/auth.json"));
    }
    rustix::process::geteuid()
        .is_root()
        .then(|| PathBuf::from("/run/containers/0/auth.json"))
}

/// The files read, in podman's order: the one `login` writes, then
/// `~/.docker/config.json`.
fn default_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = login_file().into_iter().collect();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// The keys an entry for `registry`/`repository` may have, most specific
/// first (`host/ns/repo`, `host/ns`, `host`), with Docker Hub's aliases.
fn keys(registry: &str, repository: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut path = format!("{registry}/{repository}");
    loop {
        keys.push(path.clone());
        match path.rfind('/') {
            Some(i) => path.truncate(i),
            None => break,
        }
    }
    if registry == "docker.io" {
        keys.extend(
            [
                "index.docker.io",
                "registry-1.docker.io",
                "https://index.docker.io/v1/",
            ]
            .map(str::to_string),
        );
    }
    keys.push(format!("https://{registry}"));
    keys
}

/// The credentials for a registry: those given, else the first file's that
/// has an entry. An explicit `auth_file` must exist; the usual ones may not.
pub fn find(
    registry: &str,
    repository: &str,
    options: &Options,
) -> Result<Option<Credentials>, Error> {
    if let Some((user, password)) = &options.credentials {
        return Ok(Some(Credentials {
            user: user.clone(),
            password: password.clone(),
            from: " given".to_string(),
        }));
    }
    let (files, must_exist) = match &options.auth_file {
        Some(f) => (vec![f.clone()], true),
        None => (default_files(), false),
    };
    for file in files {
        let text = match std::fs::read(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => continue,
            Err(e) => {
                return Err(Error::AuthFile {
                    path: file,
                    why: e.to_string(),
                })
            }
        };
        let bad = |why: String| Error::AuthFile {
            path: file.clone(),
            why,
        };
        let parsed: AuthFile =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
        for key in keys(registry, repository) {
            let Some(auth) = parsed.auths.get(&key).and_then(|e| e.auth.as_deref()) else {
                continue;
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "the \"auth\" of {key} is not base64 of USER:PASSWORD"
                    ))
                })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                bad(format!(
                    "the \"auth\" of {key} is not base64 of USER:PASSWORD"
                ))
            })?;
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
                from: format!(" of {}", file.display()),
            }));
        }
    }
    Ok(None)
}

/// Sets (`Some`) or removes (`None`) the entry of `registry` in the
/// containers-auth.json `file`, keeping the rest of it; the file is
/// written beside itself with mode 0600 and renamed into place.
pub fn store(file: &Path, registry: &str, credentials: Option<(&str, &str)>) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let fail = |why: String| Error::WriteAuthFile {
        path: file.to_path_buf(),
        why,
    };
    let mut doc: serde_json::Value = match std::fs::read(file) {
        Ok(text) => serde_json::from_slice(&text).map_err(|e| Error::AuthFile {
            path: file.to_path_buf(),
            why: format!("not JSON ({e})"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => {
            return Err(Error::AuthFile {
                path: file.to_path_buf(),
                why: e.to_string(),
            })
        }
    };
    if !doc.is_object() {
        doc = serde_json::json!({});
    }
    if !doc["auths"].is_object() {
        doc["auths"] = serde_json::json!({});
    }
    let auths = doc["auths"].as_object_mut().expect("made an object above");
    match credentials {
        Some((user, password)) => {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
        }
        None => {
            if auths.remove(registry).is_none() {
                return Err(Error::NotLoggedIn {
                    path: file.to_path_buf(),
                    registry: registry.to_string(),
                });
            }
        }
    }
    let dir = file.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| fail(e.to_string()))?;
    // A killed login of the same PID may have left it.
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e.to_string()));
    }
    Ok(())
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value", key=value`; a quoted value may hold commas.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    params
}

/// The token of a token server's answer (`token`, or OAuth's `access_token`).
pub fn token_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge_is_parsed() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn auth_file_entry_is_found_most_specific_first() {
        let dir = std::env::temp_dir().join(format!("engine-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &file,
            format!(
                r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"quay.io/org/app":{{"auth":"{}"}}}}}}"#,
                b64("all:one"),
                b64("app:two")
            ),
        )
        .unwrap();
        let options = Options {
            auth_file: Some(file.clone()),
            ..Options::default()
        };
        let app = find("quay.io", "org/app", &options).unwrap().unwrap();
        assert_eq!((app.user.as_str(), app.password.as_str()), ("app", "two"));
        let other = find("quay.io", "org/other", &options).unwrap().unwrap();
        assert_eq!(other.user, "all");
        assert_eq!(find("ghcr.io", "x", &options).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
