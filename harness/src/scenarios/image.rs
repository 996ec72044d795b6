//! Scenario image: an OCI image made here from the flavour's rootfs (a
//! base layer of the whole tree and a top layer with one more file, with
//! an Entrypoint, Cmd, Env and WorkingDir) is imported into an image store
//! of the scenario's own with `engine pull oci:DIR`, run by its name with
//! its layers as the overlay's lowers and its config applied, and removed
//! with `engine rmi`, which leaves no layer behind. No network: the layout
//! is written on the guest's scratch tmpfs.

use super::Ctx;
use crate::engine::RUN_TIMEOUT;
use crate::process;
use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;

const NAME: &str = "example.com/harness/image:v1";

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
