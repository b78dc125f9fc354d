/*
 * io.c - the system-call wrappers of libufdsm.so, made to come first.
 *
 * libufdsm.so interposes the libc calls that take user buffers (read, write, send, recv and
 * friends; dsm/fault.c): in SIGBUS mode the kernel fails them with EFAULT on a missing page
 * of the global space, and the wrappers make the buffer present first. Loaded with dlopen
 * (start.c says why), the library comes after libc in the search order, so its wrappers
 * would never be called; these definitions, in the preloaded library, pass every call on to
 * them once the runtime is loaded, and to libc before. Every pointer is resolved up front:
 * dlsym is not async-signal-safe, and write() may be called from a signal handler.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pt.h"

#define L(x) ((long)(x))
#define IO_CALLS(X)                                                                                \
    X(read, ssize_t, (int fd, void *b, size_t n), L(fd), L(b), L(n), 0, 0, 0)                      \
    X(write, ssize_t, (int fd, const void *b, size_t n), L(fd), L(b), L(n), 0, 0, 0)               \
    X(pread, ssize_t, (int fd, void *b, size_t n, off_t o), L(fd), L(b), L(n), L(o), 0, 0)         \
    X(pwrite, ssize_t, (int fd, const void *b, size_t n, off_t o), L(fd), L(b), L(n), L(o), 0, 0)  \
    X(readv, ssize_t, (int fd, const struct iovec *v, int c), L(fd), L(v), L(c), 0, 0, 0)          \
    X(writev, ssize_t, (int fd, const struct iovec *v, int c), L(fd), L(v), L(c), 0, 0, 0)         \
    X(preadv, ssize_t, (int fd, const struct iovec *v, int c, off_t o), L(fd), L(v), L(c), L(o),   \
      0, 0)                                                                                        \
    X(pwritev, ssize_t, (int fd, const struct iovec *v, int c, off_t o), L(fd), L(v), L(c), L(o),  \
      0, 0)                                                                                        \
    X(recv, ssize_t, (int fd, void *b, size_t n, int f), L(fd), L(b), L(n), L(f), 0, 0)            \
    X(recvfrom, ssize_t, (int fd, void *b, size_t n, int f, struct sockaddr *a, socklen_t *al),    \
      L(fd), L(b), L(n), L(f), L(a), L(al))                                                        \
    X(recvmsg, ssize_t, (int fd, struct msghdr *m, int f), L(fd), L(m), L(f), 0, 0, 0)             \
    X(send, ssize_t, (int fd, const void *b, size_t n, int f), L(fd), L(b), L(n), L(f), 0, 0)      \
    X(sendto, ssize_t,                                                                             \
      (int fd, const void *b, size_t n, int f, const struct sockaddr *a, socklen_t al), L(fd),     \
      L(b), L(n), L(f), L(a), L(al))                                                               \
    X(sendmsg, ssize_t, (int fd, const struct msghdr *m, int f), L(fd), L(m), L(f), 0, 0, 0)

#define DECLARE(name, ret, params, ...) static ret(*to_##name) params;
IO_CALLS(DECLARE)

#define RESOLVE(name, ret, params, ...)                                                            \
    if (!(to_##name = (ret(*) params)dlsym(where, #name)))                                         \
        pt_die("cannot find %s in %s", #name, where == RTLD_NEXT ? "libc" : "libufdsm.so.0");

/* Before the runtime is loaded: libc's (from the constructor); after: the runtime's. */
void pt_io_resolve(void *where){IO_CALLS(RESOLVE)}

/* Through pt_rt_call: the runtime's wrapper may run the protocol engine for the buffer,
 * which must not happen on a stack in the global space (thread.c). */
#define DEFINE(name, ret, params, ...)                                                             \
    ret name params                                                                                \
    {                                                                                              \
        if (!to_##name) pt_io_resolve(RTLD_NEXT);                                                  \
        return (ret)pt_rt_call((void *)to_##name, __VA_ARGS__);                                    \
    }
IO_CALLS(DEFINE)

    ssize_t pread64(int fd, void *b, size_t n, off_t o) __attribute__((alias("pread")));
ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) __attribute__((alias("pwrite")));
