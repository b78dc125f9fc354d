/*
 * region.c - the global space on this node and every change to its mappings.
 *
 * The application view is one anonymous private mapping at a fixed address (the same on
 * every node), registered with userfaultfd for MISSING and WP faults in SIGBUS mode: a thread
 * touching a page it may not access gets SIGBUS and resolves the fault itself (fault.c).
 * Pages are installed with UFFDIO_COPY (read-only ones with MODE_WP in the same call, so no
 * thread ever sees a read copy writable), downgraded with UFFDIO_WRITEPROTECT, dropped with
 * MADV_DONTNEED. Anonymous memory (rather than shmem) because COPY+WP in one step exists for
 * it on every kernel we target (5.7+), including the 6.1 guests used for soft-RoCE.
 *
 * The home store is a second, ordinary mapping of the same size: the backing copy of each
 * page this node homes, read and written only by the protocol engine, so serving a page never
 * touches the application view.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static const char zero_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

static void *map_anon(size_t len)
{
    void *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int dsm_region_map(char *err, size_t errlen)
{
    g.npages = g.cfg.memory / PAGE_SIZE;
    size_t len = g.cfg.memory;

    g.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (g.uffd < 0) {
        if (errno == EPERM)
            snprintf(err, errlen,
                     "userfaultfd is not permitted for this process: run as root, or allow it "
                     "with 'sysctl vm.unprivileged_userfaultfd=1'");
        else if (errno == ENOSYS)
            snprintf(err, errlen,
                     "this kernel has no userfaultfd (CONFIG_USERFAULTFD): ufdsm "
                     "needs Linux 5.7 or later built with it");
        else
            snprintf(err, errlen, "userfaultfd failed: %s", strerror(errno));
        return errno == EPERM ? DSM_EPERM : DSM_ESYS;
    }
    struct uffdio_api api = {.api = UFFD_API,
                             .features = UFFD_FEATURE_SIGBUS | UFFD_FEATURE_PAGEFAULT_FLAG_WP};
    if (ioctl(g.uffd, UFFDIO_API, &api) < 0) {
        snprintf(err, errlen,
                 "userfaultfd lacks SIGBUS mode or write-protect faults (%s): ufdsm needs Linux "
                 "5.7 or later",
                 strerror(errno));
        return DSM_ESYS;
    }

    void *want = (void *)(uintptr_t)g.cfg.base;
    void *p = mmap(want, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED || p != want) {
        if (p != MAP_FAILED) munmap(p, len);
        snprintf(err, errlen,
                 "the global space [%p, %p) cannot be mapped here (%s): something in this "
                 "process already uses that range; choose another with DSM_BASE=<hex address> "
                 "(the same on every node) or a smaller DSM_MEMORY",
                 want, (char *)want + len, p == MAP_FAILED ? strerror(errno) : "moved");
        return DSM_EADDRINUSE;
    }
    g.base = p;
    /* 4 KiB pages only (coherence unit), never inherited by fork (a child would see half a
     * protocol). */
    madvise(g.base, len, MADV_NOHUGEPAGE);
    madvise(g.base, len, MADV_DONTFORK);

    struct uffdio_register reg = {.range = {.start = (uintptr_t)g.base, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP};
    if (ioctl(g.uffd, UFFDIO_REGISTER, &reg) < 0) {
        snprintf(err, errlen, "registering the global space with userfaultfd failed: %s",
                 strerror(errno));
        return DSM_ESYS;
    }

    g.store = map_anon(len);
    g.pstate = map_anon(g.npages);
    g.home = map_anon(g.npages);
    g.dir = map_anon(g.npages * sizeof(struct coh_dir));
    g.hold_until = map_anon(g.npages * sizeof(uint64_t));
    g.pf = map_anon(g.npages);
    g.mig = map_anon(g.npages);
    if (!g.store || !g.pstate || !g.home || !g.dir || !g.hold_until || !g.pf || !g.mig) {
        snprintf(err, errlen, "cannot reserve bookkeeping for %llu pages: %s",
                 (unsigned long long)g.npages, strerror(errno));
        return DSM_ENOMEM;
    }
    madvise(g.store, len, MADV_DONTFORK);
    memset(g.home, HOME_NONE, g.npages);
    return DSM_OK;
}

void dsm_region_unmap(void)
{
    size_t len = g.npages * PAGE_SIZE;
    if (g.base) munmap(g.base, len);
    if (g.store) munmap(g.store, len);
    if (g.pstate) munmap((void *)g.pstate, g.npages);
    if (g.home) munmap(g.home, g.npages);
    if (g.dir) munmap(g.dir, g.npages * sizeof(struct coh_dir));
    if (g.hold_until) munmap(g.hold_until, g.npages * sizeof(uint64_t));
    if (g.pf) munmap(g.pf, g.npages);
    if (g.mig) munmap(g.mig, g.npages);
    if (g.uffd >= 0) close(g.uffd);
    g.base = g.store = NULL;
    g.pstate = NULL;
    g.home = NULL;
    g.dir = NULL;
    g.hold_until = NULL;
    g.pf = NULL;
    g.mig = NULL;
    g.uffd = -1;
}

void dsm_map_page(uint64_t page, const void *data, int writable)
{
    struct uffdio_copy c = {.dst = (uintptr_t)dsm_page_addr(page),
                            .src = (uintptr_t)(data ? data : zero_page),
                            .len = PAGE_SIZE,
                            .mode = writable ? 0 : UFFDIO_COPY_MODE_WP};
    if (ioctl(g.uffd, UFFDIO_COPY, &c) < 0)
        dsm_fatal("installing page %llu at %p failed: %s (a protocol bug: please report it)",
                  (unsigned long long)page, (void *)c.dst, strerror(errno));
}

void dsm_protect_page(uint64_t page, int protect)
{
    struct uffdio_writeprotect wp = {
        .range = {.start = (uintptr_t)dsm_page_addr(page), .len = PAGE_SIZE},
        .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    if (ioctl(g.uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
        dsm_fatal("changing write protection of page %llu failed: %s", (unsigned long long)page,
                  strerror(errno));
}

void dsm_unmap_page(uint64_t page)
{
    if (madvise(dsm_page_addr(page), PAGE_SIZE, MADV_DONTNEED) < 0)
        dsm_fatal("dropping page %llu failed: %s", (unsigned long long)page, strerror(errno));
}

void dsm_region_reset(uint64_t first, uint64_t count)
{
    if (!count) return;
    madvise(dsm_page_addr(first), count * PAGE_SIZE, MADV_DONTNEED);
    madvise(g.store + first * PAGE_SIZE, count * PAGE_SIZE, MADV_DONTNEED);
    for (uint64_t p = first; p < first + count; p++) {
        atomic_store_explicit(&g.pstate[p], COH_I, memory_order_relaxed);
        coh_dir_init(&g.dir[p]);
        g.pf[p] = 0;
        g.mig[p] = 0;
    }
}
