/*
 * region.c - the global space on this node and every change to its mappings.
 *
 * The application view is one anonymous private mapping at a fixed address (the same on
 * every node), registered with userfaultfd for MISSING and WP faults in SIGBUS mode: a thread
 * touching a page it may not access gets SIGBUS and resolves the fault itself (fault.c).
 * The userfaultfd needs no privilege (open_uffd). Pages are installed with UFFDIO_COPY (read-only
 * ones with MODE_WP in the same call, so no thread ever sees a read copy writable), downgraded with
 * UFFDIO_WRITEPROTECT, dropped with MADV_DONTNEED. Anonymous memory (rather than shmem) because
 * COPY+WP in one step exists for it on every kernel we target (5.7+), including the 6.1 guests used
 * for soft-RoCE.
 *
 * The home store is a second mapping of the same size: the backing copy of each page this
 * node homes, read and written only by the protocol engine, so serving a page never touches
 * the application view.
 *
 * One copy at the home (DSM_HOME_STORE=one, the default where the kernel allows it): both
 * mappings are MAP_SHARED views of one memory file (memfd) covering the global space, so a
 * page this node homes is held once. The store mapping is not registered; the view is
 * registered for MISSING, MINOR and WP faults. A homed page is shown in the view with
 * UFFDIO_CONTINUE (read-only ones with MODE_WP, Linux 6.4+: the reason older kernels get two
 * copies) and hidden with MADV_DONTNEED, which drops only the mapping: the store keeps the
 * page, and the next access is a MINOR fault. A copy of a page homed elsewhere is installed
 * with UFFDIO_COPY as before (it lands in the file, at the page's offset) and dropped with
 * MADV_REMOVE, which frees it. Two copies (DSM_HOME_STORE=two, kernels before 6.4): the view
 * is anonymous memory and the store an ordinary second mapping, and the home's own accesses
 * copy pages in from it like any node's.
 *
 * One-sided page service (DSM_ONESIDED=auto, with one copy): nodes on the same host open each
 * other's memory files read-only, and the engine may install a page homed by such a node
 * straight from that node's file (dsm_mem_ops.peer_store: pread(2) of the page, then
 * UFFDIO_COPY), with no message and without the home's CPU, where the protocol allows it
 * (release consistency: rc.h, RC_N_READER). The files are read, not mapped: a mapping of a
 * peer's file makes every hole that peer punches (MADV_REMOVE, each dropped copy) walk this
 * process's mapping too and flush its TLB across CPUs, which cost the six-step FFT 1.38x its
 * time with messages; pread costs a system call per page and nothing to the peer (and
 * reads a hole as zeros without allocating it). Each node announces its file at dsm_init
 * (DSM_MSG_SHM: boot id, pid, descriptor, inode); a node that receives an announcement from
 * the same boot of the same kernel opens /proc/<pid>/fd/<fd> (which takes the same user, or
 * root) and checks that it is the announced file of the right size. Anything else - another host,
 * another pid namespace, a refused open - leaves that node's pages to messages, said at
 * DSM_LOG=info. Only homes with one copy announce: with two copies a home's own writes stay in
 * its view until someone asks, and a reader copying its store would miss them (the model
 * checker's rc.onesided_two_copies shows how).
 *
 * The shared directory (rc.h): the memory file holds, after the pages, DSM_DIR_WORDS words per
 * page (readers, writers, one-sided writers: dsm_mem_ops.dir_words). Its owner maps that tail,
 * and so does each co-located peer, which is why peers open the file read-write: a peer's
 * first read or write of a page registers it there with an atomic OR instead of a message. Only the
 * tail is mapped, so the holes each node punches in its pages never touch another process's
 * mappings. The tail also holds the node's lock table (struct dsm_lock_slot: one-sided mutexes,
 * sync.c), which peers update with atomics the same way, and a word in which each co-located peer
 * that reads this node's writers words at its acquires says so (rc.h, watchers).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "preload_hooks.h"
#include "shm.h"

/* The first mapping of this process that overlaps [lo, hi), as /proc/self/maps shows it
 * ("0x...-0x... /usr/lib/x86_64-linux-gnu/libc.so.6", "[heap]", "anonymous"), so the user
 * learns what is in the way. Empty if none is found. */
