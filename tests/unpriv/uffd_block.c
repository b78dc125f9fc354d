/*
 * uffd_block.c - runs a program with some userfaultfd routes closed by a seccomp filter, so
 * that the tests can reproduce, on any kernel, the machines where a route is missing.
 *
 *   uffd_block umo PROG ARGS...  userfaultfd(UFFD_USER_MODE_ONLY | ...) fails with EINVAL, as
 *                                on Linux before 5.11 (the flag is unknown there); the plain
 *                                call is left to the kernel (root or the sysctl decide).
 *   uffd_block all PROG ARGS...  every userfaultfd(2) fails with EPERM, as under a container
 *                                runtime's default seccomp policy.
 *
 * /dev/userfaultfd is not filtered: its access is decided by file permissions, which the
 * tests set up themselves. The filter is inherited by dsmrun's children. x86-64 only, as is
 * ufdsm.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "umo") && strcmp(argv[1], "all"))) {
        fprintf(stderr, "usage: %s umo|all PROG [ARGS...]\n", argv[0]);
        return 2;
    }
    int all = !strcmp(argv[1], "all");
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* flags are args[0]; the low 32 bits hold them all. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, UFFD_USER_MODE_ONLY, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, all ? SECCOMP_RET_ERRNO | EPERM : SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (all ? EPERM : EINVAL)),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
        fprintf(stderr, "uffd_block: cannot install the seccomp filter: %s\n", strerror(errno));
        return 2;
    }
    execvp(argv[2], argv + 2);
    fprintf(stderr, "uffd_block: cannot run %s: %s\n", argv[2], strerror(errno));
    return 127;
}
