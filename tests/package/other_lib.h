/* other_lib.h - libpackage_other.so (other_lib.c): libc calls made from another shared object. */
#ifndef OTHER_LIB_H
#define OTHER_LIB_H
#include <sys/types.h>

ssize_t other_read(int fd, void *buf, size_t n);
ssize_t other_write(int fd, const void *buf, size_t n);
ssize_t other_recv(int fd, void *buf, size_t n, int flags);

#endif
