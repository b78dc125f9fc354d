/*
 * heap.c - the first-fit range allocator and the placement arithmetic (see heap.h).
 *
 * Free ranges live in a treap keyed by start offset. Each node also carries, for each of the
 * alignments granule << 0 .. granule << (ALIGN_CLASSES - 1), the largest block that alignment
 * leaves room for anywhere in its subtree, so first fit descends only into subtrees that can
 * hold the request. Knowing only the longest range is not enough: dsm_malloc asks for 64-byte
 * alignment on a 16-byte granule, which leaves 16..48-byte pads before 64-byte boundaries;
 * those pads are long enough for small requests but never aligned for them, and a search
 * pruned by length alone visits every one of them (seconds, not microseconds, at 100k
 * blocks).
 *
 * Ranges are kept maximal (a freed block is merged with free neighbours at once), so two free
 * ranges always have a live block between them: there are at most live + 1 of them. That
 * bound is what lets dsm_heap_free never allocate: dsm_heap_alloc tops the node pool up to
 * live + 2 nodes before it commits, which covers every later free.
 *
 * Live blocks live in an open-addressing hash map (linear probing, backward-shift deletion,
 * so no tombstones build up under churn) from offset to rounded size.
 */
#include "heap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "dsm.h"

#define PLACE_PAGE    4096u /* DSM_PAGE_SIZE of wire.h; cyclic blocks are whole pages */
#define ALIGN_CLASSES 9     /* granule up to granule * 256: 16 B .. 4 KiB for dsm_malloc */

struct hole {
    uint64_t start, len; /* the free range [start, start + len) */
    uint64_t prio;       /* treap heap order: a parent's is >= its children's */
    struct hole *l, *r;  /* in the spare pool, r links the list */
    unsigned gshift;     /* log2(granule): the alignment classes are relative to it */
    /* fit[j]: the largest block aligned to granule << j that fits in some range of this
     * subtree. fit[0] is the longest range (no padding at the granule). */
    uint64_t fit[ALIGN_CLASSES];
};

struct live {
    uint64_t key; /* offset + 1; 0 marks an empty slot */
    uint64_t size;
};

struct dsm_heap {
    uint64_t size, granule;
    uint64_t free_bytes;
    struct hole *root;
    struct hole *spare; /* nodes not in the tree, kept for later splits and frees */
    uint64_t nnodes;    /* nodes owned: in the tree plus spare */
    struct live *tab;
    uint64_t cap, nlive; /* cap: a power of two; load kept at or below one half */
};

static int is_pow2(uint64_t x)
{
    return x && !(x & (x - 1));
}

/* splitmix64's finaliser: a fixed bijection, so priorities (and tree shapes) are the same on
 * every node, yet look random enough to keep the treap balanced for any pattern of offsets. */
static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ treap of free ranges */

/* Bytes of padding before an aligned block in a range starting at `start`. */
static uint64_t pad_for(uint64_t start, uint64_t align)
{
    return (align - (start & (align - 1))) & (align - 1);
}

/* Alignment class j of a granule of 2^gshift. Classes that would pass 2^63 collapse onto it:
 * no request is aligned more, so the summary stays exact for every request in them. */
static uint64_t class_align(unsigned gshift, unsigned j)
{
    return 1ull << (gshift + j < 63 ? gshift + j : 63);
}

/* The longest block aligned to `align` that fits in [start, start + len); 0 if none. */
static uint64_t room(uint64_t start, uint64_t len, uint64_t align)
{
    uint64_t pad = pad_for(start, align);
    return pad < len ? len - pad : 0;
}

/* Recomputes t's summary from its own range and its children's; nonzero if it changed. */
static int update(struct hole *t)
{
    int changed = 0;
    for (unsigned j = 0; j < ALIGN_CLASSES; j++) {
        uint64_t m = room(t->start, t->len, class_align(t->gshift, j));
        if (t->l && t->l->fit[j] > m) m = t->l->fit[j];
        if (t->r && t->r->fit[j] > m) m = t->r->fit[j];
        changed |= m != t->fit[j];
        t->fit[j] = m;
    }
    return changed;
}

