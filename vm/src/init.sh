#!/bin/busybox sh
# /init of the guest's initramfs (built by the vm crate): load the modules,
# mount the shared root read-only at /mnt with fresh system filesystems and
# the shared directories, run one command chrooted there, report its exit
# status on the "vm.status" port and power off. Its own messages go to the
# kernel console, which the host keeps in a log.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
	echo "vm-init: $*"
	echo "error $*" >&3
	poweroff -f
	exit 1
}
exec 3>/dev/null

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# busybox insmod does not resolve dependencies: the host ordered them.
while read -r m; do
	insmod "/lib/modules/$m.ko" || echo "vm-init: insmod $m failed"
done </lib/modules/order
[ -s /lib/modules/missing ] && echo "vm-init: not in this kernel: $(cat /lib/modules/missing)"

# The device of the virtio-serial port named $1. Ports appear shortly after
# virtio_console is loaded; create the node if devtmpfs has not.
port() {
	i=0
	while [ $i -lt 1000 ]; do
		for p in /sys/class/virtio-ports/*; do
			[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] || continue
			d=/dev/${p##*/}
			[ -c "$d" ] || mknod "$d" c $(tr : ' ' <"$p/dev")
			echo "$d"
			return 0
		done
		usleep 10000
		i=$((i + 1))
	done
	return 1
}
# A virtio port may be open only once at a time: keep fd 3 for the status.
status=$(port vm.status) || fail "no virtio port vm.status"
exec 3>"$status" || fail "cannot open $status"
out=$(port vm.stdout) || fail "no virtio port vm.stdout"
err=$(port vm.stderr) || fail "no virtio port vm.stderr"

. /vm/config.sh

# Read-only shares are cached by the guest (cache=loose): programs start
# several times faster, at the price of not seeing host changes made while
# the guest runs. Writable ones stay uncached (cache=mmap caches mapped pages
# only, so that mmap works), so both sides see all writes.
share() { # ro|rw TAG PATH
	o=rw,cache=mmap
	[ "$1" = ro ] && o=ro,cache=loose
	mkdir -p "/mnt$3" 2>/dev/null
	mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,$o" "$2" "/mnt$3" ||
		fail "cannot mount the shared directory $3 (9p tag $2)"
}
share ro root /
mount -t tmpfs -o mode=1777 tmpfs /mnt/tmp || fail "cannot mount tmpfs on /tmp"
mount -t tmpfs -o mode=755 tmpfs /mnt/run || fail "cannot mount tmpfs on /run"
[ -d /mnt/var/tmp ] && mount -t tmpfs -o mode=1777 tmpfs /mnt/var/tmp
mount -t proc proc /mnt/proc || fail "cannot mount /proc"
mount -t sysfs sysfs /mnt/sys || fail "cannot mount /sys"
mount -t cgroup2 -o nsdelegate cgroup2 /mnt/sys/fs/cgroup || fail "cannot mount cgroup2"
mount -t devtmpfs devtmpfs /mnt/dev || fail "cannot mount /dev"
mkdir -p /mnt/dev/pts /mnt/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /mnt/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /mnt/dev/shm
ln -sf /proc/self/fd /mnt/dev/fd
ln -sf /proc/self/fd/0 /mnt/dev/stdin
ln -sf /proc/self/fd/1 /mnt/dev/stdout
ln -sf /proc/self/fd/2 /mnt/dev/stderr

# The root cgroup may enable controllers for its children while init stays
# in it (it is exempt from the no-internal-processes rule).
cg=/mnt/sys/fs/cgroup
for c in cpuset cpu io memory pids; do
	grep -qw "$c" $cg/cgroup.controllers && echo "+$c" >$cg/cgroup.subtree_control
done

vm_shares

hostname "$VM_HOSTNAME"
ip link set lo up

# The command runs in the shared root, with a copy of busybox to change directory and
# set up the environment (the root may lack a shell).
mkdir -p /mnt/run/vm && cp /bin/busybox /vm/run.sh /mnt/run/vm/ ||
	fail "cannot copy the run script to /run/vm"
echo started >&3
# Not a plain chroot: the kernel refuses user namespaces to a chrooted
# process. In a mount namespace of its own the shared root is moved onto /,
# so the command's root is its namespace's root, as on a booted system. Then
# every mount is made shared, as systemd does on every host (and so on
# GitHub's runners): what propagates there propagates here.
unshare -m sh -c 'cd /mnt && mount --move . / && mount --make-rshared . &&
	exec chroot . /run/vm/busybox sh /run/vm/run.sh' \
	</dev/null >"$out" 2>"$err"
echo "exit $?" >&3
sync
poweroff -f
