/*
 * syscalls.c - system calls whose buffers are DSM memory that is not present on the calling
 * node: the kernel, not the program, touches the pages.
 *
 * With userfaultfd in SIGBUS mode a system call that copies to or from a missing (or
 * write-protected) page fails with EFAULT instead of faulting it in, so the runtime has to
 * make the buffer present first. Each node in turn is the "actor" and, on buffers freshly
 * allocated (never touched by the actor) and homed on other nodes:
 *   (a) read(2) from a temporary file into 3 pages + 200 bytes homed on another node,
 *       starting mid-page; the same into a page the actor holds read-only (it just read it)
 *       and into a page another node holds writable (it just wrote it);
 *   (b) write(2) to a file and to a pipe from pages written by another node;
 *   (c) send(2) from and recv(2) (MSG_WAITALL) into DSM memory over a socketpair, and read(2)
 *       from a pipe into DSM memory;
 *   (d) pread(2) into a buffer spanning 4 pages with 4 different homes, at a file offset;
 *       readv(2) with iovecs mixing DSM pieces (crossing page boundaries) and local memory;
 *       writev(2) from DSM pieces written by another node.
 * Every call must transfer the full count; the actor checks the bytes, then after a barrier
 * every node checks what landed in DSM memory (the kernel's writes must be visible
 * everywhere), and that the bytes around the buffers are untouched.
 *
 * What a broken DSM does to it: without the prefault/retry the calls fail with EFAULT (or a
 * short count); with a prefault that maps the page read-only for a read(2) into it, EFAULT
 * again; if the kernel wrote into a local copy that is not then treated as dirty (not made
 * exclusive first), the other nodes never see the bytes; if write(2) is served from a stale
 * copy, the file content is wrong.
 *
 * Usage: syscalls [ROUNDS]   (each round: every node is the actor once)
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "mn.h"

#define P MN_PAGE

static uint8_t pat(uint64_t tag, size_t i)
{
    return (uint8_t)mn_val(tag, i / 8, 0x5c) ^ (uint8_t)i;
}

static void fill(uint8_t *dst, size_t len, uint64_t tag)
{
    for (size_t i = 0; i < len; i++) dst[i] = pat(tag, i);
}

/* Exact content check of [p, p+len) against pat(tag, .). */
static void expect(const uint8_t *p, size_t len, uint64_t tag, const char *what)
{
    for (size_t i = 0; i < len; i++)
        CHECK(p[i] == pat(tag, i),
              "%s: byte %zu (at %p, page homed on node %d) is %#x, expected %#x", what, i,
              (const void *)&p[i], dsm_home(&p[i]), p[i], pat(tag, i));
}

static void expect_zero(const uint8_t *p, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        CHECK(p[i] == 0, "%s: byte %zu at %p is %#x, expected untouched (0)", what, i,
              (const void *)&p[i], p[i]);
}

/* A deleted temporary file holding pat(tag, 0..len-1). */
static int temp_file(size_t len, uint64_t tag)
{
    char name[] = "/tmp/mn_syscalls.XXXXXX";
    int fd = mkstemp(name);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    unlink(name);
    if (len) {
        uint8_t *buf = malloc(len);
        CHECK(buf, "malloc");
        fill(buf, len, tag);
        CHECK(write(fd, buf, len) == (ssize_t)len, "writing the temp file: %s", strerror(errno));
        free(buf);
        CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek: %s", strerror(errno));
    }
    return fd;
}

static void full_read_local(int fd, uint8_t *buf, size_t len, const char *what)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        CHECK(r > 0, "%s: reading back: %s", what, r < 0 ? strerror(errno) : "end of file");
        got += (size_t)r;
    }
}

