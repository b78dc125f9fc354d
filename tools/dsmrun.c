/*
 * dsmrun.c - the launcher: starts the N processes of one ufdsm job, locally or on other hosts
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
 * Remote nodes (--hosts, --hostfile) are not dsmrun's children: its children are ssh clients,
 * and without a terminal nothing on the remote side notices that a client went away. So every
 * remote node runs under a small sh wrapper (REMOTE_WRAPPER below) that keeps reading the ssh
 * channel's input, a pipe whose other end only dsmrun holds, and stops the node (its whole
 * process group: SIGTERM, then SIGKILL) when that input ends - which happens however dsmrun
 * or its ssh client ends, even by SIGKILL. Why not `ssh -tt`: a remote terminal would also
 * hang the node up, but it merges the node's stderr into its stdout, rewrites line ends,
 * echoes input and needs a terminal on the remote side; the wrapper needs only sh. The price
 * is that remote nodes get no standard input. The wrapper also says on stderr when the node
 * died by a signal (a marker line that dsmrun reads and replaces by its own report), because
 * ssh turns a remote death by signal into a plain exit status.
 *
 * Output: with --tag-output, and always for remote nodes (for that marker), dsmrun reads each
 * node's stdout and stderr through pipes and writes them out whole lines at a time, so lines of
 * different nodes never interleave mid-line.
 *
 * Every signal dsmrun cares about, SIGCHLD included, stays blocked and is read from a
 * signalfd, polled together with the output pipes: a SIGCHLD that arrives while dsmrun is busy
 * remains pending, children are reaped with waitpid(WNOHANG) until none is left, so no exit can
 * be lost between a check and a wait, and every wait after a failure or an interrupt has a
 * deadline.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sigabbrev_np, pipe2, and the CMake build defines it anyway */
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../dsm/env_vars.h" /* the DSM_* variables and their defaults, for --help */

#ifndef UFDSM_VERSION
#error "UFDSM_VERSION must be defined (CMake passes the project() version)"
#endif

#define MAX_NODES      64
#define DEFAULT_GRACE  15.0
#define KILL_DELAY     3.0 /* SIGTERM -> SIGKILL */
#define GIVE_UP_DELAY  5.0 /* SIGKILL -> stop waiting: only a process stuck in the kernel */
#define DRAIN_DELAY    2.0 /* all nodes gone -> stop reading output a descendant keeps open */
#define DEFAULT_SSH    "ssh -o BatchMode=yes"
#define EXIT_USAGE     2
#define EXIT_NOT_FOUND 127
#define LINE_MAX_BUF   65536 /* a longer line is written in pieces */

/* The marker the remote wrapper prints on stderr before exiting 128+N for a node killed by
 * signal N. */
#define SIGNAL_MARKER "dsmrun-wrapper: node killed by signal "

/*
 * The remote side of a node: `sh -c REMOTE_WRAPPER dsmrun-node PROGRAM ARGS...`, one line so
 * that any login shell passes it on. It starts the node in the background (its input
 * /dev/null, fd 3 closed), and a watcher that reads the ssh channel (saved as fd 3: an
 * asynchronous list would otherwise get /dev/null as input) until end of file, then sends
 * SIGTERM to the whole process group (kill 0: sshd makes the command a session of its own; the
 * watcher ignores SIGTERM itself), waits up to 3 s for the node and sends SIGKILL to what is
 * left. When the node exits first, the watcher is killed and the node's status passed on, with
 * the marker line when it died by a signal (sh reports 128+N; ksh 256+N).
 * Before all that it reads one line: the job's secret (DSM_SECRET), which must not be on the
 * command line where every user of either host could see it with ps (empty: none to set).
 */
#define REMOTE_WRAPPER                                                                             \
    "IFS= read -r s; if [ -n \"$s\" ]; then DSM_SECRET=$s; export DSM_SECRET; fi; s=; "            \
    "exec 3<&0; \"$@\" </dev/null 3<&- & p=$!; "                                                   \
    "(trap \"\" TERM; while read -r _; do :; done; kill -TERM 0; i=0; "                            \
    "while kill -0 $p 2>/dev/null && [ $i -lt 15 ]; do sleep 0.2; i=$((i+1)); done; "              \
    "kill -KILL 0) <&3 >/dev/null 2>&1 & w=$!; exec 3<&-; "                                        \
    "wait $p; s=$?; kill -KILL $w 2>/dev/null; "                                                   \
    "if [ $s -gt 256 ]; then s=$((s-128)); fi; "                                                   \
    "if [ $s -gt 128 ]; then echo \"" SIGNAL_MARKER "$((s-128))\" >&2; fi; exit $s"

extern char **environ;

struct stream {
    int fd; /* read end, -1 when closed or not used */
    int to; /* STDOUT_FILENO or STDERR_FILENO */
    size_t len;
    char buf[LINE_MAX_BUF];
};

