/*
 * sum.c - a program built outside the ufdsm tree against an installed ufdsm (README's
 * example): every node adds rank + 1 to a shared sum under a DSM mutex; node 0 prints it.
 * tests/package/install.sh builds it with CMake (find_package) and with pkg-config.
 */
#include <dsm.h>
#include <stdio.h>

int main(void)
{
    int rc = dsm_init(NULL); /* rank, size, coordinator from the environment (dsmrun) */
    if (rc) {
        fprintf(stderr, "sum: dsm_init: %s; start it with dsmrun -n N\n", dsm_strerror(rc));
        return 1;
    }
    long *sum = dsm_alloc(sizeof *sum); /* collective: the same address on every node */
    dsm_mutex_t *m = dsm_alloc(sizeof *m);
    if (!sum || !m) {
        fprintf(stderr, "sum: dsm_alloc failed (the log line above says why)\n");
        return 1;
    }
    if (dsm_rank() == 0) dsm_mutex_init(m);
    dsm_barrier();
    dsm_mutex_lock(m);
    *sum += dsm_rank() + 1;
    dsm_mutex_unlock(m);
    dsm_barrier();
    if (dsm_rank() == 0) printf("sum %ld on %d nodes\n", *sum, dsm_nodes()); /* 1 + ... + N */
    dsm_finalize();
    return 0;
}
