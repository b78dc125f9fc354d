/*
 * log.c - the runtime's log lines and fatal exits.
 *
 * Lines go to stderr as "ufdsm[node R] level: message". Formatting happens in a stack buffer
 * and the line is written with one write(2), so logging is safe inside the SIGBUS handler and
 * lines from several nodes sharing a terminal do not interleave mid-line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int dsm_log_level = LOG_WARN;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

static void vlog(int level, const char *fmt, va_list ap)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "ufdsm[node %d] %s: ", g.rank, level_names[level]);
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

void dsm_fatal(const char *fmt, ...)
{
    static _Atomic int in_fatal;
    if (atomic_exchange(&in_fatal, 1)) _exit(3); /* a second failure while reporting one */
    char text[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    dsm_log(LOG_ERROR, "%s", text);
    /* Tell every peer why, so that each of them can exit naming this node and the cause
     * instead of only seeing a connection drop. Best effort: the token may be held by the
     * thread we interrupted, in which case the peers see the drop. */
    int tok = atomic_load(&g.token);
    int mine = tok == dsm_tid();
    int expect = 0;
    if (g.tp && !g.finalizing &&
        (mine || atomic_compare_exchange_strong(&g.token, &expect, dsm_tid()))) {
        struct dsm_wire_hdr h;
        dsm_wire_init(&h, DSM_MSG_ABORT, (uint32_t)g.rank);
        h.len = (uint32_t)strlen(text) + 1;
        if (h.len > 1024) h.len = 1024;
        text[h.len - 1] = 0;
        for (int n = 0; n < g.nodes; n++)
            if (n != g.rank) g.tp->ops->send(g.tp, n, &h, text);
        g.tp->ops->flush(g.tp);
    }
    _exit(3);
}
