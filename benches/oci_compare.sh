#!/bin/bash
# The OCI figures of the README, interleaved in one run: median wall time of
# create+start+delete of a /bin/true container (the engine without and with
# a user namespace, runc), and of `podman run --rm --rootfs R /bin/true` with
# --runtime engine and runc. Needs root, runc, podman, busybox (static).
# N (30) cycles, PN (15) podman runs; PODMAN=0 skips podman; ENGINE_BIN
# names the engine (default target/release/engine).
set -u
E=${ENGINE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/engine}
N=${N:-30}
W=$(mktemp -d)
trap 'rm -rf $W' EXIT
mkdir -p $W/b/rootfs/bin && cp /bin/busybox $W/b/rootfs/bin/ && ln -s busybox $W/b/rootfs/bin/sh && ln -s busybox $W/b/rootfs/bin/true
(cd $W/b && runc spec) && python3 - $W/b/config.json <<'PY'
import json,sys
p=sys.argv[1]; c=json.load(open(p)); c['process']['terminal']=False; c['process']['args']=['/bin/true']
json.dump(c,open(p,'w'))
PY
# The same container in a user namespace (container root is not host root:
# no sealed copy of the engine needed, see README).
mkdir -p $W/bu && python3 - $W/b/config.json $W/bu/config.json $W/b/rootfs <<'PY'
import json,sys
c=json.load(open(sys.argv[1])); c['root']['path']=sys.argv[3]
c['linux']['namespaces'].append({'type':'user'})
m=[{'containerID':0,'hostID':300000,'size':65536}]
c['linux']['uidMappings']=m; c['linux']['gidMappings']=m
json.dump(c,open(sys.argv[2],'w'))
PY
cycle() { # $1 binary, $2 root, $3 id [$4 bundle]
  "$1" --root "$2" create --bundle ${4:-$W/b} "$3" </dev/null >/dev/null 2>&1 && "$1" --root "$2" start "$3" && "$1" --root "$2" delete --force "$3"
}
declare -a te tu tr
for i in $(seq $N); do
  s=$(date +%s%N); cycle $E $W/eroot e$i || echo "engine failed"; e=$(date +%s%N); te+=($(( (e-s)/1000 )))
  s=$(date +%s%N); cycle $E $W/eroot u$i $W/bu || echo "engine userns failed"; e=$(date +%s%N); tu+=($(( (e-s)/1000 )))
  s=$(date +%s%N); cycle runc $W/rroot r$i || echo "runc failed"; e=$(date +%s%N); tr+=($(( (e-s)/1000 )))
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]/1000}'; }
echo "create+start+delete median ms: engine $(med "${te[@]}")  engine+userns $(med "${tu[@]}")  runc $(med "${tr[@]}")"
if [ "${PODMAN:-1}" = 1 ]; then
  printf '[engine]\nevents_logger = "none"\nruntime_supports_nocgroup = ["engine"]\nruntime_supports_json = ["engine"]\n' > $W/containers.conf
  P="podman --root $W/ps --runroot $W/pr --tmpdir $W/pt --cgroup-manager cgroupfs"
  # runc has no --cgroup-manager: podman runs it with cgroupfs (v1 here).
  O="--rm --network=none --ulimit nofile=20000:20000 --ulimit nproc=1000:1000 --rootfs $W/b/rootfs /bin/true"
  declare -a pe pr
  for i in $(seq ${PN:-15}); do
    s=$(date +%s%N); CONTAINERS_CONF=$W/containers.conf $P --runtime $E run --cgroups=disabled $O || echo "podman engine failed"; e=$(date +%s%N); pe+=($(( (e-s)/1000 )))
    s=$(date +%s%N); CONTAINERS_CONF=$W/containers.conf $P --runtime /usr/sbin/runc run $O || echo "podman runc failed"; e=$(date +%s%N); pr+=($(( (e-s)/1000 )))
  done
  echo "podman run --rm /bin/true median ms: engine $(med "${pe[@]}")  runc $(med "${pr[@]}")"
fi