/* Splits t into the ranges starting below key (*lo) and at or above it (*hi). */
static void split(struct hole *t, uint64_t key, struct hole **lo, struct hole **hi)
{
    if (!t) {
        *lo = *hi = NULL;
    } else if (t->start < key) {
        split(t->r, key, &t->r, hi);
        update(t);
        *lo = t;
    } else {
        split(t->l, key, lo, &t->l);
        update(t);
        *hi = t;
    }
}

/* Joins two treaps where every start in a is below every start in b. */
static struct hole *join(struct hole *a, struct hole *b)
{
    if (!a) return b;
    if (!b) return a;
    if (a->prio >= b->prio) {
        a->r = join(a->r, b);
        update(a);
        return a;
    }
    b->l = join(a, b->l);
    update(b);
    return b;
}

/* Inserts n (no children, summary of its own range). Above the place n ends up, a subtree
 * only gains n, so its summary is raised on the way down instead of recomputed on the way
 * back up. */
static struct hole *insert(struct hole *root, struct hole *n)
{
    struct hole **link = &root;
    while (*link && (*link)->prio >= n->prio) {
        struct hole *t = *link;
        for (unsigned j = 0; j < ALIGN_CLASSES; j++)
            if (n->fit[j] > t->fit[j]) t->fit[j] = n->fit[j];
        link = n->start < t->start ? &t->l : &t->r;
    }
    split(*link, n->start, &n->l, &n->r);
    update(n);
    *link = n;
    return root;
}

/* Removes the range starting at key, which must be present. */
static struct hole *erase(struct hole *t, uint64_t key)
{
    if (t->start == key) return join(t->l, t->r);
    if (key < t->start)
        t->l = erase(t->l, key);
    else
        t->r = erase(t->r, key);
    update(t);
    return t;
}

/* Recomputes the summaries on the path to the range starting at key, after that range was
 * changed in place. Moving a range's start is allowed as long as it stays between its
 * neighbours: then every comparison on the way down, and so the path, is unchanged. That is
 * one walk instead of the two of an erase and an insert, and the walk is most of the cost;
 * it stops climbing as soon as a summary comes out unchanged, since nothing above can
 * change then either. Returns whether t's summary changed. */
static int refresh(struct hole *t, uint64_t key)
{
    if (key < t->start) {
        if (!refresh(t->l, key)) return 0;
    } else if (key > t->start) {
        if (!refresh(t->r, key)) return 0;
    }
    return update(t);
}

/* The lowest-addressed range that can hold a block of `size` aligned to `align`, whose
 * alignment class is j (capped at the largest class). In-order, pruning every subtree whose
 * fit[j] is too small. When align is exactly class j, fit[j] is exact, so a subtree that is
 * entered always yields a range and this is one root-to-leaf walk. For larger alignments
 * fit[j] is only an upper bound (more padding never leaves more room), still correct. */
static struct hole *first_fit(struct hole *t, uint64_t size, uint64_t align, unsigned j)
{
    if (!t || t->fit[j] < size) return NULL;
    struct hole *f = first_fit(t->l, size, align, j);
    if (f) return f;
    if (room(t->start, t->len, align) >= size) return t;
    return first_fit(t->r, size, align, j);
}

/* The ranges with the largest start below key and the smallest start above it, for a key
 * that is not a range start. Both lie on the search path for key, so one walk finds both. */
static void neighbours(struct hole *t, uint64_t key, struct hole **pred, struct hole **succ)
{
    *pred = *succ = NULL;
    while (t) {
        if (t->start < key) {
            *pred = t;
            t = t->r;
        } else {
            *succ = t;
            t = t->l;
        }
    }
}

static void put_spare(struct dsm_heap *h, struct hole *n)
{
    n->l = NULL;
    n->r = h->spare;
    h->spare = n;
}

static struct hole *take_spare(struct dsm_heap *h)
{
    struct hole *n = h->spare;
    h->spare = n->r;
    return n;
}

static void add_range(struct dsm_heap *h, struct hole *n, uint64_t start, uint64_t len)
{
    n->start = start;
    n->len = len;
    n->prio = mix(start);
    n->l = n->r = NULL;
    n->gshift = (unsigned)__builtin_ctzll(h->granule);
    for (unsigned j = 0; j < ALIGN_CLASSES; j++)
        n->fit[j] = room(start, len, class_align(n->gshift, j));
    h->root = insert(h->root, n);
}

static void free_tree(struct hole *t)
{
    while (t) {
        free_tree(t->l);
        struct hole *r = t->r;
        free(t);
        t = r;
    }
}

