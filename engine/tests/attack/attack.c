/* Attacks run as container root by engine/tests/confinement.rs (and the
 * harness `confinement` scenario). Built static by the test, copied into the
 * rootfs as /attack. Every probe prints "NAME ERRNO" (0: it worked).
 *
 * Host safety: every syscall probe passes arguments that the kernel rejects
 * AFTER its permission check (or that change nothing), so EPERM/ENOSYS means
 * "blocked" and any other errno means "reached the kernel, allowed through";
 * nothing is loaded, rebooted, swapped or set for real. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/reboot.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int report(const char *name, long r) {
    int e = r < 0 ? errno : 0;
    printf("%s %d\n", name, e);
    fflush(stdout);
    return e;
}


/* Issue 22, item 1: an io_uring SQE makes a socket without the socket(2)
 * syscall that the filter checks by argument. Reports the errno of
 * io_uring_setup (EPERM: refused), or 0 when the ring handed back a vsock
 * fd (vsock is not namespaced). Nothing is connected or sent. */
static int io_uring_vsock(const char *name) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = syscall(SYS_io_uring_setup, 1, &p);
    if (ring < 0) return report(name, -1);
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cq_len > sq_len) sq_len = cq_len; /* one mmap for both (IORING_FEAT_SINGLE_MMAP) */
    char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQ_RING);
    struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE,
                                     MAP_SHARED, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || sqes == MAP_FAILED) return report(name, -1);
    char *cq = sq; /* single mmap */
    struct io_uring_sqe *e = &sqes[0];
    memset(e, 0, sizeof *e);
    e->opcode = IORING_OP_SOCKET;
    e->fd = 40; /* AF_VSOCK */
    e->off = SOCK_STREAM;
    ((unsigned *)(sq + p.sq_off.array))[0] = 0;
    __atomic_store_n((unsigned *)(sq + p.sq_off.tail), 1, __ATOMIC_RELEASE);
    if (syscall(SYS_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, 0, 0) < 0)
        return report(name, -1);
    struct io_uring_cqe *c = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    int res = c[*(unsigned *)(cq + p.cq_off.head) & *(unsigned *)(cq + p.cq_off.ring_mask)].res;
    if (res < 0) { errno = -res; return report(name, -1); }
    return report(name, 0);
}

