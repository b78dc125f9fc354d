/*
 * probe.c - the ufdsm node the launcher tests start when they need the real runtime: it joins
 * the job with dsm_init(NULL), so its rank, size, coordinator and job come from whatever
 * environment the test (posing as dsmrun, srun or mpirun) gave it, then proves that every node
 * agrees by passing a barrier.
 *
 *   probe            print "probe: rank R of N", pass a barrier, finalize, exit 0
 *   probe hold DIR   the same, but after the barrier write DIR/up.R (its pid) and wait until
 *                    DIR/go exists (at most 120 s): a job that stays up until the test says
 *   probe die R SIG  rank R kills itself with SIG after the barrier; the others wait for the
 *                    runtime to report the lost peer (and exit as it decides)
 *
 * When dsm_init fails it prints "probe: dsm_init returned RC: <dsm_strerror>" and exits
 * 10 - RC (DSM_EINVAL -> 11, DSM_EPEER -> 14, DSM_EHANDSHAKE -> 15, DSM_ESYS -> 19).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsm.h"

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = dsm_init(NULL);
    if (rc) {
        printf("probe: dsm_init returned %d: %s\n", rc, dsm_strerror(rc));
        return rc < 0 && rc > -90 ? 10 - rc : 1;
    }
    int me = dsm_rank();
    printf("probe: rank %d of %d\n", me, dsm_nodes());
    dsm_barrier();
    if (argc == 3 && !strcmp(argv[1], "hold")) {
        char path[4096];
        snprintf(path, sizeof path, "%s/up.%d", argv[2], me);
        FILE *f = fopen(path, "w");
        if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f)) {
            perror(path);
            return 1;
        }
        snprintf(path, sizeof path, "%s/go", argv[2]);
        for (int i = 0; i < 1200 && access(path, F_OK) != 0; i++) usleep(100000);
        dsm_barrier();
    } else if (argc == 4 && !strcmp(argv[1], "die")) {
        if (me == atoi(argv[2])) raise(atoi(argv[3]));
        for (;;) dsm_barrier(); /* until the runtime reports the lost node */
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [hold DIR | die RANK SIGNAL]\n", argv[0]);
        return 2;
    }
    dsm_finalize();
    printf("probe: rank %d done\n", me);
    return 0;
}
