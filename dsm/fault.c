/*
 * fault.c - turning memory accesses into protocol requests.
 *
 * User-mode faults: userfaultfd runs in SIGBUS mode, so the faulting thread itself gets
 * SIGBUS, asks for the page and waits for it (driving the protocol engine meanwhile) - no
 * handoff to another thread, which on these machines would cost a cross-CPU wakeup each way.
 * The x86 page-fault error code in the signal context says whether the access was a write.
 *
 * Kernel-mode faults: in SIGBUS mode a system call that touches a missing page fails with
 * EFAULT instead of waiting. So this library interposes the libc wrappers of the system calls
 * that take user buffers (read/write and friends, socket send/recv): when the buffer lies in
 * the global space it first makes the pages present with the right permission, and if the
 * call still fails with EFAULT (another node took a page back in between) it does so again
 * and retries. Calls made inside libc itself (fread's internal read, for example) bypass the
 * interposition; dsm_prefault-ing the buffer first covers those (see docs).
 *
 * What to ask for, and waiting for it, is the engine's business (dsm_access in engine.c).
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"

static struct sigaction old_bus;
static int installed;
static void resolve_all(void);

static void sigbus_handler(int sig, siginfo_t *si, void *ctx)
{
    struct dsm_runtime *rt = ufdsm_rt;
    if (!rt || !rt->initialized || !dsm_in_region(si->si_addr)) {
        /* Not ours: behave as if we were not here. */
        if (old_bus.sa_flags & SA_SIGINFO) {
            if (old_bus.sa_sigaction) {
                old_bus.sa_sigaction(sig, si, ctx);
                return;
            }
        } else if (old_bus.sa_handler != SIG_DFL && old_bus.sa_handler != SIG_IGN) {
            old_bus.sa_handler(sig);
            return;
        }
        signal(SIGBUS, SIG_DFL);
        raise(SIGBUS);
        return;
    }
    int saved = errno;
    ucontext_t *uc = ctx;
    int write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
    dsm_access(rt->node, dsm_page_of(si->si_addr), write, 1,
               (uint32_t)((uintptr_t)si->si_addr & (PAGE_SIZE - 1)));
    errno = saved;
}

int dsm_fault_install(char *err, size_t errlen)
{
    resolve_all();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sigbus_handler;
    /* SA_ONSTACK: a thread whose stack is in the global space (the pthreads preload runs
     * application threads on such stacks) may fault on its own stack, where the kernel could
     * not push the signal frame; such threads set up an alternate stack. Threads without one
     * are unaffected by the flag. */
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old_bus) < 0) {
        snprintf(err, errlen, "cannot install the SIGBUS handler: %s", strerror(errno));
        return DSM_ESYS;
    }
    installed = 1;
    return DSM_OK;
}

void dsm_fault_uninstall(void)
{
    if (installed) sigaction(SIGBUS, &old_bus, NULL);
    installed = 0;
}

/* The page ranges this thread's system call has pinned (the bounded cache does not evict
 * them until the call returns; a range beyond the first few is simply not pinned - the call
 * is still correct, an eviction under it costs an EFAULT and a retry). */
#define PINS_MAX 8
static __thread struct {
    uint64_t first, last;
} tl_pins[PINS_MAX];
static __thread int tl_npins;

static void unpin_all(void)
{
    struct dsm_runtime *rt = ufdsm_rt;
    for (int i = 0; i < tl_npins; i++)
        if (rt && rt->node) dsm_evict_pin(rt->node, tl_pins[i].first, tl_pins[i].last, -1);
    tl_npins = 0;
}

void dsm_prefault(const void *addr, size_t len, int write)
{
    struct dsm_runtime *rt = ufdsm_rt;
    if (!rt || !rt->initialized || !len) return;
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    uintptr_t rb = (uintptr_t)rt->base, re = rb + rt->npages * PAGE_SIZE;
    if (hi <= rb || lo >= re) return;
    if (lo < rb) lo = rb;
    if (hi > re) hi = re;
    uint64_t first = dsm_page_of((void *)lo), last = dsm_page_of((void *)(hi - 1));
    if (tl_npins < PINS_MAX) {
        dsm_evict_pin(rt->node, first, last, 1);
        tl_pins[tl_npins].first = first;
        tl_pins[tl_npins++].last = last;
    }
    for (uint64_t p = first; p <= last; p++) {
        if (!dsm_access_ok(rt->node, p, write)) dsm_access(rt->node, p, write, 0, 0);
    }
}

/* ---------------------------------------------------------------- system call interposition */

/* Whether a buffer overlaps the global space (cheap enough for every call). */
static inline int overlaps(const void *buf, size_t len)
{
    struct dsm_runtime *rt = ufdsm_rt;
    return rt && rt->initialized && len &&
           (uintptr_t)buf < (uintptr_t)rt->base + rt->npages * PAGE_SIZE &&
           (uintptr_t)buf + len > (uintptr_t)rt->base;
}

static int iov_overlaps(const struct iovec *iov, int n)
{
    for (int i = 0; i < n; i++)
        if (overlaps(iov[i].iov_base, iov[i].iov_len)) return 1;
    return 0;
}

