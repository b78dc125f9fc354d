/*
 * start.c - starting the job before main, and ending it.
 *
 * The executable's _start calls __libc_start_main through its GOT, so the preload's definition
 * runs first, before the program's constructors. A process that is not the program DSM_PTHREADS
 * names (a wrapper that inherited LD_PRELOAD) stays plain; in the program, every node:
 *   1. makes sure address-space randomisation is off (re-executing itself with
 *      ADDR_NO_RANDOMIZE if it is not), so the executable and its libraries load at the same
 *      addresses on every node and code and data pointers mean the same everywhere;
 *   2. saves the executable's writable segments (.data, .bss), reserves the range from them
 *      upwards (which also stops brk from growing into it), and starts the runtime with the
 *      global space mapped exactly there (dsm/preload_hooks.h): the program's globals are
 *      then in the global space, at their own addresses, homed on node 0, which copies their
 *      initial contents back;
 *   3. checks that every node loaded the executable, libc and the dynamic loader at the same
 *      addresses, and stops the job naming the difference otherwise.
 * Node 0 then runs the program's constructors and main (on a stack in the global space, so
 * pointers to main's locals work on every node); the others start the threads the program
 * places on them until the job ends.
 *
 * Why libufdsm.so.0 is loaded with dlopen here rather than linked: its dependencies
 * (libnl-route, through the RDMA libraries) allocate in their constructors, before any code
 * of ours runs, and glibc's first allocations grow the brk heap, which starts right after
 * .bss with randomisation off: exactly where the global space must go. Loading the runtime
 * only after the range is reserved makes those allocations fall back to mmap. Its interposed
 * system calls (read, write, ...) are forwarded by io.c, since a dlopen'd library comes after
 * libc in the symbol search order.
 *
 * A crashing thread is named before its node dies (crash_handler).
 *
 * Ending: exit() on any node (or main returning) runs that node's exit handlers, flushes its
 * stdio, and publishes the status in the control block; every node's poller (node 0: a
 * watcher thread; others: the main thread) sees it, and calls dsm_finalize and _exit with the
 * status, so the job's status is main's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pt.h"

struct pt_ctl *pt_ctl;
struct pt_queue *pt_queues;
struct pt_thread *pt_records;
int pt_rank, pt_nodes;
int pt_rc;
int pt_ready;
__thread int pt_internal;
uintptr_t pt_lo, pt_hi;
uintptr_t pt_ldso_lo, pt_ldso_hi;
struct pt_real pt_real;
struct pt_dsm pt_dsm;

static int (*real_main)(int, char **, char **);
static pid_t pt_pid; /* a fork()ed child is not a node: exit is its own business */
static int main_status;
static int main_argc;
static char **main_argv;
static struct pt_thread main_rec;

/* The thread that finalizes this node at the end (see the top): node 0's watcher, the main
 * thread elsewhere. */
static pthread_t poller;
static _Atomic int exit_started; /* this node's exit handlers have run */
/* Someone on this node has called exit(): only one may run the exit handlers (a second
 * caller of glibc's exit would find none left and end the process before the job ends). */
static _Atomic int exit_claimed;

#define DEFAULT_MEMORY (16ull << 30) /* heap and stacks of every node live here */
#define MAIN_STACK     (8ull << 20)

/* Ends this process at once, without our _exit below (which ends the job). */
_Noreturn void pt_exit_now(int status)
{
    syscall(SYS_exit_group, status);
    for (;;) pause();
}

static void say(const char *fmt, va_list ap)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "ufdsm pthreads (node %d): ", pt_rank);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
}

void pt_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    pt_exit_now(1);
}

void pt_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
}

void pt_backoff(unsigned *round)
{
    unsigned r = (*round)++;
    if (*round > 200) *round = 150; /* stays at 1 ms, and never wraps */
    if (r < 50) {
        __builtin_ia32_pause();
    } else if (r < 100) {
        sched_yield();
    } else {
        /* Sleeping waiters leave the CPU to the threads that will wake them (2 vCPUs may
         * carry several nodes); 1 ms at most keeps a wake-up prompt enough. */
        unsigned us = r < 120 ? 20 : r < 140 ? 100 : 1000;
        struct timespec ts = {0, (long)us * 1000};
        nanosleep(&ts, NULL);
    }
}

int pt_past(clockid_t clk, const struct timespec *abstime)
{
    struct timespec now;
    clock_gettime(clk, &now);
    return now.tv_sec > abstime->tv_sec ||
           (now.tv_sec == abstime->tv_sec && now.tv_nsec >= abstime->tv_nsec);
}

void *pt_dsm_malloc(size_t size)
{
    return (void *)PT_RT1(pt_dsm.malloc, size);
}

void pt_dsm_free(void *p)
{
    PT_RT1(pt_dsm.free, p);
}

