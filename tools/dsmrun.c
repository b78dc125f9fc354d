/*
 * dsmrun.c - the launcher: starts the N processes of one ufdsm job, locally or one per host
 * over ssh, gives each its place in the job through the environment (DSM_RANK, DSM_NODES,
 * DSM_COORDINATOR, DSM_JOB), waits for all of them and exits with the worst of their statuses.
 *
 * It is also what stops a job. When one node fails, the others normally notice the lost peer
 * and exit by themselves with a status that says why, so dsmrun first gives them a grace period
 * and only then terminates the survivors (SIGTERM, then SIGKILL). When dsmrun itself is
 * interrupted, it stops every node at once. Each node runs in its own process group so that a
 * terminal's Ctrl-C reaches dsmrun alone and the whole job is stopped in one orderly way, and
 * so that signals reach whatever a node has started beneath it.
 *
 * Every signal dsmrun cares about, SIGCHLD included, stays blocked and is taken synchronously
 * with sigtimedwait: a SIGCHLD that arrives while dsmrun is busy remains pending, and children
 * are reaped with waitpid(WNOHANG) until none is left, so no exit can be lost between a check
 * and a wait, and every wait after a failure or an interrupt has a deadline.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sigabbrev_np, and the CMake build defines it anyway */
#endif
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_NODES      64
#define DEFAULT_GRACE  15.0
#define KILL_DELAY     3.0 /* SIGTERM -> SIGKILL */
#define GIVE_UP_DELAY  5.0 /* SIGKILL -> stop waiting: only a process stuck in the kernel */
#define HOSTS_PORT     7400
#define DEFAULT_SSH    "ssh -o BatchMode=yes"
#define EXIT_USAGE     2
#define EXIT_NOT_FOUND 127

extern char **environ;

struct node {
    pid_t pid;      /* 0: never started */
    bool running;   /* started and not yet reaped */
    bool signalled; /* dsmrun sent it SIGTERM/SIGKILL while it ran */
    bool abandoned; /* still there after SIGKILL + GIVE_UP_DELAY */
    int wstatus;
    const char *host; /* --hosts only */
    char **argv;      /* what gets exec'd */
    char *cmdline;    /* --hosts: the remote shell command */
};

/* Everything lives here rather than on main's stack so that it stays reachable until exit
 * (the sanitizer build runs a leak checker). */
static struct {
    int nodes;
    int port;
    double grace;
    bool dry_run;
    bool hosts_mode;
    char *hosts_arg;
    const char *hosts[MAX_NODES];
    char **prog; /* program and its arguments, NULL-terminated */
    char coordinator[300];
    const char *job;
    char job_buf[320];
    char cwd[PATH_MAX];
    char **ssh_words;
    struct node node[MAX_NODES];
    sigset_t waited;   /* the signals taken with sigtimedwait */
    sigset_t original; /* the mask the nodes get back */
} g;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: dsmrun -n N [options] [--] program [args...]\n"
            "       dsmrun --hosts h1,h2,... [options] [--] program [args...]\n"
            "\n"
            "Starts the nodes of one ufdsm job and waits for all of them.\n"
            "\n"
            "  -n N               run N nodes (1..%d) on this machine\n"
            "  --hosts h1,h2,...  run node i on the i-th host (1..%d hosts, repeats allowed),\n"
            "                     through ssh; the first host runs the coordinator. The program\n"
            "                     must exist at the same path on every host, the current\n"
            "                     directory must exist there too, and ssh must log in without a\n"
            "                     password (keys set up: BatchMode is on). DSMRUN_SSH replaces\n"
            "                     '" DEFAULT_SSH "' (split on spaces).\n"
            "  --port P           coordinator port (default: a free local port with -n,\n"
            "                     %d with --hosts)\n"
            "  --grace S          once a node has failed, seconds the others get to exit by\n"
            "                     themselves before dsmrun stops them (default %g, or\n"
            "                     DSMRUN_GRACE)\n"
            "  --dry-run          print each node's environment and command; run nothing\n"
            "  -h, --help         show this help\n"
            "\n"
            "Each node gets DSM_RANK (0..N-1), DSM_NODES, DSM_COORDINATOR (host:port) and\n"
            "DSM_JOB (kept if already set); every other DSM_* variable is passed on, over ssh\n"
            "too. Standard input goes to node 0 unless it is a terminal; the others read\n"
            "/dev/null.\n"
            "\n"
            "Exit status: the worst of the nodes' (exit code, or 128+signal), 0 only if all\n"
            "exited 0; 2 for a usage error; 127 if the program cannot be run.\n"
            "Ctrl-C, SIGTERM and SIGHUP stop every node: SIGTERM, then SIGKILL after %g s.\n",
            MAX_NODES, MAX_NODES, HOSTS_PORT, DEFAULT_GRACE, KILL_DELAY);
}

