/*
 * whoami.c - prints the rank and size dsm_init found, then passes a barrier. launchers.sh
 * starts it by hand with the variables Slurm and Open MPI's mpirun set, to check that
 * dsm_init(NULL) takes its identity from them.
 */
#include "mn.h"

int main(void)
{
    mn_begin(1);
    printf("whoami: rank %d of %d\n", dsm_rank(), dsm_nodes());
    dsm_barrier();
    mn_end("whoami");
    return 0;
}