static void *must_sym(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p)
        pt_die("cannot find the C library's %s (%s); libufdsm_pthreads.so must be preloaded "
               "into a dynamically linked glibc program",
               name, dlerror());
    return p;
}

static void resolve(void)
{
    if (pt_real.create) return;
    pt_internal++;
    pt_real.create = must_sym("pthread_create");
    pt_real.join = must_sym("pthread_join");
    pt_real.detach = must_sym("pthread_detach");
    pt_real.exit = must_sym("pthread_exit");
    pt_real.self = must_sym("pthread_self");
    pt_real.mutex_init = must_sym("pthread_mutex_init");
    pt_real.mutex_destroy = must_sym("pthread_mutex_destroy");
    pt_real.mutex_lock = must_sym("pthread_mutex_lock");
    pt_real.mutex_trylock = must_sym("pthread_mutex_trylock");
    pt_real.mutex_unlock = must_sym("pthread_mutex_unlock");
    pt_real.barrier_init = must_sym("pthread_barrier_init");
    pt_real.barrier_destroy = must_sym("pthread_barrier_destroy");
    pt_real.barrier_wait = must_sym("pthread_barrier_wait");
    pt_real.cond_init = must_sym("pthread_cond_init");
    pt_real.cond_destroy = must_sym("pthread_cond_destroy");
    pt_real.cond_wait = must_sym("pthread_cond_wait");
    pt_real.cond_timedwait = must_sym("pthread_cond_timedwait");
    pt_real.cond_signal = must_sym("pthread_cond_signal");
    pt_real.cond_broadcast = must_sym("pthread_cond_broadcast");
    pt_real.once = must_sym("pthread_once");
    pt_real.mutex_timedlock = must_sym("pthread_mutex_timedlock");
    pt_real.rwlock_init = must_sym("pthread_rwlock_init");
    pt_real.rwlock_destroy = must_sym("pthread_rwlock_destroy");
    pt_real.rwlock_rdlock = must_sym("pthread_rwlock_rdlock");
    pt_real.rwlock_wrlock = must_sym("pthread_rwlock_wrlock");
    pt_real.rwlock_tryrdlock = must_sym("pthread_rwlock_tryrdlock");
    pt_real.rwlock_trywrlock = must_sym("pthread_rwlock_trywrlock");
    pt_real.rwlock_unlock = must_sym("pthread_rwlock_unlock");
    pt_real.sem_init = must_sym("sem_init");
    pt_real.sem_destroy = must_sym("sem_destroy");
    pt_real.sem_post = must_sym("sem_post");
    pt_real.sem_wait = must_sym("sem_wait");
    pt_real.sem_trywait = must_sym("sem_trywait");
    pt_real.sem_timedwait = must_sym("sem_timedwait");
    pt_real.sem_getvalue = must_sym("sem_getvalue");
    pt_real.spin_init = must_sym("pthread_spin_init");
    pt_real.spin_destroy = must_sym("pthread_spin_destroy");
    pt_real.spin_lock = must_sym("pthread_spin_lock");
    pt_real.spin_trylock = must_sym("pthread_spin_trylock");
    pt_real.spin_unlock = must_sym("pthread_spin_unlock");
    pt_real.usable_size = must_sym("malloc_usable_size");
    pt_real.exit_proc = must_sym("exit");
    pt_io_resolve(RTLD_NEXT);
    pt_internal--;
}

/* Whether this process is the program to run as a node (DSM_PTHREADS names it). The preload
 * reaches every process the launcher starts with it: under Slurm or mpirun a wrapper
 * (`timeout`, a shell) may carry LD_PRELOAD too, and a wrapper that became a node would take
 * the program's place and crash at its first fork. Every other process stays inert: the
 * interposed functions see pt_ready == 0 and pass straight through to glibc. Decided once,
 * at the first of the constructor, the first allocation and __libc_start_main. */
static int the_program(void)
{
    static int known, yes;
    if (known) return yes;
    known = 1;
    const char *want = getenv("DSM_PTHREADS");
    if (!want || !*want)
        pt_die("DSM_PTHREADS is not set: it names the program to run as a pthreads job (dsmrun "
               "--pthreads sets it; under Slurm or mpirun set DSM_PTHREADS=<program> beside "
               "LD_PRELOAD=libufdsm_pthreads.so: docs/pthreads.md, launching)");
    char exe[4096], real[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) pt_die("cannot read /proc/self/exe: %s", strerror(errno));
    exe[n] = 0;
    /* A path names one file (symbolic links resolved, as /proc/self/exe is); a bare name, or
     * a path that does not resolve here, matches the executable's name, wherever it lies
     * (GNU basename: what follows the last '/'). */
    if (strchr(want, '/') && realpath(want, real))
        yes = !strcmp(real, exe);
    else
        yes = !strcmp(basename(want), basename(exe));
    return yes;
}

/* ---------------------------------------------------------------- the environment */