static void msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dsmrun: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static _Noreturn void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dsmrun: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs("usage: dsmrun -n N [options] [--] program [args...]\n"
          "       dsmrun --hosts h1,h2,... [options] [--] program [args...]\n"
          "Try 'dsmrun --help' for more information.\n",
          stderr);
    exit(EXIT_USAGE);
}

static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dsmrun: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) die("out of memory");
    return p;
}

/* ---- growing strings, for the shell commands ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) die("out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* Appends s as one POSIX shell word. Words made only of characters no shell treats specially
 * stay bare so that --dry-run output and the remote command remain readable. */
static void buf_quoted(struct buf *b, const char *s)
{
    bool plain = *s != '\0';
    for (const char *c = s; *c && plain; c++)
        plain = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-",
                       *c) != NULL;
    if (plain) {
        buf_str(b, s);
        return;
    }
    buf_add(b, "'", 1);
    for (const char *c = s; *c; c++) {
        if (*c == '\'')
            buf_str(b, "'\\''");
        else
            buf_add(b, c, 1);
    }
    buf_add(b, "'", 1);
}

/* ---- argument parsing ---- */

static long parse_long(const char *s, bool *ok)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    *ok = errno == 0 && end != s && *end == '\0';
    return v;
}

static double parse_grace(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < 0 || v > 86400)
        usage_error("%s '%s' is not a number of seconds between 0 and 86400", what, s);
    return v;
}

/* Splits --hosts on commas; every entry must be a host name. */
static void parse_hosts(char *list)
{
    g.nodes = 0;
    char *p = list;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (*p == '\0')
            usage_error("--hosts has an empty host name (in '%s'); expected a comma-separated "
                        "list of hosts such as h1,h2,h3",
                        g.hosts_arg);
        if (strpbrk(p, " \t\n"))
            usage_error("--hosts entry '%s' contains white space; expected host names "
                        "separated by commas only",
                        p);
        if (g.nodes == MAX_NODES)
            usage_error("--hosts lists more than %d hosts; at most %d nodes are supported",
                        MAX_NODES, MAX_NODES);
        g.hosts[g.nodes++] = p;
        if (!comma) break;
        p = comma + 1;
    }
}

