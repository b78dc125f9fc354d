/*
 * other_object.c - read(2), write(2) and recv(2) on DSM buffers work when another shared
 * object, not the program, makes the call.
 *
 * A system call that copies to or from a DSM page that is not present fails with EFAULT
 * (userfaultfd in SIGBUS mode), so libufdsm.so interposes the libc wrappers (dsm/fault.c,
 * docs/design.md). The calls here come from libpackage_other.so (other_lib.c), which is not
 * linked against libufdsm.so: its references are bound to libc's symbol versions. They reach
 * libufdsm.so's interposers only while those are exported unversioned; a version node in
 * dsm/libufdsm.map (read@@UFDSM_0.1) would satisfy only references to that version, and these
 * calls would go straight to libc.
 *
 * Each node in turn is the actor, on buffers homed on the next node that it never touched:
 *   (a) other_read from a pipe into 1 page + 200 bytes, starting mid-page;
 *   (b) other_write to a pipe from a page the next node wrote (the actor has no copy);
 *   (c) other_recv (MSG_WAITALL) over a socketpair into 2 pages.
 * Every call must transfer the full count; after a barrier every node checks the bytes the
 * kernel wrote into DSM memory.
 *
 * What a broken build does to it: calls that bypass the interposers fail with EFAULT (or
 * transfer a short count), which the checks name.
 *
 * Usage: dsmrun -n N other_object   (N >= 2)
 */
#include <stdint.h>
#include <sys/socket.h>

#include "mn.h"
#include "other_lib.h"

#define P MN_PAGE

static uint8_t pat(uint64_t tag, size_t i)
{
    return (uint8_t)mn_val(tag, i / 8, 0x3d) ^ (uint8_t)i;
}

static void expect(const uint8_t *p, size_t len, uint64_t tag, const char *what)
{
    for (size_t i = 0; i < len; i++)
        CHECK(p[i] == pat(tag, i), "%s: byte %zu is %#x, expected %#x", what, i, p[i], pat(tag, i));
}

int main(void)
{
    mn_begin(2);
    static uint8_t local[2 * P];
    for (int actor = 0; actor < mn_nodes; actor++) {
        int home = (actor + 1) % mn_nodes;
        uint8_t *a = MN_ALLOC_PLACED(2 * P, DSM_PLACE_NODE, (size_t)home);
        uint8_t *b = MN_ALLOC_PLACED(P, DSM_PLACE_NODE, (size_t)home);
        uint8_t *c = MN_ALLOC_PLACED(2 * P, DSM_PLACE_NODE, (size_t)home);
        uint64_t ta = (uint64_t)actor * 3 + 1, tb = ta + 1, tc = ta + 2;
        if (mn_rank == home)
            for (size_t i = 0; i < P; i++) b[i] = pat(tb, i);
        dsm_barrier();
        if (mn_rank == actor) {
            int fds[2];
            CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
            /* (a) */
            size_t n = P + 200;
            for (size_t i = 0; i < n; i++) local[i] = pat(ta, i);
            CHECK(write(fds[1], local, n) == (ssize_t)n, "write to the pipe: %s", strerror(errno));
            ssize_t r = other_read(fds[0], a + 1000, n);
            CHECK(r == (ssize_t)n,
                  "read(2) from another shared object into DSM memory homed on node %d "
                  "returned %zd (%s), expected %zu: the call did not reach libufdsm.so's "
                  "interposer (are its exports versioned? see dsm/libufdsm.map)",
                  home, r, r < 0 ? strerror(errno) : "short", n);
            /* (b) */
            r = other_write(fds[1], b, P);
            CHECK(r == (ssize_t)P,
                  "write(2) from another shared object out of DSM memory homed on node %d "
                  "returned %zd (%s), expected %u: the call did not reach libufdsm.so's "
                  "interposer (are its exports versioned? see dsm/libufdsm.map)",
                  home, r, r < 0 ? strerror(errno) : "short", P);
            CHECK(read(fds[0], local, P) == (ssize_t)P, "read from the pipe: %s", strerror(errno));
            expect(local, P, tb, "bytes written to the pipe from DSM memory");
            close(fds[0]);
            close(fds[1]);
            /* (c) */
            int sv[2];
            CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
            for (size_t i = 0; i < 2 * P; i++) local[i] = pat(tc, i);
            CHECK(send(sv[0], local, 2 * P, 0) == (ssize_t)(2 * P), "send: %s", strerror(errno));
            r = other_recv(sv[1], c, 2 * P, MSG_WAITALL);
            CHECK(r == (ssize_t)(2 * P),
                  "recv(2) from another shared object into DSM memory homed on node %d "
                  "returned %zd (%s), expected %u: the call did not reach libufdsm.so's "
                  "interposer (are its exports versioned? see dsm/libufdsm.map)",
                  home, r, r < 0 ? strerror(errno) : "short", 2 * P);
            close(sv[0]);
            close(sv[1]);
        }
        dsm_barrier();
        expect(a + 1000, P + 200, ta, "DSM bytes written by read(2) from another object");
        expect(c, 2 * P, tc, "DSM bytes written by recv(2) from another object");
        dsm_barrier();
    }
    mn_end("other_object");
    return 0;
}
