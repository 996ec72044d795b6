//! One registry's HTTP: the scheme (HTTPS, plain HTTP only where allowed),
//! authentication on a 401, retries with backoff, and downloads verified
//! against digest and size while they stream.

use super::super::staging::{check_interrupted, Interruptible};
use super::auth::{self, Challenge, Credentials};
use super::{tls, Error, Options, Target};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::time::Duration;
use ureq::http::Response;
use ureq::Body;

/// Attempts of one request before its error is final.
const ATTEMPTS: u32 = 4;
/// The first pause between attempts; doubled after each.
const BACKOFF: Duration = Duration::from_millis(250);

/// Cloned for each download thread of a pull (one agent's connection
/// pool is shared; the authorization learnt so far goes with the clone).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// `https://HOST[:PORT]` (or `http://`).
    base: String,
    /// Plain HTTP may be tried if HTTPS cannot connect (until one answer).
    may_fall_back: bool,
    /// Why HTTPS failed, when the client fell back to plain HTTP.
    https_failed: Option<String>,
    registry: String,
    repository: String,
    reference: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
    /// Where the registry's CA belongs, for the sentences.
    ca_file: String,
}

/// Where a download goes; restarted from empty on a retry.
pub trait Sink: Write {
    fn restart(&mut self) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    fn restart(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
}

impl Sink for File {
    fn restart(&mut self) -> io::Result<()> {
        self.set_len(0)?;
        self.rewind()
    }
}

/// What a download must be.
pub struct Expect<'a> {
    /// `manifest` or `blob`, for the sentences.
    pub what: &'a str,
    pub digest: Option<&'a str>,
    pub size: Option<u64>,
    /// Bytes beyond which the download is refused (for manifests).
    pub limit: Option<u64>,
}

pub struct Fetched {
    pub content_type: String,
    /// `sha256:HEX` of what was received.
    pub digest: String,
    /// The registry's `Docker-Content-Digest` header.
    pub said_digest: Option<String>,
}

/// `sha256:` and 64 lower-case hex digits: the only digests accepted (they
/// become file names in the layout).
pub fn check_digest(digest: &str, reference: &str) -> Result<(), Error> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::BadManifest {
            reference: reference.to_string(),
            why: format!("digest `{digest}` is not sha256:HEX (other algorithms are not read): check the reference"),
        })
    }
}

enum Failure {
    /// Worth another attempt (5xx, 429, a broken connection).
    Retry(Error),
    Final(Error),
}

