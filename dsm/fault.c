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
#include "trace.h"

static struct sigaction old_bus;
static int installed;
static void resolve_all(void);

struct access_wait {
    uint64_t page;
    int write;
};

static int access_ok(void *arg)
{
    struct access_wait *w = arg;
    uint8_t st = atomic_load_explicit(&g.pstate[w->page], memory_order_acquire);
    if (w->write)
        return st == COH_M && !(__atomic_load_n(&g.mig[w->page], __ATOMIC_RELAXED) & MIG_CLEAN);
    return st == COH_S || st == COH_M || st == COH_SM_A;
}

/* Done waiting: either the access is allowed, or the page is in a stable state that does not
 * allow it (the grant came and the page was taken away again before this thread looked, or a
 * read grant came for a thread that wants to write): then the caller asks again. Waiting for
 * "allowed" alone can wait forever, because nothing else would send a new request. */
static int access_settled(void *arg)
{
    struct access_wait *w = arg;
    uint8_t st = atomic_load_explicit(&g.pstate[w->page], memory_order_acquire);
    return access_ok(arg) || st == COH_I || st == COH_S || st == COH_M;
}

/* Read-ahead of sequential read streams (token held). A read miss on the page right after
 * the last one this node asked for (by fault or read-ahead) extends the stream: the next
 * `win` pages are requested too, the window doubling up to cfg.prefetch. The requests leave
 * together and the home answers them together, so a stream pays one round trip per window
 * instead of one per page. A thread that touches a page still in flight simply waits for it
 * (no second request). Any other miss ends the stream. Write misses never read ahead: taking
 * ownership early would steal pages from their writers. */
static uint64_t pf_next = UINT64_MAX;
static int pf_win;

static unsigned count_sends(const struct coh_out *out)
{
    unsigned n = 0;
    for (int i = 0; i < out->n; i++) n += out->a[i].kind == COH_A_SEND;
    return n;
}

static void read_ahead(uint64_t page)
{
    if (page != pf_next) {
        pf_win = 0;
        pf_next = page + 1;
        return;
    }
    pf_win = pf_win ? pf_win * 2 : 2;
    if (pf_win > g.cfg.prefetch) pf_win = g.cfg.prefetch;
    uint64_t q = page + 1;
    for (; q <= page + (uint64_t)pf_win && q < g.npages; q++) {
        uint8_t st = atomic_load_explicit(&g.pstate[q], memory_order_relaxed);
        if (g.home[q] == HOME_NONE || st != COH_I) break;
        struct coh_out out;
        out.n = 0;
        coh_node_access(&st, g.rank, g.home[q], q, 0, &out);
        g.pf[q] = 1;
        atomic_store_explicit(&g.pstate[q], st, memory_order_release);
        dsm_exec(&out, NULL);
    }
    pf_next = q;
}

/* How long a page stays after the thread that waited for it saw it arrive: long enough to
 * return from the signal handler and retry the access. */
#define HOLD_GRACE_NS 3000

