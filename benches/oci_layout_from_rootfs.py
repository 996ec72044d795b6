#!/usr/bin/env python3
"""Writes an OCI image layout of a rootfs directory: one uncompressed layer
(GNU tar of the tree, numeric owners), a config with Cmd ["/bin/sh"], the
manifest named NAME in index.json. For measuring `engine run IMAGE` against
`engine run ROOTFS` of the same tree (docs/benchmarks.md).

    benches/oci_layout_from_rootfs.py ROOTFS LAYOUT NAME [LAYERS]

LAYERS (default 1) > 1 adds that many more small layers on top (one file
each), to see what each overlay lower costs.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

if len(sys.argv) not in (4, 5):
    sys.exit(__doc__)
rootfs, layout, name = sys.argv[1:4]
extra = int(sys.argv[4]) - 1 if len(sys.argv) == 5 else 0
blobs = os.path.join(layout, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)


def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def tar_of(root):
    return subprocess.run(
        ["tar", "--numeric-owner", "-C", root, "-cf", "-", "."],
        check=True, stdout=subprocess.PIPE, timeout=300,
    ).stdout


tars = [tar_of(rootfs)]
for i in range(extra):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, f"layer-{i}"), "w") as f:
            f.write(str(i))
        tars.append(tar_of(d))
layers = []
for t in tars:
    d = put(t)
    d["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    layers.append(d)
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
config = put(json.dumps({
    "architecture": arch, "os": "linux",
    "config": {"Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]},
}).encode())
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = put(json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": layers,
}).encode())
manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
manifest["annotations"] = {"org.opencontainers.image.ref.name": name}
with open(os.path.join(layout, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