/*
 * A program that names `environ` itself (posix_spawn(..., environ), execve) gets a copy
 * relocation: the variable every libc function reads moves into the executable's .bss, which
 * is in the global space. Two things follow. The runtime may not read it: its threads (and
 * program threads inside a call into it) must never fault on the global space, and libraries
 * it calls read their settings with getenv (libibverbs, liburing) long after it started. And
 * its value is node 0's: a pointer into node 0's own memory, meaningless elsewhere. So:
 *   - pt_env is this node's environment as it was just before the space was mapped (its
 *     array and strings are node-local), and getenv/secure_getenv read it from inside the
 *     runtime; the program's own calls read `environ` as usual;
 *   - node 0 then copies its environment into the global space and points `environ` there,
 *     so the program sees node 0's environment (the job's, as dsmrun gives every node the
 *     same but for DSM_RANK) from any node (share_environ).
 */
extern char **environ;
static char **pt_env;

static char *env_find(char **env, const char *name)
{
    size_t n = strlen(name);
    for (; env && *env; env++)
        if (!strncmp(*env, name, n) && (*env)[n] == '=') return *env + n + 1;
    return NULL;
}

char *getenv(const char *name)
{
    if (pt_env && pt_internal) return env_find(pt_env, name);
    return env_find(environ, name);
}

char *secure_getenv(const char *name)
{
    return getauxval(AT_SECURE) ? NULL : getenv(name);
}

/* Node 0, once the globals are back: when `environ` itself is in the global space, its
 * contents move there too. */
static void share_environ(void)
{
    if (!pt_in_dsm(&environ)) return;
    size_t n = 0, bytes = 0;
    for (char **e = pt_env; e && *e; e++, n++) bytes += strlen(*e) + 1;
    char **copy = pt_dsm_malloc((n + 1) * sizeof *copy + bytes);
    if (!copy) pt_die("no global memory for a copy of the environment (%zu bytes)", bytes);
    char *at = (char *)(copy + n + 1);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(pt_env[i]) + 1;
        copy[i] = memcpy(at, pt_env[i], len);
        at += len;
    }
    copy[n] = NULL;
    environ = copy;
}

__attribute__((constructor)) static void pt_constructor(void)
{
    const char *r = getenv("DSM_RANK");
    if (r) pt_rank = atoi(r); /* for messages until the runtime says */
    pt_reserve_space();
    resolve();
}

/* ---------------------------------------------------------------- where things are */

struct seg {
    uintptr_t lo, hi;
    uintptr_t exe;
    uintptr_t ldso;
};

static int find_segments(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct seg *s = data;
    if (!s->exe && !s->lo) { /* the first object is the executable */
        s->exe = info->dlpi_addr;
        for (int i = 0; i < info->dlpi_phnum; i++) {
            const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
            if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
            uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)4095;
            uintptr_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + 4095) & ~(uintptr_t)4095;
            if (!s->lo || lo < s->lo) s->lo = lo;
            if (hi > s->hi) s->hi = hi;
        }
        return 0;
    }
    if (info->dlpi_name && strstr(info->dlpi_name, "ld-linux")) {
        s->ldso = info->dlpi_addr;
        for (int i = 0; i < info->dlpi_phnum; i++) {
            const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
            if (ph->p_type != PT_LOAD) continue;
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
            if (!pt_ldso_lo || lo < pt_ldso_lo) pt_ldso_lo = lo;
            if (hi > pt_ldso_hi) pt_ldso_hi = hi;
        }
    }
    return 0;
}

static uint64_t parse_size(const char *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v) return 0;
    switch (*end) {
    case 'k':
    case 'K':
        x <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        x <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        x <<= 30;
        end++;
        break;
    case 't':
    case 'T':
        x <<= 40;
        end++;
        break;
    }
    if (*end) return 0;
    return (x + 4095) & ~4095ull;
}

/* Re-executes this program with address-space randomisation off and every symbol bound at
 * start, unless both already hold. Binding: the executable's .dynamic and GOT are in its
 * writable segment, which becomes part of the global space; a lazy binding would write the
 * GOT from every node, and one after dsm_finalize (which unmaps the space, at the very end)
 * would read an unmapped .dynamic and crash. */
static void check_startup(char **argv)
{
    int pers = personality(0xffffffff);
    int aslr_off = pers >= 0 && (pers & ADDR_NO_RANDOMIZE);
    const char *bn = getenv("LD_BIND_NOW");
    if (aslr_off && bn && *bn) return;
    if (getenv("UFDSM_PTHREADS_REEXEC"))
        pt_die("address-space randomisation is still on after re-executing with "
               "ADDR_NO_RANDOMIZE; a security policy forbids personality(2) here. Run the "
               "program under 'setarch -R' or allow ADDR_NO_RANDOMIZE");
    if (!aslr_off && (pers < 0 || personality((unsigned long)pers | ADDR_NO_RANDOMIZE) < 0))
        pt_die("personality(ADDR_NO_RANDOMIZE) failed: %s; run the program under 'setarch -R'",
               strerror(errno));
    setenv("LD_BIND_NOW", "1", 1);
    setenv("UFDSM_PTHREADS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    pt_die("cannot re-execute /proc/self/exe with randomisation off: %s; run the program "
           "under 'setarch -R' with LD_BIND_NOW=1",
           strerror(errno));
}

