/*
 * log.h - the runtime's log lines (log.c). Async-signal-safe: usable in the fault path.
 *
 * Lines go to stderr as "ufdsm[node R] level: message". The rank in the prefix is
 * dsm_log_rank: set once by dsm_init in a real node, before every step by the in-process
 * fixture (which runs several nodes in one process), -1 before the rank is known.
 */
#ifndef DSM_LOG_H
#define DSM_LOG_H

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
extern int dsm_log_level;
extern int dsm_log_rank;
void dsm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define LOGE(...) dsm_log(LOG_ERROR, __VA_ARGS__)
#define LOGW(...) dsm_log(LOG_WARN, __VA_ARGS__)
#define LOGI(...) dsm_log(LOG_INFO, __VA_ARGS__)
#define LOGD(...)                                                                                  \
    do {                                                                                           \
        if (dsm_log_level >= LOG_DEBUG) dsm_log(LOG_DEBUG, __VA_ARGS__);                           \
    } while (0)

#endif /* DSM_LOG_H */
