/*
 * check.c - exhaustive breadth-first exploration of the model in model.c, with safety
 * invariants in every state, a liveness check over the explored graph, shortest
 * counterexample traces, and the protocol-state saturation check across op bounds.
 *
 * Why: the coherence protocol resolves its races by construction (FIFO per node pair, stale
 * messages acked or ignored, a blocking directory); only an exhaustive search over every
 * interleaving of the real transition functions shows that no reachable combination of
 * in-flight messages breaks single-writer/multiple-readers, returns stale data, reaches a
 * transition the protocol calls impossible, or strands a waiting access.
 *
 * Search: states are packed (model_encode), stored once in an arena, and found again through
 * an open-addressing hash table of 32-bit entries (28-bit id, 4-bit tag of a 64-bit hash; a
 * full compare decides). BFS order makes the parent pointers give shortest traces; states
 * with nothing enabled but work outstanding are reported as deadlocks on the spot. The
 * forward edges are kept (CSR) for the liveness pass: a state is live if it can reach a
 * quiescent state (no pending access, every channel empty); that set is computed as a
 * backward fixpoint, and any reachable state outside it is reported with the trace that
 * reaches it. The protocol states (the packed state without page values and op counters)
 * are collected in a second set, to show that a larger op bound - or no bound at all - adds
 * none. Memory: about 40 bytes per state, plus 4 per edge with liveness; --max-mem stops the
 * search (exit 2) before the machine suffers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifdef MODEL_RC
#include "rc_model.h" /* the release-consistency system: rc_model_check */
#else
#include "model.h"
#endif

/* ---------------------------------------------------------------- utilities */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, MODEL_NAME ": out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return q;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static uint64_t hash_bytes(const uint8_t *p, int len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)len;
    int i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, p + i, (size_t)(len - i));
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

/* ---------------------------------------------------------------- state set */

/* Ids are below 2^28; a table entry is (4-bit hash tag << 28) | (id + 1), 0 = empty. */
#define ID_BITS 28
#define ID_MAX  ((1u << ID_BITS) - 2)

struct sset {
    uint8_t *arena; /* per state: length byte, packed bytes */
    size_t used, cap;
    uint32_t *off; /* id -> arena offset (the arena stays below 4 GiB) */
    uint32_t count, offcap;
    uint32_t *tab;
    uint64_t mask;
};

static void sset_free(struct sset *s)
{
    free(s->arena);
    free(s->off);
    free(s->tab);
    memset(s, 0, sizeof *s);
}

static const uint8_t *sset_get(const struct sset *s, uint32_t id, int *len)
{
    const uint8_t *p = s->arena + s->off[id];
    *len = p[0];
    return p + 1;
}

static uint32_t tag_of(uint64_t h)
{
    return (uint32_t)(h >> 60) << ID_BITS;
}

static void sset_place(struct sset *s, uint64_t h, uint32_t id)
{
    uint64_t i = h & s->mask;
    while (s->tab[i]) i = (i + 1) & s->mask;
    s->tab[i] = tag_of(h) | (id + 1);
}

static void sset_grow(struct sset *s)
{
    uint64_t ncap = s->tab ? (s->mask + 1) * 2 : (1u << 16);
    free(s->tab);
    s->tab = calloc(ncap, sizeof *s->tab);
    if (!s->tab) {
        fprintf(stderr, MODEL_NAME ": out of memory (hash table)\n");
        exit(2);
    }
    s->mask = ncap - 1;
    for (uint32_t id = 0; id < s->count; id++) {
        int len;
        const uint8_t *b = sset_get(s, id, &len);
        sset_place(s, hash_bytes(b, len), id);
    }
}

/* Returns 1 and the new id if the state was not in the set, 0 and its id if it was, -1 if
 * the set is full (ID_MAX states or a 4 GiB arena). */