static void check_identity(const struct seg *s)
{
    struct pt_ident me = {.exe = s->exe,
                          .libc = (uintptr_t)pt_real.exit_proc,
                          .ldso = s->ldso,
                          .data_lo = s->lo,
                          .data_hi = s->hi};
    pt_ctl->ident[pt_rank] = me;
    pt_internal++;
    pt_dsm.barrier();
    pt_internal--;
    static const char *what[] = {"the executable", "libc (exit)", "the dynamic loader",
                                 "the data segment start", "the data segment end"};
    for (int k = 0; k < pt_nodes; k++) {
        const uint64_t *a = (const uint64_t *)&pt_ctl->ident[0];
        const uint64_t *b = (const uint64_t *)&pt_ctl->ident[k];
        for (int f = 0; f < 5; f++)
            if (a[f] != b[f])
                pt_die("%s is at %#llx on node 0 but at %#llx on node %d: every node must load "
                       "the same program and libraries at the same addresses. Run the same "
                       "binary and libraries on every node, with address-space randomisation "
                       "off (dsmrun --pthreads does it; else 'setarch -R')",
                       what[f], (unsigned long long)a[f], (unsigned long long)b[f], k);
    }
}

static size_t tls_modid;
static void *rt_base; /* where libufdsm.so.0 is loaded */

/* Loads libufdsm.so.0 from next to this library (the build tree, or the install libdir),
 * else from the loader's search path, and takes its API. */
static void load_runtime(void)
{
    Dl_info me;
    char path[4096];
    void *h = NULL;
    if (dladdr((void *)load_runtime, &me) && me.dli_fname && strrchr(me.dli_fname, '/')) {
        snprintf(path, sizeof path, "%.*s/libufdsm.so.0",
                 (int)(strrchr(me.dli_fname, '/') - me.dli_fname), me.dli_fname);
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    }
    if (!h) h = dlopen("libufdsm.so.0", RTLD_NOW | RTLD_GLOBAL);
    if (!h)
        pt_die("cannot load libufdsm.so.0 (%s); keep it next to libufdsm_pthreads.so or on the "
               "loader's path (LD_LIBRARY_PATH)",
               dlerror());
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&pt_dsm.init_sized, "dsm_init_sized"},
        {(void **)&pt_dsm.finalize, "dsm_finalize"},
        {(void **)&pt_dsm.strerror, "dsm_strerror"},
        {(void **)&pt_dsm.rank, "dsm_rank"},
        {(void **)&pt_dsm.nodes, "dsm_nodes"},
        {(void **)&pt_dsm.alloc_placed, "dsm_alloc_placed"},
        {(void **)&pt_dsm.malloc, "dsm_malloc"},
        {(void **)&pt_dsm.free, "dsm_free"},
        {(void **)&pt_dsm.barrier, "dsm_barrier"},
        {(void **)&pt_dsm.release, "dsm_release"},
        {(void **)&pt_dsm.acquire, "dsm_acquire"},
        {(void **)&pt_dsm.mutex_destroy, "dsm_mutex_destroy"},
        {(void **)&pt_dsm.mutex_lock, "dsm_mutex_lock"},
        {(void **)&pt_dsm.mutex_trylock, "dsm_mutex_trylock"},
        {(void **)&pt_dsm.mutex_unlock, "dsm_mutex_unlock"},
        {(void **)&pt_dsm.map_over, "ufdsm_preload_map_over"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
        if (!(*syms[i].slot = dlsym(h, syms[i].name)))
            pt_die("libufdsm.so.0 lacks %s: it is older than libufdsm_pthreads.so; use the "
                   "two from the same build",
                   syms[i].name);
    pt_dsm.handle = h;
    pt_io_resolve(h);
    if (dlinfo(h, RTLD_DI_TLS_MODID, &tls_modid)) tls_modid = 0;
    Dl_info di;
    if (dladdr((void *)pt_dsm.init_sized, &di)) rt_base = di.dli_fbase;
}

/* A dlopen'd library's thread-locals are allocated (with malloc) on a thread's first use,
 * and the runtime's first use may be its SIGBUS handler, where allocating is unsafe and an
 * allocation from the global space would fault inside the handler. So every thread that may
 * fault allocates them first, from glibc. */
typedef struct {
    unsigned long ti_module, ti_offset;
} tls_index;
extern void *__tls_get_addr(tls_index *);