static void iov_prefault(const struct iovec *iov, int n, int write)
{
    for (int i = 0; i < n; i++) dsm_prefault(iov[i].iov_base, iov[i].iov_len, write);
}

/* The next definitions of the wrapped functions (libc's, or a sanitizer's). Resolved once at
 * install time, because dlsym is not async-signal-safe and the first write(2) may come from
 * a log line inside the fault handler; resolved lazily too, for calls before dsm_init. */
#define WRAPPED(X)                                                                                 \
    X(read)                                                                                        \
    X(write)                                                                                       \
    X(pread)                                                                                       \
    X(pwrite)                                                                                      \
    X(readv)                                                                                       \
    X(writev) X(preadv) X(pwritev) X(recv) X(recvfrom) X(send) X(sendto) X(recvmsg) X(sendmsg)
#define DECLARE_REAL(name) static __typeof__(name) *real_##name;
WRAPPED(DECLARE_REAL)
#define RESOLVE_REAL(name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name);
static void resolve_all(void)
{
    WRAPPED(RESOLVE_REAL)
}
#define REAL(name)                                                                                 \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* Retries a call on a DSM buffer until it does not fail with EFAULT: each EFAULT means a page
 * went away between the prefault and the kernel's copy; the prefault brings it back. */
#define RETRY_ON_EFAULT(prefault, call)                                                            \
    do {                                                                                           \
        for (int tries_ = 0;; tries_++) {                                                          \
            prefault;                                                                              \
            __typeof__(call) r_ = call;                                                            \
            unpin_all();                                                                           \
            if (r_ >= 0 || errno != EFAULT || tries_ >= 1000) return r_;                           \
            atomic_fetch_add_explicit(&ufdsm_rt->node->st.kernel_retries, 1,                       \
                                      memory_order_relaxed);                                       \
        }                                                                                          \
    } while (0)

ssize_t read(int fd, void *buf, size_t n)
{
    REAL(read);
    if (!overlaps(buf, n)) return real_read(fd, buf, n);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 1), real_read(fd, buf, n));
}

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    if (!overlaps(buf, n)) return real_write(fd, buf, n);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 0), real_write(fd, buf, n));
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    REAL(pread);
    if (!overlaps(buf, n)) return real_pread(fd, buf, n, off);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 1), real_pread(fd, buf, n, off));
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    if (!overlaps(buf, n)) return real_pwrite(fd, buf, n, off);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 0), real_pwrite(fd, buf, n, off));
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread")));
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite")));

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    REAL(readv);
    if (!iov_overlaps(iov, cnt)) return real_readv(fd, iov, cnt);
    RETRY_ON_EFAULT(iov_prefault(iov, cnt, 1), real_readv(fd, iov, cnt));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev);
    if (!iov_overlaps(iov, cnt)) return real_writev(fd, iov, cnt);
    RETRY_ON_EFAULT(iov_prefault(iov, cnt, 0), real_writev(fd, iov, cnt));
}

ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(preadv);
    if (!iov_overlaps(iov, cnt)) return real_preadv(fd, iov, cnt, off);
    RETRY_ON_EFAULT(iov_prefault(iov, cnt, 1), real_preadv(fd, iov, cnt, off));
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(pwritev);
    if (!iov_overlaps(iov, cnt)) return real_pwritev(fd, iov, cnt, off);
    RETRY_ON_EFAULT(iov_prefault(iov, cnt, 0), real_pwritev(fd, iov, cnt, off));
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    REAL(recv);
    if (!overlaps(buf, n)) return real_recv(fd, buf, n, flags);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 1), real_recv(fd, buf, n, flags));
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa, socklen_t *sl)
{
    REAL(recvfrom);
    if (!overlaps(buf, n)) return real_recvfrom(fd, buf, n, flags, sa, sl);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 1), real_recvfrom(fd, buf, n, flags, sa, sl));
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    REAL(send);
    if (!overlaps(buf, n)) return real_send(fd, buf, n, flags);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 0), real_send(fd, buf, n, flags));
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
               socklen_t sl)
{
    REAL(sendto);
    if (!overlaps(buf, n)) return real_sendto(fd, buf, n, flags, sa, sl);
    RETRY_ON_EFAULT(dsm_prefault(buf, n, 0), real_sendto(fd, buf, n, flags, sa, sl));
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    REAL(recvmsg);
    if (!iov_overlaps(msg->msg_iov, (int)msg->msg_iovlen)) return real_recvmsg(fd, msg, flags);
    RETRY_ON_EFAULT(iov_prefault(msg->msg_iov, (int)msg->msg_iovlen, 1),
                    real_recvmsg(fd, msg, flags));
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    REAL(sendmsg);
    if (!iov_overlaps(msg->msg_iov, (int)msg->msg_iovlen)) return real_sendmsg(fd, msg, flags);
    RETRY_ON_EFAULT(iov_prefault(msg->msg_iov, (int)msg->msg_iovlen, 0),
                    real_sendmsg(fd, msg, flags));
}