static int sset_insert(struct sset *s, const uint8_t *b, int len, uint32_t *id)
{
    if (!s->tab || (uint64_t)s->count * 10 >= (s->mask + 1) * 7) sset_grow(s);
    const uint64_t h = hash_bytes(b, len);
    const uint32_t tag = tag_of(h), idmask = (1u << ID_BITS) - 1;
    for (uint64_t i = h & s->mask;; i = (i + 1) & s->mask) {
        uint32_t e = s->tab[i];
        if (!e) break;
        if ((e & ~idmask) != tag) continue;
        uint32_t cand = (e & idmask) - 1;
        int cl;
        const uint8_t *cb = sset_get(s, cand, &cl);
        if (cl == len && !memcmp(cb, b, (size_t)len)) {
            *id = cand;
            return 0;
        }
    }
    if (s->count >= ID_MAX || s->used + (size_t)len + 1 + 8 > UINT32_MAX) return -1;
    if (s->used + (size_t)len + 1 + 8 > s->cap) { /* 8 bytes of slack for model_decode */
        s->cap = s->cap ? s->cap * 2 : (1u << 20);
        if (s->cap > (size_t)UINT32_MAX + 1) s->cap = (size_t)UINT32_MAX + 1;
        s->arena = xrealloc(s->arena, s->cap);
    }
    if (s->count == s->offcap) {
        s->offcap = s->offcap ? s->offcap * 2 : (1u << 16);
        s->off = xrealloc(s->off, s->offcap * sizeof *s->off);
    }
    *id = s->count++;
    s->off[*id] = (uint32_t)s->used;
    s->arena[s->used] = (uint8_t)len;
    memcpy(s->arena + s->used + 1, b, (size_t)len);
    s->used += (size_t)len + 1;
    sset_place(s, h, *id);
    return 1;
}

static int sset_contains(struct sset *s, const uint8_t *b, int len)
{
    if (!s->tab) return 0;
    const uint64_t h = hash_bytes(b, len);
    const uint32_t tag = tag_of(h), idmask = (1u << ID_BITS) - 1;
    for (uint64_t i = h & s->mask;; i = (i + 1) & s->mask) {
        uint32_t e = s->tab[i];
        if (!e) return 0;
        if ((e & ~idmask) != tag) continue;
        int cl;
        const uint8_t *cb = sset_get(s, (e & idmask) - 1, &cl);
        if (cl == len && !memcmp(cb, b, (size_t)len)) return 1;
    }
}

/* ---------------------------------------------------------------- one exploration */

struct run {
    struct mconfig c;
    struct sset states;
    uint32_t *parent; /* BFS tree: shortest traces */
    uint16_t *label;
    uint32_t metacap;
    uint32_t *edges; /* liveness only: successors of i are edges[estart[i] .. estart[i + 1]) */
    uint32_t *estart;
    uint64_t nedges, ecap;
    uint64_t transitions;
    int depth;
    int liveness, quiet;
    long max_mem_mb;
    struct sset proto; /* the protocol states (projections) seen */
};

enum { R_OK = 0, R_VIOLATION = 1, R_LIMIT = 2, R_UNSATURATED = 3 };

static const char *bound_str(int b)
{
    static char buf[4][16];
    static int k;
    char *s = buf[k++ & 3];
    if (b < 0)
        snprintf(s, 16, "inf");
    else
        snprintf(s, 16, "%d", b);
    return s;
}

static const char *const order_name[] = {"pair", "global", "none"};

static void config_str(const struct mconfig *c, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "nodes=%d pages=%d homes=", c->nodes, c->pages);
    for (int p = 0; p < c->pages && o < len; p++)
        o += (size_t)snprintf(buf + o, len - o, "%s%d", p ? "," : "", c->home[p]);
    if (o < len) o += (size_t)snprintf(buf + o, len - o, " bound=%s", bound_str(c->bound));
    if (c->total > 0 && o < len) o += (size_t)snprintf(buf + o, len - o, " total=%d", c->total);
    if (o < len)
        o += (size_t)snprintf(buf + o, len - o, " order=%s%s%s", order_name[c->order],
                              c->wait_only ? " wait-only" : "", c->exact_dir ? " exact-dir" : "");
