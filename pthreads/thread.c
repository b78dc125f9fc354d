/*
 * thread.c - threads placed on nodes: pthread_create, join, detach, exit, self.
 *
 * pthread_create picks a node from a job-wide count of the threads created so far (in the
 * control block, so threads created by threads continue the same sequence) and the placement
 * (DSM_THREAD_PLACEMENT: round robin over all nodes, node 0 included, by default; or node by
 * node, so many per node: pt_place), writes a
 * thread record into the global space and either starts it here or pushes it onto the chosen
 * node's start queue (a lock-free list on a page that node homes; its poller starts what it
 * finds). The start routine and its argument mean the same on every node: the executable is
 * at the same address everywhere and all of the program's memory is shared.
 *
 * A started thread is a real, detached thread of its node. It runs the start routine on a
 * stack in the global space (homed on that node), switched to with makecontext/swapcontext,
 * so pointers to its locals are valid on every node; glibc's own thread descriptor and TLS
 * stay in the real thread's ordinary stack, which the kernel writes to (set_tid_address,
 * rseq) and which must therefore never be missing. Faults on the shared stack are taken on an
 * alternate signal stack. The record carries the return value and a state word that join,
 * detach and the thread's end decide with atomics. Records are slots of a pool in SC memory
 * allocated at start (start.c), whatever the program's protocol: atomics are atomic across
 * nodes only there, and dsm_malloc gives the default protocol.
 *
 * Release consistency (pt_rc): pthread_create releases before the record is published, the
 * new thread acquires before its routine runs; the thread's end (return or pthread_exit)
 * releases before it is marked done, and pthread_join acquires once it sees that. Between
 * threads of one node nothing is needed: they share the node's copy of every page.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pt.h"

__thread struct pt_thread *pt_self;
extern struct pt_thread *pt_main_rec;

#define DEFAULT_STACK (8ul << 20)
#define ALT_STACK     (256ul << 10)
#define PREFAULT      (64ul << 10)

static __thread ucontext_t back; /* where a thread's start routine returns to */
/* The stack in the global space this thread runs on (pthread_getattr_np reports it). */
__thread void *pt_stack_lo;
__thread size_t pt_stack_size;
/* While this thread runs on a stack in the global space: a 16-byte aligned place on its real
 * stack, below the frame suspended in swapcontext, for calls into the runtime. */
static __thread uintptr_t real_sp;

/*
 * Calls into the runtime never run on a stack in the global space. The runtime's code may
 * run the protocol engine (a lock, a page for read(2)'s buffer), and a stack page of the
 * global space can be missing or read-only at any moment: another node read a local of this
 * thread (main's locals are handed to threads), and the next push faults inside the engine,
 * which the runtime rightly refuses ("the protocol engine was re-entered"). So such calls
 * switch to the thread's real stack for their duration: pt_switch_call(fn, arg_block, sp)
 * calls fn(arg_block) with the stack pointer at sp and puts it back.
 */
struct rt_call {
    long (*fn)(long, long, long, long, long, long);
    long a[6];
    long r;
};