static void mapping_in_way(uintptr_t lo, uintptr_t hi, char *out, size_t outlen)
{
    out[0] = 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        int off = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &a, &b, &off) < 2) continue;
        if (b <= lo || a >= hi) continue;
        char *name = off > 0 ? line + off : line + strlen(line);
        name[strcspn(name, "\n")] = 0;
        snprintf(out, outlen, "[%#lx, %#lx) %s", a, b, *name ? name : "anonymous");
        break;
    }
    fclose(f);
}

static const char zero_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

/* USERFAULTFD_IOC_NEW arrived with Linux 6.1 headers; the ioctl number is fixed ABI. */
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
/* Linux 6.4 (the 6.1 headers of Debian 12 lack it); fixed ABI. */
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/*
 * Opens the userfaultfd by the first of three routes that works, so that an ordinary user
 * needs neither root nor a sysctl:
 *   1. userfaultfd(UFFD_USER_MODE_ONLY): always allowed (Linux 5.11+). It only changes what
 *      happens when the kernel itself touches a missing or write-protected page (a system
 *      call's copy): the fault fails instead of waiting for a handler. In SIGBUS mode, which
 *      ufdsm uses anyway, such faults fail with EFAULT on every route, and the interposed
 *      system calls (fault.c) already make pages present first and retry, so nothing is lost.
 *   2. /dev/userfaultfd (Linux 6.1+), allowed by its file permissions (e.g. a group).
 *   3. the plain system call: root, CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1.
 * With none, the error names all three ways to allow one. DSM_LOG=info says which was used.
 */
static int open_uffd(struct dsm_runtime *rt, char *err, size_t errlen)
{
    const int flags = O_CLOEXEC | O_NONBLOCK;
    rt->uffd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
    if (rt->uffd >= 0) {
        LOGI("userfaultfd: opened with UFFD_USER_MODE_ONLY (no privilege needed)");
        return DSM_OK;
    }
    int e1 = errno; /* EINVAL before 5.11, EPERM/ENOSYS under a seccomp policy */

    int e2 = 0;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        rt->uffd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
        e2 = errno;
        close(dev);
        if (rt->uffd >= 0) {
            LOGI("userfaultfd: opened through /dev/userfaultfd");
            return DSM_OK;
        }
    } else {
        e2 = errno;
    }

    rt->uffd = (int)syscall(SYS_userfaultfd, flags);
    if (rt->uffd >= 0) {
        LOGI("userfaultfd: opened with the plain system call (privileged or "
             "vm.unprivileged_userfaultfd=1; UFFD_USER_MODE_ONLY: %s, /dev/userfaultfd: %s)",
             strerror(e1), strerror(e2));
        return DSM_OK;
    }
    int e3 = errno;
    if (e3 == ENOSYS && e1 == ENOSYS) {
        snprintf(err, errlen,
                 "userfaultfd(2) does not exist for this process (ENOSYS): the kernel lacks "
                 "CONFIG_USERFAULTFD (ufdsm needs Linux 5.7 or later built with it), or a "
                 "seccomp policy (a container's) hides the system call: allow userfaultfd in it");
        return DSM_ESYS;
    }
    snprintf(err, errlen,
             "userfaultfd is not available to this process (UFFD_USER_MODE_ONLY: %s; "
             "/dev/userfaultfd: %s; plain system call: %s). Allow one: use Linux 5.11+ without "
             "a seccomp policy that blocks userfaultfd, or give this user access to "
             "/dev/userfaultfd (e.g. a group with rw), or run as root / with CAP_SYS_PTRACE, or "
             "'sysctl vm.unprivileged_userfaultfd=1'",
             strerror(e1), strerror(e2), strerror(e3));
    return e3 == EPERM || e3 == EACCES ? DSM_EPERM : DSM_ESYS;
}

/* The range the pthreads preload reserved for the global space (preload_hooks.h): the view
 * may replace what is mapped there. Set before dsm_init by the thread that calls it. */
static uintptr_t over_base;
static size_t over_len;

void ufdsm_preload_map_over(uintptr_t base, size_t len)
{
    over_base = base;
    over_len = len;
}

/* Maps [cfg.base, +len) as the view: fd < 0 anonymous private memory, else the memory file
 * shared. DSM_OK, or DSM_EADDRINUSE with err naming what is in the way. */