struct node {
    pid_t pid;      /* 0: never started */
    bool running;   /* started and not yet reaped */
    bool signalled; /* dsmrun sent it SIGTERM/SIGKILL while it ran */
    bool abandoned; /* still there after SIGKILL + GIVE_UP_DELAY */
    int wstatus;
    int remote_sig;   /* --hosts: the remote node died by this signal (the wrapper said) */
    const char *host; /* --hosts only */
    char **argv;      /* what gets exec'd */
    char *cmdline;    /* --hosts: the remote shell command */
    int stdin_w;      /* --hosts: the write end of the ssh channel's input, -1 once closed */
    struct stream out, err;
};

/* dsmrun's own variables: checked for misspellings, listed by --help. */
static const struct dsm_env_var dsmrun_vars[] = {
    {"DSMRUN_SSH", DEFAULT_SSH, "the ssh command for --hosts (split on spaces; not -n)"},
    {"DSMRUN_GRACE", DSM_ENV_STR(DEFAULT_GRACE), "the default of --grace"},
    {"DSMRUN_VERSION", "set by dsmrun", "set for the nodes: they were started by dsmrun"},
};
#define DSMRUN_VAR_COUNT (int)(sizeof dsmrun_vars / sizeof dsmrun_vars[0])

/* Everything lives here rather than on main's stack so that it stays reachable until exit
 * (the sanitizer build runs a leak checker). */
static struct {
    int nodes;
    int port;
    double grace;
    bool dry_run;
    bool hosts_mode;
    bool tag_output;
    bool pthreads;    /* --pthreads: preload libufdsm_pthreads.so, randomisation off */
    bool relay;       /* node output goes through dsmrun (pipes) */
    bool stdout_gone; /* writing our stdout failed (EPIPE): discard the rest */
    bool stderr_gone;
    bool sigpipe_dfl; /* SIGPIPE had its default action when dsmrun started */
    char *hosts_arg;
    const char *hostfile;
    const char *hosts[MAX_NODES];
    char **prog; /* program and its arguments, NULL-terminated */
    char coordinator[300];
    const char *job;
    char job_buf[320];
    const char *secret; /* DSM_SECRET for the nodes (remote ones get it over ssh's input) */
    char secret_buf[65];
    char cwd[PATH_MAX];
    char **ssh_words;
    char *xvars[256]; /* -x: NAME=VALUE */
    int nx;
    struct node node[MAX_NODES];
    sigset_t waited;   /* the signals read from the signalfd */
    sigset_t original; /* the mask the nodes get back */
    int sigfd;
} g;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: dsmrun -n N [options] [--] program [args...]\n"
            "       dsmrun --hosts h1,h2,... [options] [--] program [args...]\n"
            "       dsmrun --hostfile FILE [-n N] [options] [--] program [args...]\n"
            "\n"
            "Starts the nodes of one ufdsm job and waits for all of them.\n"
            "\n"
            "  -n N               run N nodes (1..%d) on this machine; with --hostfile, use\n"
            "                     the first N slots of the file\n"
            "  --hosts h1,h2,...  run node i on the i-th host (1..%d hosts, repeats allowed),\n"
            "                     through ssh; the first host runs the coordinator. The program\n"
            "                     must exist at the same path on every host, the current\n"
            "                     directory must exist there too, and ssh must log in without a\n"
            "                     password (keys set up: BatchMode is on). DSMRUN_SSH replaces\n"
            "                     '" DEFAULT_SSH "' (split on spaces).\n"
            "  --hostfile FILE    like --hosts, with the hosts read from FILE: one host per\n"
            "                     line, optionally 'slots=N' (N nodes on that host, filled in\n"
            "                     order), '#' starts a comment\n"
            "  --port P           coordinator port (default: a free local port with -n; with\n"
            "                     --hosts a port from %d to %d chosen per run, so that\n"
            "                     concurrent jobs on the same hosts do not collide)\n"
            "  -x VAR[=VALUE]     set VAR for every node, local or remote (without a value:\n"
            "                     dsmrun's own value); repeatable. Remote nodes get only the\n"
            "                     DSM_* variables and these, e.g. -x LD_LIBRARY_PATH\n"
            "  --tag-output       prefix every line of every node's output with [rank]\n"
            "  --pthreads         run an unmodified pthreads program: node 0 runs main, the\n"
            "                     threads it creates are spread over the nodes, its globals,\n"
            "                     heap and stacks are shared (LD_PRELOAD of\n"
            "                     libufdsm_pthreads.so, address randomisation off; see\n"
            "                     docs/pthreads.md)\n"
            "  --grace S          once a node has failed, seconds the others get to exit by\n"
            "                     themselves before dsmrun stops them (default %g, or\n"
            "                     DSMRUN_GRACE)\n"
            "  --dry-run          print each node's environment and command; run nothing\n"
            "  --version          print dsmrun's version\n"
            "  -h, --help         show this help\n"
            "\n"
            "Each node gets DSM_RANK (0..N-1), DSM_NODES, DSM_COORDINATOR (host:port) and\n"
            "DSM_JOB (kept if already set); every other DSM_* variable is passed on, over ssh\n"
            "too. Standard input goes to node 0 unless it is a terminal, and the others read\n"
            "/dev/null; remote nodes read /dev/null (their ssh input tells them when dsmrun\n"
            "stops, so that no remote node outlives dsmrun).\n"
            "\n"
            "Exit status: the worst of the nodes' (exit code, or 128+signal), 0 only if all\n"
            "exited 0; 2 for a usage error; 127 if the program cannot be run.\n"
            "Ctrl-C, SIGTERM and SIGHUP stop every node: SIGTERM, then SIGKILL after %g s.\n"
            "A remote node whose ssh fails (status 255) stops the job at once.\n"
            "\n"
            "Environment variables of the nodes (ufdsm reads these; a misspelt DSM_* name draws\n"
            "a warning):\n",
            MAX_NODES, MAX_NODES, DSM_DEFAULT_PORT, DSM_DEFAULT_PORT + DSM_PORT_SPAN - 1,
            DEFAULT_GRACE, KILL_DELAY);
    for (size_t i = 0; i < DSM_ENV_VAR_COUNT; i++)
        fprintf(out, "  %-20s %s (default: %s)\n", dsm_env_vars[i].name, dsm_env_vars[i].meaning,
                dsm_env_vars[i].def);
    fprintf(out, "Environment variables of dsmrun:\n");
    for (int i = 0; i < DSMRUN_VAR_COUNT; i++)
        fprintf(out, "  %-20s %s (default: %s)\n", dsmrun_vars[i].name, dsmrun_vars[i].meaning,
                dsmrun_vars[i].def);
    fprintf(out, "See docs/launching.md for how nodes find their rank under srun and mpirun.\n");
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

