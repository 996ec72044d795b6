//! The registry client against a real registry: Debian's `docker-registry`
//! (the distribution registry) on 127.0.0.1 inside a network namespace of
//! the test's own, images made here as OCI layouts and pushed with
//! `skopeo copy`, so the registry holds what real tools write. Once in
//! plain HTTP, once with TLS (a CA made here with openssl, given through a
//! certs directory) and htpasswd basic auth. Every refused pull must be one
//! line naming the reference and leave nothing where the layout would be.

use engine::image::registry::{self, Error, Options, Platform, TagOrDigest, Target};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const HOST: &str = "127.0.0.1:5000";
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn run(cmd: &mut Command) -> String {
    let out = testkit::wait::output(cmd, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `f` on a thread in a new network namespace with `lo` up: the registry,
/// skopeo and the client all live there.
fn in_netns(f: impl FnOnce() + Send + 'static) {
    testkit::netns::in_private(move || {
        run(Command::new("ip").args(["link", "set", "lo", "up"]));
        f()
    })
}

// ---- images made here ----

struct Blob {
    media_type: &'static str,
    bytes: Vec<u8>,
}

impl Blob {
    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": sha256(&self.bytes),
            "size": self.bytes.len(),
        })
    }
}

/// A gzipped layer holding `files` (name, content).
fn layer(files: &[(&str, &str)]) -> (Blob, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, content.as_bytes())
            .unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let diff_id = sha256(&tar);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let blob = Blob {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        bytes: gz.finish().unwrap(),
    };
    (blob, diff_id)
}

/// One image for `arch`: (manifest, config, layer).
fn image(arch: &str, files: &[(&str, &str)]) -> (Blob, Blob, Blob) {
    let (layer, diff_id) = layer(files);
    let config = Blob {
        media_type: "application/vnd.oci.image.config.v1+json",
        bytes: serde_json::to_vec(&serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        }))
        .unwrap(),
    };
    let manifest = Blob {
        media_type: "application/vnd.oci.image.manifest.v1+json",
        bytes: serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        }))
        .unwrap(),
    };
    (manifest, config, layer)
}

/// One image of several layers (each holding `files[i]`): (manifest,
/// config, layers).
fn image_of_layers(files: &[Vec<(String, String)>]) -> (Blob, Blob, Vec<Blob>) {
    let (layers, diff_ids): (Vec<Blob>, Vec<String>) = files
        .iter()
        .map(|f| {
            let pairs: Vec<(&str, &str)> =
                f.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
            layer(&pairs)
        })
        .unzip();
    let config = Blob {
        media_type: "application/vnd.oci.image.config.v1+json",
        bytes: serde_json::to_vec(&serde_json::json!({
            "architecture": Platform::host().architecture,
            "os": "linux",
            "config": { "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .unwrap(),
    };
    let manifest = Blob {
        media_type: "application/vnd.oci.image.manifest.v1+json",
        bytes: serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        }))
        .unwrap(),
    };
    (manifest, config, layers)
}

fn write_blob(dir: &Path, blob: &Blob) {
    let path = dir
        .join("blobs/sha256")
        .join(sha256(&blob.bytes).trim_start_matches("sha256:"));
    fs::write(path, &blob.bytes).unwrap();
}

/// An OCI layout at `dir` whose `tag` is `top` (a manifest or an index).
fn write_layout(dir: &Path, tag: &str, top: &Blob, blobs: &[&Blob]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for blob in blobs.iter().chain([&top]) {
        write_blob(dir, blob);
    }
    let mut entry = top.descriptor();
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [entry] });
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

// ---- the registry ----

struct Registry {
    child: Child,
    /// Its storage (the blobs a test corrupts).
    data: PathBuf,
    /// skopeo's options to reach it.
    push_flags: Vec<String>,
    /// Its HOST:PORT.
    host: String,
    _dir: TempDir,
}

struct Secure {
    /// A certs.d-style directory: `127.0.0.1:5000/ca.crt`.
    certs_d: PathBuf,
    user: &'static str,
    password: &'static str,
}

impl Registry {
    /// Plain HTTP, no auth.
    fn plain() -> Registry {
        Registry::start(HOST, None).0
    }

    /// Plain HTTP on another address than loopback's (one the test put on
    /// its namespace's `lo`).
    fn plain_at(host: &str) -> Registry {
        Registry::start(host, None).0
    }

    /// TLS with a CA made here, htpasswd basic auth.
    fn secure() -> (Registry, Secure) {
        let (registry, secure) = Registry::start(HOST, Some(()));
        (registry, secure.unwrap())
    }