static int probe(const char *name) {
    errno = 0;
    if (!strcmp(name, "mount")) {
        mkdir("/tmp/atk-mnt", 0755);
        long r = mount("none", "/tmp/atk-mnt", "tmpfs", 0, "size=1m");
        return report(name, r);
    }
    if (!strcmp(name, "umount2")) {
        /* The mask on /proc/keys, in this container's own mount namespace. */
        return report(name, umount2("/proc/keys", MNT_DETACH));
    }
    if (!strcmp(name, "reboot")) /* invalid cmd: EINVAL once past the capability check */
        return report(name, syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, 0x0badc0de, NULL));
    if (!strcmp(name, "kexec_load")) /* unknown flag bit, too many segments: EINVAL after the check */
        return report(name, syscall(SYS_kexec_load, 0UL, 1000UL, NULL, 0x100UL));
    if (!strcmp(name, "init_module")) /* empty image: ENOEXEC after the check */
        return report(name, syscall(SYS_init_module, NULL, 0UL, ""));
    if (!strcmp(name, "swapon")) /* missing file: ENOENT after the check */
        return report(name, syscall(SYS_swapon, "/nonexistent-attack-swap", 0));
    if (!strcmp(name, "keyctl"))
        return report(name, syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    if (!strcmp(name, "bpf")) /* unknown command: EINVAL */
        return report(name, syscall(SYS_bpf, 0xffff, NULL, 0));
    if (!strcmp(name, "perf_event_open")) /* NULL attr: EFAULT */
        return report(name, syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    if (!strcmp(name, "userfaultfd")) /* unknown flags: EINVAL */
        return report(name, syscall(SYS_userfaultfd, 0x7fff0000));
    if (!strcmp(name, "open_by_handle_at")) { /* empty handle: EINVAL once past may_decode_fh */
        struct { unsigned int bytes; int type; } h = {0, 0};
        return report(name, syscall(SYS_open_by_handle_at, AT_FDCWD, &h, O_RDONLY));
    }
#ifdef __x86_64__
    if (!strcmp(name, "iopl")) /* level 0: no change */
        return report(name, syscall(SYS_iopl, 0));
    if (!strcmp(name, "ioperm")) /* turning a port off: no change */
        return report(name, syscall(SYS_ioperm, 0x80UL, 1UL, 0));
#else
    if (!strcmp(name, "iopl") || !strcmp(name, "ioperm")) {
        printf("%s %d\n", name, ENOSYS); /* no such syscall on this arch */
        return ENOSYS;
    }
#endif
    if (!strcmp(name, "clock_settime")) { /* negative time: EINVAL before any change */
        struct timespec ts = {-1, 0};
        return report(name, syscall(SYS_clock_settime, CLOCK_REALTIME, &ts));
    }
    if (!strcmp(name, "unshare_user")) { /* a nested user namespace, in a child */
        pid_t p = fork();
        if (p == 0) _exit(unshare(CLONE_NEWUSER) < 0 ? errno : 0);
        int st = 0;
        waitpid(p, &st, 0);
        printf("%s %d\n", name, WEXITSTATUS(st));
        return WEXITSTATUS(st);
    }
    if (!strcmp(name, "io_uring_setup")) /* zero entries: EINVAL once past the filter */
        return report(name, syscall(SYS_io_uring_setup, 0, NULL));
    if (!strcmp(name, "io_uring_vsock"))
        return io_uring_vsock(name);
    if (!strcmp(name, "packet_socket")) /* NET_RAW */
        return report(name, socket(AF_PACKET, SOCK_RAW, 0));
    printf("%s unknown-probe\n", name);
    return 1;
}

/* Send one broadcast ARP frame out of eth0 (it reaches only the test's bridge). */
static int raw_send(void) {
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ARP));
    if (s < 0) return report("raw_send", -1);
    struct sockaddr_ll a = {0};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ETH_P_ARP);
    a.sll_ifindex = if_nametoindex("eth0");
    a.sll_halen = 6;
    memset(a.sll_addr, 0xff, 6);
    unsigned char f[42] = {0};
    memset(f, 0xff, 6);
    f[12] = 0x08; f[13] = 0x06; /* ARP */
    f[14] = 0; f[15] = 1; f[16] = 8; f[17] = 0; f[18] = 6; f[19] = 4; f[20] = 0; f[21] = 2;
    return report("raw_send", sendto(s, f, sizeof f, 0, (struct sockaddr *)&a, sizeof a));
}

/* Push characters into the terminal on fd 0 (a pty the test owns). */
static int tiocsti(void) {
    const char *s = "INJECTED\n";
    long r = 0;
    for (; *s && r == 0; s++) r = ioctl(0, TIOCSTI, s);
    return report("tiocsti", r);
}

static int read_file(const char *path, char *buf, size_t n) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t k = read(fd, buf, n - 1);
    close(fd);
    if (k < 0) return -1;
    buf[k] = 0;
    return (int)k;
}

static int contains(const char *buf, int len, const char *needle) {
    int m = strlen(needle);
    for (int i = 0; i + m <= len; i++)
        if (!memcmp(buf + i, needle, m)) return 1;
    return 0;
}

/* Issue item 2: catch a process joining by `engine exec` between its setns
 * into our user namespace and its execve, and see what it still holds. */
