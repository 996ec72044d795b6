//! Scenario image: an OCI image made here from the flavour's rootfs (a
//! base layer of the whole tree and a top layer with one more file, with
//! an Entrypoint, Cmd, Env and WorkingDir) is imported into an image store
//! of the scenario's own with `engine pull oci:DIR`, run by its name with
//! its layers as the overlay's lowers and its config applied, and removed
//! with `engine rmi`, which leaves no layer behind. No network: the layout
//! is written on the guest's scratch tmpfs.
//!
//! Then a multi-arch index: the launcher (on the host, [`write_index`])
//! makes an amd64 and an arm64 image, each of that architecture's static
//! busybox, and `skopeo copy --all` writes their index into a layout the
//! guest sees (the guest has no network, so no registry: skopeo's layout
//! is what real tools write). The guest's `engine pull` resolves it to its
//! own architecture, which `uname -m` in the container shows; `--platform`
//! takes the other one, and a run of the stored other one for this
//! platform with `--pull never` is refused naming both (what its config
//! says).

use super::Ctx;
use crate::engine::RUN_TIMEOUT;
use crate::process;
use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const NAME: &str = "example.com/harness/image:v1";

/// The multi-arch image's name in the layout the launcher writes.
const MULTI: &str = "example.com/harness/multi:v1";

/// The variable naming that layout in the runner's environment.
pub const INDEX_VAR: &str = "HARNESS_IMAGE_INDEX";

/// The index's architectures (Debian's and OCI's names).
const INDEX_ARCHES: [&str; 2] = ["amd64", "arm64"];

pub fn run(ctx: &Ctx) -> Result<()> {
    let env = ctx.env("image")?;
    let dir = ctx.settings.scratch.join("image").join(&env.tag);
    let (layout, store, top) = (dir.join("layout"), dir.join("store"), dir.join("top"));
    std::fs::create_dir_all(top.join("etc"))?;
    std::fs::write(top.join("etc/image-top"), "from the top layer\n")?;
    let layers = [tar_of(ctx.rootfs(), &dir)?, tar_of(&top, &dir)?];
    write_layout(&layout, &layers)?;
    let engine = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env("ENGINE_IMAGE_STORE", &store);
        process::run(&mut cmd, RUN_TIMEOUT)
    };
    let layout_ref = format!("oci:{}", layout.display());
    engine(&["pull", &layout_ref])?.expect_success("`engine pull oci:DIR`")?;
    let out = engine(&["run", "--net", "none", "--name", "img", NAME])?;
    out.expect_success("`engine run IMAGE`")?;
    if out.stdout != "image-ran yes /tmp\nfrom the top layer\n" {
        bail!("the image's Entrypoint, Cmd, Env, WorkingDir and top layer should show\n{out}");
    }
    engine(&["rmi", NAME])?.expect_success("`engine rmi`")?;
    multi_arch(&engine)?;
    let left: Vec<_> = std::fs::read_dir(store.join("layers"))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if !left.is_empty() {
        bail!("`engine rmi` left layers in the store: {left:?}");
    }
    std::fs::remove_dir_all(&dir)?;
    env.close()
}

/// The index the launcher wrote, pulled, run and removed (see the module's
/// comment).
fn multi_arch(engine: &dyn Fn(&[&str]) -> Result<process::Output>) -> Result<()> {
    let index = std::env::var_os(INDEX_VAR).map(PathBuf::from).with_context(|| {
        format!("{INDEX_VAR} is not set: the launcher could not write the multi-arch layout (its output says why)")
    })?;
    let reference = format!("oci:{}:{MULTI}", index.display());
    let arch = crate::plan::arch();
    let other = INDEX_ARCHES
        .into_iter()
        .find(|a| *a != arch)
        .context("the guest's architecture is neither amd64 nor arm64")?;
    // Five engine commands: each costs about a second under emulation.
    let pull = |platform: Option<&str>| -> Result<String> {
        let mut args = vec!["pull"];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.push(reference.as_str());
        let out = engine(&args)?;
        out.expect_success("`engine pull` of the multi-arch index")?;
        Ok(out.stdout.trim().to_string())
    };
    let own_id = pull(None)?;
    let out = engine(&["run", "--net", "none", "--rm", MULTI])?;
    out.expect_success("`engine run` of the index's image")?;
    let machine = if arch == "arm64" { "aarch64" } else { "x86_64" };
    if out.stdout.trim() != machine {
        bail!("`uname -m` in the container should say {machine}: the index was resolved to another image\n{out}");
    }
    // The other image, by --platform; its config's platform is what the
    // refusal names.
    let wanted = format!("linux/{other}");
    let other_id = pull(Some(&wanted))?;
    let own = format!("linux/{arch}");
    let out = engine(&[
        "run",
        "--net",
        "none",
        "--rm",
        "--pull",
        "never",
        "--platform",
        &own,
        MULTI,
    ])?;
    out.expect_code(
        125,
        "a run of the other platform's stored image with --pull never",
    )?;
    if !out
        .stderr
        .contains(&format!("is for {wanted}, not for {own}"))
    {
        bail!("the refusal should name both platforms\n{out}");
    }
    engine(&["rmi", &own_id, &other_id])?.expect_success("`engine rmi` by ID")?;
    Ok(())
}

