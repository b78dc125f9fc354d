/*
 * malloc.c - the program's heap in the global space.
 *
 * Every allocation the program makes once the job has started comes from dsm_malloc (the
 * calling node's arena: homed where it was allocated, so a thread's own objects cost it no
 * traffic and objects of different nodes never share a page). The runtime's own allocations
 * must not: the runtime would fault on its own bookkeeping. They are told apart by a
 * thread-local flag, pt_internal, set while the preload calls into the runtime and for the
 * whole life of the runtime's own threads; those allocations, and everything before the job
 * started, go to glibc (__libc_malloc and friends). free and realloc tell the two kinds apart
 * by address, so a block may be freed by any thread, of any node.
 *
 * Each block carries a 16-byte header in front of what the program gets: the start of the
 * dsm_malloc block (differs from the header's place for aligned blocks) and the size asked
 * for, which malloc_usable_size and realloc need.
 *
 * Release consistency: the blocks (and their headers) are the program's memory, RC under
 * DSM_PROTOCOL=rc. The allocator's own metadata is not: dsm_malloc keeps it in each node's
 * local memory, and a block of another node's arena is freed by a message to that node. The
 * header is written by the allocating node before malloc returns, so any thread that got the
 * pointer through synchronisation (as a data-race-free program does) sees it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pt.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

struct hdr {
    void *block;
    size_t size;
};

/* ret: the caller's return address. The dynamic loader allocates TLS blocks and link maps
 * for any thread, at any time (even inside a signal handler): never from the global space. */
#define use_dsm() use_dsm_from(__builtin_return_address(0))
static inline int use_dsm_from(void *ret)
{
    if (__builtin_expect(!pt_ready, 0)) pt_reserve_space(); /* before glibc's first brk */
    return pt_ready && !pt_internal && ((uintptr_t)ret - pt_ldso_lo >= pt_ldso_hi - pt_ldso_lo);
}

static void *dsm_alloc_aligned(size_t size, size_t align)
{
    if (align < 16) align = 16;
    if (size > SIZE_MAX / 2 || align > SIZE_MAX / 4) {
        errno = ENOMEM;
        return NULL;
    }
    size_t extra = sizeof(struct hdr) + (align > 16 ? align : 0);
    char *b = pt_dsm_malloc(size + extra);
    if (!b) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t u = ((uintptr_t)b + sizeof(struct hdr) + align - 1) & ~(uintptr_t)(align - 1);
    struct hdr *h = (struct hdr *)u - 1;
    h->block = b;
    h->size = size;
    return (void *)u;
}

void *malloc(size_t size)
{
    if (!use_dsm()) return __libc_malloc(size);
    return dsm_alloc_aligned(size, 16);
}

void free(void *p)
{
    if (!p) return;
    if (!pt_in_dsm(p)) {
        __libc_free(p);
        return;
    }
    struct hdr *h = (struct hdr *)p - 1;
    /* Under RC, this node's writes to the block still unreleased would reach its home at a
     * later release, over whatever the block's next owner wrote there: they go now, while
     * the block is still ours (one atomic load when nothing is dirty). */
    pt_release();
    pt_dsm_free(h->block);
}

void *calloc(size_t n, size_t size)
{
    if (!use_dsm()) return __libc_calloc(n, size);
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = dsm_alloc_aligned(total, 16);
    if (p) memset(p, 0, total); /* a reused block holds what its last owner wrote */
    return p;
}

size_t malloc_usable_size(void *p)
{
    if (!p) return 0;
    if (!pt_in_dsm(p)) return pt_real.usable_size(p);
    return ((struct hdr *)p - 1)->size;
}

void *realloc(void *p, size_t size)
{
    if (!p) return malloc(size);
    if (!pt_in_dsm(p)) {
        if (!use_dsm()) return __libc_realloc(p, size);
        /* A block from before the job started moves into the global space. */
        void *q = malloc(size);
        if (!q) return NULL;
        size_t old = pt_real.usable_size(p);
        memcpy(q, p, old < size ? old : size);
        __libc_free(p);
        return q;
    }
    struct hdr *h = (struct hdr *)p - 1;
    if (size <= h->size && size >= h->size / 2) return p;
    void *q = use_dsm() ? dsm_alloc_aligned(size, 16) : __libc_malloc(size);
    if (!q) return NULL;
    memcpy(q, p, h->size < size ? h->size : size);
    free(p);
    return q;
}

static int pow2(size_t a)
{
    return a && !(a & (a - 1));
}

void *memalign(size_t align, size_t size)
{
    if (!use_dsm()) return __libc_memalign(align, size);
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return dsm_alloc_aligned(size, align);
}

void *aligned_alloc(size_t align, size_t size)
{
    return memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    if (!pow2(align) || align % sizeof(void *)) return EINVAL;
    void *p = memalign(align, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t size)
{
    return memalign(4096, size);
}

void *pvalloc(size_t size)
{
    return memalign(4096, (size + 4095) & ~(size_t)4095);
}