static void exec_spy(const char *secret, int seconds) {
    printf("ready\n");
    fflush(stdout);
    time_t end = time(NULL) + seconds;
    pid_t base = getpid();
    char path[64], buf[65536];
    int reported_env = 0, reported_tty = 0, reported_fd = 0, reported_ptrace = 0;
    for (unsigned long it = 0; time(NULL) < end; it++) {
        if ((it & 0xfff) == 0 && access("/tmp/spy-stop", F_OK) == 0) break;
        for (pid_t p = base + 1; p < base + 4096; p++) {
            snprintf(path, sizeof path, "/proc/%d/environ", p);
            int fd = open(path, O_RDONLY);
            if (fd < 0) {
                if (errno == ENOENT && p > base + 64) break;
                continue;
            }
            ssize_t k = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (k <= 0 || !contains(buf, k, secret)) continue;
            /* Past setns(user), before exec: it still has the engine's image. */
            if (!reported_env) { printf("environ-leak pid %d\n", p); reported_env = 1; }
            snprintf(path, sizeof path, "/proc/%d/stat", p);
            if (read_file(path, buf, sizeof buf) > 0) {
                char *rp = strrchr(buf, ')');
                int tty = 0;
                if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %d", &tty) == 1 && tty != 0 && !reported_tty) {
                    printf("ctty %d pid %d\n", tty, p);
                    reported_tty = 1;
                }
            }
            if (!reported_ptrace) {
                if (ptrace(PTRACE_SEIZE, p, 0, 0) == 0) {
                    printf("ptrace-seize pid %d\n", p);
                    ptrace(PTRACE_DETACH, p, 0, 0);
                    reported_ptrace = 1;
                }
            }
            for (int n = 3; n < 64; n++) {
                char fdp[64], link[512];
                snprintf(fdp, sizeof fdp, "/proc/%d/fd/%d", p, n);
                ssize_t l = readlink(fdp, link, sizeof link - 1);
                if (l <= 0) continue;
                link[l] = 0;
                int d = open(fdp, O_RDONLY | O_DIRECTORY);
                if (d < 0) continue;
                /* A directory of the host: climb out of it. */
                int up = openat(d, "../../../../../../../../..", O_RDONLY | O_DIRECTORY);
                close(d);
                if (up < 0) continue;
                DIR *dir = fdopendir(up);
                if (!reported_fd) {
                    printf("fd-escape pid %d fd %d -> %s; its / holds:", p, n, link);
                    struct dirent *e;
                    while (dir && (e = readdir(dir))) printf(" %s", e->d_name);
                    printf("\n");
                    reported_fd = 1;
                }
                if (dir) closedir(dir);
            }
            fflush(stdout);
        }
    }
    printf("spy-done\n");
    fflush(stdout);
}

/* name_to_handle_at, run on the host by the test: "TYPE HEX". */
static int name2h(const char *p) {
    struct { unsigned int bytes; int type; unsigned char f[128]; } h = {128, 0, {0}};
    int mnt;
    if (syscall(SYS_name_to_handle_at, AT_FDCWD, p, &h, &mnt, 0) < 0) return report("name_to_handle_at", -1);
    printf("%d ", h.type);
    for (unsigned i = 0; i < h.bytes; i++) printf("%02x", h.f[i]);
    printf("\n");
    return 0;
}

/* Issue item 7: open a file by handle through a mount of the same filesystem. */
static int openh(const char *mountpoint, int type, const char *hex) {
    struct { unsigned int bytes; int type; unsigned char f[128]; } h = {0, type, {0}};
    for (; hex[0] && hex[1] && h.bytes < 128; hex += 2) sscanf(hex, "%2hhx", &h.f[h.bytes++]);
    int m = open(mountpoint, O_RDONLY | O_DIRECTORY);
    long fd = syscall(SYS_open_by_handle_at, m, &h, O_RDONLY);
    if (fd < 0) return report("open_by_handle_at", -1);
    char buf[256];
    ssize_t k = read(fd, buf, sizeof buf - 1);
    buf[k > 0 ? k : 0] = 0;
    printf("open_by_handle_at 0 content %s\n", buf);
    return 0;
}

/* Issue 22 item 8: container root copies this binary into a volume, makes
 * it setuid and runs it through `setuid-as 1000 COPY`, which drops every id
 * to 1000 and executes COPY euid: "euid 0" means the bit was honoured. */
static int setuid_as(uid_t id, const char *program) {
    if (setgroups(0, NULL) || setresgid(id, id, id) || setresuid(id, id, id))
        return report("setuid-as", -1);
    execl(program, program, "euid", (char *)NULL);
    return report("setuid-as exec", -1);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "sys")) return probe(argv[2]) ? 0 : 0;
    if (argc >= 2 && !strcmp(argv[1], "raw-send")) return raw_send(), 0;
    if (argc >= 2 && !strcmp(argv[1], "tiocsti")) return tiocsti(), 0;
    if (argc >= 4 && !strcmp(argv[1], "exec-spy")) return exec_spy(argv[2], atoi(argv[3])), 0;
    if (argc >= 3 && !strcmp(argv[1], "name2h")) return name2h(argv[2]);
    if (argc >= 5 && !strcmp(argv[1], "openh")) return openh(argv[2], atoi(argv[3]), argv[4]);
    if (argc >= 2 && !strcmp(argv[1], "euid")) return printf("euid %d\n", (int)geteuid()), 0;
    if (argc >= 4 && !strcmp(argv[1], "setuid-as")) return setuid_as((uid_t)atoi(argv[2]), argv[3]);
    fprintf(stderr, "usage: attack sys NAME | raw-send | tiocsti | exec-spy SECRET SECS | name2h PATH | openh MNT TYPE HEX | euid | setuid-as UID PROGRAM\n");
    return 2;
}