    fn start(host: &str, secure: Option<()>) -> (Registry, Option<Secure>) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            data.display()
        );
        let mut push_flags = vec!["--dest-tls-verify=false".to_string()];
        let mut made = None;
        if secure.is_some() {
            let certs_d = dir.path().join("certs.d");
            let ca_dir = certs_d.join(HOST);
            fs::create_dir_all(&ca_dir).unwrap();
            make_certs(dir.path(), &ca_dir.join("ca.crt"));
            let (user, password) = ("tester", "s3cret-pw");
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{}\n", bcrypt(password))).unwrap();
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display(),
                htpasswd.display()
            );
            push_flags = vec![
                format!("--dest-cert-dir={}", ca_dir.display()),
                format!("--dest-creds={user}:{password}"),
            ];
            made = Some(Secure {
                certs_d,
                user,
                password,
            });
        }
        let config_file = dir.path().join("config.yml");
        fs::write(&config_file, config).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", config_file.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let registry = Registry {
            child,
            data,
            push_flags,
            host: host.to_string(),
            _dir: dir,
        };
        let addr: std::net::SocketAddr = host.parse().unwrap();
        testkit::wait::until(Duration::from_secs(20), "the registry to listen", || {
            std::net::TcpStream::connect(addr).ok()
        });
        (registry, made)
    }

    /// `skopeo copy [extra] oci:LAYOUT:TAG docker://127.0.0.1:5000/REPO:TAG`.
    fn push(&self, layout: &Path, tag: &str, repo: &str, extra: &[&str]) {
        let policy = self.data.with_file_name("policy.json");
        fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        run(Command::new("skopeo")
            .arg(format!("--policy={}", policy.display()))
            .arg("copy")
            .args(&self.push_flags)
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host)));
    }

    /// The registry's own file of a blob.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.data
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (in `dir`:
/// server.crt, server.key); the CA's certificate is copied to `ca_out`.
fn make_certs(dir: &Path, ca_out: &Path) {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", &p("ca.key"), "-out", &p("ca.crt"), "-days", "2"])
        .args(["-subj", "/CN=engine test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .arg("req")
        .args(ec)
        .args(["-keyout", &p("server.key"), "-out", &p("server.csr")])
        .args(["-subj", "/CN=127.0.0.1"]));
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-in", &p("server.csr"), "-CA", &p("ca.crt")])
        .args(["-CAkey", &p("ca.key"), "-CAcreateserial", "-days", "2"])
        .args(["-out", &p("server.crt"), "-extfile", &p("ext.cnf")]));
    fs::copy(dir.join("ca.crt"), ca_out).unwrap();
}

/// A bcrypt hash (docker-registry's htpasswd reads only bcrypt; apache2-utils'
/// htpasswd is not installed here, `openssl passwd` has no bcrypt), through
/// libxcrypt's crypt(3) as Python's crypt module calls it.
fn bcrypt(password: &str) -> String {
    let out = run(Command::new("python3")
        .args(["-W", "ignore", "-c"])
        .arg("import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))")
        .arg(password));
    let hash = out.trim().to_string();
    assert!(hash.starts_with("$2"), "not a bcrypt hash: {hash}");
    hash
}

// ---- pulls ----

fn target(repo: &str, tag: &str) -> Target {
    Target {
        registry: HOST.to_string(),
        repository: repo.to_string(),
        tag_or_digest: TagOrDigest::Tag(tag.to_string()),
    }
}

/// The layout's one image: (manifest media type, ref name, manifest bytes).
fn read_layout(dir: &Path) -> (String, Option<String>, serde_json::Value) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    let entry = &entries[0];
    let digest = entry["digest"].as_str().unwrap();
    let bytes = fs::read(dir.join("blobs/sha256").join(&digest[7..])).unwrap();
    assert_eq!(sha256(&bytes), digest);
    assert_eq!(entry["size"].as_u64().unwrap(), bytes.len() as u64);
    (
        entry["mediaType"].as_str().unwrap().to_string(),
        entry["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(str::to_string),
        serde_json::from_slice(&bytes).unwrap(),
    )
}

/// Every blob of the layout is named by its own digest.
fn assert_blobs_verified(dir: &Path) {
    for entry in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let bytes = fs::read(entry.path()).unwrap();
        assert_eq!(
            sha256(&bytes)[7..],
            entry.file_name().to_string_lossy(),
            "blob {:?}",
            entry.path()
        );
    }
}

/// A refused pull: one line naming the reference, containing `needle`, and
/// nothing left where the layout would be nor beside it.
fn assert_refused(result: Result<registry::Pulled, Error>, layout: &Path, needle: &str) -> Error {
    let err = result.expect_err("the pull must be refused");
    let text = err.to_string();
    assert!(!text.contains('\n'), "not one line: {text}");
    assert!(text.contains(needle), "`{needle}` not in: {text}");
    assert!(
        !layout.exists(),
        "{} was left behind after: {text}",
        layout.display()
    );
    let parent = layout.parent().unwrap();
    let left: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "partials left: {left:?} after: {text}");
    eprintln!("refused as expected: {text}");
    err
}

fn host_pull(
    repo: &str,
    tag: &str,
    out: &Path,
    options: &Options,
) -> Result<registry::Pulled, Error> {
    registry::pull_to_layout(&target(repo, tag), None, out, options)
}

#[test]
fn plain_http_pulls_oci_and_docker_manifests_into_a_layout() {
    in_netns(|| {
        let registry = Registry::plain();
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[
                ("hello.txt", "hello from the registry\n"),
                ("etc/os", "test\n"),
            ],
        );
        let src = work.path().join("src");
        write_layout(&src, "v1", &manifest, &[&config, &layer]);
        registry.push(&src, "v1", "test/app", &[]);
        registry.push(&src, "v1", "test/docker", &["--format=v2s2"]);
        let options = Options::default();

        // OCI: the manifest comes byte for byte, umoci reads the layout.
        let out = work.path().join("oci");
        let pulled = host_pull("test/app", "v1", &out, &options).unwrap();
        assert_eq!(pulled.digest, sha256(&manifest.bytes));
        assert_eq!(pulled.manifest, pulled.digest);
        assert_eq!(pulled.config, sha256(&config.bytes));
        assert_eq!(pulled.layers.len(), 1);
        assert_eq!(pulled.layers[0].digest, sha256(&layer.bytes));
        assert_eq!(pulled.platform, Platform::host());
        let (media_type, name, _) = read_layout(&out);
        assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(name.as_deref(), Some("127.0.0.1:5000/test/app:v1"));
        assert_blobs_verified(&out);
        let bundle = work.path().join("bundle");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:127.0.0.1:5000/test/app:v1", out.display()))
            .arg(&bundle));
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
            "hello from the registry\n"
        );

        // Docker v2 schema 2, as skopeo converted it.
        let out = work.path().join("docker");
        let pulled = host_pull("test/docker", "v1", &out, &options).unwrap();
        let (media_type, _, manifest_json) = read_layout(&out);
        assert_eq!(
            media_type,
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            manifest_json["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(pulled.layers[0].digest, sha256(&layer.bytes));
        assert_blobs_verified(&out);

        // By digest: the same image again.
        let out = work.path().join("bydigest");
        let by_digest = Target {
            tag_or_digest: TagOrDigest::Digest(sha256(&manifest.bytes)),
            ..target("test/app", "")
        };
        registry::pull_to_layout(&by_digest, None, &out, &options).unwrap();
        let (_, name, _) = read_layout(&out);
        assert_eq!(
            name,
            Some(format!(
                "127.0.0.1:5000/test/app@{}",
                sha256(&manifest.bytes)
            ))
        );

        // A single-platform image is checked against a platform asked for.
        let out = work.path().join("s390x");
        let s390x = Platform::parse("linux/s390x").unwrap();
        assert_refused(
            registry::pull_to_layout(&target("test/app", "v1"), Some(&s390x), &out, &options),
            &out,
            &format!(
                "has no linux/s390x variant (it has linux/{})",
                Platform::host().architecture
            ),
        );

        // A layout directory that is not empty is refused before anything.
        let taken = work.path().join("taken");
        fs::create_dir(&taken).unwrap();
        fs::write(taken.join("x"), "").unwrap();
        let err = host_pull("test/app", "v1", &taken, &options).unwrap_err();
        assert!(matches!(err, Error::LayoutNotEmpty { .. }), "{err}");

        // An unknown tag and an unknown repository: 404.
        let out = work.path().join("missing");
        assert_refused(
            host_pull("test/app", "nope", &out, &options),
            &out,
            "127.0.0.1:5000/test/app:nope",
        );
        let err = assert_refused(
            host_pull("test/none", "v1", &out, &options),
            &out,
            "HTTP 404",
        );
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    });
}

