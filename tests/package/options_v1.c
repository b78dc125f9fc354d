/*
 * options_v1.c - a program built against the header before dsm_options_t grew `cache` keeps
 * working with this library (package.options_abi).
 *
 * It declares the old struct (56 bytes: `protocol` sat in the tail padding) and calls the
 * unsized dsm_options_init and dsm_init, as such a binary does. A library that wrote or read
 * the newer, larger struct through those symbols would overwrite the canaries around it (the
 * first check) or take stack garbage for a cache size (dsm_init would then either fail or
 * print an absurd cache at DSM_LOG=info; here the cache must come from DSM_CACHE).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct dsm_options_v1 {
    int rank, nodes;
    const char *coordinator;
    size_t memory;
    const char *transport, *job;
    int stats, log_level, connect_timeout_ms, protocol;
};
_Static_assert(sizeof(struct dsm_options_v1) == 56, "the v1 layout");

/* The library's unsized entry points, declared as the old header did. */
void dsm_options_init(struct dsm_options_v1 *opts);
int dsm_init(const struct dsm_options_v1 *opts);
void dsm_finalize(void);
void *dsm_alloc(size_t size);

int main(void)
{
    struct {
        unsigned char before[64];
        struct dsm_options_v1 o;
        unsigned char after[64];
    } s;
    memset(&s, 0x5a, sizeof s);
    dsm_options_init(&s.o);
    for (int i = 0; i < 64; i++)
        if (s.before[i] != 0x5a || s.after[i] != 0x5a) {
            fprintf(stderr,
                    "options_v1: FAILED: dsm_options_init wrote past the caller's 56-byte "
                    "dsm_options_t (byte %d after it)\n",
                    i);
            return 1;
        }
    if (s.o.rank != -1 || s.o.stats != -1 || s.o.log_level != -1 || s.o.protocol != 0) {
        fprintf(stderr, "options_v1: FAILED: dsm_options_init did not fill the old fields\n");
        return 1;
    }
    s.o.rank = 0;
    s.o.nodes = 1;
    s.o.memory = 1u << 26;
    if (dsm_init(&s.o)) {
        fprintf(stderr, "options_v1: FAILED: dsm_init refused old-layout options\n");
        return 1;
    }
    long *x = dsm_alloc(4096);
    *x = 7;
    dsm_finalize();
    printf("options_v1: passed\n");
    return 0;
}