static int map_view(struct dsm_runtime *rt, int fd, char *err, size_t errlen)
{
    size_t len = rt->cfg.memory;
    void *want = (void *)(uintptr_t)rt->cfg.base;
    /* Only the exact range the preload reserved may be replaced: anything else in the way is
     * someone's memory, and mapping over it would corrupt the process. */
    int fixed =
        over_len && over_base == rt->cfg.base && over_len == len ? MAP_FIXED : MAP_FIXED_NOREPLACE;
    int flags = MAP_NORESERVE | fixed | (fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED);
    void *p = mmap(want, len, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED || p != want) {
        int e = errno;
        if (p != MAP_FAILED) munmap(p, len);
        char way[400];
        mapping_in_way((uintptr_t)want, (uintptr_t)want + len, way, sizeof way);
        snprintf(err, errlen,
                 "the global space [%p, %p) cannot be mapped here (%s): %s%s; choose another "
                 "with DSM_BASE=<hex address> (the same on every node) or a smaller DSM_MEMORY",
                 want, (char *)want + len, p == MAP_FAILED ? strerror(e) : "moved",
                 way[0] ? "this mapping is in the way: "
                        : "something in this process already "
                          "uses that range",
                 way);
        return DSM_EADDRINUSE;
    }
    rt->base = p;
    /* 4 KiB pages only (coherence unit), never inherited by fork (a child would see half a
     * protocol). */
    madvise(rt->base, len, MADV_NOHUGEPAGE);
    madvise(rt->base, len, MADV_DONTFORK);
    return DSM_OK;
}

/* The memory file's tail, after the pages: the shared directory's words (DSM_DIR_WORDS a page),
 * then the lock table (sync.c), then the watchers word (rc.h) on a cache line of its own. Mapped on
 * its own, so that the holes punched in the pages never touch a mapping of it. */
