/*
 * reinit.c - a node can leave a job and join again in the same process: dsm_init after
 * dsm_finalize starts from nothing.
 *
 * Three lives in one process. In each: dsm_init, a collective allocation of both protocols, a
 * mutex, dsm_malloc memory, every node writes its share and checks everyone's after a
 * barrier, a locked counter, then dsm_finalize. A state left over from an earlier life (the
 * engine was a global singleton reset file by file; lock tables were re-mapped without being
 * unmapped) shows as a failed dsm_init ("called in the wrong state"), a stale value (memory of
 * the previous life read as this one's), a wrong counter, or a crash.
 *
 * Usage: reinit [LIVES]
 */
#include "mn.h"

int main(int argc, char **argv)
{
    int lives = argc > 1 ? atoi(argv[1]) : 3;
    for (int life = 1; life <= lives; life++) {
        mn_begin(1);
        const int n = mn_nodes;
        volatile uint64_t *sc = MN_ALLOC(n * MN_PAGE);
        volatile uint64_t *rc = MN_ALLOC_PLACED(n * MN_PAGE, DSM_PLACE_BLOCK | DSM_RC, 0);
        dsm_mutex_t *m = MN_ALLOC(sizeof *m);
        volatile uint64_t *cnt = MN_ALLOC(sizeof *cnt);
        if (mn_rank == 0) CHECK(dsm_mutex_init(m) == 0, "life %d: dsm_mutex_init", life);
        uint64_t *mine = dsm_malloc(64);
        CHECK(mine != NULL, "life %d: dsm_malloc", life);
        dsm_barrier();
        for (int k = 0; k < n; k++) {
            CHECK(sc[k * MN_PAGE / 8] == 0 && rc[k * MN_PAGE / 8] == 0,
                  "life %d: fresh memory of page %d holds %llu / %llu (left over from an "
                  "earlier life?)",
                  life, k, (unsigned long long)sc[k * MN_PAGE / 8],
                  (unsigned long long)rc[k * MN_PAGE / 8]);
        }
        dsm_barrier();
        sc[mn_rank * MN_PAGE / 8] = (uint64_t)(life * 100 + mn_rank);
        rc[mn_rank * MN_PAGE / 8] = (uint64_t)(life * 1000 + mn_rank);
        *mine = (uint64_t)life;
        for (int i = 0; i < 20; i++) {
            CHECK(dsm_mutex_lock(m) == 0, "life %d: dsm_mutex_lock", life);
            (*cnt)++;
            CHECK(dsm_mutex_unlock(m) == 0, "life %d: dsm_mutex_unlock", life);
        }
        dsm_barrier();
        for (int k = 0; k < n; k++) {
            CHECK(sc[k * MN_PAGE / 8] == (uint64_t)(life * 100 + k), "life %d: SC page %d", life,
                  k);
            CHECK(rc[k * MN_PAGE / 8] == (uint64_t)(life * 1000 + k), "life %d: RC page %d", life,
                  k);
        }
        CHECK(*cnt == (uint64_t)(20 * n), "life %d: counter %llu, expected %d", life,
              (unsigned long long)*cnt, 20 * n);
        CHECK(*mine == (uint64_t)life, "life %d: dsm_malloc memory", life);
        dsm_barrier();
        dsm_free(mine);
        if (mn_rank == 0) mn_say("life %d of %d: exact", life, lives);
        dsm_finalize();
    }
    if (mn_rank == 0) printf("reinit: passed on %d nodes\n", mn_nodes);
    return 0;
}