static void parse_args(int argc, char **argv)
{
    enum { OPT_HOSTS = 256, OPT_PORT, OPT_GRACE, OPT_DRY_RUN };
    static const struct option longopts[] = {
        {"hosts", required_argument, NULL, OPT_HOSTS},
        {"port", required_argument, NULL, OPT_PORT},
        {"grace", required_argument, NULL, OPT_GRACE},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool have_n = false;
    const char *n_arg = NULL;
    g.port = -1;
    g.grace = DEFAULT_GRACE;
    const char *env_grace = getenv("DSMRUN_GRACE");
    if (env_grace && *env_grace) g.grace = parse_grace(env_grace, "DSMRUN_GRACE");

    /* '+': options end at the program name, so the program's own options are left alone. */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+:n:h", longopts, NULL)) != -1) {
        bool ok;
        long v;
        switch (c) {
        case 'n':
            have_n = true;
            n_arg = optarg;
            break;
        case OPT_HOSTS:
            if (g.hosts_arg) usage_error("--hosts given twice; expected one comma-separated list");
            g.hosts_arg = optarg;
            break;
        case OPT_PORT:
            v = parse_long(optarg, &ok);
            if (!ok || v < 1 || v > 65535)
                usage_error("--port '%s' is not a TCP port; expected a number from 1 to 65535",
                            optarg);
            g.port = (int)v;
            break;
        case OPT_GRACE:
            g.grace = parse_grace(optarg, "--grace");
            break;
        case OPT_DRY_RUN:
            g.dry_run = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case ':':
            if (optopt == 'n') usage_error("-n needs a number of nodes (1..%d)", MAX_NODES);
            usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt && optopt < 256) usage_error("unknown option '-%c'", optopt);
            usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (have_n && g.hosts_arg)
        usage_error("-n and --hosts cannot be used together: --hosts starts one node per "
                    "listed host, -n starts N nodes on this machine");
    if (!have_n && !g.hosts_arg)
        usage_error("how many nodes? Give -n N (1..%d) for local nodes, or --hosts h1,h2,...",
                    MAX_NODES);
    if (have_n) {
        bool ok;
        long v = parse_long(n_arg, &ok);
        if (!ok || v < 1 || v > MAX_NODES)
            usage_error("-n '%s' is not a valid number of nodes; expected 1 to %d", n_arg,
                        MAX_NODES);
        g.nodes = (int)v;
    } else {
        g.hosts_mode = true;
        /* split a copy: the error messages quote the list as given */
        char *copy = strdup(g.hosts_arg);
        if (!copy) die("out of memory");
        parse_hosts(copy);
    }
    if (optind >= argc)
        usage_error("no program given; expected the program to run after the options");
    g.prog = argv + optind;
}

/* ---- job setup ---- */

/* The port only has to be free when the coordinator binds it a moment later; binding port 0
 * is the way to get one the kernel considers free now. */
static int free_local_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("cannot create a socket to find a free port: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len))
        die("cannot find a free port on 127.0.0.1: %s (give one with --port)", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static bool is_assigned_var(const char *entry)
{
    static const char *const ours[] = {"DSM_RANK=", "DSM_NODES=", "DSM_COORDINATOR=", "DSM_JOB="};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (strncmp(entry, ours[i], strlen(ours[i])) == 0) return true;
    return false;
}

/* NAME=VALUE as one shell word, quoting the parts separately so that the name stays legible. */
static void buf_assign(struct buf *b, const char *name, size_t name_len, const char *value)
{
    char *n = strndup(name, name_len);
    if (!n) die("out of memory");
    buf_str(b, " ");
    buf_quoted(b, n);
    buf_str(b, "=");
    buf_quoted(b, value);
    free(n);
}

/* "env DSM_RANK=i ... DSM_x=y ..." as shell words: our four variables, then every other DSM_*
 * variable of dsmrun's environment. The four are skipped from the environment because a later
 * assignment would override ours (dsmrun itself may run inside another job's environment). */
static void buf_env(struct buf *b, int rank)
{
    char rank_s[16], nodes_s[16];
    snprintf(rank_s, sizeof rank_s, "%d", rank);
    snprintf(nodes_s, sizeof nodes_s, "%d", g.nodes);
    buf_str(b, "env");
    buf_assign(b, "DSM_RANK", 8, rank_s);
    buf_assign(b, "DSM_NODES", 9, nodes_s);
    buf_assign(b, "DSM_COORDINATOR", 15, g.coordinator);
    buf_assign(b, "DSM_JOB", 7, g.job);
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "DSM_", 4) != 0 || !eq || is_assigned_var(*e)) continue;
        buf_assign(b, *e, (size_t)(eq - *e), eq + 1);
    }
}

static void split_ssh(void)
{
    const char *s = getenv("DSMRUN_SSH");
    if (!s || !*s) s = DEFAULT_SSH;
    char *copy = strdup(s);
    if (!copy) die("out of memory");
    size_t n = 0;
    g.ssh_words = xmalloc((strlen(copy) / 2 + 2) * sizeof(char *));
    for (char *w = strtok(copy, " "); w; w = strtok(NULL, " ")) g.ssh_words[n++] = w;
    g.ssh_words[n] = NULL;
    if (n == 0) usage_error("DSMRUN_SSH contains no command");
}

/* The nodes start in dsmrun's directory, named as the shell named it ($PWD) when that is still
 * this directory: a path reached through a symbolic link (an automounted home, say) is more
 * likely to be the same on every host than the path it resolves to here. */