static void round_for(int actor, long round)
{
    const int n = mn_nodes, me = mn_rank;
    const int other = (actor + 1) % n, third = (actor + 2) % n;
    const uint64_t t = (uint64_t)round * 64 + (uint64_t)actor * 8; /* tags of this round */
    char what[128];

    /* ---- (a) read(2) into DSM memory */
    const size_t alen = 3 * P + 200;
    uint8_t *A = MN_ALLOC_PLACED(5 * P, DSM_PLACE_NODE, other);  /* absent on the actor */
    uint8_t *A2 = MN_ALLOC_PLACED(P, DSM_PLACE_NODE, other);     /* read-only on the actor */
    uint8_t *A3 = MN_ALLOC_PLACED(2 * P, DSM_PLACE_NODE, third); /* writable on `other` */
    if (me == other) {
        memset(A2, 0x11, P);
        memset(A3, 0x22, 2 * P);
    }
    dsm_barrier();
    if (me == actor) {
        CHECK(A2[100] == 0x11, "A2 before read(2): %#x, expected 0x11", A2[100]); /* now S */
        int fd = temp_file(alen, t + 1);
        ssize_t r = read(fd, A + 1000, alen);
        CHECK(r == (ssize_t)alen, "read(2) into absent DSM pages returned %zd (%s), expected %zu",
              r, r < 0 ? strerror(errno) : "short", alen);
        expect(A + 1000, alen, t + 1, "(a) actor, after read(2) into absent pages");
        CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
        r = read(fd, A2, P);
        CHECK(r == (ssize_t)P, "read(2) into a read-only DSM page returned %zd (%s)", r,
              r < 0 ? strerror(errno) : "short");
        CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
        r = read(fd, A3 + P - 300, 600);
        CHECK(r == 600, "read(2) into a page another node holds writable returned %zd (%s)", r,
              r < 0 ? strerror(errno) : "short");
        close(fd);
    }
    dsm_barrier();
    snprintf(what, sizeof what, "(a) read(2) by node %d into pages homed on node %d", actor, other);
    expect(A + 1000, alen, t + 1, what);
    expect_zero(A, 1000, "(a) bytes before the read(2) buffer");
    expect_zero(A + 1000 + alen, 5 * P - 1000 - alen, "(a) bytes after the read(2) buffer");
    expect(A2, P, t + 1, "(a) read(2) into a page the actor held read-only");
    expect(A3 + P - 300, 600, t + 1, "(a) read(2) into a page another node held writable");
    for (size_t i = 0; i < 2 * P; i++)
        if (i < P - 300 || i >= P + 300)
            CHECK(A3[i] == 0x22, "(a) byte %zu next to the read(2) buffer was changed to %#x", i,
                  A3[i]);

    /* ---- (b) write(2) from DSM memory written by another node */
    const size_t blen = 2 * P + 777;
    uint8_t *B = MN_ALLOC_PLACED(4 * P, DSM_PLACE_NODE, third);
    if (me == other) fill(B + 333, blen, t + 2);
    dsm_barrier();
    if (me == actor) {
        uint8_t *local = malloc(blen);
        CHECK(local, "malloc");
        int fd = temp_file(0, 0);
        ssize_t w = write(fd, B + 333, blen);
        CHECK(w == (ssize_t)blen, "write(2) from DSM pages written by node %d returned %zd (%s)",
              other, w, w < 0 ? strerror(errno) : "short");
        CHECK(pread(fd, local, blen, 0) == (ssize_t)blen, "pread back: %s", strerror(errno));
        expect(local, blen, t + 2, "(b) file written by write(2) from DSM memory");
        close(fd);

        int pp[2];
        CHECK(pipe(pp) == 0, "pipe: %s", strerror(errno));
        w = write(pp[1], B + 333, blen); /* fits in the 64 KiB pipe buffer */
        CHECK(w == (ssize_t)blen, "write(2) to a pipe from DSM memory returned %zd (%s)", w,
              w < 0 ? strerror(errno) : "short");
        memset(local, 0, blen);
        full_read_local(pp[0], local, blen, "(b) pipe");
        expect(local, blen, t + 2, "(b) pipe fed by write(2) from DSM memory");
        close(pp[0]);
        close(pp[1]);
        free(local);
    }
    dsm_barrier();

    /* ---- (c) send/recv over a socketpair, and a pipe, into/from DSM memory */
    const size_t clen = 3 * P + 5;
    uint8_t *Csrc = MN_ALLOC_PLACED(4 * P, DSM_PLACE_NODE, other);
    uint8_t *Cdst = MN_ALLOC_PLACED(4 * P, DSM_PLACE_CYCLIC, P);
    uint8_t *Cpipe = MN_ALLOC_PLACED(2 * P, DSM_PLACE_NODE, third);
    if (me == other) fill(Csrc + 17, clen, t + 3);
    dsm_barrier();
    if (me == actor) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
        ssize_t s = send(sv[0], Csrc + 17, clen, 0);
        CHECK(s == (ssize_t)clen, "send(2) from DSM memory returned %zd (%s)", s,
              s < 0 ? strerror(errno) : "short");
        ssize_t r = recv(sv[1], Cdst + 5, clen, MSG_WAITALL);
        CHECK(r == (ssize_t)clen, "recv(2) into absent DSM memory returned %zd (%s)", r,
              r < 0 ? strerror(errno) : "short");
        expect(Cdst + 5, clen, t + 3, "(c) actor, after send/recv through a socketpair");
        close(sv[0]);
        close(sv[1]);

        int pp[2];
        CHECK(pipe(pp) == 0, "pipe: %s", strerror(errno));
        uint8_t local[P];
        fill(local, P, t + 4);
        CHECK(write(pp[1], local, P) == (ssize_t)P, "write to pipe");
        r = read(pp[0], Cpipe + P / 2, P);
        CHECK(r == (ssize_t)P, "read(2) from a pipe into DSM memory returned %zd (%s)", r,
              r < 0 ? strerror(errno) : "short");
        close(pp[0]);
        close(pp[1]);
    }
    dsm_barrier();
    expect(Cdst + 5, clen, t + 3, "(c) recv(2) into DSM memory, seen after the barrier");
    expect_zero(Cdst, 5, "(c) bytes before the recv(2) buffer");
    expect(Cpipe + P / 2, P, t + 4, "(c) read(2) from a pipe into DSM memory");

    /* ---- (d) pread/readv/writev across pages with different homes */
    const size_t dlen = 3 * P + 100; /* from offset 50 of a 4-page cyclic buffer: 4 pages */
    uint8_t *D = MN_ALLOC_PLACED(4 * P, DSM_PLACE_CYCLIC, P);
    uint8_t *V = MN_ALLOC_PLACED(4 * P, DSM_PLACE_CYCLIC, P);
    uint8_t *W = MN_ALLOC_PLACED(3 * P, DSM_PLACE_CYCLIC, P);
    if (me == other) fill(W, 3 * P, t + 6);
    dsm_barrier();
    uint8_t local_piece[500];
    if (me == actor) {
        int fd = temp_file(dlen + 4096, t + 5);
        ssize_t r = pread(fd, D + 50, dlen, 4096);
        CHECK(r == (ssize_t)dlen, "pread(2) into 4 absent pages returned %zd (%s)", r,
              r < 0 ? strerror(errno) : "short");
        /* readv: 300 bytes across the page 0/1 boundary of V, 500 local bytes, then 2 pages
         * + 10 bytes from the middle of V's page 2 on. */
        struct iovec iov[3] = {
            {.iov_base = V + P - 150, .iov_len = 300},
            {.iov_base = local_piece, .iov_len = sizeof local_piece},
            {.iov_base = V + 2 * P + 100, .iov_len = P + 10},
        };
        CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek");
        r = readv(fd, iov, 3);
        CHECK(r == 300 + 500 + P + 10, "readv(2) into DSM pieces returned %zd (%s)", r,
              r < 0 ? strerror(errno) : "short");
        close(fd);

        /* writev from W (written by `other`, absent here) */
        fd = temp_file(0, 0);
        struct iovec wv[2] = {{.iov_base = W + 10, .iov_len = P},
                              {.iov_base = W + 2 * P - 5, .iov_len = 100}};
        ssize_t w = writev(fd, wv, 2);
        CHECK(w == (ssize_t)P + 100, "writev(2) from DSM pieces returned %zd (%s)", w,
              w < 0 ? strerror(errno) : "short");
        uint8_t back[P + 100], want[3 * P];
        fill(want, 3 * P, t + 6);
        CHECK(pread(fd, back, sizeof back, 0) == (ssize_t)sizeof back, "pread back");
        CHECK(!memcmp(back, want + 10, P) && !memcmp(back + P, want + 2 * P - 5, 100),
              "(d) writev(2) from DSM memory wrote the wrong bytes");
        close(fd);
    }
    dsm_barrier();
    {
        uint8_t *want = malloc(dlen + 4096);
        CHECK(want, "malloc");
        fill(want, dlen + 4096, t + 5);
        for (size_t i = 0; i < dlen; i++)
            CHECK(D[50 + i] == want[4096 + i],
                  "(d) pread(2) by node %d: byte %zu (page homed on node %d) is %#x, expected "
                  "%#x",
                  actor, i, dsm_home(&D[50 + i]), D[50 + i], want[4096 + i]);
        CHECK(!memcmp(V + P - 150, want, 300), "(d) readv(2) piece 1 differs");
        CHECK(!memcmp(V + 2 * P + 100, want + 800, P + 10), "(d) readv(2) piece 3 differs");
        if (me == actor) CHECK(!memcmp(local_piece, want + 300, 500), "(d) readv local piece");
        expect_zero(V, P - 150, "(d) bytes before the first readv(2) piece");
        expect_zero(V + P + 150, P - 50, "(d) bytes between the readv(2) pieces");
        free(want);
    }
    dsm_barrier();
    /* Collective frees, in the same order everywhere. */
    dsm_free(W);
    dsm_free(V);
    dsm_free(D);
    dsm_free(Cpipe);
    dsm_free(Cdst);
    dsm_free(Csrc);
    dsm_free(B);
    dsm_free(A3);
    dsm_free(A2);
    dsm_free(A);
}

int main(int argc, char **argv)
{
    mn_args_t a = mn_args(argc, argv, 2, 1);
    mn_begin(2);
    double t0 = mn_now();
    for (long r = 0; r < a.iters; r++)
        for (int actor = 0; actor < mn_nodes; actor++) round_for(actor, r);
    dsm_stats_t st;
    CHECK(dsm_stats(&st) == 0, "dsm_stats failed");
    if (mn_rank == 0)
        mn_say("read/write/pread/readv/writev/send/recv on absent DSM pages: exact (%.2f s, %llu "
               "kernel retries here)",
               mn_now() - t0, (unsigned long long)st.kernel_retries);
    dsm_barrier();
    mn_end("syscalls");
    return 0;
}