#ifdef MODEL_RC
    if (c->threads > 1 && o < len) snprintf(buf + o, len - o, " threads=%d", c->threads);
#endif
}

static long rss_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * 4096 / (1024 * 1024);
}

static void get_state(struct run *r, uint32_t id, struct mstate *s)
{
    int len;
    const uint8_t *b = sset_get(&r->states, id, &len);
    model_decode(&r->c, b, s);
}

/* Prints the shortest path to `id` replayed from the initial state (with page values
 * numbered in order of creation, not canonically), then, if last_label >= 0, the step from
 * `id` that failed. *end receives the last state replayed. */
static void print_trace(struct run *r, uint32_t id, long last_label, struct mstate *end)
{
    uint32_t n = 0;
    for (uint32_t i = id; i; i = r->parent[i]) n++;
    unsigned *path = xrealloc(NULL, (n + 1) * sizeof *path);
    uint32_t k = n;
    for (uint32_t i = id; i; i = r->parent[i]) path[--k] = r->label[i];
    if (last_label >= 0) path[n++] = (unsigned)last_label;

    struct mstate cur, next;
    unsigned fresh = 1;
    model_init(&r->c, &cur);
    printf("trace (%u steps) from the initial state (%s):\n", n, MODEL_INITIAL);
    for (uint32_t i = 0; i < n; i++) {
        char log[2048] = "", diff[1024];
        struct stepinfo info = {.log = log, .logsize = sizeof log, .fresh = &fresh};
        int rc = model_step(&r->c, &cur, path[i], &next, &info);
        model_diff(&r->c, &cur, &next, diff, sizeof diff);
        printf("step %u: %s%s\n", i + 1, log, diff);
        if (rc == STEP_VIOLATION || rc == STEP_LIMIT) {
            printf("  ==> %s\n", info.why);
            break;
        }
        if (rc != STEP_OK) printf("  (replay: step not enabled - internal error)\n");
        cur = next;
    }
    char d[4096];
    model_describe(&r->c, &cur, d, sizeof d);
    printf("state %s:\n%s", last_label >= 0 ? "before the failing step" : "reached", d);
    if (end) *end = cur;
    free(path);
}

static void meta_reserve(struct run *r, uint32_t count)
{
    if (count <= r->metacap) return;
    uint32_t nc = r->metacap ? r->metacap * 2 : (1u << 16);
    while (nc < count) nc *= 2;
    r->parent = xrealloc(r->parent, nc * sizeof *r->parent);
    r->label = xrealloc(r->label, nc * sizeof *r->label);
    if (r->liveness) r->estart = xrealloc(r->estart, ((size_t)nc + 1) * sizeof *r->estart);
    r->metacap = nc;
}