static void rt_call_run(struct rt_call *c)
{
    c->r = c->fn(c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
}

void pt_switch_call(void (*fn)(struct rt_call *), struct rt_call *c, uintptr_t sp);
__asm__(".text\n"
        ".globl pt_switch_call\n"
        ".hidden pt_switch_call\n"
        ".type pt_switch_call,@function\n"
        "pt_switch_call:\n"
        "    push %rbp\n"
        "    mov %rsp, %rbp\n"
        "    mov %rdx, %rsp\n" /* 16-byte aligned: the call below leaves the ABI's alignment */
        "    mov %rdi, %rax\n"
        "    mov %rsi, %rdi\n"
        "    call *%rax\n"
        "    mov %rbp, %rsp\n"
        "    pop %rbp\n"
        "    ret\n"
        ".size pt_switch_call, .-pt_switch_call\n");

long pt_rt_call(void *fn, long a0, long a1, long a2, long a3, long a4, long a5)
{
    /* The x86-64 calling convention passes the first six integer arguments in registers, so
     * a function of fewer arguments ignores the extra ones: one path serves every call. */
    struct rt_call c = {.a = {a0, a1, a2, a3, a4, a5}};
    memcpy(&c.fn, &fn, sizeof fn);
    pt_internal++;
    if (real_sp && pt_in_dsm(__builtin_frame_address(0)))
        pt_switch_call(rt_call_run, &c, real_sp);
    else
        rt_call_run(&c);
    pt_internal--;
    if (!pt_internal && pt_park_pending) pt_park_now();
    return c.r;
}

/* Runs fn on a stack of the global space: given (the program's own, size bytes), or one of
 * size bytes from this node's arena. */
static void run_on_stack(void (*fn)(void), size_t size, void *given)
{
    void *alt = mmap(NULL, ALT_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (alt == MAP_FAILED) pt_die("cannot map an alternate signal stack: %s", strerror(errno));
    stack_t ss = {.ss_sp = alt, .ss_size = ALT_STACK, .ss_flags = 0};
    if (sigaltstack(&ss, NULL)) pt_die("sigaltstack failed: %s", strerror(errno));
    char *stack = given ? given : pt_dsm_malloc(size);
    if (!stack)
        pt_die("no global memory left for a %zu-byte thread stack; raise DSM_MEMORY (each "
               "node's heap and stacks get half of it divided by the nodes)",
               size);
    /* The top of the stack is used at once; touching it here, from this node, makes it
     * present and writable before the kernel may need to write there (a system call's
     * output on the stack would fail with EFAULT on a missing page). */
    for (char *p = stack + size - 4096; p >= stack + size - PREFAULT && p >= stack; p -= 4096)
        *(volatile char *)p = 0;
    ucontext_t uc;
    /* 16 KiB below this frame: room for swapcontext's own frame above it. */
    real_sp = ((uintptr_t)&uc - (16u << 10)) & ~(uintptr_t)15;
    if (getcontext(&uc)) pt_die("getcontext failed: %s", strerror(errno));
    uc.uc_stack.ss_sp = pt_stack_lo = stack;
    uc.uc_stack.ss_size = pt_stack_size = size;
    uc.uc_link = &back;
    makecontext(&uc, fn, 0);
    if (swapcontext(&back, &uc)) pt_die("swapcontext failed: %s", strerror(errno));
    real_sp = 0;
    pt_stack_lo = NULL;
    pt_stack_size = 0;
    if (!given) pt_dsm_free(stack);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    munmap(alt, ALT_STACK);
}

void pt_run_on_dsm_stack(void (*fn)(void), size_t size, void *given)
{
    run_on_stack(fn, given ? size : (size + 4095) & ~4095ul, given);
}

void pt_exit_to_runner(void)
{
    setcontext(&back);
    pt_die("setcontext failed: %s", strerror(errno));
}

int pt_self_tid(void)
{
    if (pt_self) return (int)pt_self->tid;
    return (int)(0x40000000u | (unsigned)gettid()); /* a thread the preload did not start */
}

/* ---------------------------------------------------------------- placement */

/* Round robin (rr): node i % nodes. Otherwise nodes are filled in order, each taking
 * per_node[k] consecutive threads, and past the last node it starts again at node 0. */
static int place_rr = 1;
static uint64_t place_end[PT_MAX_NODES]; /* threads up to and including node k's share */

/* The threads this node takes in turn: DSM_THREADS_PER_NODE, else its CPUs (those this
 * process may run on: a container's or cpuset's limit, not the host's). */
static uint32_t threads_per_node(void)
{
    const char *v = getenv("DSM_THREADS_PER_NODE");
    if (v && *v) {
        char *end;
        unsigned long k = strtoul(v, &end, 10);
        if (*end || !k || k > 1000000)
            pt_die("DSM_THREADS_PER_NODE=%s is not a number of threads from 1 to 1000000; it "
                   "says how many threads DSM_THREAD_PLACEMENT=fill puts on each node",
                   v);
        return (uint32_t)k;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (uint32_t)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

void pt_place_init(void)
{
    const char *v = getenv("DSM_THREAD_PLACEMENT");
    uint32_t k = 1;
    if (!v || !*v || !strcmp(v, "rr")) {
        place_rr = 1;
    } else if (!strcmp(v, "fill")) {
        place_rr = 0;
        k = threads_per_node();
    } else if (!strncmp(v, "block:", 6)) {
        char *end;
        unsigned long b = strtoul(v + 6, &end, 10);
        if (*end || !b || b > 1000000)
            pt_die("DSM_THREAD_PLACEMENT=%s: block:K needs K, the threads per node, from 1 to "
                   "1000000 (e.g. block:4)",
                   v);
        place_rr = 0;
        k = (uint32_t)b;
    } else {
        pt_die("DSM_THREAD_PLACEMENT=%s is not a placement; use rr (round robin over the nodes, "
               "the default), fill (DSM_THREADS_PER_NODE threads per node, else its CPUs, node "
               "by node) or block:K (K threads per node, node by node)",
               v);
    }
    pt_ctl->per_node[pt_rank] = k;
}

void pt_place_ready(void)
{
    uint64_t sum = 0;
    for (int k = 0; k < pt_nodes; k++) place_end[k] = sum += pt_ctl->per_node[k];
}

int pt_place(uint64_t i)
{
    if (place_rr) return (int)(i % (uint64_t)pt_nodes);
    i %= place_end[pt_nodes - 1];
    int k = 0;
    while (i >= place_end[k]) k++;
    return k;
}

/* ---------------------------------------------------------------- thread records */

/* This node's slots first, from where the last search stopped (threads of one node race
 * only for the CAS), then the other nodes': a record is homed where it was created when it
 * can be, so starting a local thread moves no page. */
struct pt_thread *pt_record_alloc(void)
{
    static _Atomic unsigned cursor;
    for (int k = 0; k < pt_nodes; k++) {
        struct pt_thread *pool = pt_records + (size_t)((pt_rank + k) % pt_nodes) * PT_RECORDS;
        unsigned from = k ? 0 : atomic_load_explicit(&cursor, memory_order_relaxed);
        for (unsigned i = 0; i < PT_RECORDS; i++) {
            unsigned at = (from + i) % PT_RECORDS;
            int no = 0;
            if (atomic_load_explicit(&pool[at].used, memory_order_relaxed) ||
                !atomic_compare_exchange_strong(&pool[at].used, &no, 1))
                continue;
            if (!k) atomic_store_explicit(&cursor, at + 1, memory_order_relaxed);
            struct pt_thread *t = &pool[at];
            memset(t, 0, offsetof(struct pt_thread, used));
            return t;
        }
    }
    static _Atomic int warned;
    if (!atomic_exchange(&warned, 1))
        pt_warn("pthread_create: all %d thread records of every node are in use (threads "
                "that were neither joined nor detached keep theirs), so it fails with EAGAIN; "
                "join or detach finished threads",
                PT_RECORDS);
    return NULL;
}

void pt_record_free(struct pt_thread *t)
{
    t->magic = 0;
    atomic_store(&t->used, 0);
}

static void run_thread(void)
{
    struct pt_thread *t = pt_self;
    t->ret = t->fn(t->arg);
}

/* Once per kind: an attribute that could not be applied where the thread runs. */
static void attr_warn(const char *what, int err, _Atomic int *said)
{
    if (!atomic_exchange(said, 1))
        pt_warn("the thread attribute %s could not be applied on this node (%s); the thread "
                "runs without it",
                what, strerror(err));
}

/* The affinity and scheduling the creator set, on the thread's real thread here. A CPU set
 * names CPUs of the node the thread runs on (every node's CPUs are numbered from 0). */
static void apply_attrs(const struct pt_thread *t)
{
    static _Atomic int said_cpus, said_sched;
    int rc;
    /* (The record is in the global space, which the kernel cannot fault in: these calls are
     * this library's wrappers (tcalls.c), which hand the kernel local copies.) */
    if (t->has_cpus && (rc = pthread_setaffinity_np(pt_real.self(), sizeof t->cpus, &t->cpus)))
        attr_warn("affinity (pthread_attr_setaffinity_np)", rc, &said_cpus);
    if (t->sched_explicit && (rc = pthread_setschedparam(pt_real.self(), t->policy, &t->param)))
        attr_warn("scheduling (PTHREAD_EXPLICIT_SCHED)", rc, &said_sched);
}

static void *trampoline(void *arg)
{
    struct pt_thread *t = arg;
    pt_self = t;
    int slot = pt_app_thread_register();
    pt_tls_prime();
    pt_acquire(); /* what the creator wrote before pthread_create (RC) */
    apply_attrs(t);
    pt_run_on_dsm_stack(run_thread, t->stacksize, t->ustack);
    pt_self = NULL;
    pt_malloc_thread_end(); /* its cached free blocks back to the arena */
    pt_release(); /* what the thread wrote, before a joiner (or main's end) may see it done */
    atomic_fetch_sub(&pt_ctl->live, 1);
    if (atomic_exchange(&t->state, PT_DONE) == PT_DETACHED) pt_record_free(t);
    pt_app_thread_unregister(slot); /* touches the global space no more */
    return NULL;
}

/* glibc's pthread_create blocks every signal around clone(), and a fault on a page of the
 * global space while SIGBUS is blocked kills the process. The creating thread may be on a
 * shared stack whose page another node has just read (main's locals are handed to
 * threads), so the real pthread_create runs on the real stack (pt_rt_call), with its
 * arguments in thread-local, not shared, memory. */
static __thread pthread_attr_t start_attr;
static __thread pthread_t start_th;

static void start_here(struct pt_thread *t)
{
    pthread_attr_init(&start_attr);
    pthread_attr_setdetachstate(&start_attr, PTHREAD_CREATE_DETACHED);
    /* Only the trampoline and glibc's descriptor and TLS live on this stack. */
    pthread_attr_setstacksize(&start_attr, 256ul << 10);
    int rc = (int)pt_rt_call((void *)pt_real.create, (long)&start_th, (long)&start_attr,
                             (long)trampoline, (long)t, 0, 0);
    pthread_attr_destroy(&start_attr);
    if (rc)
        pt_die("cannot start a thread on node %d: %s (the process's thread limit?)", pt_rank,
               strerror(rc));
}

void pt_threads_start_queued(void)
{
    struct pt_thread *l = atomic_exchange(&pt_queues[pt_rank].head, NULL), *rev = NULL;
    while (l) { /* the queue is a stack: start in creation order */
        struct pt_thread *n = l->next;
        l->next = rev;
        rev = l;
        l = n;
    }
    while (rev) {
        struct pt_thread *n = rev->next;
        start_here(rev);
        rev = n;
    }
}

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

/* Threads of the runtime itself (service thread, transport) stay local, ordinary threads
 * whose allocations go to glibc. */
struct internal_start {
    void *(*fn)(void *);
    void *arg;
};

static void *internal_trampoline(void *arg)
{
    struct internal_start s = *(struct internal_start *)arg;
    __libc_free(arg);
    pt_internal = 1;
    return s.fn(s.arg);
}

/* The attributes pthread_create takes besides stack size and detach state: the program's
 * own stack if it lies in the global space (any node can run on it; glibc's guard size
 * does not apply to it, as natively), an affinity other than every CPU, explicit
 * scheduling. A stack elsewhere (the program's own mmap: that node's memory only) is left
 * out, and said so once. */
static void copy_attrs(struct pt_thread *t, const pthread_attr_t *attr)
{
    static _Atomic int said_stack;
    void *sa;
    size_t ss;
    t->ustack = NULL;
    if (!pthread_attr_getstack(attr, &sa, &ss) && sa) {
        if (pt_in_dsm(sa) && pt_in_dsm((char *)sa + ss - 1)) {
            t->ustack = sa;
            t->stacksize = ss;
        } else if (!atomic_exchange(&said_stack, 1)) {
            pt_warn("pthread_attr_setstack gave a stack at %p outside the program's shared memory "
                    "(not from malloc or a global), which other nodes cannot use; the thread "
                    "gets a stack of its own instead",
                    sa);
        }
    }
    cpu_set_t all;
    memset(&all, 0xff, sizeof all);
    t->has_cpus = !pthread_attr_getaffinity_np(attr, sizeof t->cpus, &t->cpus) &&
                  CPU_COUNT(&t->cpus) && !CPU_EQUAL(&t->cpus, &all);
    int inh;
    t->sched_explicit = !pthread_attr_getinheritsched(attr, &inh) &&
                        inh == PTHREAD_EXPLICIT_SCHED &&
                        !pthread_attr_getschedpolicy(attr, &t->policy) &&
                        !pthread_attr_getschedparam(attr, &t->param);
}

int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (!pt_ready || pt_internal) {
        struct internal_start *s = __libc_malloc(sizeof *s);
        if (!s) return EAGAIN;
        s->fn = fn;
        s->arg = arg;
        int rc = pt_real.create(th, attr, internal_trampoline, s);
        if (rc) __libc_free(s);
        return rc;
    }
    struct pt_thread *t = pt_record_alloc();
    if (!t) return EAGAIN;
    t->fn = fn;
    t->arg = arg;
    t->stacksize = DEFAULT_STACK;
    int detached = 0;
    if (attr) {
        size_t sz;
        if (!pthread_attr_getstacksize(attr, &sz) && sz > t->stacksize) t->stacksize = sz;
        int ds;
        if (!pthread_attr_getdetachstate(attr, &ds) && ds == PTHREAD_CREATE_DETACHED) detached = 1;
        copy_attrs(t, attr);
    }
    t->tid = atomic_fetch_add(&pt_ctl->next_tid, 1) + 1;
    /* main is the job's thread 0, on node 0: the first thread created is thread 1, so that
     * rr puts it on node 1, and a program whose main works beside its T - 1 threads (the
     * usual SPMD-in-pthreads shape) has one thread per node at T = N. */
    t->node = pt_place(atomic_fetch_add(&pt_ctl->rr, 1) + 1);
    atomic_store(&t->state, detached ? PT_DETACHED : PT_RUNNING);
    t->magic = PT_MAGIC;
    atomic_fetch_add(&pt_ctl->live, 1);
    *th = (pthread_t)t;
    if (t->node == pt_rank) {
        start_here(t);
    } else {
        pt_release(); /* the routine's argument and whatever else the creator wrote (RC) */
        struct pt_queue *q = &pt_queues[t->node];
        struct pt_thread *old = atomic_load(&q->head);
        do t->next = old;
        while (!atomic_compare_exchange_weak(&q->head, &old, t));
    }
    return 0;
}

struct pt_thread *pt_ours(pthread_t th)
{
    struct pt_thread *t = (struct pt_thread *)th;
    if (!pt_ready || !pt_in_dsm(t) || t->magic != PT_MAGIC) return NULL;
    return t;
}

/* Joins a placed thread: waits for its end (try: not at all, returning EBUSY; abstime:
 * until then on clock clk, returning ETIMEDOUT), then takes its return value. */
int pt_join(struct pt_thread *t, void **ret, int try, clockid_t clk, const struct timespec *abstime)
{
    if (t == pt_self) return EDEADLK;
    unsigned round = 0;
    int s;
    while ((s = atomic_load(&t->state)) == PT_RUNNING) {
        if (try) return EBUSY;
        if (abstime && pt_past(clk, abstime)) return ETIMEDOUT;
        pt_backoff(&round);
    }
    if (s == PT_DETACHED) return EINVAL;
    if (t->node != pt_rank) pt_acquire(); /* what the thread wrote, released at its end (RC) */
    if (ret) *ret = t->ret;
    pt_record_free(t);
    return 0;
}

int pthread_join(pthread_t th, void **ret)
{
    struct pt_thread *t = pt_ours(th);
    if (!t) return pt_real.join(th, ret);
    return pt_join(t, ret, 0, CLOCK_REALTIME, NULL);
}

int pthread_detach(pthread_t th)
{
    struct pt_thread *t = pt_ours(th);
    if (!t) return pt_real.detach(th);
    int s = atomic_exchange(&t->state, PT_DETACHED);
    if (s == PT_DETACHED) return EINVAL;
    if (s == PT_DONE) pt_record_free(t);
    return 0;
}

void pthread_exit(void *ret)
{
    if (pt_ready && pt_self == pt_main_rec) {
        /* main ends but the process lives on until its last thread has ended, with status
         * 0: as pthread_exit from main does natively. */
        unsigned round = 0;
        while (atomic_load(&pt_ctl->live) > 0) {
            pt_backoff(&round);
        }
        pt_acquire(); /* every thread released at its end: the exit handlers see it all */
        exit(0);
    }
    if (pt_ready && pt_self) {
        pt_self->ret = ret;
        pt_exit_to_runner();
    }
    pt_real.exit(ret);
}

pthread_t pthread_self(void)
{
    if (pt_self) return (pthread_t)pt_self;
    return pt_real.self();
}

int pthread_equal(pthread_t a, pthread_t b)
{
    return a == b;
}