static void add_host(const char *h, const char *where)
{
    if (g.nodes == MAX_NODES)
        usage_error("%s lists more than %d nodes; at most %d nodes are supported", where, MAX_NODES,
                    MAX_NODES);
    g.hosts[g.nodes++] = h;
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
        add_host(p, "--hosts");
        if (!comma) break;
        p = comma + 1;
    }
}

/* --hostfile: "host [slots=N]" per line, '#' comments, blank lines ignored. Hosts with slots
 * are filled in order (host a slots=2, host b: nodes 0 and 1 on a, node 2 on b). */
static void parse_hostfile(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        usage_error("--hostfile '%s' cannot be read: %s; expected a file with one host per line",
                    path, strerror(errno));
    char line[1024];
    int lineno = 0;
    g.nodes = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *save = NULL, *host = strtok_r(line, " \t\r\n", &save);
        if (!host) continue;
        long slots = 1;
        for (char *w; (w = strtok_r(NULL, " \t\r\n", &save));) {
            bool ok = false;
            if (!strncmp(w, "slots=", 6)) slots = parse_long(w + 6, &ok);
            if (!ok || slots < 1 || slots > MAX_NODES)
                usage_error("%s:%d: '%s' is not understood; expected 'host' or 'host slots=N' "
                            "with N from 1 to %d",
                            path, lineno, w, MAX_NODES);
        }
        char *h = strdup(host);
        if (!h) die("out of memory");
        for (long i = 0; i < slots; i++) add_host(h, "--hostfile");
    }
    bool err = ferror(f);
    fclose(f);
    if (err) usage_error("--hostfile '%s': read error", path);
    if (g.nodes == 0)
        usage_error("--hostfile '%s' names no host; expected one host per line", path);
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || isdigit((unsigned char)s[0])) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return false;
    return true;
}

static void add_xvar(const char *arg);

/* The directory of a file we are looking for, if `dir/name` exists. */
static bool exists_in(const char *dir, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", dir, name);
    return access(out, R_OK) == 0;
}

/* --pthreads: every node preloads libufdsm_pthreads.so (which loads libufdsm.so.0 from its
 * own directory: pthreads/start.c says why it is not linked), binds every symbol at start (the
 * executable's GOT is in the shared data segment, so lazy binding would write it from every node),
 * and runs with address-space randomisation off (set in child(); remote nodes re-execute themselves
 * with it). The libraries are looked for next to dsmrun (the build tree), then in the installed
 * libdir. */
static void add_pthreads_vars(void)
{
    char self[PATH_MAX], dir[PATH_MAX], pt[PATH_MAX + 32], lib[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) die("--pthreads: cannot find dsmrun's own path: %s", strerror(errno));
    self[n] = 0;
    snprintf(dir, sizeof dir, "%s", self);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    const char *dirs[] = {dir, UFDSM_LIBDIR};
    bool found = false;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && !found; i++)
        found = exists_in(dirs[i], "libufdsm_pthreads.so", pt, sizeof pt) &&
                exists_in(dirs[i], "libufdsm.so.0", lib, sizeof lib);
    if (!found)
        die("--pthreads: libufdsm_pthreads.so and libufdsm.so.0 are neither next to dsmrun "
            "(%s) nor in %s; build the ufdsm_pthreads target or install ufdsm",
            dir, UFDSM_LIBDIR);
    const char *old = getenv("LD_PRELOAD");
    char *kv;
    if (asprintf(&kv, "LD_PRELOAD=%s%s%s", pt, old && *old ? ":" : "", old ? old : "") < 0)
        die("out of memory");
    add_xvar(kv);
    free(kv);
    add_xvar("LD_BIND_NOW=1");
    /* The preload makes a node of the program only (pthreads/start.c, the_program): a wrapper
     * in between (dsmrun --pthreads timeout 60 ./prog) must say which with -x DSM_PTHREADS. */
    if (!getenv("DSM_PTHREADS")) {
        if (asprintf(&kv, "DSM_PTHREADS=%s", basename(g.prog[0])) < 0) die("out of memory");
        add_xvar(kv);
        free(kv);
    }
}

