/*
 * preload_hooks.h - internal hooks of libufdsm.so for the pthreads preload (pthreads/).
 *
 * Not part of the public API (include/dsm.h): only libufdsm_pthreads.so calls these. They are
 * exported (dsm/libufdsm.map) because the preload is a separate shared object; the export
 * check (tests/package) reads this header next to the public headers.
 */
#ifndef DSM_PRELOAD_HOOKS_H
#define DSM_PRELOAD_HOOKS_H

#include <stddef.h>
#include <stdint.h>

/* The next dsm_init may map the global space over whatever is mapped in [base, base+len)
 * (MAP_FIXED) instead of failing with DSM_EADDRINUSE, provided the space is exactly that
 * range. Why: the preload moves the executable's .data/.bss into the global space at their
 * own address, and must keep that range reserved (so that brk cannot grow into it) until the
 * space replaces it; the caller saved what it needs from the range first. */
void ufdsm_preload_map_over(uintptr_t base, size_t len);

#endif /* DSM_PRELOAD_HOOKS_H */