/// An index of an amd64 and an arm64 image (one file, `arch`, saying
/// which), pushed as `test/multi:multi` with `skopeo copy --all`; returns
/// the index and each image's manifest, config and layer.
fn push_two_arch_index(registry: &Registry, work: &Path) -> (Blob, [Blob; 3], [Blob; 3]) {
    let (amd_m, amd_c, amd_l) = image("amd64", &[("arch", "amd64\n")]);
    let (arm_m, arm_c, arm_l) = image("arm64", &[("arch", "arm64\n")]);
    let entry = |m: &Blob, arch: &str| {
        let mut d = m.descriptor();
        d["platform"] = serde_json::json!({ "architecture": arch, "os": "linux" });
        d
    };
    let index = Blob {
        media_type: "application/vnd.oci.image.index.v1+json",
        bytes: serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry(&amd_m, "amd64"), entry(&arm_m, "arm64")],
        }))
        .unwrap(),
    };
    let src = work.join("src");
    write_layout(
        &src,
        "multi",
        &index,
        &[&amd_m, &amd_c, &amd_l, &arm_m, &arm_c, &arm_l],
    );
    registry.push(&src, "multi", "test/multi", &["--all"]);
    (index, [amd_m, amd_c, amd_l], [arm_m, arm_c, arm_l])
}

#[test]
fn an_index_is_resolved_to_the_platform_asked_for() {
    in_netns(|| {
        let registry = Registry::plain();
        let work = tempfile::tempdir().unwrap();
        let (index, [amd_m, _, amd_l], [arm_m, _, arm_l]) =
            push_two_arch_index(&registry, work.path());
        let options = Options::default();

        for (arch, manifest, layer) in [("arm64", &arm_m, &arm_l), ("amd64", &amd_m, &amd_l)] {
            let out = work.path().join(arch);
            let platform = Platform::parse(&format!("linux/{arch}")).unwrap();
            let pulled = registry::pull_to_layout(
                &target("test/multi", "multi"),
                Some(&platform),
                &out,
                &options,
            )
            .unwrap();
            assert_eq!(pulled.digest, sha256(&index.bytes));
            assert_eq!(pulled.manifest, sha256(&manifest.bytes));
            assert_eq!(pulled.layers[0].digest, sha256(&layer.bytes));
            assert_eq!(pulled.platform, platform);
            let (media_type, name, _) = read_layout(&out);
            assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
            assert_eq!(name.as_deref(), Some("127.0.0.1:5000/test/multi:multi"));
            assert_blobs_verified(&out);
            // The other platform's layer was not fetched.
            let other = if arch == "arm64" { &amd_l } else { &arm_l };
            assert!(!out
                .join("blobs/sha256")
                .join(&sha256(&other.bytes)[7..])
                .exists());
        }

        let out = work.path().join("s390x");
        let s390x = Platform::parse("linux/s390x").unwrap();
        let err = assert_refused(
            registry::pull_to_layout(&target("test/multi", "multi"), Some(&s390x), &out, &options),
            &out,
            "has no linux/s390x variant (it has linux/amd64, linux/arm64)",
        );
        assert!(err.to_string().contains("127.0.0.1:5000/test/multi:multi"));
    });
}

#[test]
fn corrupt_blobs_are_refused() {
    in_netns(|| {
        let registry = Registry::plain();
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[("big", &"x".repeat(100_000))],
        );
        let src = work.path().join("src");
        write_layout(&src, "v1", &manifest, &[&config, &layer]);
        registry.push(&src, "v1", "test/bad", &[]);
        let options = Options::default();
        let out = work.path().join("out");
        let digest = sha256(&layer.bytes);
        let stored = registry.blob_file(&digest);
        assert_eq!(fs::read(&stored).unwrap(), layer.bytes);

        // Same size, other bytes: the digest gives it away.
        let mut other = layer.bytes.clone();
        let last = other.len() - 1;
        other[last] ^= 0xff;
        fs::write(&stored, &other).unwrap();
        let err = assert_refused(
            host_pull("test/bad", "v1", &out, &options),
            &out,
            "does not match its digest",
        );
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

        // Cut short.
        fs::write(&stored, &layer.bytes[..layer.bytes.len() / 2]).unwrap();
        let err = assert_refused(
            host_pull("test/bad", "v1", &out, &options),
            &out,
            "cut short",
        );
        assert!(matches!(err, Error::Truncated { .. }), "{err}");

        // Longer than the manifest says.
        let mut longer = layer.bytes.clone();
        longer.extend_from_slice(b"trailing bytes");
        fs::write(&stored, &longer).unwrap();
        let err = assert_refused(
            host_pull("test/bad", "v1", &out, &options),
            &out,
            "larger than its declared",
        );
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");

        // Whole again: the pull works (the refusals were the blob's).
        fs::write(&stored, &layer.bytes).unwrap();
        host_pull("test/bad", "v1", &out, &options).unwrap();
    });
}