/* -x VAR=VALUE, or -x VAR for dsmrun's own value. */
static void add_xvar(const char *arg)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    if (!valid_name(arg, n))
        usage_error("-x '%s': expected VAR or VAR=VALUE with a variable name of letters, digits "
                    "and '_'",
                    arg);
    if (g.nx == (int)(sizeof g.xvars / sizeof g.xvars[0])) usage_error("too many -x options");
    char *kv;
    if (eq) {
        kv = strdup(arg);
    } else {
        const char *v = getenv(arg);
        if (!v)
            usage_error("-x %s: %s is not set in dsmrun's environment; give -x %s=VALUE", arg, arg,
                        arg);
        if (asprintf(&kv, "%s=%s", arg, v) < 0) kv = NULL;
    }
    if (!kv) die("out of memory");
    g.xvars[g.nx++] = kv;
}

static void parse_args(int argc, char **argv)
{
    enum {
        OPT_HOSTS = 256,
        OPT_HOSTFILE,
        OPT_PORT,
        OPT_GRACE,
        OPT_DRY_RUN,
        OPT_TAG,
        OPT_VERSION,
        OPT_PTHREADS
    };
    static const struct option longopts[] = {
        {"hosts", required_argument, NULL, OPT_HOSTS},
        {"hostfile", required_argument, NULL, OPT_HOSTFILE},
        {"port", required_argument, NULL, OPT_PORT},
        {"grace", required_argument, NULL, OPT_GRACE},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"tag-output", no_argument, NULL, OPT_TAG},
        {"pthreads", no_argument, NULL, OPT_PTHREADS},
        {"version", no_argument, NULL, OPT_VERSION},
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
    while ((c = getopt_long(argc, argv, "+:n:x:h", longopts, NULL)) != -1) {
        bool ok;
        long v;
        switch (c) {
        case 'n':
            have_n = true;
            n_arg = optarg;
            break;
        case 'x':
            add_xvar(optarg);
            break;
        case OPT_HOSTS:
            if (g.hosts_arg) usage_error("--hosts given twice; expected one comma-separated list");
            g.hosts_arg = optarg;
            break;
        case OPT_HOSTFILE:
            if (g.hostfile) usage_error("--hostfile given twice; expected one file");
            g.hostfile = optarg;
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
        case OPT_TAG:
            g.tag_output = true;
            break;
        case OPT_PTHREADS:
            g.pthreads = true;
            break;
        case OPT_VERSION:
            printf("dsmrun (ufdsm) %s\n", UFDSM_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        case ':':
            if (optopt == 'n') usage_error("-n needs a number of nodes (1..%d)", MAX_NODES);
            if (optopt == 'x') usage_error("-x needs VAR or VAR=VALUE");
            usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt && optopt < 256) usage_error("unknown option '-%c'", optopt);
            usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (have_n && g.hosts_arg)
        usage_error("-n and --hosts cannot be used together: --hosts starts one node per "
                    "listed host, -n starts N nodes on this machine (or uses N slots of a "
                    "--hostfile)");
    if (g.hosts_arg && g.hostfile)
        usage_error("--hosts and --hostfile cannot be used together; give the hosts one way");
    if (!have_n && !g.hosts_arg && !g.hostfile)
        usage_error("how many nodes? Give -n N (1..%d) for local nodes, or --hosts h1,h2,...",
                    MAX_NODES);
    long n = 0;
    if (have_n) {
        bool ok;
        n = parse_long(n_arg, &ok);
        if (!ok || n < 1 || n > MAX_NODES)
            usage_error("-n '%s' is not a valid number of nodes; expected 1 to %d", n_arg,
                        MAX_NODES);
        g.nodes = (int)n;
    }
    if (g.hosts_arg) {
        g.hosts_mode = true;
        /* split a copy: the error messages quote the list as given */
        char *copy = strdup(g.hosts_arg);
        if (!copy) die("out of memory");
        parse_hosts(copy);
    } else if (g.hostfile) {
        g.hosts_mode = true;
        parse_hostfile(g.hostfile);
        if (have_n) {
            if (n > g.nodes)
                usage_error("-n %ld but --hostfile '%s' has only %d slots; add hosts or "
                            "slots=N, or ask for fewer nodes",
                            n, g.hostfile, g.nodes);
            g.nodes = (int)n;
        }
    }
    if (optind >= argc)
        usage_error("no program given; expected the program to run after the options");
    g.prog = argv + optind;
    g.relay = g.tag_output || g.hosts_mode;
    if (g.pthreads) add_pthreads_vars();
}

/* DSMRUN_* variables dsmrun does not know are misspellings of those it does. (The nodes check
 * the DSM_* ones: the library reads them.) */
static void check_own_vars(void)
{
    const char *names[DSMRUN_VAR_COUNT];
    for (int i = 0; i < DSMRUN_VAR_COUNT; i++) names[i] = dsmrun_vars[i].name;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "DSMRUN_", 7)) continue;
        size_t len = strcspn(*e, "=");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), *e);
        bool known = false;
        for (int i = 0; i < DSMRUN_VAR_COUNT; i++) known |= !strcmp(name, names[i]);
        if (known) continue;
        const char *near = dsm_env_closest(name, names, DSMRUN_VAR_COUNT);
        if (near)
            msg("warning: %s is not a dsmrun variable (did you mean %s?); it is ignored", name,
                near);
        else
            msg("warning: %s is not a dsmrun variable; it is ignored (see dsmrun --help)", name);
    }
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
    static const char *const ours[] = {
        "DSM_RANK=", "DSM_NODES=", "DSM_COORDINATOR=", "DSM_JOB=", "DSMRUN_VERSION=",
        "DSM_SECRET=" /* not a command-line word: sent over ssh's input (REMOTE_WRAPPER) */};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (strncmp(entry, ours[i], strlen(ours[i])) == 0) return true;
    return false;
}

