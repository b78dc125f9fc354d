/*
 * other_lib.c - libpackage_other.so: a shared object that knows nothing of ufdsm (it is not
 * linked against libufdsm.so), like a library a program passes DSM buffers to. Its read,
 * write and recv calls are references to libc's versioned symbols (read@GLIBC_2.2.5 ...);
 * other_object.c checks that libufdsm.so's interposers still receive them.
 */
#include <sys/socket.h>
#include <unistd.h>

#include "other_lib.h"

ssize_t other_read(int fd, void *buf, size_t n)
{
    return read(fd, buf, n);
}

ssize_t other_write(int fd, const void *buf, size_t n)
{
    return write(fd, buf, n);
}

ssize_t other_recv(int fd, void *buf, size_t n, int flags)
{
    return recv(fd, buf, n, flags);
}
