#!/bin/bash
# The OCI figures of docs/benchmarks.md, interleaved in one run: median wall time of
# create+start+delete of a /bin/true container (each engine build without
# and with a user namespace, crun when installed, and runc), and of `podman run
# --rm --rootfs R /bin/true` with --runtime engine and runc. Needs root, runc,
# podman, busybox (static); crun optional (apt-get install crun).
# Cgroups: the bundle has no cgroupsPath and no limits. The engine then makes no
# cgroup, and crun runs with --cgroup-manager=disabled, so those two do the same
# work; runc has no such switch and makes its cgroup (runc's row is cgroups on).
# crun 1.8 refuses a cgroup v1 hybrid host even with cgroups disabled, so on such
# a host, with PODMAN=0, the whole run is in a mount namespace of its own with
# cgroup2 mounted at /sys/fs/cgroup (runc then makes its cgroup there, in the v2
# hierarchy); with podman on such a host crun is left out, since podman would
# take that mount for the host's cgroups.
# N (30) cycles, PN (15) podman runs; PODMAN=0 skips podman. ENGINES lists
# the engine builds as NAME=PATH words; by default the static musl release
# build (how to ship it, docs/benchmarks.md) and the glibc release build of
# the README's quick start, those of them that are built. podman uses the
# first.
set -u
CRUN=$(command -v crun || true)
if [ -n "$CRUN" ] && [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
  if [ "${PODMAN:-1}" != 1 ] && [ -z "${OCI_COMPARE_INNER:-}" ]; then
    exec env OCI_COMPARE_INNER=1 unshare -m --propagation private \
      sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec "$0" "$@"' "$0" "$@"
  fi
  [ -n "${OCI_COMPARE_INNER:-}" ] || { echo "crun left out: it refuses this hybrid cgroup host; PODMAN=0 for its row" >&2; CRUN=; }
fi
T=$(cd "$(dirname "$0")/.." && pwd)/target
if [ -z "${ENGINES:-}" ]; then
  for b in musl=$T/x86_64-unknown-linux-musl/release/engine glibc=$T/release/engine; do
    [ -x "${b#*=}" ] && ENGINES="${ENGINES:-} $b"
  done
fi
[ -n "${ENGINES:-}" ] || { echo "no engine build: cargo build --release -p engine" >&2; exit 2; }
N=${N:-30}
W=$(mktemp -d)
# The runtimes' state directories on a tmpfs, where /run is on a normal
# host (here /run is on the disk: every rename there waits for ext4).
mkdir $W/state && mount -t tmpfs -o size=64m tmpfs $W/state
# runc's delete --force sometimes finds its v2 cgroup still busy and leaves it
# (inside the namespace above, /sys/fs/cgroup is the host's v2 hierarchy).
leftover_cgroups() { [ -z "${OCI_COMPARE_INNER:-}" ] || for d in /sys/fs/cgroup/r[0-9]*; do [ -d "$d" ] && rmdir "$d"; done; }
trap 'leftover_cgroups; umount $W/state; rm -rf $W' EXIT
mkdir -p $W/b/rootfs/bin && cp /bin/busybox $W/b/rootfs/bin/ && ln -s busybox $W/b/rootfs/bin/sh && ln -s busybox $W/b/rootfs/bin/true
(cd $W/b && runc spec) && python3 - $W/b/config.json <<'PY'
import json,sys
p=sys.argv[1]; c=json.load(open(p)); c['process']['terminal']=False; c['process']['args']=['/bin/true']
json.dump(c,open(p,'w'))
PY
# The same container in a user namespace (container root is not host root:
# no read-only image of the engine needed, see docs/oci.md).
mkdir -p $W/bu && python3 - $W/b/config.json $W/bu/config.json $W/b/rootfs <<'PY'
import json,sys
c=json.load(open(sys.argv[1])); c['root']['path']=sys.argv[3]
c['linux']['namespaces'].append({'type':'user'})
m=[{'containerID':0,'hostID':300000,'size':65536}]
c['linux']['uidMappings']=m; c['linux']['gidMappings']=m
json.dump(c,open(sys.argv[2],'w'))
PY
cycle() { # $1 binary (and its global options), $2 root, $3 id [$4 bundle]
  $1 --root "$2" create --bundle ${4:-$W/b} "$3" </dev/null >/dev/null 2>&1 && $1 --root "$2" start "$3" && $1 --root "$2" delete --force "$3"
}
declare -A times
names=()
for e in $ENGINES; do names+=("${e%%=*}" "${e%%=*}+userns"); done
[ -n "$CRUN" ] && names+=(crun)
names+=(runc)
for i in $(seq $N); do
  for e in $ENGINES; do
    n=${e%%=*} b=${e#*=}
    s=$EPOCHREALTIME; cycle $b $W/state/e e$n$i || echo "engine $n failed"; x=$EPOCHREALTIME
    times[$n]+=" $(( ${x/./} - ${s/./} ))"
    s=$EPOCHREALTIME; cycle $b $W/state/e u$n$i $W/bu || echo "engine $n userns failed"; x=$EPOCHREALTIME
    times[$n+userns]+=" $(( ${x/./} - ${s/./} ))"
  done
  if [ -n "$CRUN" ]; then
    s=$EPOCHREALTIME; cycle "$CRUN --cgroup-manager=disabled" $W/state/c c$i || echo "crun failed"; x=$EPOCHREALTIME
    times[crun]+=" $(( ${x/./} - ${s/./} ))"
  fi
  s=$EPOCHREALTIME; cycle runc $W/state/r r$i || echo "runc failed"; x=$EPOCHREALTIME
  times[runc]+=" $(( ${x/./} - ${s/./} ))"
done
med() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]/1000}'; }
runc_ms=$(med "${times[runc]}")
crun_ms=$([ -n "$CRUN" ] && med "${times[crun]}" || echo 0)
echo "create+start+delete, median of $N, ms (runc's time / this one; crun's / this one):"
for n in "${names[@]}"; do
  m=$(med "${times[$n]}")
  awk -v n="$n" -v m="$m" -v r="$runc_ms" -v c="$crun_ms" \
    'BEGIN { printf "  %-14s %7.2f  (%.1fx runc", n, m, r / m; if (c > 0) printf ", %.2fx crun", c / m; print ")" }'
