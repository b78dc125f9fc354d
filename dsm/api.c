/*
 * api.c - the public API of include/dsm.h on the process's node: argument checks, then the
 * engine's node-level calls (dsm_node_* in engine.h). dsm_init, dsm_finalize and dsm_stats
 * are in init.c.
 */
#include "internal.h"

static struct dsm_node *node_or_log(const char *fn)
{
    struct dsm_runtime *rt = ufdsm_rt;
    if (rt && rt->initialized) return rt->node;
    LOGE("%s called before dsm_init (or after dsm_finalize)", fn);
    return NULL;
}

void *dsm_alloc(size_t size)
{
    return dsm_alloc_placed(size, DSM_PLACE_BLOCK, 0);
}

void *dsm_alloc_placed(size_t size, int policy, size_t arg)
{
    struct dsm_node *n = node_or_log("dsm_alloc");
    return n ? (void *)(uintptr_t)dsm_node_alloc_placed(n, size, policy, arg) : NULL;
}

void *dsm_malloc(size_t size)
{
    struct dsm_node *n = node_or_log("dsm_malloc");
    return n ? (void *)(uintptr_t)dsm_node_malloc(n, size) : NULL;
}

void dsm_free(void *ptr)
{
    if (!ptr) return;
    struct dsm_node *n = node_or_log("dsm_free");
    if (n) dsm_node_free(n, (uint64_t)(uintptr_t)ptr);
}

int dsm_home(const void *addr)
{
    struct dsm_runtime *rt = ufdsm_rt;
    if (!rt || !rt->initialized) return DSM_EINVAL;
    return dsm_node_home(rt->node, (uint64_t)(uintptr_t)addr);
}

void dsm_barrier(void)
{
    struct dsm_node *n = node_or_log("dsm_barrier");
    if (n) dsm_node_barrier(n);
}

int dsm_mutex_init(dsm_mutex_t *m)
{
    struct dsm_node *n = node_or_log("dsm_mutex_init");
    return n ? dsm_node_mutex_init(n, (uint64_t)(uintptr_t)m) : DSM_ESTATE;
}

int dsm_mutex_destroy(dsm_mutex_t *m)
{
    struct dsm_node *n = node_or_log("dsm_mutex_destroy");
    return n ? dsm_node_mutex_destroy(n, (uint64_t)(uintptr_t)m) : DSM_ESTATE;
}

int dsm_mutex_lock(dsm_mutex_t *m)
{
    struct dsm_node *n = node_or_log("dsm_mutex_lock");
    return n ? dsm_node_mutex_lock(n, (uint64_t)(uintptr_t)m) : DSM_ESTATE;
}

int dsm_mutex_trylock(dsm_mutex_t *m)
{
    struct dsm_node *n = node_or_log("dsm_mutex_trylock");
    return n ? dsm_node_mutex_trylock(n, (uint64_t)(uintptr_t)m) : DSM_ESTATE;
}

int dsm_mutex_unlock(dsm_mutex_t *m)
{
    struct dsm_node *n = node_or_log("dsm_mutex_unlock");
    return n ? dsm_node_mutex_unlock(n, (uint64_t)(uintptr_t)m) : DSM_ESTATE;
}

void dsm_release(void)
{
    struct dsm_node *n = node_or_log("dsm_release");
    if (n) dsm_node_release(n);
}

void dsm_acquire(void)
{
    struct dsm_node *n = node_or_log("dsm_acquire");
    if (n) dsm_node_acquire(n);
}