static void current_dir(void)
{
    const char *pwd = getenv("PWD");
    struct stat a, b;
    if (pwd && pwd[0] == '/' && strlen(pwd) < sizeof g.cwd && stat(pwd, &a) == 0 &&
        stat(".", &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        strcpy(g.cwd, pwd);
        return;
    }
    if (!getcwd(g.cwd, sizeof g.cwd))
        die("cannot find the current directory (the nodes start in it): %s", strerror(errno));
}

static void prepare_nodes(void)
{
    size_t nprog = 0;
    while (g.prog[nprog]) nprog++;

    if (g.hosts_mode) {
        split_ssh();
        size_t nssh = 0;
        while (g.ssh_words[nssh]) nssh++;
        current_dir();
        for (int i = 0; i < g.nodes; i++) {
            struct node *nd = &g.node[i];
            nd->host = g.hosts[i];
            struct buf b = {0};
            buf_str(&b, "cd ");
            buf_quoted(&b, g.cwd);
            buf_str(&b, " && ");
            buf_env(&b, i);
            for (size_t k = 0; k < nprog; k++) {
                buf_str(&b, " ");
                buf_quoted(&b, g.prog[k]);
            }
            nd->cmdline = b.p;
            nd->argv = xmalloc((nssh + 3) * sizeof(char *));
            memcpy(nd->argv, g.ssh_words, nssh * sizeof(char *));
            nd->argv[nssh] = (char *)nd->host;
            nd->argv[nssh + 1] = nd->cmdline;
            nd->argv[nssh + 2] = NULL;
        }
    } else {
        for (int i = 0; i < g.nodes; i++) g.node[i].argv = g.prog;
    }
}

static void setup_job(void)
{
    if (g.hosts_mode) {
        if (g.port < 0) g.port = HOSTS_PORT;
        /* ssh accepts user@host; the coordinator address is the host part */
        const char *at = strrchr(g.hosts[0], '@');
        const char *host = at ? at + 1 : g.hosts[0];
        if (!*host) usage_error("--hosts: '%s' has no host name after '@'", g.hosts[0]);
        snprintf(g.coordinator, sizeof g.coordinator, "%s:%d", host, g.port);
    } else {
        if (g.port < 0) g.port = free_local_port();
        snprintf(g.coordinator, sizeof g.coordinator, "127.0.0.1:%d", g.port);
    }
    const char *job = getenv("DSM_JOB");
    if (job && *job) {
        g.job = job;
    } else {
        char host[256] = "localhost";
        if (gethostname(host, sizeof host - 1)) strcpy(host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(g.job_buf, sizeof g.job_buf, "dsmrun-%s-%ld-%lld", host, (long)getpid(),
                 (long long)time(NULL));
        g.job = g.job_buf;
    }
    prepare_nodes();
}

static void dry_run(void)
{
    for (int i = 0; i < g.nodes; i++) {
        struct buf b = {0};
        if (g.hosts_mode) {
            for (char **w = g.node[i].argv; *w; w++) {
                if (w != g.node[i].argv) buf_str(&b, " ");
                buf_quoted(&b, *w);
            }
        } else {
            buf_env(&b, i);
            for (char **w = g.prog; *w; w++) {
                buf_str(&b, " ");
                buf_quoted(&b, *w);
            }
        }
        printf("%s\n", b.p);
        free(b.p);
    }
    if (fflush(stdout) == EOF || ferror(stdout))
        die("cannot write the dry run: %s", strerror(errno));
}

/* ---- running ---- */

static _Noreturn void child(int rank, pid_t parent)
{
    setpgid(0, 0);
    /* If dsmrun is killed outright it cannot stop the job; let the kernel do it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    sigprocmask(SIG_SETMASK, &g.original, NULL);

    /* A node's process group is never the terminal's foreground group, so reading a terminal
     * would stop it (SIGTTIN) for good; several ssh clients would also race for one input. */
    if (rank != 0 || isatty(STDIN_FILENO)) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0 && fd != STDIN_FILENO) {
            dup2(fd, STDIN_FILENO);
            close(fd);
        }
    }
    if (!g.hosts_mode) {
        char v[16];
        snprintf(v, sizeof v, "%d", rank);
        setenv("DSM_RANK", v, 1);
        snprintf(v, sizeof v, "%d", g.nodes);
        setenv("DSM_NODES", v, 1);
        setenv("DSM_COORDINATOR", g.coordinator, 1);
        setenv("DSM_JOB", g.job, 1);
    }
    char **argv = g.node[rank].argv;
    execvp(argv[0], argv);
    dprintf(STDERR_FILENO, "dsmrun: cannot run '%s': %s\n", argv[0], strerror(errno));
    _exit(EXIT_NOT_FOUND);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int node_status(const struct node *nd)
{
    if (nd->abandoned) return 128 + SIGKILL;
    if (WIFSIGNALED(nd->wstatus)) return 128 + WTERMSIG(nd->wstatus);
    return WEXITSTATUS(nd->wstatus);
}

static const char *describe(int rank, char *out, size_t n)
{
    const struct node *nd = &g.node[rank];
    if (g.hosts_mode)
        snprintf(out, n, "node %d (%s, pid %ld)", rank, nd->host, (long)nd->pid);
    else
        snprintf(out, n, "node %d (pid %ld)", rank, (long)nd->pid);
    return out;
}

/* "exited with status 3" / "was killed by signal 9 (SIGKILL)" */
static const char *how(const struct node *nd, char *out, size_t n)
{
    if (nd->abandoned) {
        snprintf(out, n, "did not exit even after SIGKILL");
    } else if (WIFSIGNALED(nd->wstatus)) {
        int sig = WTERMSIG(nd->wstatus);
        const char *abbrev = sigabbrev_np(sig);
        snprintf(out, n, "was killed by signal %d (SIG%s)", sig, abbrev ? abbrev : "?");
    } else {
        snprintf(out, n, "exited with status %d", WEXITSTATUS(nd->wstatus));
    }
    return out;
}

static int count_running(void)
{
    int n = 0;
    for (int i = 0; i < g.nodes; i++) n += g.node[i].running;
    return n;
}

static void signal_running(int sig)
{
    for (int i = 0; i < g.nodes; i++) {
        struct node *nd = &g.node[i];
        if (!nd->running) continue;
        nd->signalled = true;
        kill(-nd->pid, sig);
        /* a stopped process would hold SIGTERM pending until continued */
        if (sig != SIGKILL) kill(-nd->pid, SIGCONT);
    }
}

static const char *plural(int n)
{
    return n == 1 ? "" : "s";
}

enum phase { RUNNING, GRACE, TERMINATING, KILLED };

static int run(void)
{
    enum phase phase = RUNNING;
    double deadline = 0;
    int interrupted = 0;
    bool launch_failed = false;
    pid_t self = getpid();
    char d[128], h[128];

    for (int i = 0; i < g.nodes; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            msg("cannot start node %d: fork: %s", i, strerror(errno));
            launch_failed = true;
            break;
        }
        if (pid == 0) child(i, self);
        /* also here: kill(-pid) must work even before the child has run */
        setpgid(pid, pid);
        g.node[i].pid = pid;
        g.node[i].running = true;
    }
    if (launch_failed && count_running() > 0) {
        msg("stopping the %d node%s already started", count_running(), plural(count_running()));
        signal_running(SIGTERM);
        phase = TERMINATING;
        deadline = now() + KILL_DELAY;
    }

    while (count_running() > 0) {
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            int rank = -1;
            for (int i = 0; i < g.nodes; i++)
                if (g.node[i].running && g.node[i].pid == pid) rank = i;
            if (rank < 0) continue;
            struct node *nd = &g.node[rank];
            nd->running = false;
            nd->wstatus = st;
            if (node_status(nd) == 0 || phase != RUNNING || count_running() == 0) continue;
            msg("%s %s; giving the other nodes %g s to exit", describe(rank, d, sizeof d),
                how(nd, h, sizeof h), g.grace);
            phase = GRACE;
            deadline = now() + g.grace;
        }
        if (pid < 0 && errno != ECHILD && errno != EINTR) die("waitpid: %s", strerror(errno));
        int left = count_running();
        if (left == 0) break;

        double t = now();
        if (phase != RUNNING && t >= deadline) {
            if (phase == GRACE) {
                msg("%d node%s still running %g s after the failure; sending SIGTERM", left,
                    plural(left), g.grace);
                signal_running(SIGTERM);
                phase = TERMINATING;
                deadline = t + KILL_DELAY;
            } else if (phase == TERMINATING) {
                msg("%d node%s still running %g s after SIGTERM; sending SIGKILL", left,
                    plural(left), KILL_DELAY);
                signal_running(SIGKILL);
                phase = KILLED;
                deadline = t + GIVE_UP_DELAY;
            } else {
                msg("giving up on %d node%s that did not exit after SIGKILL", left, plural(left));
                for (int i = 0; i < g.nodes; i++) {
                    if (!g.node[i].running) continue;
                    g.node[i].running = false;
                    g.node[i].abandoned = true;
                }
                break;
            }
            continue;
        }

        siginfo_t si;
        int sig;
        if (phase == RUNNING) {
            sig = sigwaitinfo(&g.waited, &si);
        } else {
            double rem = deadline - t;
            struct timespec ts = {.tv_sec = (time_t)rem,
                                  .tv_nsec = (long)((rem - (double)(time_t)rem) * 1e9)};
            sig = sigtimedwait(&g.waited, &si, &ts);
        }
        if (sig < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            die("sigtimedwait: %s", strerror(errno));
        }
        if (sig == SIGCHLD) continue;

        if (phase == RUNNING || phase == GRACE) {
            interrupted = sig;
            msg("interrupted, stopping %d node%s", left, plural(left));
            signal_running(SIGTERM);
            phase = TERMINATING;
            deadline = now() + KILL_DELAY;
        } else if (phase == TERMINATING) {
            /* asked (again) while SIGTERM is pending: nobody wants to wait for it to work */
            msg("interrupted%s, killing %d node%s", interrupted ? " again" : "", left,
                plural(left));
            interrupted = sig;
            signal_running(SIGKILL);
            phase = KILLED;
            deadline = now() + GIVE_UP_DELAY;
        }
    }

    int worst = 0;
    for (int i = 0; i < g.nodes; i++) {
        if (!g.node[i].pid) continue;
        int s = node_status(&g.node[i]);
        if (s > worst) worst = s;
    }
    /* An interrupted job must not look successful even if every node exited 0 on SIGTERM. */
    if (worst == 0 && interrupted) worst = 128 + interrupted;
    if (worst == 0 && launch_failed) worst = 1;
    if (worst == 0) return 0;

    for (int i = 0; i < g.nodes; i++) {
        const struct node *nd = &g.node[i];
        if (!nd->pid) {
            msg("node %d was not started", i);
            continue;
        }
        int s = node_status(nd);
        if (s == 0) continue;
        const char *note = "";
        if (nd->signalled && !nd->abandoned)
            note = WIFSIGNALED(nd->wstatus) ? ", sent by dsmrun" : " after dsmrun stopped it";
        else if (g.hosts_mode && s == 255)
            note = " (ssh's own failure status: is the host reachable, with ssh keys set up?)";
        if (g.hosts_mode)
            msg("node %d (%s) %s%s", i, nd->host, how(nd, h, sizeof h), note);
        else
            msg("node %d %s%s", i, how(nd, h, sizeof h), note);
    }
    return worst;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    setup_job();
    if (g.dry_run) {
        dry_run();
        return 0;
    }

    /* An inherited SIG_IGN for SIGCHLD would make the kernel reap the nodes behind our back. */
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&g.waited);
    sigaddset(&g.waited, SIGCHLD);
    /* A signal that was ignored when dsmrun started (nohup, a shell's background job) stays
     * ignored: that is what whoever started dsmrun asked for, and the nodes inherit it too. */
    static const int stops[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        struct sigaction old;
        if (sigaction(stops[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaddset(&g.waited, stops[i]);
    }
    if (sigprocmask(SIG_BLOCK, &g.waited, &g.original)) die("sigprocmask: %s", strerror(errno));
    return run();
}
