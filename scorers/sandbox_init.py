"""``rfai-init``: the first process of each sandboxed run on Linux, built once from C.

It does in one exec what the portable chain (``sh`` + ``mount -a`` + ``setsid`` + ``setpriv``,
``scorers/isolation.py``; its mount table: ``scorers/isolation_holder.py``) does in five:
each of those util-linux execs costs about a millisecond, which put the launch overhead over
its 10 ms budget. Run as root of the run's nested user namespace (``unshare --wd=RUN_DIR``), it

1. mounts fresh size-bounded tmpfs on /run, the base directory, /tmp, /var/tmp, /dev/shm and
   /dev/pts (targets that do not exist are skipped), replaces /dev with a read-only tmpfs
   holding only null, zero, full, random, urandom and tty (bound from the host's), makes the
   root-writable parts of /proc read-only (/proc/sys, sysrq-trigger, irq, bus, fs, acpi,
   scsi, pressure) and binds the run's directory (its cwd) at ``/run/rfai-run``, then
   changes into it;
2. moves the program's stderr to its own descriptor (the launcher keeps fd 2);
3. sets the run's rlimits (soft = hard), starts a new session (``setsid``);
4. sets no-new-privs, empties the capability bounding set, clears the ambient set and drops
   every effective, permitted and inheritable capability;
5. installs a seccomp filter (x86-64 and arm64): ``socket(AF_UNIX, ...)`` fails with EACCES,
   so no host unix socket is reachable at any path (``socketpair`` still works);
   ``socket(AF_VSOCK, ...)`` with EAFNOSUPPORT (vsock is not per network namespace);
   ``unshare``/``clone`` with ``CLONE_NEWUSER`` with EPERM (a new user namespace would give
   back every capability, inside it); ``io_uring_setup``, ``clone3`` (libc falls back to
   ``clone``), foreign syscall ABIs (i386 ``int 0x80``, x32), ``keyctl``/``add_key``/
   ``request_key`` and ``perf_event_open`` with ENOSYS. Then it execs the program.

Built with the system's C compiler (``cc``) into the user's cache directory, keyed by the
source's hash; where no compiler is found, the portable chain is used instead (logged once).
Any failure before the exec exits 125 with a message on the launcher's stderr.

usage: rfai-init STDERR_FD BASE_DIR TMPFS_MB CPU FSIZE NOFILE AS NPROC -- PROGRAM [ARG...]
(0 for AS or NPROC: not set.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger("rfai.scorers")

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INSIDE "/run/rfai-run"

static void die(const char *what, const char *arg) {
    fprintf(stderr, "rfai-init: %s %s: %s\n", what, arg, strerror(errno));
    exit(125);
}

static void scratch(const char *target, const char *options) {
    if (mount("rfai-sandbox", target, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0) {
        if (errno == ENOENT) return; /* no such directory on this host: nothing to cover */
        die("cannot mount tmpfs on", target);
    }
}

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#endif
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ARG0_LOW (offsetof(struct seccomp_data, args[0]) + 4)
#else
#define ARG0_LOW offsetof(struct seccomp_data, args[0])
#endif
#define DENY(err) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err))
#define ALLOW BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
#define NR_IS(nr, jt, jf) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), (jt), (jf))
#define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (field))
#define NOSYS(nr) NR_IS(nr, 0, 1), DENY(ENOSYS)

/* socket(AF_UNIX, ...) fails with EACCES: a host unix socket at any path is out of reach;
   socket(AF_VSOCK, ...) with EAFNOSUPPORT: vsock is not per network namespace (it reaches the
   hypervisor's host). A new user namespace (unshare / clone with CLONE_NEWUSER) fails with
   EPERM: inside one the program would hold every capability again (fresh procfs, sysfs and
   tmpfs mounts, the kernel's whole namespaced attack surface). io_uring (which can open and
   connect sockets itself), clone3 (whose flags live in memory a filter cannot read; libc
   falls back to clone on ENOSYS), foreign syscall ABIs (i386 via int 0x80, x32), the kernel
   keyrings and perf_event_open fail with ENOSYS. */
static void install_seccomp(void) {
#ifdef ARCH
    struct sock_filter filter[] = {
        LOAD(offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
        DENY(ENOSYS),
        LOAD(offsetof(struct seccomp_data, nr)),
#ifdef __x86_64__
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
        DENY(ENOSYS),
#endif
        NOSYS(__NR_io_uring_setup),
        NOSYS(__NR_clone3),
        NOSYS(__NR_keyctl),
        NOSYS(__NR_add_key),
        NOSYS(__NR_request_key),
        NOSYS(__NR_perf_event_open),
        NR_IS(__NR_socket, 0, 6),
        LOAD(ARG0_LOW),
        NR_IS(AF_UNIX, 0, 1),
        DENY(EACCES),
        NR_IS(AF_VSOCK, 0, 1),
        DENY(EAFNOSUPPORT),
        ALLOW,
        NR_IS(__NR_unshare, 1, 0),
        NR_IS(__NR_clone, 0, 3),
        LOAD(ARG0_LOW),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1),
        DENY(EPERM),
        ALLOW,
    };
    struct sock_fprog program = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) != 0)
        die("cannot install", "the seccomp filter");
#endif
}

/* Make a path read-only in the run's mount namespace (a read-only bind over itself). */
static void read_only(const char *path) {
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) != 0) {
        if (errno == ENOENT) return;
        die("cannot bind", path);
    }
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount(NULL, path, NULL, flags, NULL) != 0) die("cannot make read-only", path);
}

/* A /dev with only the harmless devices, bound from the host's /dev onto files of a small
   read-only tmpfs that then replaces /dev: as root (uid 0 without capabilities) the host's
   /dev would let the program write loop devices, /dev/kmsg, the console and terminals, and
   open /dev/userfaultfd, which a read-only mount does not stop (device files stay writable). */
static void minimal_dev(void) {
    static const char *devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
    static const char *links[][2] = {{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
        {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};
    const char *stage = "/run/.rfai-dev", *options = "size=64k,mode=755";
    char path[64], source[64];
    if (mkdir(stage, 0755) != 0) die("cannot create", stage);
    if (mount("rfai-sandbox", stage, "tmpfs", MS_NOSUID | MS_NOEXEC, options) != 0)
        die("cannot mount tmpfs on", stage);
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", stage, devices[i]);
        snprintf(source, sizeof source, "/dev/%s", devices[i]);
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0) die("cannot create", path);
        close(fd);
        if (mount(source, path, NULL, MS_BIND, NULL) != 0) die("cannot bind", source);
    }
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", stage, links[i][0]);
        if (symlink(links[i][1], path) != 0) die("cannot create", path);
    }
    snprintf(path, sizeof path, "%s/shm", stage);
    if (mkdir(path, 01777) != 0) die("cannot create", path);
    snprintf(path, sizeof path, "%s/pts", stage);
    if (mkdir(path, 0755) != 0) die("cannot create", path);
    if (mount(NULL, stage, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, options) != 0)
        die("cannot make read-only", stage);
    if (mount(stage, "/dev", NULL, MS_MOVE, NULL) != 0) die("cannot move", "/dev");
}

static void limit(int resource, const char *value) {
    rlim_t n = (rlim_t)strtoull(value, NULL, 10);
    struct rlimit r = {n, n};
    if (setrlimit(resource, &r) != 0) die("cannot set rlimit", value);
}

int main(int argc, char **argv) {
    if (argc < 11 || strcmp(argv[9], "--") != 0) {
        fprintf(stderr, "rfai-init: usage: STDERR_FD BASE TMPFS_MB CPU FSIZE NOFILE AS NPROC -- "
                        "PROGRAM [ARG...]\n");
        return 125;
    }
    int err_fd = atoi(argv[1]);
    char big[64], small[] = "size=1m,mode=755";
    snprintf(big, sizeof big, "size=%sm,mode=1777", argv[3]);
    scratch("/run", big);
    if (mkdir(INSIDE, 0755) != 0) die("cannot create", INSIDE);
    if (mount(".", INSIDE, NULL, MS_BIND, NULL) != 0) die("cannot bind the run dir at", INSIDE);
    scratch(argv[2], small);
    scratch("/tmp", big);
    scratch("/var/tmp", big);
    minimal_dev();
    scratch("/dev/shm", big);
    scratch("/dev/pts", small);
    /* As root the program may write every root-owned procfs file that checks no capability
       (sysctls such as kernel.core_pattern: code run as root on the host). */
    static const char *proc_read_only[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq",
        "/proc/bus", "/proc/fs", "/proc/acpi", "/proc/scsi", "/proc/pressure"};
    for (size_t i = 0; i < sizeof proc_read_only / sizeof proc_read_only[0]; i++)
        read_only(proc_read_only[i]);
    if (chdir(INSIDE) != 0) die("cannot enter", INSIDE);
    setenv("PWD", INSIDE, 1);
    if (dup2(err_fd, 2) < 0) die("cannot move stderr from fd", argv[1]);
    if (err_fd != 2) close(err_fd);
    limit(RLIMIT_CORE, "0");
    limit(RLIMIT_CPU, argv[4]);
    limit(RLIMIT_FSIZE, argv[5]);
    limit(RLIMIT_NOFILE, argv[6]);
    if (strcmp(argv[7], "0") != 0) limit(RLIMIT_AS, argv[7]);
    if (strcmp(argv[8], "0") != 0) limit(RLIMIT_NPROC, argv[8]);
    if (setsid() < 0) die("cannot start a session", "");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("cannot set", "no_new_privs");
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) die("cannot drop capability", "");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        die("cannot clear", "ambient capabilities");
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &header, data) != 0) die("cannot drop", "capabilities");
    install_seccomp();
    execvp(argv[10], argv + 10);
    fprintf(stderr, "rfai-init: failed to execute %s: %s\n", argv[10], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
"""


def build_init() -> Path | None:
    """The compiled ``rfai-init`` (built on first use and cached), or None without a compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rfai"
    target = cache / f"rfai-init-{digest}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = Path(tempfile.gettempdir())  # a read-only home: build next to the base dirs
        target = cache / f"rfai-init-{digest}-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "rfai-init.c")
        source.write_text(SOURCE)
        # Static where libc.a exists: an exec then skips the dynamic loader (~0.5 ms).
        for flags in (["-static"], []):
            out = Path(tmp, "rfai-init")
            argv = [compiler, "-O2", *flags, "-o", str(out), str(source)]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if result.returncode == 0:
                staged = target.with_name(f"{target.name}.{os.getpid()}.tmp")
                shutil.copy2(out, staged)
                os.replace(staged, target)  # atomic: a concurrent builder sees all or nothing
                return target
        log.warning("could not build rfai-init with %s: %s", compiler, result.stderr[-500:])
    return None