void dsm_access(uint64_t page, int write, int from_fault, uint32_t offset)
{
    uint64_t t0 = dsm_now_ns();
    int home = g.home[page];
    if (home == HOME_NONE)
        dsm_fatal("access to unallocated DSM memory at %p (page %llu): the address was never "
                  "returned by dsm_alloc/dsm_malloc, or was freed",
                  (void *)dsm_page_addr(page), (unsigned long long)page);
    struct access_wait w = {page, write};
    int requested = 0;
    uint8_t kind = 0;
    unsigned msgs = 0;
    for (;;) {
        dsm_token_acquire();
        atomic_fetch_add_explicit(&g.poll_epoch, 1, memory_order_relaxed);
        uint8_t st = atomic_load_explicit(&g.pstate[page], memory_order_relaxed);
        struct coh_out out;
        out.n = 0;
        /* Migratory data (read, then written, by one node after another: a counter under a
         * lock) costs two round trips per visit, a read miss and an upgrade. A page this node
         * had to upgrade before is asked for exclusively on a read miss (the protocol allows
         * a GET_M for any access), mapped read-only all the same, so that the first write
         * shows: a write confirms the guess (one local fault, no message), losing the page
         * unwritten withdraws it. */
        int ask_write = write || (st == COH_I && (g.mig[page] & MIG_SEEN) && g.nodes > 1);
        int rc = coh_node_access(&st, g.rank, home, page, ask_write, &out);
        if (write && st == COH_M && (g.mig[page] & MIG_CLEAN)) {
            dsm_protect_page(page, 0);
            __atomic_store_n(&g.mig[page], MIG_SEEN, __ATOMIC_RELAXED);
        }
        if (out.n && ask_write && !write)
            __atomic_store_n(&g.mig[page], MIG_SEEN | MIG_CLEAN, __ATOMIC_RELAXED);
        if (out.n) {
            if (!requested) {
                if (ask_write && !write) {
                    kind = DSM_TR_READ_MISS; /* a read fault, whatever was asked for */
                    atomic_fetch_add_explicit(&g.st.read_faults, 1, memory_order_relaxed);
                    atomic_fetch_add_explicit(&g.st.migratory_reads, 1, memory_order_relaxed);
                } else if (st == COH_IS_D) {
                    kind = DSM_TR_READ_MISS;
                    atomic_fetch_add_explicit(&g.st.read_faults, 1, memory_order_relaxed);
                } else if (st == COH_IM_AD) {
                    kind = DSM_TR_WRITE_MISS;
                    atomic_fetch_add_explicit(&g.st.write_faults, 1, memory_order_relaxed);
                } else {
                    kind = DSM_TR_UPGRADE;
                    atomic_fetch_add_explicit(&g.st.upgrades, 1, memory_order_relaxed);
                    __atomic_store_n(&g.mig[page], MIG_SEEN, __ATOMIC_RELAXED);
                }
            }
            requested = 1;
            msgs += count_sends(&out);
            atomic_store_explicit(&g.pstate[page], st, memory_order_release);
            dsm_exec(&out, NULL);
            if (st == COH_IS_D && g.cfg.prefetch) read_ahead(page);
            dsm_progress();
        } else if (rc == COH_ACCESS_WAIT && !requested) {
            atomic_fetch_add_explicit(&g.st.waits_joined, 1, memory_order_relaxed);
        }
        dsm_token_release();
        if (rc == COH_ACCESS_OK) break; /* allowed (possibly raced with the page's arrival) */
        dsm_wait(access_settled, &w);
        if (access_ok(&w)) break;
    }
    uint64_t now = dsm_now_ns();
    /* The page is in place and this thread is about to use it: a recall may go ahead as soon
     * as the access has been retried, which takes a signal return, not a whole hold. */
    uint64_t until = __atomic_load_n(&g.hold_until[page], __ATOMIC_RELAXED);
    if (until > now + HOLD_GRACE_NS)
        __atomic_store_n(&g.hold_until[page], now + HOLD_GRACE_NS, __ATOMIC_RELAXED);
    if (!requested) return;
    uint64_t dt = now - t0;
    DSM_TRACE(from_fault ? kind : DSM_TR_KERNEL_FAULT, write ? DSM_TR_F_WRITE : 0, page, t0, dt,
              offset, home, msgs);
    if (from_fault) {
        /* Its own lock, not the token: the token may be busy for a whole engine pass, this
         * lock only for the few instructions of one add, and no sample is lost. */
        while (atomic_flag_test_and_set_explicit(&g.fault_hist_lock, memory_order_acquire))
            ;
        dsm_hist_add(&g.fault_hist, dt);
        atomic_flag_clear_explicit(&g.fault_hist_lock, memory_order_release);
    }
}

static void sigbus_handler(int sig, siginfo_t *si, void *ctx)
{
    if (!dsm_in_region(si->si_addr) || !g.initialized) {
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
    dsm_access(dsm_page_of(si->si_addr), write, 1,
               (uint32_t)((uintptr_t)si->si_addr & (PAGE_SIZE - 1)));
    errno = saved;
}

int dsm_fault_install(char *err, size_t errlen)
{
    resolve_all();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sigbus_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
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

void dsm_prefault(const void *addr, size_t len, int write)
{
    if (!g.initialized || !len) return;
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    uintptr_t rb = (uintptr_t)g.base, re = rb + g.npages * PAGE_SIZE;
    if (hi <= rb || lo >= re) return;
    if (lo < rb) lo = rb;
    if (hi > re) hi = re;
    for (uint64_t p = dsm_page_of((void *)lo); p <= dsm_page_of((void *)(hi - 1)); p++) {
        struct access_wait w = {p, write};
        if (!access_ok(&w)) dsm_access(p, write, 0, 0);
    }
}

/* ---------------------------------------------------------------- system call interposition */

/* Whether a buffer overlaps the global space (cheap enough for every call). */
static inline int overlaps(const void *buf, size_t len)
{
    return g.initialized && len && (uintptr_t)buf < (uintptr_t)g.base + g.npages * PAGE_SIZE &&
           (uintptr_t)buf + len > (uintptr_t)g.base;
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
    X(pwrite) X(readv) X(writev) X(preadv) X(pwritev) X(recv) X(recvfrom) X(send) X(sendto)        \
        X(recvmsg) X(sendmsg)
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
            if (r_ >= 0 || errno != EFAULT || tries_ >= 1000) return r_;                           \
            atomic_fetch_add_explicit(&g.st.kernel_retries, 1, memory_order_relaxed);              \
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