static size_t dir_words_len(const struct dsm_runtime *rt)
{
    return (rt->npages * DSM_DIR_WORDS * sizeof(uint64_t) + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
}

#define WATCHERS_LINE 64 /* the watchers word's cache line, the tail's last */

static size_t dir_len(const struct dsm_runtime *rt)
{
    return dir_words_len(rt) + DSM_LOCK_SLOTS * sizeof(struct dsm_lock_slot) + WATCHERS_LINE;
}

static uint64_t *map_dir(const struct dsm_runtime *rt, int fd)
{
    void *d = mmap(NULL, dir_len(rt), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
                   (off_t)(rt->npages * PAGE_SIZE));
    if (d == MAP_FAILED) return NULL;
    madvise(d, dir_len(rt), MADV_DONTFORK);
    return d;
}

/* Sets up one copy at the home: the memory file (rt->home_fd), the shared view registered for
 * MISSING, MINOR and WP faults, and a check that UFFDIO_CONTINUE can map read-only. DSM_OK; 1 if
 * the kernel cannot (why says what is missing; nothing is left set up, rt->uffd is closed); or
 * another DSM_E* code with err filled. */
static int map_one_copy(struct dsm_runtime *rt, char *why, size_t whylen, char *err, size_t errlen)
{
    size_t len = rt->cfg.memory;
    struct uffdio_api api = {.api = UFFD_API,
                             .features = UFFD_FEATURE_SIGBUS | UFFD_FEATURE_PAGEFAULT_FLAG_WP |
                                         UFFD_FEATURE_MINOR_SHMEM |
                                         UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
    if (ioctl(rt->uffd, UFFDIO_API, &api) < 0) {
        snprintf(why, whylen,
                 "userfaultfd lacks minor or write-protect faults on shared memory (%s; Linux "
                 "5.19+)",
                 strerror(errno));
        goto unsupported;
    }
    rt->home_fd = memfd_create("ufdsm-global", MFD_CLOEXEC);
    if (rt->home_fd < 0 || ftruncate(rt->home_fd, (off_t)(len + dir_len(rt))) < 0) {
        snprintf(err, errlen, "cannot create the %llu-byte memory file of the global space: %s",
                 (unsigned long long)len, strerror(errno));
        return DSM_ESYS;
    }
    int rc = map_view(rt, rt->home_fd, err, errlen);
    if (rc) return rc;
    struct uffdio_register reg = {.range = {.start = (uintptr_t)rt->base, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING |
                                          UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP};
    if (ioctl(rt->uffd, UFFDIO_REGISTER, &reg) < 0) {
        snprintf(why, whylen, "registering shared memory for minor faults failed (%s)",
                 strerror(errno));
        goto unsupported;
    }
    /* The one feature without a flag to ask for: a read-only UFFDIO_CONTINUE. Tried on page
     * 0, which is then freed again. */
    struct uffdio_continue c = {.range = {.start = (uintptr_t)rt->base, .len = PAGE_SIZE},
                                .mode = UFFDIO_CONTINUE_MODE_WP};
    if (fallocate(rt->home_fd, 0, 0, PAGE_SIZE) < 0 || ioctl(rt->uffd, UFFDIO_CONTINUE, &c) < 0) {
        snprintf(why, whylen, "UFFDIO_CONTINUE cannot map read-only (%s; Linux 6.4+)",
                 strerror(errno));
        goto unsupported;
    }
    madvise(rt->base, PAGE_SIZE, MADV_REMOVE);
    return DSM_OK;
unsupported:
    if (rt->base) munmap(rt->base, len);
    rt->base = NULL;
    if (rt->home_fd >= 0) close(rt->home_fd);
    rt->home_fd = -1;
    close(rt->uffd); /* its API handshake is spent: the caller opens another */
    rt->uffd = -1;
    return 1;
}

/* Sets up two copies at the home: the view is anonymous memory registered for MISSING and WP
 * faults. DSM_OK or a DSM_E* code with err filled. */
static int map_two_copies(struct dsm_runtime *rt, char *err, size_t errlen)
{
    struct uffdio_api api = {.api = UFFD_API,
                             .features = UFFD_FEATURE_SIGBUS | UFFD_FEATURE_PAGEFAULT_FLAG_WP};
    if (ioctl(rt->uffd, UFFDIO_API, &api) < 0) {
        snprintf(err, errlen,
                 "userfaultfd lacks SIGBUS mode or write-protect faults (%s): ufdsm needs Linux "
                 "5.7 or later",
                 strerror(errno));
        return DSM_ESYS;
    }
    int rc = map_view(rt, -1, err, errlen);
    if (rc) return rc;
    struct uffdio_register reg = {.range = {.start = (uintptr_t)rt->base, .len = rt->cfg.memory},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP};
    if (ioctl(rt->uffd, UFFDIO_REGISTER, &reg) < 0) {
        snprintf(err, errlen, "registering the global space with userfaultfd failed: %s",
                 strerror(errno));
        return DSM_ESYS;
    }
    return DSM_OK;
}

/* A mapping beside the view, at page offsets like it, only the engine touches: fd < 0
 * anonymous (backed only where written), else the memory file. NULL with err filled. */
static char *map_beside(struct dsm_runtime *rt, int fd, const char *what, char *err, size_t errlen)
{
    size_t len = rt->cfg.memory;
    int flags = MAP_NORESERVE | (fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED);
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s (%llu bytes): %s", what, (unsigned long long)len,
                 strerror(errno));
        return NULL;
    }
    madvise(p, len, MADV_DONTFORK);
    return p;
}

static size_t twin_res_len(const struct dsm_runtime *rt)
{
    return (rt->npages + 63) / 64 * sizeof(uint64_t);
}

int dsm_region_map(struct dsm_runtime *rt, char *err, size_t errlen)
{
    rt->npages = rt->cfg.memory / PAGE_SIZE;
    rt->home_fd = -1;

    int rc = open_uffd(rt, err, errlen);
    if (rc) return rc;
    if (rt->cfg.home_store == HOME_STORE_TWO) {
        rc = map_two_copies(rt, err, errlen);
    } else {
        char why[200];
        rc = map_one_copy(rt, why, sizeof why, err, errlen);
        if (rc == DSM_OK) {
            LOGI("home store: one copy (a memory file behind the view and the store)");
        } else if (rc == 1 && rt->cfg.home_store == HOME_STORE_ONE) {
            snprintf(err, errlen,
                     "DSM_HOME_STORE=one: this kernel cannot hold a home's pages once: %s; use "
                     "DSM_HOME_STORE=two (or auto)",
                     why);
            return DSM_ESYS;
        } else if (rc == 1) {
            LOGI("home store: two copies (%s)", why);
            if (!(rc = open_uffd(rt, err, errlen))) rc = map_two_copies(rt, err, errlen);
        }
    }
    if (rc) return rc;
    /* The home store: the memory file itself with one copy, else memory of its own. */
    if (!(rt->store = map_beside(rt, rt->home_fd, "the home store", err, errlen)))
        return DSM_ENOMEM;
    /* (Without it co-located nodes register by message: slower, still correct.) */
    if (rt->home_fd >= 0 && !(rt->dir = map_dir(rt, rt->home_fd)))
        LOGI("shared directory: off (cannot map it: %s)", strerror(errno));
    /* Twins (release consistency): one slot per page, at the page's offset, backed only
     * while a twin exists. */
    if (!(rt->twins = map_beside(rt, -1, "room for twins", err, errlen))) return DSM_ENOMEM;
    void *bits = mmap(NULL, twin_res_len(rt), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (bits == MAP_FAILED) {
        snprintf(err, errlen, "cannot map the twins' bookkeeping (%zu bytes): %s", twin_res_len(rt),
                 strerror(errno));
        return DSM_ENOMEM;
    }
    rt->twin_res = bits;
    return DSM_OK;
}

void dsm_region_unmap(struct dsm_runtime *rt)
{
    size_t len = rt->npages * PAGE_SIZE;
    if (rt->base) munmap(rt->base, len);
    if (rt->store) munmap(rt->store, len);
    if (rt->twins) munmap(rt->twins, len);
    if (rt->twin_res) munmap(rt->twin_res, twin_res_len(rt));
    rt->twin_res = NULL;
    if (rt->uffd >= 0) close(rt->uffd);
    if (rt->home_fd >= 0) close(rt->home_fd);
    for (int p = 0; p < DSM_MAX_NODES; p++) {
        if (rt->peer_fd[p] >= 0) close(rt->peer_fd[p]);
        rt->peer_fd[p] = -1;
        if (rt->peer_dir[p]) munmap(rt->peer_dir[p], dir_len(rt));
        rt->peer_dir[p] = NULL;
    }
    if (rt->dir) munmap(rt->dir, dir_len(rt));
    rt->dir = NULL;
    if (rt->peer_page) munmap(rt->peer_page, PAGE_SIZE);
    rt->peer_page = NULL;
    rt->base = rt->store = rt->twins = NULL;
    rt->uffd = rt->home_fd = -1;
}

static char *page_addr(struct dsm_runtime *rt, uint64_t page)
{
    return rt->base + (page << PAGE_SHIFT);
}

static void map_page(void *ctx, uint64_t page, const void *data, int writable)
{
    struct dsm_runtime *rt = ctx;
    struct uffdio_copy c = {.dst = (uintptr_t)page_addr(rt, page),
                            .src = (uintptr_t)(data ? data : zero_page),
                            .len = PAGE_SIZE,
                            .mode = writable ? 0 : UFFDIO_COPY_MODE_WP};
    if (ioctl(rt->uffd, UFFDIO_COPY, &c) < 0)
        dsm_fatal("installing page %llu at %p failed: %s (a protocol bug: please report it)",
                  (unsigned long long)page, (void *)c.dst, strerror(errno));
}

static void protect_pages(struct dsm_runtime *rt, uint64_t first, uint64_t count, int protect)
{
    struct uffdio_writeprotect wp = {
        .range = {.start = (uintptr_t)page_addr(rt, first), .len = count * PAGE_SIZE},
        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    if (ioctl(rt->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
        dsm_fatal("changing write protection of pages %llu-%llu failed: %s",
                  (unsigned long long)first, (unsigned long long)(first + count - 1),
                  strerror(errno));
}

static void protect_page(void *ctx, uint64_t page, int protect)
{
    protect_pages(ctx, page, 1, protect);
}

/* One ioctl, one TLB flush for the whole run (dsm_node_release batches its protections). */
static void protect_range(void *ctx, uint64_t first, uint64_t count)
{
    protect_pages(ctx, first, count, 1);
}

static void drop_view(struct dsm_runtime *rt, uint64_t page, int advice)
{
    if (madvise(page_addr(rt, page), PAGE_SIZE, advice) < 0)
        dsm_fatal("dropping page %llu failed: %s", (unsigned long long)page, strerror(errno));
}

/* Gives back the memory of page's twin slot, if it holds any. */
static void twin_free(struct dsm_runtime *rt, uint64_t page)
{
    uint64_t bit = 1ull << (page % 64);
    if (!(rt->twin_res[page / 64] & bit)) return;
    rt->twin_res[page / 64] &= ~bit;
    madvise(rt->twins + page * PAGE_SIZE, PAGE_SIZE, MADV_DONTNEED);
}

/* Drops this node's copy, and its twin's memory. With one copy at the home it lives in the
 * memory file, and MADV_REMOVE frees it there (MADV_DONTNEED would only unmap it). */
static void unmap_page(void *ctx, uint64_t page)
{
    struct dsm_runtime *rt = ctx;
    drop_view(rt, page, rt->home_fd >= 0 ? MADV_REMOVE : MADV_DONTNEED);
    twin_free(rt, page);
}

/* The same for a range, in one call (the pages between copies have none: nothing happens to
 * them), and their twins' memory in one more: freed slot by slot, each an madvise and a TLB
 * shootdown of its own, they made a radix sort's 129 drops at a barrier cost 3-4 ms. */
static void unmap_range(void *ctx, uint64_t first, uint64_t count)
{
    struct dsm_runtime *rt = ctx;
    if (madvise(page_addr(rt, first), count * PAGE_SIZE,
                rt->home_fd >= 0 ? MADV_REMOVE : MADV_DONTNEED) < 0)
        dsm_fatal("dropping pages %llu-%llu failed: %s", (unsigned long long)first,
                  (unsigned long long)(first + count - 1), strerror(errno));
    uint64_t lo = UINT64_MAX, hi = 0; /* the slots that hold memory */
    for (uint64_t p = first; p < first + count; p++)
        if (rt->twin_res[p / 64] & (1ull << (p % 64))) {
            rt->twin_res[p / 64] &= ~(1ull << (p % 64));
            if (lo == UINT64_MAX) lo = p;
            hi = p;
        }
    if (lo != UINT64_MAX)
        madvise(rt->twins + lo * PAGE_SIZE, (hi - lo + 1) * PAGE_SIZE, MADV_DONTNEED);
}

static void reset_range(void *ctx, uint64_t first, uint64_t count)
{
    struct dsm_runtime *rt = ctx;
    size_t off = first * PAGE_SIZE, len = count * PAGE_SIZE;
    if (rt->home_fd >= 0) {
        /* Frees the file's pages: the view's and the store's (one and the same). */
        madvise(rt->base + off, len, MADV_REMOVE);
    } else {
        madvise(rt->base + off, len, MADV_DONTNEED);
        madvise(rt->store + off, len, MADV_DONTNEED);
    }
    madvise(rt->twins + off, len, MADV_DONTNEED);
    for (uint64_t p = first; p < first + count; p++) rt->twin_res[p / 64] &= ~(1ull << (p % 64));
}

static const void *page_copy(void *ctx, uint64_t page)
{
    return page_addr(ctx, page);
}

static void *store_copy(void *ctx, uint64_t page)
{
    struct dsm_runtime *rt = ctx;
    return rt->store + page * PAGE_SIZE;
}

static void *twin_slot(void *ctx, uint64_t page)
{
    struct dsm_runtime *rt = ctx;
    rt->twin_res[page / 64] |= 1ull << (page % 64);
    return rt->twins + page * PAGE_SIZE;
}

/* The slot keeps its memory until the copy is dropped (twin_free): the next twin of a page
 * written interval after interval reuses it, and a release flushes no TLB for it. */
static void twin_drop(void *ctx, uint64_t page)
{
    (void)ctx;
    (void)page;
}

static void *view_page(void *ctx, uint64_t page)
{
    return page_addr(ctx, page);
}

/* ---------------------------------------------------------------- one copy at the home */

static void map_home(void *ctx, uint64_t page, int writable)
{
    struct dsm_runtime *rt = ctx;
    __u64 wp = writable ? 0 : UFFDIO_CONTINUE_MODE_WP;
    struct uffdio_continue c = {
        .range = {.start = (uintptr_t)page_addr(rt, page), .len = PAGE_SIZE}, .mode = wp};
    if (ioctl(rt->uffd, UFFDIO_CONTINUE, &c) == 0) return;
    if (errno == EFAULT) {
        /* The store never held the page (a hole in the file): it is all zeros. */
        map_page(ctx, page, NULL, writable);
        return;
    }
    dsm_fatal("showing page %llu from the home store at %p failed: %s (a protocol bug: please "
              "report it)",
              (unsigned long long)page, (void *)c.range.start, strerror(errno));
}

/* ---------------------------------------------------------------- one-sided page service */

static int peer_readable(void *ctx, int node)
{
    struct dsm_runtime *rt = ctx;
    return rt->peer_fd[node] >= 0;
}

/* Reads node `node`'s current copy of `page` from its memory file into dst. */
static void read_peer(struct dsm_runtime *rt, int node, uint64_t page, void *dst)
{
    off_t off = (off_t)(page * PAGE_SIZE);
    ssize_t got = pread(rt->peer_fd[node], dst, PAGE_SIZE, off);
    if (got != PAGE_SIZE)
        dsm_fatal("reading page %llu from node %d's memory file failed (%s): the file was "
                  "checked at start and the descriptor kept open, so this is a bug (please "
                  "report it); DSM_ONESIDED=off works around it",
                  (unsigned long long)page, node, got < 0 ? strerror(errno) : "a short read");
}

static const void *peer_store(void *ctx, int node, uint64_t page)
{
    struct dsm_runtime *rt = ctx;
    read_peer(rt, node, page, rt->peer_page);
    return rt->peer_page;
}

void dsm_onesided_announce(struct dsm_runtime *rt)
{
    struct stat st;
    struct dsm_shm_hello hello;
    memset(&hello, 0, sizeof hello);
    /* Without its own mapping of the tail this node would not serve its mutexes through its
     * lock table, so no peer may take them there. */
    if (!rt->cfg.onesided || rt->home_fd < 0 || !rt->dir || rt->cfg.nodes < 2) return;
    if (dsm_shm_boot_id(hello.boot_id) < 0 || fstat(rt->home_fd, &st) < 0) {
        LOGI("one-sided page service: off (cannot read the boot id or the memory file's "
             "identity)");
        return;
    }
    hello.ino = (uint64_t)st.st_ino;
    hello.dev = (uint64_t)st.st_dev;
    hello.pid = (uint32_t)getpid();
    hello.fd = (uint32_t)rt->home_fd;
    struct dsm_node *n = rt->node;
    struct dsm_wire_hdr h;
    dsm_wire_init(&h, DSM_MSG_SHM, (uint32_t)n->rank);
    h.len = DSM_SHM_HELLO_LEN;
    dsm_token_acquire(n);
    for (int p = 0; p < n->nodes; p++)
        if (p != n->rank) dsm_send(n, p, &h, &hello);
    n->tp->ops->flush(n->tp);
    dsm_token_release(n);
}

void dsm_onesided_recv(struct dsm_runtime *rt, const struct dsm_wire_hdr *h, const void *payload)
{
    struct dsm_shm_hello hello;
    uint8_t mine[16];
    int from = h->src;
    memcpy(&hello, payload, sizeof hello); /* the length was checked (dsm_wire_check) */
    if (!rt->cfg.onesided || rt->peer_fd[from] >= 0) return;
    if (dsm_shm_boot_id(mine) < 0 || memcmp(mine, hello.boot_id, sizeof mine)) {
        LOGD("node %d runs on another host (or boot): its pages come by message", from);
        return;
    }
    /* The numbers come from the network: dsm_shm_open_peer_fd looks at what they name before
     * opening it, and only a regular file of the announced identity and size is read. */
    char why[300];
    int fd = dsm_shm_open_peer_fd(hello.pid, hello.fd, hello.ino, hello.dev,
                                  rt->npages * PAGE_SIZE + dir_len(rt), O_RDWR, why, sizeof why);
    if (fd < 0) {
        LOGI("node %d shares this host, but its memory cannot be read here: %s: its pages come "
             "by message",
             from, why);
        return;
    }
    if (!rt->peer_page) {
        void *m = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            LOGI("one-sided page service: off (no page for reading peers' memory: %s)",
                 strerror(errno));
            close(fd);
            return;
        }
        rt->peer_page = m;
    }
    rt->peer_fd[from] = fd;
    if (rt->dir && !(rt->peer_dir[from] = map_dir(rt, fd)))
        LOGI("node %d's shared directory cannot be mapped here (%s): first reads of its pages "
             "go by message",
             from, strerror(errno));
    LOGI("one-sided page service from node %d: on this host, its memory is read from here", from);
}

/* The copy of a page homed elsewhere lives in this node's file at the page's offset: copying
 * the home's page into the file there changes what the view shows without touching the view's
 * page tables (so no fault and no TLB flush). The copy is file to file (copy_file_range), not
 * a pread into the store mapping: that mapping has no page-table entry for a copy taken since
 * the last drop, and the minor fault of writing through it cost 15 us of a 17 us refresh
 * here. Where the kernel cannot copy between the files, pread into the store mapping does it. */
static void refresh_page(void *ctx, int node, uint64_t page)
{
    struct dsm_runtime *rt = ctx;
    if (!rt->no_copy_range) {
        off64_t in = (off64_t)(page * PAGE_SIZE), out = in;
        ssize_t got = copy_file_range(rt->peer_fd[node], &in, rt->home_fd, &out, PAGE_SIZE, 0);
        if (got == PAGE_SIZE) return;
        if (got >= 0 ||
            (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP))
            dsm_fatal("copying page %llu from node %d's memory file failed (%s): the file was "
                      "checked at start and the descriptor kept open, so this is a bug (please "
                      "report it); DSM_ONESIDED=off works around it",
                      (unsigned long long)page, node, got < 0 ? strerror(errno) : "a short copy");
        rt->no_copy_range = 1; /* (this kernel cannot: pread from now on) */
    }
    read_peer(rt, node, page, rt->store + page * PAGE_SIZE);
}

/* Node `node`'s tail as mapped here (this node's own, or a co-located peer's), NULL if none. */
static uint64_t *tail_of(const struct dsm_runtime *rt, int node)
{
    return node == rt->node->rank ? rt->dir : rt->peer_dir[node];
}

static uint64_t *dir_words(void *ctx, int node, uint64_t page)
{
    uint64_t *d = tail_of(ctx, node);
    return d ? d + DSM_DIR_WORDS * page : NULL;
}

static struct dsm_lock_slot *lock_table(void *ctx, int node)
{
    uint64_t *d = tail_of(ctx, node);
    return d ? (struct dsm_lock_slot *)((char *)d + dir_words_len(ctx)) : NULL;
}

static uint64_t *dir_watchers(void *ctx, int node)
{
    uint64_t *d = tail_of(ctx, node);
    return d ? (uint64_t *)((char *)d + dir_len(ctx) - WATCHERS_LINE) : NULL;
}

static void unmap_home(void *ctx, uint64_t page)
{
    /* Only the mapping goes: the store keeps the page, and the next access is a minor fault. */
    drop_view(ctx, page, MADV_DONTNEED);
}

const struct dsm_mem_ops rt_mem_ops_one_copy = {
    .map = map_page,
    .protect = protect_page,
    .protect_range = protect_range,
    .unmap = unmap_page,
    .unmap_range = unmap_range,
    .reset = reset_range,
    .page = page_copy,
    .store = store_copy,
    .twin = twin_slot,
    .twin_drop = twin_drop,
    .map_home = map_home,
    .unmap_home = unmap_home,
    .peer_readable = peer_readable,
    .peer_store = peer_store,
    .refresh = refresh_page,
    .view = view_page,
    .dir_words = dir_words,
    .dir_watchers = dir_watchers,
    .lock_table = lock_table,
};

const struct dsm_mem_ops rt_mem_ops = {
    .map = map_page,
    .protect = protect_page,
    .protect_range = protect_range,
    .unmap = unmap_page,
    .unmap_range = unmap_range,
    .reset = reset_range,
    .page = page_copy,
    .store = store_copy,
    .twin = twin_slot,
    .twin_drop = twin_drop,
    .peer_readable = peer_readable, /* a home with one copy can be read from here all the same */
    .peer_store = peer_store,
};