/* ------------------------------------------------------------------ map of live blocks */

static uint64_t slot_of(const struct dsm_heap *h, uint64_t key)
{
    /* Fibonacci hashing: offsets are multiples of the granule, so their low bits are all
     * zero; the multiply moves the varying bits into the high ones this takes. */
    return (key * 0x9e3779b97f4a7c15ull) >> (64 - __builtin_ctzll(h->cap));
}

static struct live *lookup(const struct dsm_heap *h, uint64_t off)
{
    if (!h->tab || off == UINT64_MAX) return NULL;
    uint64_t key = off + 1, mask = h->cap - 1;
    for (uint64_t i = slot_of(h, key);; i = (i + 1) & mask) {
        if (h->tab[i].key == key) return &h->tab[i];
        if (h->tab[i].key == 0) return NULL;
    }
}

static void place(struct live *tab, uint64_t cap, uint64_t slot, uint64_t key, uint64_t size)
{
    for (uint64_t i = slot;; i = (i + 1) & (cap - 1)) {
        if (!tab[i].key) {
            tab[i].key = key;
            tab[i].size = size;
            return;
        }
    }
}

/* Makes room for one more live block; the only step of an allocation that can fail. */
static int reserve_live(struct dsm_heap *h)
{
    if (h->cap && (h->nlive + 1) * 2 <= h->cap) return 0;
    uint64_t ncap = h->cap ? h->cap * 2 : 64;
    struct live *nt = calloc(ncap, sizeof *nt);
    if (!nt) return -ENOMEM;
    struct live *old = h->tab;
    uint64_t ocap = h->cap;
    h->tab = nt;
    h->cap = ncap;
    for (uint64_t i = 0; i < ocap; i++)
        if (old[i].key) place(nt, ncap, slot_of(h, old[i].key), old[i].key, old[i].size);
    free(old);
    return 0;
}

static void remove_live(struct dsm_heap *h, struct live *e)
{
    /* Backward-shift deletion: pull later entries of the probe run into the gap, so lookups
     * never need tombstones and the table does not degrade under long alloc/free churn. */
    uint64_t mask = h->cap - 1, gap = (uint64_t)(e - h->tab);
    for (uint64_t i = (gap + 1) & mask; h->tab[i].key; i = (i + 1) & mask) {
        uint64_t home = slot_of(h, h->tab[i].key);
        /* Movable into the gap iff its home is not in the cyclic interval (gap, i]. */
        if (((i - home) & mask) >= ((i - gap) & mask)) {
            h->tab[gap] = h->tab[i];
            gap = i;
        }
    }
    h->tab[gap].key = 0;
    h->nlive--;
}

/* ------------------------------------------------------------------ the allocator */

struct dsm_heap *dsm_heap_create(uint64_t size, uint64_t granule)
{
    if (!is_pow2(granule) || size % granule) return NULL;
    struct dsm_heap *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->size = size;
    h->granule = granule;
    if (size) {
        struct hole *n = malloc(sizeof *n);
        if (!n) {
            free(h);
            return NULL;
        }
        h->nnodes = 1;
        add_range(h, n, 0, size);
        h->free_bytes = size;
    }
    return h;
}

void dsm_heap_destroy(struct dsm_heap *h)
{
    if (!h) return;
    free_tree(h->root);
    while (h->spare) free(take_spare(h));
    free(h->tab);
    free(h);
}

int dsm_heap_alloc(struct dsm_heap *h, uint64_t size, uint64_t align, uint64_t *off)
{
    if (align == 0) align = h->granule;
    if (size == 0 || !is_pow2(align) || align < h->granule) return -EINVAL;
    if (size > UINT64_MAX - (h->granule - 1)) return -EINVAL;
    size = (size + h->granule - 1) & ~(h->granule - 1);
    if (size > h->free_bytes) return -ENOMEM;

    /* Everything that can fail for lack of memory happens before anything changes. */
    if (reserve_live(h)) return -ENOMEM;
    while (h->nnodes < h->nlive + 2) {
        struct hole *n = malloc(sizeof *n);
        if (!n) return -ENOMEM;
        put_spare(h, n);
        h->nnodes++;
    }

    unsigned j = (unsigned)(__builtin_ctzll(align) - __builtin_ctzll(h->granule));
    struct hole *n = first_fit(h->root, size, align, j < ALIGN_CLASSES ? j : ALIGN_CLASSES - 1);
    if (!n) return -ENOMEM;
    uint64_t start = n->start, len = n->len, pad = pad_for(start, align);
    uint64_t at = start + pad, tail = len - pad - size;
    if (pad) {
        n->len = pad;
        refresh(h->root, start);
        if (tail) add_range(h, take_spare(h), at + size, tail);
    } else if (tail) {
        n->start = at + size;
        n->len = tail;
        refresh(h->root, n->start);
    } else {
        h->root = erase(h->root, start);
        put_spare(h, n);
    }

    place(h->tab, h->cap, slot_of(h, at + 1), at + 1, size);
    h->nlive++;
    h->free_bytes -= size;
    *off = at;
    return 0;
}

