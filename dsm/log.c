/*
 * log.c - the runtime's log lines.
 *
 * Lines go to stderr as "ufdsm[node R] level: message". Formatting happens in a stack buffer
 * and the line is written with one write(2), so logging is safe inside the SIGBUS handler and
 * lines from several nodes sharing a terminal do not interleave mid-line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int dsm_log_level = LOG_WARN;
int dsm_log_rank = -1;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

static void vlog(int level, const char *fmt, va_list ap)
{
    char buf[1024];
    int n = dsm_log_rank >= 0
                ? snprintf(buf, sizeof buf, "ufdsm[node %d] %s: ", dsm_log_rank, level_names[level])
                : snprintf(buf, sizeof buf, "ufdsm[before rank is known] %s: ", level_names[level]);
    if (n < 0) return;
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}

void dsm_log(int level, const char *fmt, ...)
{
    if (level > dsm_log_level) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}
