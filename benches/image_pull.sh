#!/bin/bash
# The image figures of docs/benchmarks.md, interleaved in one run:
# 1. pull + unpack of a 5-layer image from a local registry: `engine pull`
#    against `podman pull` (a temporary --root/--runroot, so the host's
#    podman store is untouched), each into an empty store every round;
# 2. unpack of one large gzip'd layer: `engine pull oci:DIR` of a
#    one-layer image (digests checked, unpacked into the store) against
#    `tar -xzf` of the same blob.
# Median wall times of N (5) rounds. Needs root, docker-registry and skopeo
# (Debian packages), podman, python3. Everything runs in a network and mount
# namespace of its own (the registry on 127.0.0.1:5000 there); the work
# directory (about 0.5 GB) is removed at the end. ENGINE_BIN names the
# build (default: target/release/engine, else target/debug/engine).
set -eu
if [ -z "${BENCH_IN_NS:-}" ]; then
  exec env BENCH_IN_NS=1 unshare --net --mount --propagation private "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${ENGINE_BIN:-}" ]; then
  ENGINE_BIN=$ROOT/target/release/engine
  [ -x "$ENGINE_BIN" ] || ENGINE_BIN=$ROOT/target/debug/engine
fi
[ -x "$ENGINE_BIN" ] || { echo "no engine build: cargo build -p engine" >&2; exit 2; }
N=${N:-5}
W=$(mktemp -d /var/tmp/engine-image-bench.XXXXXX)
REG_PID=
cleanup() {
  set +e
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
ip link set lo up

# The images: five layers of ~12 MB (half random bytes, half text, as
# binaries and their docs), and one layer of ~150 MB (the same mix).
python3 - "$W" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile
w = sys.argv[1]
rng = random.Random(20)
words = [("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))) for _ in range(4000)]
def content(i, size):
    if i % 2:
        return rng.randbytes(size)
    text = " ".join(rng.choice(words) for _ in range(size // 5))
    return text.encode()[:size]
def layer(name, files, size):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in range(files // 50 + 1):
            info = tarfile.TarInfo(f"{name}/d{d}"); info.type = tarfile.DIRTYPE; info.mode = 0o755
            tar.addfile(info)
        for i in range(files):
            data = content(i, size)
            info = tarfile.TarInfo(f"{name}/d{i // 50}/f{i}"); info.size = len(data); info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=6, mtime=0)
def layout(dir, layers):
    blobs = os.path.join(dir, "blobs", "sha256"); os.makedirs(blobs)
    def put(b):
        d = hashlib.sha256(b).hexdigest()
        open(os.path.join(blobs, d), "wb").write(b)
        return {"digest": "sha256:" + d, "size": len(b)}
    descs, diffs = [], []
    for tar_bytes, gz in layers:
        diffs.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
        descs.append(dict(put(gz), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diffs}}
    cdesc = dict(put(json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": descs}
    mdesc = dict(put(json.dumps(manifest).encode()), mediaType="application/vnd.oci.image.manifest.v1+json")
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    json.dump({"schemaVersion": 2, "manifests": [mdesc]}, open(os.path.join(dir, "index.json"), "w"))
    open(os.path.join(dir, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    return descs
layout(os.path.join(w, "five"), [layer(f"l{i}", 240, 50_000) for i in range(5)])
big = layer("big", 3000, 50_000)
descs = layout(os.path.join(w, "big"), [big])
os.link(os.path.join(w, "big", "blobs", "sha256", descs[0]["digest"][7:]), os.path.join(w, "big.tar.gz"))
PY

cat > "$W/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: 127.0.0.1:5000
EOF
docker-registry serve "$W/registry.yml" </dev/null >/dev/null 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break
  sleep 0.1
done
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$W/policy.json"
timeout 300 skopeo --policy="$W/policy.json" copy --quiet --dest-tls-verify=false \
  "oci:$W/five:v1" docker://127.0.0.1:5000/bench/five:v1
REF=127.0.0.1:5000/bench/five:v1

now() { date +%s.%N; }
declare -A times
run() { # NAME COMMAND...: one timed round, appended to times[NAME]
  local name=$1; shift
  sync
  local t0; t0=$(now)
  timeout 600 "$@" >/dev/null 2>"$W/err" || { echo "$name failed: $(cat "$W/err")" >&2; exit 1; }
  times[$name]="${times[$name]:-} $(echo "$(now) - $t0" | bc)"
}
for i in $(seq "$N"); do
  rm -rf "$W/store" "$W/proot" "$W/prun" "$W/untar"
  run "engine pull (5 layers, registry)" env ENGINE_IMAGE_STORE="$W/store" "$ENGINE_BIN" pull "$REF"
  run "podman pull (5 layers, registry)" podman --root "$W/proot" --runroot "$W/prun" \
    --storage-driver overlay pull -q --tls-verify=false "$REF"
  rm -rf "$W/store"
  run "engine pull oci: (1 layer, ~150 MB)" env ENGINE_IMAGE_STORE="$W/store" "$ENGINE_BIN" pull "oci:$W/big"
  mkdir "$W/untar"
  run "tar -xzf (the same layer)" tar -xzf "$W/big.tar.gz" -C "$W/untar"
done
podman --root "$W/proot" --runroot "$W/prun" --storage-driver overlay system reset -f >/dev/null 2>&1 || true
echo "engine: $ENGINE_BIN; $N rounds, median seconds (min..max); load $(cut -d' ' -f1-3 /proc/loadavg)"
for name in "engine pull (5 layers, registry)" "podman pull (5 layers, registry)" \
  "engine pull oci: (1 layer, ~150 MB)" "tar -xzf (the same layer)"; do
  echo "${times[$name]}" | python3 -c "
import statistics, sys
v = sorted(float(x) for x in sys.stdin.read().split())
print(f'{sys.argv[1]:40} {statistics.median(v):7.3f}  ({v[0]:.3f}..{v[-1]:.3f})')" "$name"
done