void pt_tls_prime(void)
{
    if (!tls_modid) return;
    tls_index ti = {tls_modid, 0};
    pt_internal++;
    (void)__tls_get_addr(&ti);
    pt_internal--;
}

/* The range the global space will take, found and reserved by the constructor. */
static struct seg seg;
static uint64_t space;
static void *saved;

/* Finds the executable's writable segments and reserves the range from them upwards. Done
 * at the first allocation of the process (malloc.c; a library's constructor may allocate
 * before ours runs, libstdc++'s and libnl's do) or in our constructor, whichever comes
 * first: glibc's first allocation grows the brk heap, which starts right after .bss when
 * randomisation is off, right where the global space must go. */
void pt_reserve_space(void)
{
    static int done;
    if (done) return;
    done = 1;
    if (!the_program()) return;
    int pers = personality(0xffffffff);
    if (pers < 0 || !(pers & ADDR_NO_RANDOMIZE)) return; /* __libc_start_main re-executes */
    dl_iterate_phdr(find_segments, &seg);
    if (!seg.lo)
        pt_die("the executable has no writable segment to share; is it a static or unusual "
               "binary? --pthreads needs a dynamically linked glibc program");
    const char *mv = getenv("DSM_MEMORY");
    space = mv && *mv ? parse_size(mv) : DEFAULT_MEMORY;
    if (!space)
        pt_die("DSM_MEMORY='%s' is not a size (e.g. 16G, 512M); it sizes the global space "
               "that holds the program's globals, heap and stacks",
               mv);
    uint64_t dlen = seg.hi - seg.lo;
    if (space < dlen * 4 + (64ull << 20))
        pt_die("DSM_MEMORY=%s is too small for this program's %llu bytes of globals plus "
               "heaps and stacks; give at least %lluM",
               mv, (unsigned long long)dlen,
               (unsigned long long)((dlen * 4 + (64ull << 20)) >> 20) + 1);
    void *r = mmap((void *)seg.hi, space - dlen, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (r != (void *)seg.hi)
        pt_die("the %llu bytes above the program's data segment (%#lx) are in use (%s): the "
               "brk heap or a mapping is there already (a library constructor allocated before "
               "ufdsm could reserve the range). Lower DSM_MEMORY, or see docs/pthreads.md, "
               "limits",
               (unsigned long long)(space - dlen), (unsigned long)seg.hi,
               r == MAP_FAILED ? strerror(errno) : "mapped elsewhere");
}

/* Starts the runtime with the executable's writable segments inside the global space. */
static void start_runtime(void)
{
    if (!space)
        pt_die("the global space was not reserved at start (randomisation was on?); this is a "
               "bug in ufdsm's pthreads support");
    struct seg s = seg;
    uint64_t mem = space;
    /* Under DSM_PROTOCOL=rc the program's memory (globals, heap, stacks) is release-
     * consistent, and every synchronisation call must release and/or acquire (pt_rc). The
     * runtime checks the value itself. */
    const char *proto = getenv("DSM_PROTOCOL");
    pt_rc = proto && !strcmp(proto, "rc");
    char buf[64];
    snprintf(buf, sizeof buf, "%#llx", (unsigned long long)s.lo);
    setenv("DSM_BASE", buf, 1);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)mem);
    setenv("DSM_MEMORY", buf, 1);

    /* Save the segments: the global space replaces them. */
    size_t dlen = s.hi - s.lo;
    saved = mmap(NULL, dlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (saved == MAP_FAILED) pt_die("cannot save the data segments: %s", strerror(errno));
    memcpy(saved, (void *)s.lo, dlen);

    pt_env = environ; /* before `environ` itself may move into the global space */
    pt_internal++;
    load_runtime();
    pt_dsm.map_over(s.lo, mem);

    int rc = pt_dsm.init_sized(NULL, sizeof(dsm_options_t));
    pt_internal--;
    if (rc)
        pt_die("the runtime did not start (%s; its message above says why)", pt_dsm.strerror(rc));
    pt_rank = pt_dsm.rank();
    pt_nodes = pt_dsm.nodes();
    if (pt_nodes > PT_MAX_NODES) pt_die("at most %d nodes are supported", PT_MAX_NODES);
    pt_lo = s.lo;
    pt_hi = s.lo + mem;

    /* Nothing may touch the globals from here until node 0 has copied them back and the
     * barrier in check_identity has passed. */
    pt_internal++;
    /* The globals take the default protocol, like the rest of the program's memory. What
     * the preload polls and decides with atomics across nodes (the control block, the start
     * queues, the thread records) is SC whatever the default: C11 atomics are atomic across
     * nodes only there. */
    void *d = pt_dsm.alloc_placed(dlen, DSM_PLACE_NODE, 0);
    pt_ctl = pt_dsm.alloc_placed(sizeof *pt_ctl, DSM_PLACE_NODE | DSM_SC, 0);
    pt_queues = pt_dsm.alloc_placed((size_t)pt_nodes * sizeof *pt_queues, DSM_PLACE_CYCLIC | DSM_SC,
                                    sizeof *pt_queues);
    pt_records = pt_dsm.alloc_placed((size_t)pt_nodes * PT_RECORDS * sizeof *pt_records,
                                     DSM_PLACE_CYCLIC | DSM_SC, PT_RECORDS * sizeof *pt_records);
    pt_internal--;
    if (d == (void *)s.lo && (!pt_ctl || !pt_queues || !pt_records))
        pt_die("no global memory for the preload's control block, start queues and %d thread "
               "records per node (%zu bytes in all; the runtime's message above says more); "
               "raise DSM_MEMORY",
               PT_RECORDS,
               sizeof *pt_ctl +
                   (size_t)pt_nodes * (sizeof *pt_queues + PT_RECORDS * sizeof *pt_records));
    if (d != (void *)s.lo)
        pt_die("the global space did not place the data segment at its address (%p, wanted "
               "%#lx); this is a bug in ufdsm's pthreads support",
               d, (unsigned long)s.lo);
    if (pt_rank == 0) {
        memcpy(d, saved, dlen);
        share_environ(); /* published by check_identity's barrier */
        atomic_store(&pt_ctl->next_tid, 1);
    }
    munmap(saved, dlen);
    pt_place_init();
    check_identity(&s);
    pt_place_ready();
}