impl Client {
    pub fn new(target: &Target, options: &Options) -> Result<Client, Error> {
        let registry = target.registry.clone();
        let roots = tls::roots(&registry, options.certs_dir.as_deref())?;
        let marked = std::env::var(tls::INSECURE_ENV)
            .is_ok_and(|list| tls::marked_insecure(&registry, &list));
        let insecure = options.insecure || marked;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(roots)
            // The user's own choice for this registry only, as docker's
            // insecure-registries: a local one is still verified.
            .disable_verification(insecure)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A blob's redirect to storage elsewhere gets no credentials.
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // No limit on a whole body (a layer may be gigabytes on a slow
            // link); a read that stalls a minute is a broken connection.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("engine/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        // Docker Hub's API lives on another name than its references.
        let endpoint = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry.as_str()
        };
        Ok(Client {
            agent,
            base: format!("https://{endpoint}"),
            may_fall_back: insecure || tls::is_local(&registry),
            https_failed: None,
            credentials: auth::find(&registry, &target.repository, options)?,
            registry,
            repository: target.repository.clone(),
            reference: target.to_string(),
            authorization: None,
            ca_file: options
                .certs_dir
                .as_deref()
                .unwrap_or(std::path::Path::new(tls::DEFAULT_CERTS_DIR))
                .join(&target.registry)
                .join("ca.crt")
                .display()
                .to_string(),
        })
    }

    /// `GET /v2/` with the client's credentials (a bearer token asked
    /// for without a scope, as `podman login` does): whether the registry
    /// takes them. Errors name the registry as their reference.
    pub fn check_login(&mut self) -> Result<(), Error> {
        self.reference = self.registry.clone();
        self.repository.clear();
        let mut pause = BACKOFF;
        let mut attempt = 1;
        loop {
            match self.get("/v2/", None) {
                Ok(_) => return Ok(()),
                Err(Failure::Retry(_)) if attempt < ATTEMPTS => {
                    std::thread::sleep(pause);
                    pause *= 2;
                    attempt += 1;
                }
                Err(Failure::Retry(e) | Failure::Final(e)) => return Err(e),
            }
        }
    }

    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// `/v2/REPO/manifests/REF` or `/v2/REPO/blobs/DIGEST`.
    pub fn path(&self, kind: &str, reference: &str) -> String {
        format!("/v2/{}/{kind}/{reference}", self.repository)
    }

    /// Downloads `path` into `sink`, checking what `expect` says while the
    /// bytes stream; retried from the start on 5xx and broken connections.
    pub fn download(
        &mut self,
        path: &str,
        accept: Option<&str>,
        expect: &Expect,
        sink: &mut dyn Sink,
    ) -> Result<Fetched, Error> {
        let mut pause = BACKOFF;
        let mut attempt = 1;
        loop {
            match self.try_download(path, accept, expect, sink) {
                Ok(fetched) => return Ok(fetched),
                Err(Failure::Retry(e)) if attempt < ATTEMPTS => {
                    let _ = e;
                    check_interrupted()?;
                    std::thread::sleep(pause);
                    pause *= 2;
                    attempt += 1;
                }
                Err(Failure::Retry(e) | Failure::Final(e)) => return Err(e),
            }
        }
    }

    fn try_download(
        &mut self,
        path: &str,
        accept: Option<&str>,
        expect: &Expect,
        sink: &mut dyn Sink,
    ) -> Result<Fetched, Failure> {
        let response = self.get(path, accept)?;
        let content_type = header(&response, "content-type").unwrap_or_default();
        let said_digest = header(&response, "docker-content-digest");
        let length: Option<u64> =
            header(&response, "content-length").and_then(|v| v.trim().parse().ok());
        let digest = expect.digest.unwrap_or("");
        if let (Some(limit), Some(length)) = (expect.limit, length) {
            if length > limit {
                return Err(Failure::Final(Error::ManifestTooBig {
                    reference: self.reference.clone(),
                    size: format!("{length} bytes"),
                }));
            }
        }
        let write_error = |e: io::Error| {
            Failure::Final(Error::Write {
                reference: self.reference.clone(),
                path: std::path::PathBuf::from(format!("the {} {digest}", expect.what)),
                why: e.to_string(),
            })
        };
        sink.restart().map_err(write_error)?;
        // One byte more than allowed is read to tell "larger" from "equal".
        let cap = expect
            .size
            .or(expect.limit)
            .map_or(u64::MAX, |n| n.saturating_add(1));
        let mut body = Interruptible(response.into_body().into_reader()).take(cap);
        let mut hasher = Sha256::new();
        let mut got: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A signal, or a connection broken mid-body: counted
                    // as cut short if the attempts run out.
                    let _ = e;
                    check_interrupted().map_err(|i| Failure::Final(i.into()))?;
                    return Err(Failure::Retry(match expect.size {
                        Some(declared) => Error::Truncated {
                            reference: self.reference.clone(),
                            what: expect.what.to_string(),
                            digest: digest.to_string(),
                            declared,
                            got,
                        },
                        None => Error::Transport {
                            reference: self.reference.clone(),
                            url: format!("{}{path}", self.base),
                            why: format!("the connection broke after {got} bytes"),
                            hint: ": try again".to_string(),
                        },
                    }));
                }
            };
            got += n as u64;
            hasher.update(&buf[..n]);
            sink.write_all(&buf[..n]).map_err(write_error)?;
        }
        if let Some(declared) = expect.size {
            if got > declared {
                return Err(Failure::Final(Error::TooLarge {
                    reference: self.reference.clone(),
                    what: expect.what.to_string(),
                    digest: digest.to_string(),
                    declared,
                }));
            }
            if got < declared {
                return Err(Failure::Final(Error::Truncated {
                    reference: self.reference.clone(),
                    what: expect.what.to_string(),
                    digest: digest.to_string(),
                    declared,
                    got,
                }));
            }
        }
        if let Some(limit) = expect.limit {
            if got > limit {
                return Err(Failure::Final(Error::ManifestTooBig {
                    reference: self.reference.clone(),
                    size: format!("more than {limit} bytes"),
                }));
            }
        }
        sink.flush().map_err(write_error)?;
        let received = format!("sha256:{:x}", hasher.finalize());
        if let Some(want) = expect.digest {
            if want != received {
                return Err(Failure::Final(Error::DigestMismatch {
                    reference: self.reference.clone(),
                    what: expect.what.to_string(),
                    digest: want.to_string(),
                    got: received,
                }));
            }
        }
        Ok(Fetched {
            content_type,
            digest: received,
            said_digest,
        })
    }

    /// A GET with the current authorization; a 401 authenticates (once)
    /// and asks again.
    fn get(&mut self, path: &str, accept: Option<&str>) -> Result<Response<Body>, Failure> {
        let mut authenticated = false;
        loop {
            let url = format!("{}{path}", self.base);
            let mut request = self.agent.get(&url);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            if let Some(authorization) = &self.authorization {
                request = request.header("Authorization", authorization);
            }
            let response = match request.call() {
                Ok(response) => response,
                Err(e) if self.may_fall_back && self.https_failed.is_none() => {
                    // A local or insecure registry that does not speak TLS.
                    self.https_failed = Some(e.to_string());
                    self.base = self.base.replacen("https://", "http://", 1);
                    continue;
                }
                Err(e) => {
                    let error = self.transport_error(&url, &e);
                    return Err(if is_retry(&e) {
                        Failure::Retry(error)
                    } else {
                        Failure::Final(error)
                    });
                }
            };
            // An answer came: the scheme is settled.
            self.may_fall_back = false;
            let status = response.status().as_u16();
            match status {
                200..=299 => return Ok(response),
                401 if !authenticated => {
                    let challenge = header(&response, "www-authenticate").unwrap_or_default();
                    self.authenticate(&challenge).map_err(Failure::Final)?;
                    authenticated = true;
                }
                401 => return Err(Failure::Final(self.unauthorized())),
                403 => {
                    return Err(Failure::Final(Error::Denied {
                        reference: self.reference.clone(),
                        registry: self.registry.clone(),
                    }))
                }
                404 => {
                    let what = if path.contains("/blobs/") {
                        format!("blob {}", path.rsplit('/').next().unwrap_or(""))
                    } else {
                        "the manifest".to_string()
                    };
                    return Err(Failure::Final(Error::NotFound {
                        reference: self.reference.clone(),
                        registry: self.registry.clone(),
                        what,
                    }));
                }
                _ => {
                    let hint = if status >= 500 || status == 429 {
                        format!(" ({ATTEMPTS} attempts): the registry is failing; try again later")
                    } else {
                        self.https_hint(status)
                    };
                    let error = Error::Http {
                        reference: self.reference.clone(),
                        url,
                        status,
                        hint,
                    };
                    return Err(if status >= 500 || status == 429 {
                        Failure::Retry(error)
                    } else {
                        Failure::Final(error)
                    });
                }
            }
        }
    }

    fn unauthorized(&self) -> Error {
        match &self.credentials {
            Some(c) => Error::Unauthorized {
                reference: self.reference.clone(),
                registry: self.registry.clone(),
                from: c.from.clone(),
            },
            None => Error::NoCredentials {
                reference: self.reference.clone(),
                registry: self.registry.clone(),
            },
        }
    }

    /// Answers a challenge: basic auth with the credentials, or a bearer
    /// token from the realm (anonymous when there are no credentials).
    fn authenticate(&mut self, challenge: &str) -> Result<(), Error> {
        match auth::parse_challenge(challenge) {
            Some(Challenge::Basic) | None => {
                let credentials = self
                    .credentials
                    .as_ref()
                    .ok_or_else(|| self.unauthorized())?;
                self.authorization = Some(credentials.basic_header());
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.or_else(|| {
                    // A login asks for a token of no repository.
                    (!self.repository.is_empty())
                        .then(|| format!("repository:{}:pull", self.repository))
                });
                let mut request = self.agent.get(&realm);
                if let Some(scope) = &scope {
                    request = request.query("scope", scope);
                }
                if let Some(service) = &service {
                    request = request.query("service", service);
                }
                if let Some(credentials) = &self.credentials {
                    request = request.header("Authorization", credentials.basic_header());
                }
                let response = request
                    .call()
                    .map_err(|e| self.transport_error(&realm, &e))?;
                match response.status().as_u16() {
                    200..=299 => {}
                    401 | 403 => return Err(self.unauthorized()),
                    status => {
                        return Err(Error::Http {
                            reference: self.reference.clone(),
                            url: realm,
                            status,
                            hint: " (the token server)".to_string(),
                        })
                    }
                }
                let body = response
                    .into_body()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| self.transport_error(&realm, &e))?;
                let token = auth::token_of(&body).ok_or_else(|| Error::Http {
                    reference: self.reference.clone(),
                    url: realm.clone(),
                    status: 200,
                    hint: ": the token server's answer holds no token".to_string(),
                })?;
                self.authorization = Some(format!("Bearer {token}"));
                Ok(())
            }
        }
    }

    fn transport_error(&self, url: &str, e: &ureq::Error) -> Error {
        Error::Transport {
            reference: self.reference.clone(),
            url: url.to_string(),
            why: e.to_string(),
            hint: match e {
                _ if is_tls(e) => format!(
                    ": put the registry's CA in {}, or name {} in {} to allow plain HTTP and any certificate",
                    self.ca_file,
                    self.registry,
                    tls::INSECURE_ENV
                ),
                _ => ": check the registry's address and that it is up".to_string(),
            },
        }
    }

    /// A 400 in plain HTTP after HTTPS failed: most likely a TLS server
    /// whose certificate was not trusted.
    fn https_hint(&self, status: u16) -> String {
        match &self.https_failed {
            Some(why) if status == 400 => format!(
                " (plain HTTP, after HTTPS failed: {why}): if it speaks HTTPS, put its CA in {}",
                self.ca_file
            ),
            _ => String::new(),
        }
    }
}

/// A transport error worth another attempt: the connection, not the TLS
/// handshake or the address.
fn is_retry(e: &ureq::Error) -> bool {
    !is_tls(e)
        && matches!(
            e,
            ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
        )
}

/// A failed TLS handshake: an untrusted certificate, or a server that
/// answered in plain HTTP (rustls's errors reach ureq as `InvalidData`).
fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