/*
 * The one place where a node's environment is decided: calls add(name, value) for every
 * variable the node must get on top of what it inherits. Local nodes inherit dsmrun's whole
 * environment, so only our own variables and -x are added; remote nodes start from what ssh
 * gives, so every DSM_* variable of dsmrun is passed too. -x comes last and wins.
 * The secret is never added here (it would end up on the remote command line, where ps shows
 * it): local nodes inherit it, remote ones read it from ssh's input (start_node).
 */
static void node_env(int rank, bool remote, void (*add)(void *, const char *, size_t, const char *),
                     void *arg)
{
    char rank_s[16], nodes_s[16];
    snprintf(rank_s, sizeof rank_s, "%d", rank);
    snprintf(nodes_s, sizeof nodes_s, "%d", g.nodes);
    add(arg, "DSM_RANK", 8, rank_s);
    add(arg, "DSM_NODES", 9, nodes_s);
    add(arg, "DSM_COORDINATOR", 15, g.coordinator);
    add(arg, "DSM_JOB", 7, g.job);
    add(arg, "DSMRUN_VERSION", 14, UFDSM_VERSION);
    if (remote) {
        for (char **e = environ; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (strncmp(*e, "DSM_", 4) != 0 || !eq || is_assigned_var(*e)) continue;
            bool overridden = false;
            for (int i = 0; i < g.nx; i++)
                overridden |= !strncmp(g.xvars[i], *e, (size_t)(eq - *e) + 1);
            if (!overridden) add(arg, *e, (size_t)(eq - *e), eq + 1);
        }
    }
    for (int i = 0; i < g.nx; i++) {
        const char *eq = strchr(g.xvars[i], '=');
        if (!strncmp(g.xvars[i], "DSM_SECRET=", 11)) continue;
        add(arg, g.xvars[i], (size_t)(eq - g.xvars[i]), eq + 1);
    }
}

/* NAME=VALUE as one shell word, quoting the parts separately so that the name stays legible. */
static void add_to_buf(void *arg, const char *name, size_t name_len, const char *value)
{
    struct buf *b = arg;
    char *n = strndup(name, name_len);
    if (!n) die("out of memory");
    buf_str(b, " ");
    buf_quoted(b, n);
    buf_str(b, "=");
    buf_quoted(b, value);
    free(n);
}

static void add_to_env(void *arg, const char *name, size_t name_len, const char *value)
{
    (void)arg;
    char n[256];
    snprintf(n, sizeof n, "%.*s", (int)name_len, name);
    setenv(n, value, 1);
}

/* "env DSM_RANK=i ... " as shell words, with every DSM_* variable (the command must work
 * where dsmrun's environment is not: on another host, or as a --dry-run line). */
static void buf_env(struct buf *b, int rank)
{
    buf_str(b, "env");
    node_env(rank, true, add_to_buf, b);
}