/* ---------------------------------------------------------------- ending */

/*
 * Before dsm_finalize unmaps the global space, every program thread of this node is parked
 * in a signal handler (on its alternate stack), where it no longer touches the space: a
 * thread still polling a join or computing would otherwise fault on the vanished space and
 * kill the node with SIGSEGV instead of the job's status. A thread inside the runtime (it
 * may hold the protocol engine, which dsm_finalize needs) only notes the request and parks
 * when it leaves; the signal is also blocked during the runtime's SIGBUS handler.
 */
#define PARK_SIG (SIGRTMAX - 3)
#define MAX_TIDS 4096
static _Atomic pid_t app_tids[MAX_TIDS];
static _Atomic int parked;
__thread int pt_park_pending;

int pt_app_thread_register(void)
{
    pid_t me = gettid();
    for (int i = 0; i < MAX_TIDS; i++) {
        pid_t z = 0;
        if (atomic_compare_exchange_strong(&app_tids[i], &z, me)) return i;
    }
    return -1; /* not stopped at the end: only a window for a fault, as before */
}

void pt_app_thread_unregister(int slot)
{
    if (slot >= 0) atomic_store(&app_tids[slot], 0);
}

void pt_park_now(void)
{
    atomic_fetch_add(&parked, 1);
    for (;;) pause();
}

/* A handler taking siginfo, run on the thread's alternate stack: a thread on a stack in the
 * global space (whose page may be missing or read-only, or which overflowed) has one
 * (thread.c). */
static struct sigaction altstack_action(void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | flags;
    sigemptyset(&sa.sa_mask);
    return sa;
}

static void park_handler(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    (void)ctx;
    if (pt_internal) {
        pt_park_pending = 1;
        return;
    }
    pt_park_now();
}

static void install_park(void)
{
    struct sigaction sa = altstack_action(park_handler, SA_RESTART);
    sigfillset(&sa.sa_mask);
    if (sigaction(PARK_SIG, &sa, NULL))
        pt_die("cannot install the handler of signal %d: %s", PARK_SIG, strerror(errno));
    /* Never park a thread in the middle of a fault: it may hold the protocol engine. */
    struct sigaction bus;
    if (sigaction(SIGBUS, NULL, &bus) == 0) {
        sigaddset(&bus.sa_mask, PARK_SIG);
        sigaction(SIGBUS, &bus, NULL);
    }
}

