#!/bin/bash
# CI's CRI check on the host (issue 19's quicker signal): containerd's CRI plugin
# with RUNTIME as its runc binary, cgroups off (this host's cgroup v1 hybrid gives
# the engine none) and `/` rshared as on a systemd node. A pod's whole life with
# crictl, then critest, compared with expected-pass.txt:
#   - a test listed there that does not pass fails the step;
#   - a test that passes and is not listed is printed (add it to the list).
#
#   RUNTIME=/path/to/engine   (required)
#   CRI_CACHE=DIR             built crictl/critest and test images, kept between
#                             runs on one machine (default /var/cache/engine-cri);
#                             each under a key of its sources, so a change rebuilds
#   OUT=DIR                   logs (default: a new directory under /var/tmp, kept
#                             only when the check fails)
#   EXPECTED=FILE             the list (default expected-pass.txt beside this script)
#   CRI_TIMEOUT=SECS          the whole check's deadline (default 900)
#   PREPARE_ONLY=1            build the cache and stop (the harness's cri scenario
#                             finds crictl there)
#
# Needs (Debian): containerd, containernetworking-plugins, docker-registry, skopeo,
# umoci, busybox-static, musl-tools, catatonit, jq; Go >= 1.21 for the first build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CRI_CACHE:-/var/cache/engine-cri}
expected=${EXPECTED:-$here/expected-pass.txt}

# The cache: keyed by what each part is built from.
key() { cat "$@" | sha256sum | cut -c1-12; }
tools=$cache/tools-$(key "$here/cri-tools-v1.26.1.tar.xz" "$here/build.sh")
images=$cache/img-$(key "$here/images/build-images.sh" "$here"/images/src/*)
mkdir -p "$cache"
if [ ! -x "$tools/critest" ]; then
  echo "ci.sh: building crictl and critest into $tools (about 5 min)"
  rm -rf "$tools.tmp"
  "$here/build.sh" "$tools.tmp" || { echo "ci.sh: crictl and critest did not build (Go >= 1.21 needed)" >&2; exit 1; }
  mv "$tools.tmp" "$tools"
fi
if [ ! -f "$images/oci/index.json" ]; then
  echo "ci.sh: building the test images into $images"
  rm -rf "$images.tmp"
  "$here/images/build-images.sh" "$images.tmp" > "$cache/images.log" 2>&1 \
    || { tail -5 "$cache/images.log" >&2; echo "ci.sh: the test images did not build: see $cache/images.log" >&2; exit 1; }
  mv "$images.tmp" "$images"
  # The scratch trees umoci built from: only the layout is used.
  rm -rf "$images"/rootfs-* "$images/src"
fi
ln -sfn "$(basename "$tools")" "$cache/tools"
ln -sfn "$(basename "$images")" "$cache/img"
[ -z "${PREPARE_ONLY:-}" ] || exit 0

[ -n "${RUNTIME:-}" ] || { echo "ci.sh: set RUNTIME=/path/to/engine" >&2; exit 2; }
[ -f "$expected" ] || { echo "ci.sh: no list $expected" >&2; exit 2; }
work=$(mktemp -d /var/tmp/engine-cri.XXXXXX)
out=${OUT:-$work.out}
rm -rf "$out"; mkdir -p "$work/img" "$out"
cp -a "$images/oci" "$work/img/"
set +e
RUNTIME=$RUNTIME WORK=$work TOOLS=$tools OUT=$out DISABLE_CGROUP=true SHARED_ROOT=1 \
  timeout -k 10 "${CRI_TIMEOUT:-900}" "$here/cri-check.sh"
rc=$?
set -e
rm -rf "$work"
[ $rc = 0 ] || echo "ci.sh: cri-check.sh exited $rc"

fail=0
# The pod's life: every crictl step succeeds, and exec hands back the command's
# status (crictl 1.26 says it, and exits 1).
if [ ! -s "$out/crictl-steps.txt" ]; then
  echo "ci.sh: no crictl steps in $out/crictl-steps.txt"; fail=1
else
  for s in pull runp create start ps exec logs stop inspc rm stopp rmp; do
    grep -qE "^$s +rc=0 " "$out/crictl-steps.txt" || { echo "ci.sh: crictl $s failed: $(grep -E "^$s " "$out/crictl-steps.txt")"; fail=1; }
  done
  grep -E "^exec-rc " "$out/crictl-steps.txt" | grep -q "exit code 3" \
    || { echo "ci.sh: crictl exec of 'exit 3' did not report exit code 3"; fail=1; }
  grep -E "^logs " "$out/crictl-steps.txt" | grep -q "hello-from-container|tick 0" \
    || { echo "ci.sh: crictl logs lack the container's output"; fail=1; }
fi

# critest against the list.
if [ ! -s "$out/critest.json" ]; then
  echo "ci.sh: critest wrote no report ($out/critest.json)"; fail=1
else
  jq -r '.[].SpecReports[] | select(.LeafNodeType == "It")
         | "\(.State)\t\((.ContainerHierarchyTexts + [.LeafNodeText]) | join(" "))"' \
    "$out/critest.json" | sort -t$'\t' -k2 > "$out/results.tsv"
  sed -e '/^#/d' -e '/^$/d' "$expected" | sort > "$out/expected.txt"
  awk -F'\t' '$1 == "passed" { print $2 }' "$out/results.tsv" | sort > "$out/passed.txt"
  missing=$(comm -23 "$out/expected.txt" "$out/passed.txt")
  extra=$(comm -13 "$out/expected.txt" "$out/passed.txt")
  printf 'ci.sh: critest: %s passed, %s failed, %s skipped; %s expected to pass\n' \
    "$(grep -c '^passed' "$out/results.tsv")" "$(grep -c '^failed' "$out/results.tsv")" \
    "$(grep -c '^skipped' "$out/results.tsv")" "$(wc -l < "$out/expected.txt")"
  if [ -n "$extra" ]; then
    echo "ci.sh: passing now, not in $(basename "$expected") (add them):"
    echo "$extra" | sed 's/^/  + /'
  fi
  if [ -n "$missing" ]; then
    echo "ci.sh: expected to pass, did not:"
    while IFS= read -r t; do
      printf '  - %s (%s)\n' "$t" "$(awk -F'\t' -v t="$t" '$2 == t { print $1 }' "$out/results.tsv")"
      jq -r --arg t "$t" '.[].SpecReports[] | select(((.ContainerHierarchyTexts + [.LeafNodeText]) | join(" ")) == $t)
             | .Failure.Message // empty' "$out/critest.json" | head -3 | sed 's/^/      /'
    done <<< "$missing"
    fail=1
  fi
fi
if [ $fail = 0 ]; then
  echo "ci.sh: CRI check passed"
  [ -n "${OUT:-}" ] || rm -rf "$out"
else
  echo "ci.sh: CRI check FAILED; logs in $out (critest.log, containerd.log, argv.log)"
fi
exit $fail