/// On the host (the launcher), before the runner starts: at `dir`, an OCI
/// layout of the index MULTI of an amd64 and an arm64 image, each one layer
/// of that architecture's static busybox (`bin/busybox`, `bin/sh` and
/// `bin/uname` links), Cmd `uname -m`. Made here as a layout and copied
/// by `skopeo copy --all`, so the guest reads what skopeo writes.
pub fn write_index(dir: &Path) -> Result<()> {
    let src = dir.with_extension("src");
    let _ = std::fs::remove_dir_all(&src);
    let blobs = src.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let mut entries = Vec::new();
    for arch in INDEX_ARCHES {
        let busybox = vm::static_busybox(arch.parse()?)?;
        let tree = src.join(format!("tree-{arch}"));
        let bin = tree.join("bin");
        std::fs::create_dir_all(&bin)?;
        for d in ["dev", "proc", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(tree.join(d))?;
        }
        std::fs::copy(&busybox, bin.join("busybox"))
            .with_context(|| format!("copy {}", busybox.display()))?;
        for applet in ["sh", "uname"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
        let layer = tar_of(&tree, &src)?;
        std::fs::remove_dir_all(&tree)?;
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/uname", "-m"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
        });
        let mut layer_desc = put(&blobs, &layer)?;
        layer_desc["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
        let mut config_desc = put(&blobs, &serde_json::to_vec(&config)?)?;
        config_desc["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        });
        let mut entry = put(&blobs, &serde_json::to_vec(&manifest)?)?;
        entry["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
        entry["platform"] = json!({"architecture": arch, "os": "linux"});
        entries.push(entry);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let mut top = put(&blobs, &serde_json::to_vec(&index)?)?;
    top["mediaType"] = json!("application/vnd.oci.image.index.v1+json");
    top["annotations"] = json!({"org.opencontainers.image.ref.name": MULTI});
    std::fs::write(src.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let top_index = json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(src.join("index.json"), serde_json::to_vec(&top_index)?)?;
    let policy = src.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )?;
    let _ = std::fs::remove_dir_all(dir);
    let out = process::run(
        std::process::Command::new("skopeo")
            .arg(format!("--policy={}", policy.display()))
            .args(["copy", "--quiet", "--all"])
            .arg(format!("oci:{}:{MULTI}", src.display()))
            .arg(format!("oci:{}:{MULTI}", dir.display())),
        RUN_TIMEOUT,
    )
    .context("skopeo (apt-get install skopeo) writes the multi-arch layout")?;
    out.expect_success("`skopeo copy --all` of the multi-arch index")?;
    std::fs::remove_dir_all(&src)?;
    Ok(())
}

/// Writes `bytes` as a blob under `blobs`; its descriptor's digest and size.
fn put(blobs: &Path, bytes: &[u8]) -> Result<serde_json::Value> {
    let d = digest(bytes);
    std::fs::write(blobs.join(&d["sha256:".len()..]), bytes)?;
    Ok(json!({"digest": d, "size": bytes.len()}))
}

/// A tar of the tree at `root` (GNU tar, numeric owners), read whole.
fn tar_of(root: &Path, scratch: &Path) -> Result<Vec<u8>> {
    let file = scratch.join("layer.tar");
    let out = process::run(
        std::process::Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(&file)
            .arg("."),
        RUN_TIMEOUT,
    )?;
    out.expect_success("tar of a layer")?;
    let bytes = std::fs::read(&file).context("read the layer tar")?;
    std::fs::remove_file(&file)?;
    Ok(bytes)
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An OCI layout of `layers` (lowest first, uncompressed) named NAME.
fn write_layout(dir: &Path, layers: &[Vec<u8>]) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> Result<serde_json::Value> {
        let d = digest(bytes);
        std::fs::write(blobs.join(&d["sha256:".len()..]), bytes)?;
        Ok(json!({"digest": d, "size": bytes.len()}))
    };
    let mut descriptors = Vec::new();
    for layer in layers {
        let mut d = put(layer)?;
        d["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
        descriptors.push(d);
    }
    let config = json!({
        "architecture": crate::plan::arch(),
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo image-ran $FROM_IMAGE $(pwd); cat /etc/image-top"],
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_IMAGE=yes"],
            "WorkingDir": "/tmp"
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>()},
    });
    let mut config_desc = put(&serde_json::to_vec(&config)?)?;
    config_desc["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": descriptors,
    });
    let mut manifest_desc = put(&serde_json::to_vec(&manifest)?)?;
    manifest_desc["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    manifest_desc["annotations"] = json!({"org.opencontainers.image.ref.name": NAME});
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({"schemaVersion": 2, "manifests": [manifest_desc]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}