static void park_others(void)
{
    pid_t me = gettid(), pid = getpid();
    int sent = 0;
    for (int i = 0; i < MAX_TIDS; i++) {
        pid_t t = atomic_load(&app_tids[i]);
        if (t && t != me && syscall(SYS_tgkill, pid, t, PARK_SIG) == 0) sent++;
    }
    /* At most 2 s: a thread that blocks the signal is left running (and may fault). */
    for (int i = 0; i < 2000 && atomic_load(&parked) < sent; i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static _Noreturn void finish(void)
{
    uint64_t v = atomic_load(&pt_ctl->exiting);
    int status = (int)(v & 0xff);
    park_others();
    pt_internal++;
    pt_dsm.finalize();
    pt_exit_now(status);
}

/* Registered before the program's (and libc's) exit handlers, so it runs after them: the
 * program's memory is still there for them. */
static void at_exit(void)
{
    if (!pt_ready || getpid() != pt_pid) return;
    fflush(NULL);
    /* Under RC: what this node wrote (its exit handlers included) reaches the other nodes'
     * exit handlers, which acquire when they see the status (poll_exit). */
    pt_release();
    uint64_t zero = 0;
    atomic_compare_exchange_strong(&pt_ctl->exiting, &zero,
                                   (1ull << 32) | (uint64_t)(main_status & 0xff));
    atomic_store(&exit_started, 1);
    if (pthread_equal(pt_real.self(), poller)) finish();
    /* The poller finishes: this thread may be running on a stack in the global space, which
     * dsm_finalize unmaps. */
    for (;;) pause();
}

void exit(int status)
{
    if (pt_ready && getpid() != pt_pid) pt_real.exit_proc(status); /* a fork()ed child */
    if (pt_ready) {
        int no = 0;
        if (!atomic_compare_exchange_strong(&exit_claimed, &no, 1)) {
            /* Another thread of this node is ending the job already; the poller finishes. */
            if (pthread_equal(pt_real.self(), poller)) {
                while (!atomic_load(&exit_started)) sched_yield();
                finish();
            }
            for (;;) pause();
        }
    }
    main_status = status;
    pt_real.exit_proc(status);
}

/* _exit (and _Exit) from any thread ends the job with that status too, without this node's
 * exit handlers or stdio flush, as _exit does natively; the other nodes run theirs. */
void _exit(int status)
{
    /* The runtime's own fatal path (a lost node: status 3) ends just this process at once;
     * it may be inside the fault handler, where touching the global space would fault. */
    Dl_info di;
    if (pt_internal ||
        (rt_base && dladdr(__builtin_return_address(0), &di) && di.dli_fbase == rt_base))
        pt_exit_now(status);
    if (pt_ready && getpid() == pt_pid) {
        int no = 0;
        if (atomic_compare_exchange_strong(&exit_claimed, &no, 1)) {
            pt_release(); /* as at_exit */
            uint64_t zero = 0;
            atomic_compare_exchange_strong(&pt_ctl->exiting, &zero,
                                           (1ull << 32) | (uint64_t)(status & 0xff));
            atomic_store(&exit_started, 1);
        }
        if (pthread_equal(pt_real.self(), poller)) {
            while (!atomic_load(&exit_started)) sched_yield();
            finish();
        }
        for (;;) pause();
    }
    pt_exit_now(status);
}

void _Exit(int status) __attribute__((alias("_exit")));

/* Watches for the end of the job: the poller of node 0, and the loop of the other nodes. */
static void poll_exit(void)
{
    if (atomic_load(&exit_started)) finish();
    uint64_t v = atomic_load(&pt_ctl->exiting);
    if (v && !atomic_load(&exit_claimed)) {
        /* Another node ended the job: run our exit handlers, seeing what it wrote (RC). */
        pt_acquire();
        exit((int)(v & 0xff));
    }
}

/* Node 0's poller: main runs the program, so this thread watches for the job's end and
 * starts the threads other nodes place here (a thread created by a thread on another node). */
static void *watcher(void *arg)
{
    (void)arg;
    pt_internal = 1;
    for (;;) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
        poll_exit();
        if (atomic_load(&pt_queues[pt_rank].head)) pt_threads_start_queued();
    }
    return NULL;
}

static _Noreturn void worker_loop(void)
{
    unsigned round = 0;
    for (;;) {
        poll_exit();
        if (atomic_load(&pt_queues[pt_rank].head)) {
            pt_threads_start_queued();
            round = 0;
        } else {
            pt_backoff(&round);
        }
    }
}

/* ---------------------------------------------------------------- crashes */

/*
 * A fatal signal in a program thread ends its node, and the other nodes then report only
 * "lost node N". So before the process dies, the thread that took the signal is named: its
 * job-wide number (main is 1, then in creation order), its pthread_t, its start routine (by
 * name when the executable exports it, else as file+offset for addr2line) and the faulting
 * address. Installed before the runtime starts, so that the runtime's SIGBUS handler passes
 * bus errors outside the global space on to this one. dladdr and snprintf are not
 * async-signal-safe; the process is dying, and at worst the message is lost.
 */
static const struct {
    int sig;
    const char *name;
} crash_sigs[] = {{SIGSEGV, "SIGSEGV"},
                  {SIGBUS, "SIGBUS"},
                  {SIGABRT, "SIGABRT"},
                  {SIGFPE, "SIGFPE"},
                  {SIGILL, "SIGILL"}};

static void name_code(char *buf, size_t len, void *p)
{
    Dl_info di;
    if (dladdr(p, &di) && di.dli_sname)
        snprintf(buf, len, "%s", di.dli_sname);
    else if (dladdr(p, &di) && di.dli_fname)
        snprintf(buf, len, "%s+%#lx", di.dli_fname,
                 (unsigned long)((uintptr_t)p - (uintptr_t)di.dli_fbase));
    else
        snprintf(buf, len, "%p", p);
}

/* Names the program thread (or runtime thread) that took the fatal signal. */
static void report_thread(int sig, const char *sname, const char *where)
{
    char who[512];
    struct pt_thread *t = pt_self;
    if (pt_internal) {
        snprintf(who, sizeof who, "a thread inside ufdsm's runtime (kernel tid %d)", (int)gettid());
    } else if (t == &main_rec) {
        snprintf(who, sizeof who, "main (thread 1, kernel tid %d)", (int)gettid());
    } else if (t) {
        char fn[256];
        name_code(fn, sizeof fn, (void *)t->fn);
        snprintf(who, sizeof who, "thread %u (pthread_t %p, start routine %s, kernel tid %d)",
                 t->tid, (void *)t, fn, (int)gettid());
    } else {
        snprintf(who, sizeof who,
                 "a thread not created by the program's pthread_create (kernel tid %d)",
                 (int)gettid());
    }
    pt_warn("%s was killed by %s (%s)%s; node %d ends, and with it the job", who, sname,
            strsignal(sig), where, pt_rank);
}

static void crash_handler(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    const char *sname = "a fatal signal";
    for (size_t i = 0; i < sizeof crash_sigs / sizeof crash_sigs[0]; i++)
        if (crash_sigs[i].sig == sig) sname = crash_sigs[i].name;
    char where[64] = "";
    if (sig != SIGABRT && si) snprintf(where, sizeof where, " at address %p", si->si_addr);
    if (pt_ready && getpid() != pt_pid) {
        /* A child of fork(): the runtime maps the global space MADV_DONTFORK, so the child
         * has none of it, not even the stack fork() returns on, and dies at once. */
        pt_warn("a process fork()ed on node %d (pid %d) was killed by %s (%s)%s: a child of "
                "fork() has none of the program's shared memory (globals, heap, thread "
                "stacks, the one fork() returned on included). Under dsmrun --pthreads start "
                "programs with posix_spawn, system or popen instead of fork and exec "
                "(docs/pthreads.md, limits)",
                pt_rank, (int)getpid(), sname, strsignal(sig), where);
    } else {
        report_thread(sig, sname, where);
    }
    signal(sig, SIG_DFL);
    raise(sig); /* blocked in here: delivered, with its default action, on return */
}

static void install_crash_report(void)
{
    struct sigaction sa = altstack_action(crash_handler, 0);
    for (size_t i = 0; i < sizeof crash_sigs / sizeof crash_sigs[0]; i++) {
        struct sigaction old;
        /* A handler someone installed before us (a sanitizer, a library) stays. */
        if (sigaction(crash_sigs[i].sig, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
            old.sa_handler == SIG_DFL)
            sigaction(crash_sigs[i].sig, &sa, NULL);
    }
}

/* ---------------------------------------------------------------- main */

static void run_main(void)
{
    main_status = real_main(main_argc, main_argv, environ);
}

/* Copies argv into the global space: threads on other nodes may read it. */
static char **share_argv(int argc, char **argv)
{
    char **v = malloc(((size_t)argc + 1) * sizeof *v);
    if (!v) pt_die("out of global memory for argv");
    for (int i = 0; i < argc; i++) v[i] = strdup(argv[i]);
    v[argc] = NULL;
    return v;
}

static int pt_main(int argc, char **argv, char **envp)
{
    (void)envp;
    main_argc = argc;
    main_argv = share_argv(argc, argv);
    main_rec.magic = PT_MAGIC;
    main_rec.tid = 1;
    main_rec.node = 0;
    pt_self = &main_rec;
    pt_app_thread_register();
    pt_tls_prime();
    pt_run_on_dsm_stack(run_main, MAIN_STACK, NULL);
    exit(main_status);
}

struct pt_thread *pt_main_rec = &main_rec;

typedef int (*start_main_fn)(int (*)(int, char **, char **), int, char **, void (*)(void),
                             void (*)(void), void (*)(void), void *);

int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv, void (*init)(void),
                      void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
    resolve();
    start_main_fn real = (start_main_fn)must_sym("__libc_start_main");
    if (!the_program()) return real(main, argc, argv, init, fini, rtld_fini, stack_end);
    check_startup(argv);
    install_crash_report();
    start_runtime();
    atexit(at_exit);
    install_park();
    pt_pid = getpid();
    pt_ready = 1;
    real_main = main;
    if (pt_rank == 0) {
        pt_internal++;
        int rc = pt_real.create(&poller, NULL, watcher, NULL);
        pt_internal--;
        if (rc) pt_die("cannot start the exit watcher thread: %s", strerror(rc));
        return real(pt_main, argc, argv, init, fini, rtld_fini, stack_end);
    }
    poller = pt_real.self();
    worker_loop();
}