static int edge_add(struct run *r, uint32_t dst)
{
    if (r->nedges == UINT32_MAX) return -1;
    if (r->nedges == r->ecap) {
        r->ecap = r->ecap ? r->ecap * 2 : (1u << 20);
        r->edges = xrealloc(r->edges, r->ecap * sizeof *r->edges);
    }
    r->edges[r->nedges++] = dst;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Every reachable state must be able to reach a quiescent one (no pending access, nothing
 * in flight) by message deliveries and retries of waiting accesses alone: the application
 * need not issue another access or eviction for the pending ones to complete. In a finite
 * graph, that is what "every pending request completes under fair delivery" means: no
 * deadlock, and no cycle that a fair scheduler could not leave. The live set is the least
 * fixpoint of "quiescent, or has a live successor", computed by sweeps over the stored edges
 * in reverse BFS order (most edges point forward, so few sweeps are needed). */
static int liveness(struct run *r)
{
    const uint32_t n = r->states.count;
    uint8_t *live = calloc(n, 1);
    if (!live) {
        fprintf(stderr, MODEL_NAME ": out of memory (liveness)\n");
        exit(2);
    }
    struct mstate s;
    uint32_t goals = 0;
    for (uint32_t i = 0; i < n; i++) {
        get_state(r, i, &s);
        if (model_quiescent(&r->c, &s)) live[i] = 1, goals++;
    }
    int sweeps = 0, changed = 1;
    while (changed) {
        changed = 0;
        sweeps++;
        for (uint32_t i = n; i-- > 0;) {
            if (live[i]) continue;
            for (uint32_t e = r->estart[i]; e < r->estart[i + 1]; e++)
                if (live[r->edges[e]]) {
                    live[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    uint32_t bad = 0, first = 0;
    for (uint32_t i = 0; i < n; i++)
        if (!live[i] && !bad++) first = i;
    if (!r->quiet)
        printf("  liveness: %u quiescent states; every other state reaches one: %s (%d sweeps)\n",
               goals, bad ? "NO" : "yes", sweeps);
    if (bad) {
        printf("VIOLATION (liveness): %u reachable states cannot reach a state with no pending "
               "access and no message in flight. The shallowest one:\n",
               bad);
        print_trace(r, first, -1, NULL);
        printf("  ==> from this state no sequence of message deliveries and retries completes "
               "the pending accesses\n");
    }
    free(live);
    return bad ? R_VIOLATION : R_OK;
}

static int explore(struct run *r)
{
    const struct mconfig *c = &r->c;
    unsigned labels[MAXLABELS];
    uint32_t succ[MAXLABELS];
    const int nl = model_labels(c, labels);
    uint8_t buf[ENC_MAX + 8];
    struct mstate s, t;
    uint32_t id;
    char why[512];

    model_init(c, &s);
    const char *bad = model_invariants(c, &s, why, sizeof why);
    if (bad) {
        printf("VIOLATION: the initial state: %s\n", bad);
        return R_VIOLATION;
    }
    sset_insert(&r->states, buf, model_encode(c, &s, 0, buf), &id);
    meta_reserve(r, 1);
    r->parent[0] = 0;
    r->label[0] = 0;
    uint32_t level_end = 1;
    r->depth = 0;

    for (uint32_t cur = 0; cur < r->states.count; cur++) {
        if (cur == level_end) {
            r->depth++;
            level_end = r->states.count;
        }
        get_state(r, cur, &s);
        if (r->liveness) r->estart[cur] = (uint32_t)r->nedges;
        int ns = 0, nall = 0;
        for (int li = 0; li < nl; li++) {
            struct stepinfo info = {0};
            int rc = model_step(c, &s, labels[li], &t, &info);
            if (rc == STEP_DISABLED) continue;
            r->transitions++;
            if (rc == STEP_VIOLATION || rc == STEP_LIMIT) {
                printf("%s: %s\n", rc == STEP_LIMIT ? "MODEL LIMIT" : "VIOLATION", info.why);
                print_trace(r, cur, labels[li], NULL);
                return rc == STEP_LIMIT ? R_LIMIT : R_VIOLATION;
            }
            model_canon(c, &t);
            int len = model_encode(c, &t, 0, buf);
            int ins = sset_insert(&r->states, buf, len, &id);
            if (ins < 0) {
                printf("MODEL LIMIT: the state set is full (%u states); lower the bound\n",
                       r->states.count);
                return R_LIMIT;
            }
            if (ins) {
                meta_reserve(r, r->states.count);
                r->parent[id] = cur;
                r->label[id] = (uint16_t)labels[li];
                bad = model_invariants(c, &t, why, sizeof why);
                if (bad) {
                    printf("VIOLATION: %s\n", bad);
                    struct mstate end;
                    print_trace(r, id, -1, &end);
                    const char *again = model_invariants(c, &end, why, sizeof why);
                    printf("  ==> %s\n", again ? again : "(replay disagrees - internal error)");
                    return R_VIOLATION;
                }
                if ((r->states.count & 0xffff) == 0 && rss_mb() > r->max_mem_mb) {
                    printf("MODEL LIMIT: over the memory budget (%ld MB) at %u states; lower "
                           "the bound or raise --max-mem\n",
                           r->max_mem_mb, r->states.count);
                    return R_LIMIT;
                }
            }
            /* Liveness must hold without help from the application: only deliveries,
             * waiting threads' retries (and, in the RC model, synchronisation that completes
             * by itself) count as progress, not new accesses or evictions (L_PROGRESS). */
            nall++;
            if (id != cur && L_PROGRESS(labels[li])) succ[ns++] = id;
        }
        if (!nall && !model_quiescent(c, &s)) {
            printf("VIOLATION (deadlock): nothing can happen, but an access is pending or a "
                   "message is in flight\n");
            print_trace(r, cur, -1, NULL);
            return R_VIOLATION;
        }
        if (r->liveness) {
            qsort(succ, (size_t)ns, sizeof succ[0], cmp_u32);
            for (int i = 0; i < ns; i++)
                if ((!i || succ[i] != succ[i - 1]) && edge_add(r, succ[i])) {
                    printf("MODEL LIMIT: more than 2^32 edges; use --no-liveness\n");
                    return R_LIMIT;
                }
        }
        if (!r->quiet && (cur & 0x3fffff) == 0x3fffff)
            fprintf(stderr, "  ... %u states explored of %u found, depth %d, %ld MB\n", cur + 1,
                    r->states.count, r->depth, rss_mb());
    }
    if (r->liveness) r->estart[r->states.count] = (uint32_t)r->nedges;
    return R_OK;
}

static void collect_protocol_states(struct run *r)
{
    uint8_t buf[ENC_MAX + 8];
    struct mstate s;
    uint32_t id;
    for (uint32_t i = 0; i < r->states.count; i++) {
        get_state(r, i, &s);
        if (sset_insert(&r->proto, buf, model_encode(&r->c, &s, 1, buf), &id) < 0) {
            fprintf(stderr, MODEL_NAME ": protocol state set full\n");
            exit(2);
        }
    }
}

static void run_free_graph(struct run *r)
{
    sset_free(&r->states);
    free(r->parent);
    free(r->label);
    free(r->edges);
    free(r->estart);
    r->parent = r->estart = r->edges = NULL;
    r->label = NULL;
    r->metacap = 0;
    r->nedges = r->ecap = 0;
}

/* Explores one configuration and prints its summary line; keeps r->proto. */
static int check_one(struct run *r)
{
    char cs[128];
    config_str(&r->c, cs, sizeof cs);
    if (!r->quiet) printf("== %s\n", cs);
    double t0 = now_s();
    int rc = explore(r);
    if (rc == R_OK && r->liveness) rc = liveness(r);
    if (rc == R_OK) collect_protocol_states(r);
    double dt = now_s() - t0;
    printf("config %s: states=%u transitions=%llu protocol_states=%u depth=%d liveness=%s "
           "time=%.1fs peak_rss=%ldMB: %s\n",
           cs, r->states.count, (unsigned long long)r->transitions, r->proto.count, r->depth,
           r->liveness ? "checked" : "skipped", dt, peak_rss_mb(),
           rc == R_OK          ? "OK"
           : rc == R_VIOLATION ? "VIOLATION"
                               : "LIMIT");
    run_free_graph(r);
    return rc;
}

/* |a \ b| */
static uint32_t set_minus(const struct sset *a, struct sset *b)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < a->count; i++) {
        int len;
        const uint8_t *x = sset_get(a, i, &len);
        if (!sset_contains(b, x, len)) n++;
    }
    return n;
}

/* ---------------------------------------------------------------- command line */

static void usage(void)
{
    fprintf(stderr,
            "usage: " MODEL_NAME
            " [-n NODES] [-p PAGES] [-b BOUND|inf] [-t TOTAL] [--homes H0,..]\n"
            "                   [--compare] [--against-inf] [--no-liveness] [--exact-dir]\n"
            "                   [--order pair|global|none] [--wait-only] [--max-mem MB] [-q]\n"
            "  -n, -p         nodes (1..%d) and pages (1..%d); default 2 and 1\n"
            "  -b             operations per node: reads + writes + evictions (default 2);\n"
            "                 inf: no bound and no counters (every reachable state)\n"
            "  -t             also at most TOTAL operations over all nodes (default: no cap)\n"
            "  --homes        home node of each page (default: page p on node p %% NODES)\n"
            "  --compare      also run BOUND+1; fails (exit 3) if it reaches a protocol state\n"
            "                 that BOUND does not\n"
            "  --against-inf  also run the unbounded model; fails (exit 3) unless BOUND reaches\n"
            "                 every protocol state it has (then no larger bound adds any)\n"
            "  --no-liveness  skip the liveness pass (saves the edge storage)\n"
            "  --exact-dir    keep leftover directory fields instead of zeroing them (model.h)\n"
            "  --order        message delivery: pair (default) FIFO per ordered node pair,\n"
            "                 any interleaving across pairs (what coh.h assumes); global: one\n"
            "                 network-wide FIFO (no reordering at all); none: any message of a\n"
            "                 pair may overtake another (breaks coh.h's assumption)\n"
            "  --wait-only    a waiting thread never re-runs coh_node_access (counterfactual:\n"
            "                 shows why dsm_access loops; see README.md)\n"
            "  --max-mem      memory budget in MB (default 3000): stop with exit 2 above it\n"
            "exit: 0 every check holds, 1 violation (trace printed), 2 usage or model limit,\n"
            "      3 protocol states differ between the runs compared\n",
            MAXN, MAXP);
#ifdef MODEL_RC
    fprintf(stderr,
            "release consistency only:\n"
            "  --one-copy     the home's view of its pages is its store (DSM_HOME_STORE=one)\n"
            "  --onesided     nodes fetch pages they are registered for straight from the home's\n"
            "                 store, without a message, while none of their write-backs is in\n"
            "                 flight (one-sided page service; valid with --one-copy only),\n"
            "                 and a node's first read registers it in the home's shared\n"
            "                 directory words, with no message\n"
            "  --fetch-early  --onesided without the in-flight rule (a self-test: must fail)\n"
            "  --register-blind  --onesided, registering without reading the writers word,\n"
            "                 and no watchers: nothing else reads it (a self-test: must fail)\n"
            "  --no-dir       with --onesided: no shared directory words (every registration\n"
            "                 is a message, no node watches)\n"
            "  --remote N     with --onesided: node N runs on a host of its own (repeat for\n"
            "                 more): its pages and the others' go by message between it and them\n"
            "  --acquire-op   the program may also call dsm_acquire alone, anywhere\n"
            "  --threads T    application threads per node, 1 (default) or 2: the second one\n"
            "                 reads and writes its node's own byte in the LOCK phase, so a node\n"
            "                 may take the lock while its other thread waits for a page\n");
#endif
    exit(2);
}

int main(int argc, char **argv)
{
    struct mconfig c = {.nodes = 2, .pages = 1, .bound = 2};
#ifdef MODEL_RC
    c.threads = 1;
#endif
    int compare = 0, against_inf = 0, live = 1, quiet = 0, homes_given = 0;
    long max_mem = 3000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-n") && v)
            c.nodes = atoi(v), i++;
        else if (!strcmp(a, "-p") && v)
            c.pages = atoi(v), i++;
        else if (!strcmp(a, "-b") && v)
            c.bound = !strcmp(v, "inf") ? -1 : atoi(v), i++;
        else if (!strcmp(a, "-t") && v)
            c.total = atoi(v), i++;
        else if (!strcmp(a, "--max-mem") && v)
            max_mem = atol(v), i++;
        else if (!strcmp(a, "--homes") && v) {
            char *e;
            const char *q = v;
            for (int p = 0; p < MAXP && *q; p++) {
                c.home[p] = (int)strtol(q, &e, 10);
                if (e == q) usage();
                q = *e == ',' ? e + 1 : e;
                homes_given = p + 1;
            }
            i++;
        } else if (!strcmp(a, "--compare"))
            compare = 1;
        else if (!strcmp(a, "--against-inf"))
            against_inf = 1;
        else if (!strcmp(a, "--order") && v) {
            int k = 0;
            while (k < 3 && strcmp(v, order_name[k])) k++;
            if (k == 3) usage();
            c.order = k, i++;
        } else if (!strcmp(a, "--wait-only"))
            c.wait_only = 1;
        else if (!strcmp(a, "--no-liveness"))
            live = 0;
        else if (!strcmp(a, "--exact-dir"))
            c.exact_dir = 1;
#ifdef MODEL_RC
        else if (!strcmp(a, "--one-copy"))
            c.one_copy = 1;
        else if (!strcmp(a, "--onesided"))
            c.onesided = 1;
        else if (!strcmp(a, "--fetch-early"))
            c.onesided = c.fetch_early = 1;
        else if (!strcmp(a, "--register-blind"))
            c.onesided = c.register_blind = 1;
        else if (!strcmp(a, "--no-dir"))
            c.no_dir = 1;
        else if (!strcmp(a, "--remote") && v)
            c.remote |= 1u << atoi(v), i++;
        else if (!strcmp(a, "--acquire-op"))
            c.acquire_op = 1;
        else if (!strcmp(a, "--threads") && v)
            c.threads = atoi(v), i++;
#endif
        else if (!strcmp(a, "-q"))
            quiet = 1;
        else
            usage();
    }
    if (c.nodes < 1 || c.nodes > MAXN || c.pages < 1 || c.pages > MAXP || c.bound < -1 ||
        c.bound > 14 || max_mem < 16 || c.total < 0 || (c.total && c.bound < 0) ||
        ((compare || against_inf) && c.bound < 0))
        usage();
    if (homes_given && homes_given != c.pages) usage();
#ifdef MODEL_RC
    if (c.threads < 1 || c.threads > 2 || (c.remote >> c.nodes) ||
        ((c.remote || c.no_dir) && !c.onesided))
        usage();
    if (c.wait_only || c.exact_dir) {
        fprintf(stderr, MODEL_NAME ": --wait-only and --exact-dir belong to the single-writer "
                                   "model (model_check)\n");
        exit(2);
    }
#endif
    for (int p = 0; p < c.pages; p++) {
        if (!homes_given) c.home[p] = p % c.nodes;
        if (c.home[p] < 0 || c.home[p] >= c.nodes) usage();
    }

    /* Runs: BOUND, then BOUND + 1 and/or unbounded. */
    int bounds[3], nb = 0;
    bounds[nb++] = c.bound;
    if (compare) bounds[nb++] = c.bound + 1;
    if (against_inf) bounds[nb++] = -1;
    struct run runs[3];
    int rc = R_OK;
    for (int i = 0; i < nb && rc == R_OK; i++) {
        runs[i] = (struct run){.c = c, .liveness = live, .quiet = quiet, .max_mem_mb = max_mem};
        runs[i].c.bound = bounds[i];
        rc = check_one(&runs[i]);
        if (rc != R_OK) nb = i + 1;
    }
    if (rc == R_OK) {
        /* P(b) is contained in P(b + 1) and in P(inf) by construction (a run within bound b is
         * a run within any larger bound); both differences are counted anyway. */
        for (int i = 1; i < nb; i++) {
            uint32_t added = set_minus(&runs[i].proto, &runs[0].proto);
            uint32_t lost = set_minus(&runs[0].proto, &runs[i].proto);
            printf("saturation nodes=%d pages=%d: protocol states at bound %s: %u, at bound %s: "
                   "%u; new: %u, missing: %u: %s\n",
                   c.nodes, c.pages, bound_str(bounds[0]), runs[0].proto.count,
                   bound_str(bounds[i]), runs[i].proto.count, added, lost,
                   added || lost   ? "NOT SATURATED"
                   : bounds[i] < 0 ? "SATURATED (no bound above this one adds a protocol state)"
                                   : "SATURATED");
            if (added || lost) rc = R_UNSATURATED;
        }
    }
    for (int i = 0; i < nb; i++) sset_free(&runs[i].proto);
    return rc;
}