/// A server that misbehaves as the real registry cannot be made to (it
/// refuses manifests over 4 MiB itself and never answers 503): 127.0.0.1
/// in the test's namespace, one answer per connection, each decided by
/// `answer(path, how many times that path was asked before, the request's
/// header lines)`.
struct Misbehaving {
    asked: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl Misbehaving {
    fn start(
        port: u16,
        answer: impl Fn(&str, usize, &str) -> Vec<u8> + Send + 'static,
    ) -> Misbehaving {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let counts = asked.clone();
        // Ends with the namespace's last user (the test's thread), as the
        // listener is never closed otherwise: a detached thread.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let mut head = String::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    head += &header;
                }
                let n = {
                    let mut counts = counts.lock().unwrap();
                    let n = counts.entry(path.clone()).or_insert(0);
                    *n += 1;
                    *n - 1
                };
                let _ = stream.write_all(&answer(&path, n, &head));
            }
        });
        Misbehaving { asked }
    }

    fn times(&self, path: &str) -> usize {
        self.asked.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn http(status: &str, content_type: &str, body: &[u8], length: Option<usize>) -> Vec<u8> {
    let mut head =
        format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: {content_type}\r\n");
    if let Some(n) = length {
        head += &format!("Content-Length: {n}\r\n");
    }
    let mut out = (head + "\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn server_errors_are_retried_and_a_huge_manifest_is_refused() {
    in_netns(|| {
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[("f", &"y".repeat(50_000))],
        );
        let huge = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
            "annotations": { "padding": "p".repeat(5 << 20) },
        }))
        .unwrap();
        let (m, c, l) = (
            manifest.bytes.clone(),
            config.bytes.clone(),
            layer.bytes.clone(),
        );
        let (m_digest, c_digest, l_digest) = (sha256(&m), sha256(&c), sha256(&l));
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let layer_path = format!("/v2/t/x/blobs/{l_digest}");
        let server = Misbehaving::start(5001, move |path, n, _head| {
            let blob = |bytes: &[u8]| {
                http(
                    "200 OK",
                    "application/octet-stream",
                    bytes,
                    Some(bytes.len()),
                )
            };
            match path.rsplit('/').next().unwrap_or("") {
                "" => http("200 OK", "application/json", b"{}", Some(2)),
                // Two 503s, then the manifest.
                "flaky" if n < 2 => http("503 Service Unavailable", "text/plain", b"busy", Some(4)),
                "flaky" => http("200 OK", oci, &m, Some(m.len())),
                "down" => http("503 Service Unavailable", "text/plain", b"down", Some(4)),
                // Without and with a Content-Length.
                "huge-streamed" => http("200 OK", oci, &huge, None),
                "huge" => http("200 OK", oci, &huge, Some(huge.len())),
                // Blobs may live elsewhere (S3, a CDN): a redirect.
                d if d == c_digest => b"HTTP/1.1 307 Temporary Redirect\r\nConnection: close\r\n\
                    Location: http://127.0.0.1:5001/storage/config-blob\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
                "config-blob" => blob(&c),
                // The first answer breaks off in the middle.
                d if d == l_digest && n == 0 => http(
                    "200 OK",
                    "application/octet-stream",
                    &l[..l.len() / 2],
                    Some(l.len()),
                ),
                d if d == l_digest => blob(&l),
                _ => http("404 Not Found", "application/json", b"{}", Some(2)),
            }
        });
        let options = Options::default();
        let at = |tag: &str| Target {
            registry: "127.0.0.1:5001".to_string(),
            repository: "t/x".to_string(),
            tag_or_digest: TagOrDigest::Tag(tag.to_string()),
        };

        let out = work.path().join("flaky");
        let pulled = registry::pull_to_layout(&at("flaky"), None, &out, &options).unwrap();
        assert_eq!(pulled.manifest, m_digest);
        assert_eq!(server.times("/v2/t/x/manifests/flaky"), 3);
        assert_eq!(server.times(&layer_path), 2);
        assert_eq!(server.times("/storage/config-blob"), 1);
        assert_blobs_verified(&out);

        let out = work.path().join("down");
        let err = assert_refused(
            registry::pull_to_layout(&at("down"), None, &out, &options),
            &out,
            "HTTP 503",
        );
        assert!(err.to_string().contains("127.0.0.1:5001/t/x:down"), "{err}");
        assert_eq!(server.times("/v2/t/x/manifests/down"), 4);

        for tag in ["huge", "huge-streamed"] {
            let out = work.path().join(tag);
            let err = assert_refused(
                registry::pull_to_layout(&at(tag), None, &out, &options),
                &out,
                "larger than 4 MiB",
            );
            assert!(matches!(err, Error::ManifestTooBig { .. }), "{err}");
        }
    });
}