int dsm_heap_free(struct dsm_heap *h, uint64_t off, uint64_t *size_out)
{
    struct live *e = lookup(h, off);
    if (!e) return -EINVAL;
    uint64_t size = e->size;
    remove_live(h, e);

    struct hole *p, *s;
    neighbours(h->root, off, &p, &s);
    int join_p = p && p->start + p->len == off, join_s = s && off + size == s->start;
    if (join_p && join_s) {
        /* Grow p first while s is still there, then drop s: each step leaves every summary
         * true of the tree as it stands. */
        p->len += size + s->len;
        refresh(h->root, p->start);
        h->root = erase(h->root, s->start);
        put_spare(h, s);
    } else if (join_p) {
        p->len += size;
        refresh(h->root, p->start);
    } else if (join_s) {
        s->start = off;
        s->len += size;
        refresh(h->root, off);
    } else {
        /* Non-null by the node bound in the file comment. */
        add_range(h, take_spare(h), off, size);
    }
    h->free_bytes += size;
    if (size_out) *size_out = size;
    return 0;
}

uint64_t dsm_heap_block_size(const struct dsm_heap *h, uint64_t off)
{
    const struct live *e = lookup(h, off);
    return e ? e->size : 0;
}

uint64_t dsm_heap_free_bytes(const struct dsm_heap *h)
{
    return h->free_bytes;
}

uint64_t dsm_heap_largest_free(const struct dsm_heap *h)
{
    return h->root ? h->root->fit[0] : 0;
}

/* ------------------------------------------------------------------ placement */

int dsm_place_check(int policy, uint64_t arg, int nodes, char *why, size_t whylen)
{
    char dummy[1];
    if (!why || !whylen) {
        why = dummy;
        whylen = sizeof dummy;
    }
    if (nodes < 1) {
        snprintf(why, whylen, "node count %d is not positive", nodes);
        return -EINVAL;
    }
    switch (policy) {
    case DSM_PLACE_BLOCK:
        return 0;
    case DSM_PLACE_CYCLIC:
        if (arg == 0 || arg % PLACE_PAGE) {
            snprintf(why, whylen,
                     "cyclic placement block size %llu is not a non-zero multiple of the page "
                     "size (%u)",
                     (unsigned long long)arg, PLACE_PAGE);
            return -EINVAL;
        }
        return 0;
    case DSM_PLACE_NODE:
        if (arg >= (uint64_t)nodes) {
            snprintf(why, whylen, "placement node %llu outside the job (%d nodes)",
                     (unsigned long long)arg, nodes);
            return -EINVAL;
        }
        return 0;
    default:
        snprintf(why, whylen,
                 "unknown placement policy %d (0 BLOCK, 1 CYCLIC and 2 NODE are known)", policy);
        return -EINVAL;
    }
}

int dsm_place_home(int policy, uint64_t arg, int nodes, uint64_t npages, uint64_t page)
{
    if (page >= npages || dsm_place_check(policy, arg, nodes, NULL, 0)) return -EINVAL;
    uint64_t n = (uint64_t)nodes;
    switch (policy) {
    case DSM_PLACE_BLOCK: {
        /* Written so that npages near 2^64 cannot overflow the rounding up. */
        uint64_t chunk = npages / n + (npages % n != 0);
        return (int)(page / chunk);
    }
    case DSM_PLACE_CYCLIC:
        return (int)((page / (arg / PLACE_PAGE)) % n);
    default:
        return (int)arg;
    }
}
