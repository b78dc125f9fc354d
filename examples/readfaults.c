/*
 * readfaults.c - remote read faults, one per page: node 0 writes N pages it homes, node 1
 * reads one byte of each, and checks them. Run it with DSM_STATS=1 (and DSM_PREFETCH=0, so
 * every page is its own fault) to see what a remote read fault costs on a transport:
 *
 *   DSM_STATS=1 DSM_PREFETCH=0 dsmrun -n 2 ./readfaults 2000
 *
 * Node 1's "fault service time" line is then the read-fault latency distribution.
 */
#include <dsm.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 0) : 2000;
    int rc = dsm_init(NULL);
    if (rc) {
        fprintf(stderr, "readfaults: dsm_init: %s\n", dsm_strerror(rc));
        return 1;
    }
    if (dsm_nodes() < 2) {
        fprintf(stderr, "readfaults: needs 2 nodes (dsmrun -n 2)\n");
        dsm_finalize();
        return 1;
    }
    volatile unsigned char *p = dsm_alloc_placed(n * 4096, DSM_PLACE_NODE, 0);
    if (!p) {
        fprintf(stderr, "readfaults: dsm_alloc_placed(%zu pages) failed\n", n);
        return 1;
    }
    if (dsm_rank() == 0)
        for (size_t i = 0; i < n; i++) p[i * 4096] = (unsigned char)(i * 7 + 1);
    dsm_barrier();
    size_t bad = 0;
    if (dsm_rank() == 1)
        for (size_t i = 0; i < n; i++) bad += p[i * 4096] != (unsigned char)(i * 7 + 1);
    dsm_barrier();
    if (dsm_rank() == 1) printf("readfaults: %zu remote pages read, %zu wrong\n", n, bad);
    dsm_finalize();
    return bad != 0;
}