#[test]
fn tls_with_a_private_ca_and_basic_auth() {
    in_netns(|| {
        let (registry, secure) = Registry::secure();
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[("secret.txt", "behind TLS\n")],
        );
        let src = work.path().join("src");
        write_layout(&src, "v1", &manifest, &[&config, &layer]);
        registry.push(&src, "v1", "test/private", &[]);

        // The credentials from a containers-auth.json file.
        let auth_file = work.path().join("auth.json");
        let write_auth = |password: &str| {
            use base64::Engine as _;
            let auth = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", secure.user));
            fs::write(
                &auth_file,
                format!(r#"{{"auths":{{"{HOST}":{{"auth":"{auth}"}}}}}}"#),
            )
            .unwrap();
        };
        write_auth(secure.password);
        let options = Options {
            auth_file: Some(auth_file.clone()),
            certs_dir: Some(secure.certs_d.clone()),
            ..Options::default()
        };
        let out = work.path().join("ok");
        let pulled = host_pull("test/private", "v1", &out, &options).unwrap();
        assert_eq!(pulled.layers[0].digest, sha256(&layer.bytes));
        assert_blobs_verified(&out);

        // A refused login.
        write_auth("wrong-password");
        let out = work.path().join("refused");
        let err = assert_refused(
            host_pull("test/private", "v1", &out, &options),
            &out,
            "refused the credentials of",
        );
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        assert!(err.to_string().contains("127.0.0.1:5000/test/private:v1"));

        // No credentials at all.
        let none = Options {
            auth_file: Some(work.path().join("empty.json")),
            ..options.clone()
        };
        fs::write(work.path().join("empty.json"), r#"{"auths":{}}"#).unwrap();
        let err = assert_refused(
            host_pull("test/private", "v1", &out, &none),
            &out,
            "none were found",
        );
        assert!(matches!(err, Error::NoCredentials { .. }), "{err}");

        // Without the CA the certificate is not trusted (and plain HTTP,
        // allowed for 127.0.0.1, finds a TLS server).
        let no_ca = Options {
            certs_dir: Some(work.path().join("no-certs")),
            credentials: Some((secure.user.to_string(), secure.password.to_string())),
            ..options.clone()
        };
        assert_refused(
            host_pull("test/private", "v1", &out, &no_ca),
            &out,
            "ca.crt",
        );

        // Credentials given directly win over the file.
        let given = Options {
            credentials: Some((secure.user.to_string(), secure.password.to_string())),
            ..options.clone()
        };
        host_pull("test/private", "v1", &out, &given).unwrap();
    });
}

/// Bearer tokens as Docker Hub hands them out: a 401 with
/// `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, a token server that
/// takes basic credentials, and the token on every later request. The
/// distribution registry needs a JWT-signing token server for this, so the
/// registry side is a small server in the test's namespace.
#[test]
fn bearer_tokens_are_fetched_from_the_realm() {
    use base64::Engine as _;
    in_netns(|| {
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[("token.txt", "behind a token\n")],
        );
        let (m, c, l) = (
            manifest.bytes.clone(),
            config.bytes.clone(),
            layer.bytes.clone(),
        );
        let (c_digest, l_digest) = (sha256(&c), sha256(&l));
        let good_basic = format!(
            "authorization: basic {}",
            base64::engine::general_purpose::STANDARD.encode("robot:pa55")
        )
        .to_ascii_lowercase();
        let challenge = "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:5002/token\",service=\"test-registry\",scope=\"repository:t/x:pull\"";
        let server = Misbehaving::start(5002, move |path, _n, head| {
            let head = head.to_ascii_lowercase();
            if let Some(query) = path.strip_prefix("/token?") {
                // The scope and service of the challenge must come back.
                let asked_right = query.contains("scope=repository%3At%2Fx%3Apull")
                    && query.contains("service=test-registry");
                return if head.contains(&good_basic) && asked_right {
                    http(
                        "200 OK",
                        "application/json",
                        br#"{"token":"good-token"}"#,
                        Some(22),
                    )
                } else {
                    http("401 Unauthorized", "application/json", b"{}", Some(2))
                };
            }
            if !head.contains("authorization: bearer good-token") {
                return format!(
                    "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 2\r\n{challenge}\r\n\r\n{{}}"
                )
                .into_bytes();
            }
            let blob = |bytes: &[u8]| {
                http(
                    "200 OK",
                    "application/octet-stream",
                    bytes,
                    Some(bytes.len()),
                )
            };
            match path.rsplit('/').next().unwrap_or("") {
                "v1" => http(
                    "200 OK",
                    "application/vnd.oci.image.manifest.v1+json",
                    &m,
                    Some(m.len()),
                ),
                d if d == c_digest => blob(&c),
                d if d == l_digest => blob(&l),
                _ => http("404 Not Found", "application/json", b"{}", Some(2)),
            }
        });
        let at = Target {
            registry: "127.0.0.1:5002".to_string(),
            repository: "t/x".to_string(),
            tag_or_digest: TagOrDigest::Tag("v1".to_string()),
        };
        let with = |user: &str, password: &str| Options {
            credentials: Some((user.to_string(), password.to_string())),
            ..Options::default()
        };

        let out = work.path().join("ok");
        let pulled = registry::pull_to_layout(&at, None, &out, &with("robot", "pa55")).unwrap();
        assert_eq!(pulled.layers[0].digest, sha256(&layer.bytes));
        assert_blobs_verified(&out);

        let out = work.path().join("refused");
        let err = assert_refused(
            registry::pull_to_layout(&at, None, &out, &with("robot", "wrong")),
            &out,
            "refused the credentials given",
        );
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        // Each pull: one 401, then the manifest with the token (the failed
        // one stops at the token server).
        assert_eq!(server.times("/v2/t/x/manifests/v1"), 3);
    });
}

