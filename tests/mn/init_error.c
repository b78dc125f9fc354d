/*
 * init_error.c - the program init_errors.sh runs: calls dsm_init and reports how it failed.
 *
 * Prints "init_error: dsm_init returned <rc>: <dsm_strerror(rc)>" and exits 10 + (-rc) when
 * dsm_init fails (so the script can tell DSM_EADDRINUSE, exit 13, from DSM_EPEER, exit 14,
 * and so on), or prints "init_error: dsm_init succeeded", finalizes and exits 0.
 * With the argument "occupy" it first maps one page at the start of the global space
 * (DSM_BASE, default 0x200000000000), as a library loaded before ufdsm might, so that
 * dsm_init must fail with DSM_EADDRINUSE - and say which address and how to move it - rather
 * than map over the program's memory (MAP_FIXED) or crash.
 *
 * What a broken DSM does to it: silently clobbering the occupied range (the page's content
 * would change: checked), hanging on an unreachable coordinator, joining a peer of another
 * job, or failing with a message that does not say what to fix.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dsm.h"

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    volatile uint8_t *occupied = NULL;
    if (argc == 2 && !strcmp(argv[1], "occupy")) {
        uintptr_t base = 0x200000000000ull; /* DSM_DEFAULT_BASE */
        const char *s = getenv("DSM_BASE");
        if (s && *s) base = (uintptr_t)strtoull(s, NULL, 16);
        void *p = mmap((void *)base, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p != (void *)base) {
            fprintf(stderr, "init_error: cannot occupy %#lx: %s\n", (unsigned long)base,
                    strerror(errno));
            return 2;
        }
        occupied = p;
        occupied[0] = 0xab;
        printf("init_error: occupied %p before dsm_init\n", p);
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [occupy]\n", argv[0]);
        return 2;
    }
    int rc = dsm_init(NULL);
    if (occupied && occupied[0] != 0xab) {
        printf("init_error: dsm_init overwrote the page mapped at %p\n", (void *)occupied);
        return 1;
    }
    if (rc != 0) {
        printf("init_error: dsm_init returned %d: %s\n", rc, dsm_strerror(rc));
        return rc < 0 && rc > -90 ? 10 - rc : 1;
    }
    printf("init_error: dsm_init succeeded (node %d of %d)\n", dsm_rank(), dsm_nodes());
    dsm_finalize();
    return 0;
}
