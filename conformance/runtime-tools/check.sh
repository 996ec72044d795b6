#!/usr/bin/env bash
# The runtime-tools validation suite (58 tests) against an engine binary,
# compared with expected-pass.txt: exit 1 if a test expected to pass fails
# (twice: a failure is run once more, to tell a flake from a regression);
# tests that pass unexpectedly are printed, to be added to the list.
#
# Usage (as root, Go >= 1.21 installed): conformance/runtime-tools/check.sh ENGINE
# Environment:
#   RUNTIME_TOOLS_CACHE  where the built suite is kept between runs
#                        (default /var/cache/oci-runtime-tools); rebuilt (about
#                        2 min on 2 cores) when missing or built from another
#                        tarball or patch set
#   LOGDIR               the per-test TAP logs (default: a new temp dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] && [ -x "$1" ] || { echo "usage: $0 ENGINE_BINARY" >&2; exit 2; }
engine=$(realpath "$1")
cache=${RUNTIME_TOOLS_CACHE:-/var/cache/oci-runtime-tools}
tarball=$here/runtime-tools-5e639034.tar.xz

# What the cache was built from: the tarball and the patches.
source_id=$(cat "$tarball" "$here"/patches/*.patch | sha256sum | cut -d' ' -f1)
if [ "$(cat "$cache/.built-from" 2>/dev/null)" != "$source_id" ]; then
    echo "runtime-tools: building the suite into $cache (about 2 min)"
    build=$cache.build.$$ src=$(mktemp -d)
    trap 'rm -rf "$src" "$build"' EXIT
    tar -xJf "$tarball" -C "$src"
    # validate.sh builds its cache when it is incomplete; no test is run.
    RUNTIME=/bin/true RUNTIME_TOOLS_SRC=$src/runtime-tools OCI_VALIDATION_CACHE=$build \
        PATCH_DIR=$here/patches TESTS=" " bash "$here/validate.sh" >/dev/null
    echo "$source_id" >"$build/.built-from"
    # Swapped in whole: a run killed halfway leaves the old cache or none.
    rm -rf "$cache.old"
    if [ -e "$cache" ]; then mv "$cache" "$cache.old"; fi
    mv "$build" "$cache"
    rm -rf "$cache.old" "$src"
    trap - EXIT
fi

logdir=${LOGDIR:-$(mktemp -d -t runtime-tools.XXXXXX)}
mkdir -p "$logdir"
root=$(mktemp -d -t runtime-tools-root.XXXXXX)
run() { # TESTS... -> validate.sh's output in $logdir/$1
    local out=$logdir/$1
    shift
    # A state directory of its own; exit 1 means "some test failed", which
    # the comparison below judges; 2 is a setup error.
    RUNTIME=$engine RUNTIME_GLOBAL_ARGS="--root $root" OCI_VALIDATION_CACHE=$cache \
        LOGDIR=$logdir TESTS="$*" timeout 600 bash "$here/validate.sh" >"$out" 2>&1 \
        || [ $? -eq 1 ] || { cat "$out"; echo "runtime-tools: the suite did not run" >&2; exit 2; }
}
passes() { awk '$1 == "PASS" { print $2 }' "$1" | sort; }

run all.txt "$(cd "$cache/validation" && for d in */; do d=${d%/}; [ -x "$d/$d.t" ] && echo "$d"; done)"
cut -c1-160 "$logdir/all.txt"
expected=$(sed -e 's/#.*//' "$here/expected-pass.txt" | tr -s ' \t' '\n' | grep -v '^$' | sort)
failed=$(comm -23 <(echo "$expected") <(passes "$logdir/all.txt"))
unexpected=$(comm -13 <(echo "$expected") <(passes "$logdir/all.txt"))
if [ -n "$failed" ]; then
    echo "runtime-tools: expected to pass but failed, run again: $(echo $failed)"
    run again.txt $failed
    cut -c1-160 "$logdir/again.txt"
    failed=$(comm -23 <(echo "$failed") <(passes "$logdir/again.txt"))
fi
rmdir "$root" 2>/dev/null || echo "runtime-tools: containers left in $root: $(ls "$root")"
if [ -n "$unexpected" ]; then
    echo "runtime-tools: passing but not in expected-pass.txt (add them): $(echo $unexpected)"
fi
echo "runtime-tools: $(grep -c . <<<"$expected") expected to pass; logs in $logdir"
if [ -n "$failed" ]; then
    echo "runtime-tools: FAILED (expected to pass): $(echo $failed)"
    exit 1
fi
echo "runtime-tools: every expected test passed"
