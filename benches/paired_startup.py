#!/usr/bin/env python3
"""Startup of several commands, interleaved and paired (the figure of the
confinement issue): each iteration runs every command once, in an order
that rotates, under SCHED_FIFO; the report is each command's median and the
median of its per-iteration difference to the first command. On a busy
host the pairs cancel most of the drift that hyperfine's sequential batches
pick up.

    sudo benches/paired_startup.py [N] NAME=COMMAND... (first is the base)

GAP_MS (default 50) is an untimed pause before each command: back to back,
every start waits for the kernel to finish tearing down the previous
command's network namespace (about 7 ms here, whatever the runtime), which
hides everything else.

    sudo benches/paired_startup.py 200 \\
      "old=/old/engine run --net none busybox -- /bin/true" \\
      "new=target/release/engine run --net none busybox -- /bin/true" \\
      "bwrap=bwrap --unshare-all --bind R / --proc /proc --dev /dev /bin/true"
"""
import os
import shlex
import statistics
import subprocess
import sys
import time

args = sys.argv[1:]
n = int(args.pop(0)) if args and args[0].isdigit() else 200
if not args:
    sys.exit(__doc__)
commands = [(a.split("=", 1)[0], shlex.split(a.split("=", 1)[1])) for a in args]
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
times = {name: [] for name, _ in commands}
warmup = 5
gap = float(os.environ.get("GAP_MS", "50")) / 1000
with open(os.devnull, "w") as null:
    for i in range(n + warmup):
        k = i % len(commands)
        for name, argv in commands[k:] + commands[:k]:
            time.sleep(gap)
            start = time.perf_counter()
            done = subprocess.run(argv, stdout=null, stderr=null, timeout=60)
            took = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"{name} failed ({done.returncode}): {shlex.join(argv)}")
            if i >= warmup:
                times[name].append(took)
base = commands[0][0]
for name, _ in commands:
    med = statistics.median(times[name]) * 1000
    diff = statistics.median(a - b for a, b in zip(times[name], times[base])) * 1000
    print(f"{name:10s} median {med:7.3f} ms   paired difference to {base}: {diff:+.3f} ms")