static void split_ssh(void)
{
    const char *s = getenv("DSMRUN_SSH");
    if (!s || !*s) s = DEFAULT_SSH;
    char *copy = strdup(s);
    if (!copy) die("out of memory");
    size_t n = 0;
    g.ssh_words = xmalloc((strlen(copy) / 2 + 2) * sizeof(char *));
    for (char *w = strtok(copy, " "); w; w = strtok(NULL, " ")) {
        /* ssh -n would end the channel's input at once, which the remote wrapper takes
         * as dsmrun having stopped */
        if (!strcmp(w, "-n"))
            usage_error("DSMRUN_SSH contains -n: the remote nodes need ssh's standard input "
                        "(its end tells them that dsmrun stopped); remove -n");
        g.ssh_words[n++] = w;
    }
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

    for (int i = 0; i < g.nodes; i++) {
        g.node[i].stdin_w = -1;
        g.node[i].out.fd = g.node[i].err.fd = -1;
        g.node[i].out.to = STDOUT_FILENO;
        g.node[i].err.to = STDERR_FILENO;
    }
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
            buf_str(&b, " && exec ");
            buf_env(&b, i);
            buf_str(&b, " sh -c ");
            buf_quoted(&b, REMOTE_WRAPPER);
            buf_str(&b, " dsmrun-node");
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
        /* Nothing here can tell whether a port is free on another host. The pid differs
         * between dsmruns running at the same time on this host, so two jobs started
         * together get different ports (unless their pids differ by a multiple of the span). */
        if (g.port < 0) g.port = DSM_DEFAULT_PORT + (int)(getpid() % DSM_PORT_SPAN);
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
    /* A secret of the user's (DSM_SECRET, -x DSM_SECRET, DSM_SECRET_FILE) is kept; else
     * every job gets its own, so nobody else can join it (docs/security.md). */
    g.secret = getenv("DSM_SECRET");
    for (int i = 0; i < g.nx; i++)
        if (!strncmp(g.xvars[i], "DSM_SECRET=", 11)) g.secret = g.xvars[i] + 11;
    if ((!g.secret || !*g.secret) && !getenv("DSM_SECRET_FILE")) {
        unsigned char r[32];
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, r, sizeof r) != (ssize_t)sizeof r)
            die("cannot read /dev/urandom for the job's secret: %s", strerror(errno));
        close(fd);
        for (size_t i = 0; i < sizeof r; i++) snprintf(g.secret_buf + 2 * i, 3, "%02x", r[i]);
        g.secret = g.secret_buf;
    }
    if (g.secret && *g.secret) setenv("DSM_SECRET", g.secret, 1); /* local nodes inherit it */
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

static void move_fd(int from, int to)
{
    if (from == to) return;
    dup2(from, to);
    close(from);
}

/* Runs in the child: fds are the child's ends of its pipes (-1: none). */
static _Noreturn void child(int rank, pid_t parent, int in_r, int out_w, int err_w)
{
    setpgid(0, 0);
    /* If dsmrun is killed outright it cannot stop the job; let the kernel do it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    sigprocmask(SIG_SETMASK, &g.original, NULL);
    if (g.sigpipe_dfl) signal(SIGPIPE, SIG_DFL);

    if (out_w >= 0) move_fd(out_w, STDOUT_FILENO);
    if (err_w >= 0) move_fd(err_w, STDERR_FILENO);
    if (in_r >= 0) {
        move_fd(in_r, STDIN_FILENO);
    } else if (rank != 0 || isatty(STDIN_FILENO)) {
        /* A node's process group is never the terminal's foreground group, so reading a
         * terminal would stop it (SIGTTIN) for good. */
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) move_fd(fd, STDIN_FILENO);
    }
    if (!g.hosts_mode) node_env(rank, false, add_to_env, NULL);
    /* --pthreads: the same addresses on every node (docs/pthreads.md). */
    if (g.pthreads) personality(ADDR_NO_RANDOMIZE);
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

static const char *signame(int sig)
{
    const char *abbrev = sigabbrev_np(sig);
    return abbrev ? abbrev : "?";
}

