/*
 * alloc_mismatch.c - the program alloc_mismatch.sh runs: nodes that disagree on a collective
 * call.
 *
 * dsm_alloc is collective: every node must call it in the same order with the same size.
 * Two ways to get that wrong, chosen by the argument:
 *   size   all nodes call dsm_alloc(4096), then dsm_alloc(8192) - except node 1, which asks
 *          for 3 pages;
 *   order  all nodes call dsm_alloc(4096), then node 1 calls dsm_alloc(4096) where every
 *          other node calls dsm_barrier.
 * A node that gets NULL from the mismatched dsm_alloc prints so and exits 3. A node that gets
 * through the mismatched call prints "continued past the mismatched collective" and goes on
 * (writes its allocation, a barrier, dsm_finalize) to exit 0 - which is the failure
 * alloc_mismatch.sh looks for: the runtime must detect the disagreement (a fatal error naming
 * it on every node, or NULL everywhere), not let the nodes run on with different views of
 * the global space.
 *
 * What a broken DSM does to it: without checking, node 1 and the others would get overlapping
 * or different allocations and corrupt each other silently - or hang in mismatched
 * collectives forever.
 */
#include <string.h>

#include "mn.h"

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "size") && strcmp(argv[1], "order"))) {
        fprintf(stderr, "usage: %s size|order\n", argv[0]);
        return 2;
    }
    const int by_size = !strcmp(argv[1], "size");
    mn_begin(2);
    char *first = MN_ALLOC(MN_PAGE);
    first[mn_rank] = 1;
    void *p = NULL;
    if (by_size) {
        p = dsm_alloc(mn_rank == 1 ? 3 * MN_PAGE : 2 * MN_PAGE);
        if (!p) {
            mn_say("dsm_alloc with a mismatched size returned NULL");
            fflush(stdout);
            _exit(3);
        }
    } else if (mn_rank == 1) {
        p = dsm_alloc(MN_PAGE);
        if (!p) {
            mn_say("dsm_alloc mismatched with other nodes' dsm_barrier returned NULL");
            fflush(stdout);
            _exit(3);
        }
    } else {
        dsm_barrier();
    }
    mn_say("continued past the mismatched collective (%s)", argv[1]);
    if (p) memset(p, 0x77, MN_PAGE);
    dsm_barrier();
    dsm_finalize();
    return 0;
}
