/*
 * heap.h - allocation and placement arithmetic for the DSM allocators (no I/O, no locks).
 *
 * Responsible for deciding which offsets of a managed range are handed out (dsm_heap_*) and
 * which node homes each page of a collective allocation (dsm_place_*). The runtime wraps both
 * with its own locking and its own idea of where the range lives; nothing here touches the
 * managed memory itself.
 *
 * A first-fit allocator over offsets [0, size) with a fixed granularity (a power of two).
 * Deterministic: the same sequence of calls gives the same offsets on every node (the
 * collective dsm_alloc relies on this). Metadata lives in ordinary malloc'd memory, never in
 * the managed range. Errors are negative errno values (-EINVAL, -ENOMEM), not DSM_E* codes.
 *
 * Cost, with n = the number of live blocks (free ranges are at most n + 1, because they are
 * always coalesced):
 *   - dsm_heap_alloc: O(log n) expected for alignments from the granule up to granule * 256.
 *     Free ranges sit in a treap ordered by address, augmented per subtree with the largest
 *     block each of those alignments leaves room for, so first fit is one root-to-leaf walk.
 *     Above granule * 256 the augmentation only bounds the search: each free range skipped
 *     for being long enough but wrongly aligned adds O(log n).
 *   - dsm_heap_free: O(log n) expected (a hash-map lookup, then the neighbours in the treap).
 *   - dsm_heap_block_size: O(1) expected. dsm_heap_free_bytes, dsm_heap_largest_free: O(1).
 *   - Memory: O(the largest number of live blocks so far); it is kept, not returned, so that
 *     dsm_heap_free never needs to allocate and therefore cannot fail for lack of memory.
 * The treap's priorities are a hash of the offset where each node was inserted, not random
 * numbers, so even the tree shapes are identical on every node (only the offsets are
 * required to be).
 */
#ifndef DSM_HEAP_H
#define DSM_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct dsm_heap; /* opaque */

/* size must be a multiple of granule (0 gives a heap on which every allocation fails);
 * granule a power of two. NULL on bad arguments or when out of memory. */
struct dsm_heap *dsm_heap_create(uint64_t size, uint64_t granule);
void dsm_heap_destroy(struct dsm_heap *h); /* NULL is fine */
/* size rounded up to the granule; align a power of two >= granule (0 = granule); alignment is
 * of the offset, so the caller's base must be at least as aligned.
 * 0 and *off set, or -ENOMEM (no hole large enough, or no memory for the metadata),
 * -EINVAL (size 0, bad align, or overflow). Nothing changes on failure. */
int dsm_heap_alloc(struct dsm_heap *h, uint64_t size, uint64_t align, uint64_t *off);
/* 0 and *size_out = the block's rounded size (size_out may be NULL), or -EINVAL if off is not
 * the start of a live block. Coalesces with free neighbours. Never allocates memory. */
int dsm_heap_free(struct dsm_heap *h, uint64_t off, uint64_t *size_out);
/* size of the live block starting at off, 0 if none */
uint64_t dsm_heap_block_size(const struct dsm_heap *h, uint64_t off);
uint64_t dsm_heap_free_bytes(const struct dsm_heap *h);
uint64_t dsm_heap_largest_free(const struct dsm_heap *h);

/* Placement: which node homes page `page` (0-based, within one allocation of `npages`
 * pages). policy: 0 BLOCK (npages cut into `nodes` contiguous chunks of ceil(npages/nodes)
 * pages, chunk k on node k; arg unused), 1 CYCLIC (arg = block size in bytes, a non-zero
 * multiple of 4096; block b on node b % nodes), 2 NODE (arg = the node). The numbers are
 * DSM_PLACE_* of dsm.h. With BLOCK, fewer pages than nodes puts one page on each of the
 * first npages nodes, and a size that does not divide leaves the last nodes short (or empty). */
/* 0 ok, or -EINVAL with a one-line reason in why[whylen] (why may be NULL). */
int dsm_place_check(int policy, uint64_t arg, int nodes, char *why, size_t whylen);
/* The home node, or -EINVAL if dsm_place_check would reject the arguments or page >= npages. */
int dsm_place_home(int policy, uint64_t arg, int nodes, uint64_t npages, uint64_t page);

#endif /* DSM_HEAP_H */