done
if [ "${PODMAN:-1}" = 1 ]; then
  E=$(set -- $ENGINES; echo "${1#*=}")
  printf '[engine]\nevents_logger = "none"\nruntime_supports_nocgroup = ["engine"]\nruntime_supports_json = ["engine"]\n' > $W/containers.conf
  P="podman --root $W/ps --runroot $W/state/pr --tmpdir $W/state/pt --cgroup-manager cgroupfs"
  # runc has no --cgroup-manager: podman runs it with cgroupfs (v1 here).
  O="--rm --network=none --ulimit nofile=20000:20000 --ulimit nproc=1000:1000 --rootfs $W/b/rootfs /bin/true"
  pe="" pr=""
  for i in $(seq ${PN:-15}); do
    s=$EPOCHREALTIME; CONTAINERS_CONF=$W/containers.conf $P --runtime $E run --cgroups=disabled $O || echo "podman engine failed"; x=$EPOCHREALTIME
    pe+=" $(( ${x/./} - ${s/./} ))"
    s=$EPOCHREALTIME; CONTAINERS_CONF=$W/containers.conf $P --runtime /usr/sbin/runc run $O || echo "podman runc failed"; x=$EPOCHREALTIME
    pr+=" $(( ${x/./} - ${s/./} ))"
  done
  echo "podman run --rm /bin/true, median of ${PN:-15}, ms: engine ($E) $(med "$pe")  runc $(med "$pr")"
fi