/* "exited with status 3" / "was killed by signal 9 (SIGKILL)" */
static const char *how(const struct node *nd, char *out, size_t n)
{
    if (nd->abandoned) {
        snprintf(out, n, "did not exit even after SIGKILL");
    } else if (nd->remote_sig) {
        snprintf(out, n, "was killed by signal %d (SIG%s) on %s", nd->remote_sig,
                 signame(nd->remote_sig), nd->host);
    } else if (WIFSIGNALED(nd->wstatus)) {
        int sig = WTERMSIG(nd->wstatus);
        snprintf(out, n, "was killed by signal %d (SIG%s)", sig, signame(sig));
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

static void close_stdin(struct node *nd)
{
    if (nd->stdin_w >= 0) close(nd->stdin_w);
    nd->stdin_w = -1;
}

static void signal_running(int sig)
{
    for (int i = 0; i < g.nodes; i++) {
        struct node *nd = &g.node[i];
        if (!nd->running) continue;
        nd->signalled = true;
        /* a remote node stops when its ssh channel's input ends (the wrapper), even if
         * the signal only reaches the ssh client */
        close_stdin(nd);
        kill(-nd->pid, sig);
        /* a stopped process would hold SIGTERM pending until continued */
        if (sig != SIGKILL) kill(-nd->pid, SIGCONT);
    }
}

/* A local node stopped by a signal (state T in /proc/PID/stat): it cannot exit by itself, so
 * waiting out the grace period for it only delays the job's end. */
static bool is_stopped(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

static const char *plural(int n)
{
    return n == 1 ? "" : "s";
}

/* ---- output relay ---- */

static void write_out(int to, const char *p, size_t n)
{
    bool *gone = to == STDOUT_FILENO ? &g.stdout_gone : &g.stderr_gone;
    while (n > 0 && !*gone) {
        ssize_t w = write(to, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            *gone = true; /* e.g. `dsmrun ... | head`: the reader left */
            break;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* One line (with its newline, if any) of node `rank`'s stream. */
static void emit_line(int rank, struct stream *st, const char *line, size_t n)
{
    struct node *nd = &g.node[rank];
    if (g.hosts_mode && st->to == STDERR_FILENO &&
        !strncmp(line, SIGNAL_MARKER, strlen(SIGNAL_MARKER))) {
        int sig = atoi(line + strlen(SIGNAL_MARKER));
        if (sig > 0 && sig < 65) {
            nd->remote_sig = sig;
            return;
        }
    }
    if (g.tag_output) {
        /* One write for tag and line, so that lines from different nodes cannot mix; a last
         * line without a newline (or a piece of an overlong one) gets one, or the next node's
         * tag would land in the middle of it. */
        bool nl = n > 0 && line[n - 1] == '\n';
        char tag[16];
        int t = snprintf(tag, sizeof tag, "[%d] ", rank);
        char *both = malloc((size_t)t + n + 1);
        if (!both) die("out of memory");
        memcpy(both, tag, (size_t)t);
        memcpy(both + t, line, n);
        if (!nl) both[(size_t)t + n] = '\n';
        write_out(st->to, both, (size_t)t + n + !nl);
        free(both);
        return;
    }
    write_out(st->to, line, n);
}

/* Reads what is there; writes the complete lines. At EOF (or error) writes the rest too. */
static void pump(int rank, struct stream *st)
{
    ssize_t r = read(st->fd, st->buf + st->len, sizeof st->buf - st->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (r > 0) st->len += (size_t)r;
    size_t start = 0;
    for (size_t i = start; i < st->len; i++) {
        if (st->buf[i] != '\n') continue;
        emit_line(rank, st, st->buf + start, i + 1 - start);
        start = i + 1;
    }
    if (start > 0) {
        memmove(st->buf, st->buf + start, st->len - start);
        st->len -= start;
    }
    if (r <= 0 || st->len == sizeof st->buf) { /* EOF, or a line longer than the buffer */
        if (st->len) emit_line(rank, st, st->buf, st->len);
        st->len = 0;
    }
    if (r <= 0) {
        close(st->fd);
        st->fd = -1;
    }
}

static int open_streams(void)
{
    int n = 0;
    for (int i = 0; i < g.nodes; i++) n += (g.node[i].out.fd >= 0) + (g.node[i].err.fd >= 0);
    return n;
}

enum phase { RUNNING, GRACE, TERMINATING, KILLED, DRAINING };

static pid_t start_node(int i, pid_t self)
{
    struct node *nd = &g.node[i];
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if ((g.hosts_mode && pipe2(in, O_CLOEXEC)) ||
        (g.relay && (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)))) {
        msg("cannot start node %d: pipe: %s", i, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        msg("cannot start node %d: fork: %s", i, strerror(errno));
        return -1;
    }
    if (pid == 0) child(i, self, in[0], out[1], err[1]);
    /* also here: kill(-pid) must work even before the child has run */
    setpgid(pid, pid);
    if (in[0] >= 0) close(in[0]);
    if (out[1] >= 0) close(out[1]);
    if (err[1] >= 0) close(err[1]);
    nd->stdin_w = in[1];
    if (nd->stdin_w >= 0) {
        /* The wrapper's first line: the secret, or an empty line (DSM_SECRET_FILE). A pipe
         * takes these 66 bytes at once. */
        char line[1100];
        int n = snprintf(line, sizeof line, "%s\n", g.secret ? g.secret : "");
        if (n > 0 && (size_t)n < sizeof line && write(nd->stdin_w, line, (size_t)n) != n)
            msg("cannot hand node %d its secret: %s", i, strerror(errno));
    }
    nd->out.fd = out[0];
    nd->err.fd = err[0];
    return pid;
}

static int run(void)
{
    enum phase phase = RUNNING;
    double deadline = 0;
    int interrupted = 0;
    bool launch_failed = false;
    pid_t self = getpid();
    char d[128], h[160];

    for (int i = 0; i < g.nodes; i++) {
        pid_t pid = start_node(i, self);
        if (pid < 0) {
            launch_failed = true;
            break;
        }
        g.node[i].pid = pid;
        g.node[i].running = true;
    }
    if (launch_failed && count_running() > 0) {
        msg("stopping the %d node%s already started", count_running(), plural(count_running()));
        signal_running(SIGTERM);
        phase = TERMINATING;
        deadline = now() + KILL_DELAY;
    }

    struct pollfd pf[1 + 2 * MAX_NODES];
    int who[1 + 2 * MAX_NODES];
    for (;;) {
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
            close_stdin(nd);
            /* the marker line may still be in the pipe: read what is there first */
            if (nd->err.fd >= 0) {
                struct pollfd q = {.fd = nd->err.fd, .events = POLLIN};
                while (nd->err.fd >= 0 && poll(&q, 1, 0) > 0) pump(rank, &nd->err);
            }
            if (node_status(nd) == 0 || phase != RUNNING || count_running() == 0) continue;
            if (g.hosts_mode && node_status(nd) == 255 && !nd->remote_sig) {
                /* ssh's own failure, most likely before the node even started: the others
                 * would only wait for it until their connect timeout */
                msg("%s %s (ssh failed?); stopping the other nodes now",
                    describe(rank, d, sizeof d), how(nd, h, sizeof h));
                signal_running(SIGTERM);
                phase = TERMINATING;
                deadline = now() + KILL_DELAY;
                continue;
            }
            msg("%s %s; giving the other nodes %g s to exit", describe(rank, d, sizeof d),
                how(nd, h, sizeof h), g.grace);
            phase = GRACE;
            deadline = now() + g.grace;
        }
        if (pid < 0 && errno != ECHILD && errno != EINTR) die("waitpid: %s", strerror(errno));
        int left = count_running();
        if (left == 0 && phase != DRAINING) {
            if (open_streams() == 0) break;
            /* output a node's descendants still hold open is read for a moment more */
            phase = DRAINING;
            deadline = now() + DRAIN_DELAY;
        }

        if (phase == GRACE && !g.hosts_mode) {
            for (int i = 0; i < g.nodes; i++) {
                struct node *nd = &g.node[i];
                if (!nd->running || nd->signalled || !is_stopped(nd->pid)) continue;
                msg("node %d (pid %d) is stopped (SIGSTOP?) and cannot exit by itself; "
                    "sending it SIGTERM now",
                    i, (int)nd->pid);
                nd->signalled = true;
                kill(-nd->pid, SIGTERM);
                kill(-nd->pid, SIGCONT);
            }
        }
        double t = now();
        if (phase != RUNNING && t >= deadline) {
            if (phase == DRAINING) {
                break;
            } else if (phase == GRACE) {
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

        int np = 0;
        pf[np] = (struct pollfd){.fd = g.sigfd, .events = POLLIN};
        who[np++] = -1;
        for (int i = 0; i < g.nodes; i++) {
            if (g.node[i].out.fd >= 0) {
                pf[np] = (struct pollfd){.fd = g.node[i].out.fd, .events = POLLIN};
                who[np++] = 2 * i;
            }
            if (g.node[i].err.fd >= 0) {
                pf[np] = (struct pollfd){.fd = g.node[i].err.fd, .events = POLLIN};
                who[np++] = 2 * i + 1;
            }
        }
        int timeout = -1;
        if (phase != RUNNING) {
            double rem = deadline - t;
            timeout = (int)(rem * 1000) + 1;
        }
        int n = poll(pf, (nfds_t)np, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("poll: %s", strerror(errno));
        }
        for (int k = 1; k < np; k++) {
            if (!pf[k].revents) continue;
            struct node *nd = &g.node[who[k] / 2];
            pump(who[k] / 2, who[k] % 2 ? &nd->err : &nd->out);
        }
        if (!pf[0].revents) continue;
        struct signalfd_siginfo si;
        ssize_t r = read(g.sigfd, &si, sizeof si);
        if (r != (ssize_t)sizeof si) continue;
        int sig = (int)si.ssi_signo;
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
    for (int i = 0; i < g.nodes; i++) {
        struct node *nd = &g.node[i];
        if (nd->out.fd >= 0 && nd->out.len) emit_line(i, &nd->out, nd->out.buf, nd->out.len);
        if (nd->err.fd >= 0 && nd->err.len) emit_line(i, &nd->err, nd->err.buf, nd->err.len);
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
        if (nd->signalled && !nd->abandoned && !nd->remote_sig)
            note = WIFSIGNALED(nd->wstatus) ? ", sent by dsmrun" : " after dsmrun stopped it";
        else if (g.hosts_mode && s == 255 && !nd->remote_sig)
            note = " (ssh's own failure status: is the host reachable, with ssh keys set up?)";
        if (nd->remote_sig)
            msg("node %d on host %s was killed by signal %d (SIG%s)%s", i, nd->host, nd->remote_sig,
                signame(nd->remote_sig), nd->signalled ? " after dsmrun stopped it" : "");
        else if (g.hosts_mode)
            msg("node %d (%s) %s%s", i, nd->host, how(nd, h, sizeof h), note);
        else
            msg("node %d %s%s", i, how(nd, h, sizeof h), note);
    }
    return worst;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    check_own_vars();
    setup_job();
    if (g.dry_run) {
        dry_run();
        return 0;
    }

    /* An inherited SIG_IGN for SIGCHLD would make the kernel reap the nodes behind our back. */
    signal(SIGCHLD, SIG_DFL);
    /* A node's output that nobody reads any more (dsmrun ... | head) must not kill dsmrun
     * while it still has nodes to stop; write_out notices EPIPE instead. */
    g.sigpipe_dfl = signal(SIGPIPE, SIG_IGN) != SIG_IGN;
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
    g.sigfd = signalfd(-1, &g.waited, SFD_CLOEXEC | SFD_NONBLOCK);
    if (g.sigfd < 0) die("signalfd: %s", strerror(errno));
    return run();
}