/// `engine pull HOST/REPO:TAG` end to end: the registry client lands the
/// image in a layout of the store's scratch, the store imports it from
/// there (`engine images` lists it under its reference, its layer is
/// unpacked), the scratch is empty after, and `rmi` takes it away; an
/// unknown tag is one sentence, exit 125, and leaves no image.
#[test]
fn engine_pull_from_a_registry_goes_into_the_store() {
    in_netns(|| {
        let registry = Registry::plain();
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[("hello.txt", "hello from the registry\n")],
        );
        let src = work.path().join("src");
        write_layout(&src, "v1", &manifest, &[&config, &layer]);
        registry.push(&src, "v1", "test/app", &[]);
        let store = work.path().join("store");
        let e = testkit::engine_cmd::Engine::new(env!("CARGO_BIN_EXE_engine"), "registry")
            .with_env("ENGINE_IMAGE_STORE", &store);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let images = || {
            let out = e
                .cmd()
                .args(["images", "--format", "json"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        };

        let out = e
            .cmd()
            .args(["pull", &format!("{HOST}/test/app:v1")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), sha256(&config.bytes));
        let rows = images();
        assert_eq!(rows[0]["repository"], format!("{HOST}/test/app"));
        assert_eq!(rows[0]["tag"], "v1");
        assert_eq!(rows[0]["digest"], sha256(&manifest.bytes));
        let layers: Vec<_> = fs::read_dir(store.join("layers"))
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(layers.len(), 1, "{layers:?}");
        assert_eq!(
            fs::read_to_string(layers[0].path().join("root/hello.txt")).unwrap(),
            "hello from the registry\n"
        );
        let scratch = fs::read_dir(store.join("tmp")).map_or(0, |d| d.count());
        assert_eq!(scratch, 0, "the pull's scratch was left in the store");

        let out = e
            .cmd()
            .args(["pull", &format!("{HOST}/test/app:nope")])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("test/app:nope"), "{stderr}");
        assert_eq!(images().as_array().unwrap().len(), 1);

        // `run` of an image the store lacks pulls it (--pull missing):
        // its layer is mounted and the command, not in it, is 127 from
        // inside the container; the image is listed after.
        let reference = format!("{HOST}/test/app:v1");
        e.cmd().args(["rmi", &reference]).assert().code(0);
        let out = e
            .cmd()
            .args(["run", "--net", "none", &reference, "/no-such-command"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
        assert_eq!(images()[0]["digest"], sha256(&manifest.bytes));
        e.assert_clean();

        let out = e
            .cmd()
            .args(["rmi", &format!("{HOST}/test/app:v1")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(images().as_array().unwrap().len(), 0);
    })
}

/// `--platform` against an image the store already has (docker's and
/// podman's behaviour): the store holds the index's amd64 image under the
/// name; `run --platform linux/arm64 NAME` pulls the arm64 one (the name
/// moves to it), `pull --platform linux/amd64` takes the amd64 one back;
/// with `--pull never` the mismatch is one line naming both platforms,
/// exit 125, nothing pulled. Break tried: for_run::resolve taking the
/// stored image as it is (the run kept the amd64 image and `--pull
/// never` ran it).
#[test]
fn an_image_of_another_platform_in_the_store_is_pulled_for_platform() {
    in_netns(|| {
        let registry = Registry::plain();
        let work = tempfile::tempdir().unwrap();
        let (_, [_, amd_c, _], [_, arm_c, _]) = push_two_arch_index(&registry, work.path());
        let store = work.path().join("store");
        let e = testkit::engine_cmd::Engine::new(env!("CARGO_BIN_EXE_engine"), "registry-plat")
            .with_env("ENGINE_IMAGE_STORE", &store);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let reference = format!("{HOST}/test/multi:multi");
        let named_id = || {
            let out = e
                .cmd()
                .args(["images", "--format", "json"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            let named: Vec<_> = rows.iter().filter(|r| r["tag"] == "multi").collect();
            assert_eq!(named.len(), 1, "{rows:?}");
            (named[0]["id"].as_str().unwrap().to_string(), rows.len())
        };
        let pull = |platform: &str| {
            let out = e
                .cmd()
                .args(["pull", "--platform", platform, &reference])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout).trim().to_string()
        };
        let run = |extra: &[&str]| {
            e.cmd()
                .args(["run", "--net", "none", "--rm"])
                .args(extra)
                .args([reference.as_str(), "/no-such-command"])
                .output()
                .unwrap()
        };
        let amd_id = sha256(&amd_c.bytes);
        let arm_id = sha256(&arm_c.bytes);
        assert_eq!(pull("linux/amd64"), amd_id);
        assert_eq!(named_id(), (amd_id.clone(), 1));

        let out = run(&["--pull", "never", "--platform", "linux/arm64"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("is for linux/amd64, not for linux/arm64"),
            "{stderr}"
        );
        assert_eq!(named_id(), (amd_id.clone(), 1));
        e.assert_clean();

        // The command is not in the image: 127 from inside the container,
        // after the arm64 image was pulled and mounted.
        let out = run(&["--platform", "linux/arm64"]);
        assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
        assert_eq!(named_id(), (arm_id.clone(), 2));
        assert_eq!(pull("linux/amd64"), amd_id);
        assert_eq!(named_id(), (amd_id.clone(), 2));
        // The stored image serves the platform asked for: no pull needed.
        let out = run(&["--pull", "never", "--platform", "linux/amd64"]);
        assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
        e.assert_clean();
    })
}

/// A gzipped layer of the tar `tar`: (blob, diff ID).
fn gzip_layer(tar: &[u8]) -> (Blob, String) {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, tar).unwrap();
    let blob = Blob {
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        bytes: gz.finish().unwrap(),
    };
    (blob, sha256(tar))
}

/// podman on storage of its own (vfs) in a temporary directory, with runc
/// (crun refuses this host's hybrid cgroups), cgroupfs, file events; every
/// command under a timeout. Its images and containers go with the
/// directory.
struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Podman {
        testkit::quote::require("podman", "podman");
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("containers.conf"),
            "[engine]\nevents_logger = \"file\"\n",
        )
        .unwrap();
        Podman { dir }
    }

    /// `podman ARGS`: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let d = self.dir.path();
        let path = |name: &str| d.join(name).to_str().unwrap().to_string();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .args(["--root", &path("storage"), "--runroot", &path("run")])
            .args(["--tmpdir", &path("tmp"), "--storage-driver", "vfs"])
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .args(args);
        let out = testkit::wait::output(&mut c, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
    }
}

/// The same reference pulled by `podman pull` and by `engine pull`, run by
/// both (`--network none`, `--rm`): an image of the busybox tree and a
/// layer with a user `app` (also in group `extra`), /data/hello, and a
/// config with Entrypoint, Cmd, Env, WorkingDir and User; both print the
/// same `id` (but for the supplementary groups podman alone adds the
/// primary group to), `pwd`, env var, HOME and file, and the same for a
/// COMMAND replacing Cmd. Takes ~3 s. Break tried: the image's Env not
/// applied (the engine printed `greeting=` where podman printed the
/// image's).
#[test]
fn podman_and_the_engine_pull_and_run_the_same_reference_alike() {
    testkit::host::require_root("podman and engine runs");
    in_netns(|| {
        let registry = Registry::plain();
        let work = tempfile::tempdir().unwrap();
        let tar = Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(testkit::busybox::rootfs())
            .args(["-cf", "-", "."])
            .output()
            .unwrap();
        assert!(tar.status.success(), "tar of the busybox rootfs");
        let (base, base_id) = gzip_layer(&tar.stdout);
        let mut top = tar::Builder::new(Vec::new());
        let mut add = |name: &str, content: &str, mode: u32, uid: u64| {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(mode);
            header.set_uid(uid);
            header.set_gid(uid);
            header.set_mtime(1_700_000_000);
            if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
            }
            header.set_cksum();
            top.append_data(&mut header, name, content.as_bytes())
                .unwrap();
        };
        add(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            0o644,
            0,
        );
        add(
            "etc/group",
            "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
            0o644,
            0,
        );
        add("home/", "", 0o755, 0);
        add("home/app/", "", 0o755, 1000);
        add("data/", "", 0o755, 0);
        add("data/hello", "hello from the image\n", 0o644, 1000);
        let (top, top_id) = gzip_layer(&top.into_inner().unwrap());
        let config = Blob {
            media_type: "application/vnd.oci.image.config.v1+json",
            bytes: serde_json::to_vec(&serde_json::json!({
                "architecture": Platform::host().architecture,
                "os": "linux",
                "config": {
                    "Entrypoint": ["/bin/sh", "-c"],
                    "Cmd": ["id; pwd; echo greeting=$GREETING home=$HOME; cat /data/hello"],
                    "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi from the config"],
                    "WorkingDir": "/data",
                    "User": "app",
                },
                "rootfs": { "type": "layers", "diff_ids": [base_id, top_id] },
            }))
            .unwrap(),
        };
        let manifest = Blob {
            media_type: "application/vnd.oci.image.manifest.v1+json",
            bytes: serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config.descriptor(),
                "layers": [base.descriptor(), top.descriptor()],
            }))
            .unwrap(),
        };
        let src = work.path().join("src");
        write_layout(&src, "v1", &manifest, &[&config, &base, &top]);
        registry.push(&src, "v1", "test/alike", &[]);
        let reference = format!("{HOST}/test/alike:v1");

        let e = testkit::engine_cmd::Engine::new(env!("CARGO_BIN_EXE_engine"), "registry-alike")
            .with_env("ENGINE_IMAGE_STORE", work.path().join("store"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let out = e.cmd().args(["pull", &reference]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let podman = Podman::new();
        let (code, _, err) = podman.run(&["pull", "--quiet", "--tls-verify=false", &reference]);
        assert_eq!(code, 0, "podman pull: {err}");

        // The one difference, podman's own: libpod adds the user's primary
        // group to its supplementary groups (AddProcessAdditionalGid of
        // execUser.Gid); docker and runc give only the groups /etc/group
        // lists the user in, as the engine does.
        let rest = "/data\ngreeting=hi from the config home=/home/app\nhello from the image\n";
        let expected_engine = format!("uid=1000(app) gid=1000(app) groups=2000(extra)\n{rest}");
        let expected_podman =
            format!("uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)\n{rest}");
        for command in [&[][..], &["id -u; pwd; echo $GREETING; cat hello"][..]] {
            let engine_run = e
                .cmd()
                .args([
                    "run", "--net", "none", "--rm", "--pull", "never", &reference,
                ])
                .args(command)
                .output()
                .unwrap();
            assert!(engine_run.status.success(), "{}", text(&engine_run.stderr));
            let mut args = vec![
                "run",
                "--rm",
                "--network",
                "none",
                "--pull",
                "never",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                reference.as_str(),
            ];
            args.extend_from_slice(command);
            let (code, podman_out, err) = podman.run(&args);
            assert_eq!(code, 0, "podman run: {err}");
            if command.is_empty() {
                assert_eq!(text(&engine_run.stdout), expected_engine);
                assert_eq!(podman_out, expected_podman);
            } else {
                assert_eq!(text(&engine_run.stdout), podman_out);
                assert_eq!(
                    podman_out,
                    "1000\n/data\nhi from the config\nhello from the image\n"
                );
            }
        }
        e.assert_clean();
        // podman's --rm left no container mount in its directory.
        testkit::mountinfo::assert_none_under(podman.dir.path());
        drop(podman);
    })
}

/// `engine login` against the TLS + htpasswd registry: a refused password
/// is a sentence and writes nothing; a good one is checked on /v2/, then
/// saved in $REGISTRY_AUTH_FILE (mode 0600, other entries kept), and
/// `engine pull` uses it; `engine logout` removes the entry (and says so
/// when there is none). Break tried: login saving before the /v2/ check
/// (the refused login left its entry in the file).
#[test]
fn login_checks_the_credentials_and_logout_removes_them() {
    use base64::Engine as _;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    in_netns(|| {
        let (registry, secure) = Registry::secure();
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[("secret.txt", "behind TLS\n")],
        );
        let src = work.path().join("src");
        write_layout(&src, "v1", &manifest, &[&config, &layer]);
        registry.push(&src, "v1", "test/private", &[]);
        let auth_file = work.path().join("auth/auth.json");
        let e = testkit::engine_cmd::Engine::new(env!("CARGO_BIN_EXE_engine"), "registry")
            .with_env("ENGINE_IMAGE_STORE", work.path().join("store"))
            .with_env("REGISTRY_AUTH_FILE", &auth_file)
            .with_env("SSL_CERT_FILE", secure.certs_d.join(HOST).join("ca.crt"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let login = |password: &str| {
            let mut child = e
                .spawnable()
                .args(["login", "-u", secure.user, "--password-stdin", HOST])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{password}\n").as_bytes())
                .unwrap();
            testkit::wait::output_of(child, Duration::from_secs(60)).unwrap()
        };
        let pull = || {
            e.cmd()
                .args(["pull", &format!("{HOST}/test/private:v1")])
                .output()
                .unwrap()
        };

        // Not logged in: the pull says what to do.
        let out = pull();
        assert_eq!(out.status.code(), Some(125));
        assert!(
            text(&out.stderr).contains("none were found"),
            "{}",
            text(&out.stderr)
        );

        // A refused password: a sentence, and the file untouched.
        fs::create_dir(auth_file.parent().unwrap()).unwrap();
        let other = r#"{"auths":{"other.example":{"auth":"dTpw"}},"credHelpers":{}}"#;
        fs::write(&auth_file, other).unwrap();
        let out = login("wrong-password");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("cannot log in to {HOST}"))
                && stderr.contains("refused the credentials"),
            "{stderr}"
        );
        assert_eq!(fs::read_to_string(&auth_file).unwrap(), other);

        // The right one: saved beside the other entry, mode 0600.
        let out = login(secure.password);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let saved: serde_json::Value =
            serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", secure.user, secure.password));
        assert_eq!(saved["auths"][HOST]["auth"], auth.as_str());
        assert_eq!(saved["auths"]["other.example"]["auth"], "dTpw");
        assert!(saved["credHelpers"].is_object());
        let mode = fs::metadata(&auth_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let out = pull();
        assert!(out.status.success(), "{}", text(&out.stderr));

        // Logout: the entry goes, the other stays; twice is an error.
        let out = e.cmd().args(["logout", HOST]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let saved: serde_json::Value =
            serde_json::from_slice(&fs::read(&auth_file).unwrap()).unwrap();
        assert!(saved["auths"].get(HOST).is_none(), "{saved}");
        assert_eq!(saved["auths"]["other.example"]["auth"], "dTpw");
        let out = e.cmd().args(["logout", HOST]).output().unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(
            text(&out.stderr).contains("nothing to log out of"),
            "{}",
            text(&out.stderr)
        );
        // Bad input is refused before any request.
        let out = e.cmd().args(["logout", "no/such host"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(text(&out.stderr).contains("is not a registry HOST[:PORT]"));
    });
}

/// A pull of a 7-layer image (its layers downloaded three at a time)
/// lands every layer in the store, verified, and prints nothing but the
/// image ID when stderr is not a terminal. A corrupted layer among them
/// still fails the pull, naming it, and leaves nothing. Break tried:
/// fetch_layers taking one layer less (`unique.len() - 1` threads' worth:
/// the last layer's blob was missing and the import failed).
#[test]
fn a_multi_layer_pull_lands_every_layer_and_prints_nothing_without_a_tty() {
    in_netns(|| {
        let registry = Registry::plain();
        let work = tempfile::tempdir().unwrap();
        let files: Vec<Vec<(String, String)>> = (0..7)
            .map(|i| vec![(format!("layer{i}.txt"), format!("{i}").repeat(50_000 + i))])
            .collect();
        let (manifest, config, layers) = image_of_layers(&files);
        let src = work.path().join("src");
        let mut blobs: Vec<&Blob> = vec![&config];
        blobs.extend(layers.iter());
        write_layout(&src, "v1", &manifest, &blobs);
        registry.push(&src, "v1", "test/layers", &[]);
        let store = work.path().join("store");
        let e = testkit::engine_cmd::Engine::new(env!("CARGO_BIN_EXE_engine"), "registry")
            .with_env("ENGINE_IMAGE_STORE", &store);
        let out = e
            .cmd()
            .args(["pull", &format!("{HOST}/test/layers:v1")])
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "printed without a terminal");
        assert_eq!(text(&out.stdout), format!("{}\n", sha256(&config.bytes)));
        let made: Vec<String> = fs::read_dir(store.join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(made.len(), 7, "{made:?}");
        for (i, f) in files.iter().enumerate() {
            let found = made.iter().any(|l| {
                fs::read_to_string(store.join("layers").join(l).join("root").join(&f[0].0))
                    .is_ok_and(|c| c == f[0].1)
            });
            assert!(found, "layer {i} is not in the store");
        }

        // The fifth layer corrupted in the registry: the pull names it.
        let rmi = e
            .cmd()
            .args(["rmi", &format!("{HOST}/test/layers:v1")])
            .output()
            .unwrap();
        assert!(rmi.status.success(), "{}", text(&rmi.stderr));
        let stored = registry.blob_file(&sha256(&layers[4].bytes));
        let mut bad = layers[4].bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        fs::write(&stored, &bad).unwrap();
        let out = e
            .cmd()
            .args(["pull", &format!("{HOST}/test/layers:v1")])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&sha256(&layers[4].bytes)), "{stderr}");
        for dir in ["layers", "images", "tmp"] {
            let left = fs::read_dir(store.join(dir)).map_or(0, |d| d.count());
            assert_eq!(left, 0, "{dir} left in the store");
        }
    })
}

/// A registry the user marks insecure (`ENGINE_INSECURE_REGISTRIES`, as
/// docker's `insecure-registries`): plain HTTP to an address other than
/// loopback's, and a certificate no CA vouches for, are refused with a
/// sentence that names the variable, and taken once it names the registry.
#[test]
fn a_registry_marked_insecure_is_reached_by_plain_http_or_an_unchecked_certificate() {
    in_netns(|| {
        const LAN: &str = "10.88.0.1:5000";
        run(Command::new("ip").args(["addr", "add", "10.88.0.1/32", "dev", "lo"]));
        let work = tempfile::tempdir().unwrap();
        let (manifest, config, layer) = image(
            Platform::host().architecture.as_str(),
            &[("hello.txt", "not so secure\n")],
        );
        let src = work.path().join("src");
        write_layout(&src, "v1", &manifest, &[&config, &layer]);
        let store = work.path().join("store");
        let e = testkit::engine_cmd::Engine::new(env!("CARGO_BIN_EXE_engine"), "registry")
            .with_env("ENGINE_IMAGE_STORE", &store)
            .with_env("REGISTRY_AUTH_FILE", work.path().join("auth.json"));
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let pull = |reference: &str, marked: Option<&str>| {
            let mut cmd = e.cmd();
            cmd.args(["pull", reference]);
            cmd.env_remove("ENGINE_INSECURE_REGISTRIES");
            if let Some(list) = marked {
                cmd.env("ENGINE_INSECURE_REGISTRIES", list);
            }
            cmd.output().unwrap()
        };
        let assert_refused = |out: std::process::Output, reference: &str| {
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(125), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(reference), "{stderr}");
            assert!(stderr.contains("ENGINE_INSECURE_REGISTRIES"), "{stderr}");
            assert_eq!(stderr.matches("cannot pull").count(), 1, "{stderr}");
            let images: serde_json::Value = serde_json::from_slice(
                &e.cmd()
                    .args(["images", "--format", "json"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            assert_eq!(
                images,
                serde_json::json!([]),
                "nothing stored after {stderr}"
            );
        };

        // Plain HTTP away from loopback.
        {
            let registry = Registry::plain_at(LAN);
            registry.push(&src, "v1", "test/lan", &[]);
            let reference = format!("{LAN}/test/lan:v1");
            assert_refused(pull(&reference, None), &reference);
            assert_refused(
                pull(&reference, Some("10.88.0.1 10.88.0.1:5001")),
                &reference,
            );
            let out = pull(&reference, Some("other:1, 10.88.0.1:5000"));
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert_eq!(text(&out.stdout).trim(), sha256(&config.bytes));
        }

        // TLS whose CA the engine is not given.
        let (registry, secure) = Registry::secure();
        registry.push(&src, "v1", "test/private", &[]);
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", secure.user, secure.password));
        fs::write(
            work.path().join("auth.json"),
            format!(r#"{{"auths":{{"{HOST}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let reference = format!("{HOST}/test/private:v1");
        let out = pull(&reference, None);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("ca.crt"),
            "{}",
            text(&out.stderr)
        );
        let out = pull(&reference, Some(HOST));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), sha256(&config.bytes));
    });
}
