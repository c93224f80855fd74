/*
 * loadgen: backends and load generators for `make bench`.
 *
 * One binary, several sub-commands; every client mode is bounded in time and
 * count and prints exactly one JSON object on stdout.
 *
 *   loadgen backend  --bulk-port P --echo-port P --udp-port P --shm FILE [--host H]
 *                    [--more-echo-ports P,P,...]
 *   loadgen bulk     --port P --streams N --duration S --warmup S --shm FILE [--pids a,b]
 *   loadgen connrate --port P --concurrency N --size B --duration S --warmup S --count MAX
 *   loadgen rtt      --port P --count N --duration S [--pids ..]
 *   loadgen udp      --port P --sockets N --size B --duration S --warmup S --timeout-ms T
 *   loadgen idle     --port P --count N --shm FILE --timeout S --hold S
 *   loadgen tlsbackend|tlsconn|tlsbulk ...   TLS, for the SNI scenarios (loadgen_tls.c)
 *
 * The backend is a single-threaded epoll server: a TCP "bulk" port that reads
 * and discards everything while writing as fast as it can (both directions at
 * once), a TCP echo port, and a UDP echo port (recvmmsg/sendmmsg). It keeps
 * counters in a small shared file (--shm) so clients and the harness can see
 * how many connections it holds and how many bytes it received. A PROXY
 * protocol header (v1 line or v2 binary) at the very start of an accepted TCP
 * connection is skipped (ours-guarded sends v2); later bytes are all payload.
 * --more-echo-ports: up to 3 more echo ports served by the same loop, so that a
 * pool (ours-pool3) has distinct members without another process on the load
 * side; accepts are counted per echo port as well (echo_port_accepted[]).
 *
 * --pids: comma separated pids whose utime+stime (from /proc/PID/stat) are
 * sampled at the start and end of the measured window ("cpu_s" in the output).
 *
 * Clients target loopback only, unless the harness runs them in a network namespace of its
 * own (bench/netns.py): then also 198.18.0.0/15 and the one --allow-target address (the
 * backend's container); --src-base A spreads connrate's sources over A..A+249.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define SHM_MAGIC 0x62656e6368736d31ULL /* "bench sm1" */
#define MAX_ECHO_PORTS 4 /* --echo-port and up to 3 --more-echo-ports */

struct shm {
    uint64_t magic;
    uint64_t pid;
    uint64_t bulk_accepted, bulk_open, bulk_rx, bulk_tx;
    uint64_t echo_accepted, echo_open, echo_rx, echo_tx;
    uint64_t udp_rx, udp_tx;
    uint64_t echo_port_accepted[MAX_ECHO_PORTS]; /* [0]: --echo-port, then the others */
};

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void setup_process(void) {
    struct rlimit rl;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) exit(1);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---------- options ---------- */

static uint32_t g_src_base = 0x7f000001u; /* --src-base: first client source address */
static uint32_t g_allowed_target;          /* --allow-target: the backend the harness made */

static uint32_t parse_v4(const char *text) {
    struct in_addr a;
    if (inet_pton(AF_INET, text, &a) != 1) {
        fprintf(stderr, "loadgen: not an IPv4 address: %s\n", text);
        exit(2);
    }
    return ntohl(a.s_addr);
}


struct opts {
    const char *host;
    const char *shm_path;
    const char *pids;
    const char *gen_pids;
    const char *more_echo_ports;
    const char *sni, *cert, *key;
    int port, bulk_port, echo_port, udp_port;
    int streams, concurrency, size, count, sockets, timeout_ms;
    double duration, warmup, timeout, hold;
};

static void parse_opts(int argc, char **argv, struct opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->streams = 1;
    o->concurrency = 32;
    o->size = 64;
    o->count = 10000;
    o->sockets = 64;
    o->timeout_ms = 200;
    o->duration = 3.0;
    o->warmup = 0.5;
    o->timeout = 30.0;
    o->hold = 30.0;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "loadgen: option %s needs a value\n", k);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--host")) o->host = v;
        else if (!strcmp(k, "--shm")) o->shm_path = v;
        else if (!strcmp(k, "--pids")) o->pids = v;
        else if (!strcmp(k, "--gen-pids")) o->gen_pids = v;
        else if (!strcmp(k, "--port")) o->port = atoi(v);
        else if (!strcmp(k, "--bulk-port")) o->bulk_port = atoi(v);
        else if (!strcmp(k, "--echo-port")) o->echo_port = atoi(v);
        else if (!strcmp(k, "--udp-port")) o->udp_port = atoi(v);
        else if (!strcmp(k, "--more-echo-ports")) o->more_echo_ports = v;
        else if (!strcmp(k, "--sni")) o->sni = v;
        else if (!strcmp(k, "--cert")) o->cert = v;
        else if (!strcmp(k, "--key")) o->key = v;
        else if (!strcmp(k, "--streams")) o->streams = atoi(v);
        else if (!strcmp(k, "--concurrency")) o->concurrency = atoi(v);
        else if (!strcmp(k, "--size")) o->size = atoi(v);
        else if (!strcmp(k, "--count")) o->count = atoi(v);
        else if (!strcmp(k, "--sockets")) o->sockets = atoi(v);
        else if (!strcmp(k, "--timeout-ms")) o->timeout_ms = atoi(v);
        else if (!strcmp(k, "--duration")) o->duration = atof(v);
        else if (!strcmp(k, "--warmup")) o->warmup = atof(v);
        else if (!strcmp(k, "--timeout")) o->timeout = atof(v);
        else if (!strcmp(k, "--hold")) o->hold = atof(v);
        else if (!strcmp(k, "--src-base")) g_src_base = parse_v4(v);
        else if (!strcmp(k, "--allow-target")) g_allowed_target = parse_v4(v);
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            exit(2);
        }
    }
    if (o->duration > 60) o->duration = 60; /* hard bound on any load loop */
    if (o->warmup > 10) o->warmup = 10;
    if (o->timeout > 120) o->timeout = 120;
    if (o->hold > 120) o->hold = 120;
}

/* ---------- addresses ---------- */

static socklen_t make_addr(const char *host, int port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return sizeof *a4;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return sizeof *a6;
    }
    fprintf(stderr, "loadgen: bad host %s\n", host);
    exit(2);
}

/* Only loopback, the benchmarking range 198.18.0.0/15 (network namespaces the harness made)
 * and the one --allow-target address may be targeted. */
static void check_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
        if ((a >> 24) == 127) return;
        if ((a & 0xfffe0000u) == 0xc6120000u) return;
        if (g_allowed_target && a == g_allowed_target) return;
    } else if (ss->ss_family == AF_INET6) {
        if (IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr)) return;
    }
    fprintf(stderr, "loadgen: refusing a target outside loopback and 198.18.0.0/15\n");
    exit(2);
}

/* Spread client source addresses over --src-base and the next 249 (127.0.0.1-127.0.0.250 by
 * default; IPv4 only) so connection-rate runs do not run out of ephemeral ports. */
static void bind_spread(int fd, const struct sockaddr_storage *dst, unsigned n) {
    if (dst->ss_family != AF_INET) return;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(g_src_base + (n % 250u));
    bind(fd, (struct sockaddr *)&src, sizeof src);
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void set_linger0(int fd) {
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

/* ---------- cpu of other processes ---------- */

static double cpu_of_pids(const char *pids) {
    if (!pids || !*pids) return -1.0;
    double total = 0;
    long tck = sysconf(_SC_CLK_TCK);
    char list[1024];
    snprintf(list, sizeof list, "%s", pids);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char path[64], buf[2048];
        snprintf(path, sizeof path, "/proc/%s/stat", tok);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        char *p = strrchr(buf, ')'); /* comm may contain spaces */
        if (!p) continue;
        p += 2; /* field 3 (state) */
        unsigned long long ut = 0, st = 0;
        /* fields 3..15: state ppid pgrp session tty tpgid flags minflt cminflt majflt
         * cmajflt utime stime */
        if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            total += (double)(ut + st) / (double)tck;
    }
    return total;
}

/* CPU seconds of the load side: this process plus --gen-pids (the backend). */
static const char *g_gen_pids;
static double g_gen0;
static double gen_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double self = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double other = cpu_of_pids(g_gen_pids);
    return self + (other > 0 ? other : 0);
}

/* ---------- shared counters ---------- */

static struct shm *map_shm(const char *path, int create) {
    if (!path) {
        fprintf(stderr, "loadgen: --shm is required\n");
        exit(2);
    }
    int fd = open(path, create ? (O_RDWR | O_CREAT | O_TRUNC) : O_RDONLY, 0644);
    if (fd < 0) die("open shm");
    if (create && ftruncate(fd, 4096) < 0) die("ftruncate shm");
    void *p = mmap(NULL, 4096, create ? (PROT_READ | PROT_WRITE) : PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap shm");
    close(fd);
    return (struct shm *)p;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* ---------- percentiles ---------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *s, size_t n, double p) {
    if (n == 0) return -1.0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    if (i >= n) i = n - 1;
    return (double)s[i] / 1000.0;
}

/* ================= backend ================= */

enum { K_LISTEN_BULK = 1, K_LISTEN_ECHO, K_UDP, K_BULK, K_ECHO };

/* A PROXY protocol header (v1 line or v2 binary) may open an accepted TCP connection
 * (ours-guarded sends v2); it is skipped, only there, before bytes count as payload. */
enum { PP_START = 0, PP_V1, PP_SKIP, PP_DONE };
#define PP_HOLD 16  /* bytes held back while telling a header from payload */
#define PP_V1_MAX 107 /* longest valid v1 line, CRLF included */

struct conn {
    int kind;
    size_t pend_len, pend_off;
    char *pend; /* echo: unsent bytes (only while the peer is slow) */
    uint8_t pp;    /* PP_*: where we are in the header at the start */
    uint8_t hlen;  /* bytes in hbuf */
    uint32_t skip; /* PP_SKIP: header bytes still to drop; PP_V1: bytes of the line seen */
    unsigned char hbuf[PP_HOLD];
};

#define MAXFD 65536
static struct conn *g_conns[MAXFD];
static struct shm *g_shm;
static uint64_t s_bulk_acc, s_bulk_open, s_bulk_rx, s_bulk_tx;
static uint64_t s_echo_acc, s_echo_open, s_echo_rx, s_echo_tx, s_udp_rx, s_udp_tx;
static uint64_t s_echo_port_acc[MAX_ECHO_PORTS];

#define BUFSZ (256 * 1024)
/* recv lands at g_rbuf + PP_HOLD so that held-back bytes can be put back in front */
static char g_rbuf_mem[PP_HOLD + BUFSZ];
#define g_rbuf (g_rbuf_mem + PP_HOLD)
static char g_wbuf[BUFSZ];

static const unsigned char PP2_SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Drop PROXY header bytes from buf[0..*n) (just received on c; buf has PP_HOLD bytes of
 * headroom before it). Returns where the payload starts and sets *n to its length (0: all
 * of it was header, or is held back until the next read tells); NULL: a broken v1 line. */
static char *pp_strip(struct conn *c, char *buf, size_t *n) {
    size_t len = *n, i = 0;
    while (c->pp != PP_DONE) {
        if (c->pp == PP_SKIP) {
            size_t k = len - i < c->skip ? len - i : c->skip;
            i += k;
            c->skip -= (uint32_t)k;
            if (c->skip) break; /* the rest comes with the next read */
            c->pp = PP_DONE;
        } else if (c->pp == PP_V1) {
            while (i < len && buf[i] != '\n' && c->skip <= PP_V1_MAX) i++, c->skip++;
            if (c->skip > PP_V1_MAX) return NULL;
            if (i == len) break;
            i++; /* the LF */
            c->pp = PP_DONE;
        } else { /* PP_START: one byte at a time into hbuf until it is, or is not, a header */
            if (i == len) break;
            size_t old = (size_t)c->hlen - i; /* held from earlier reads */
            unsigned char b = (unsigned char)buf[i];
            unsigned h = c->hlen;
            int v1 = h < 6 && b == (unsigned char)"PROXY "[h] && !memcmp(c->hbuf, "PROXY ", h);
            int v2 = h >= 12 || (b == PP2_SIG[h] && !memcmp(c->hbuf, PP2_SIG, h));
            if (!v1 && !v2) { /* payload, held bytes included: put them back in front */
                c->pp = PP_DONE;
                memcpy(buf - old, c->hbuf, old);
                *n = len + old;
                return buf - old;
            }
            c->hbuf[c->hlen++] = b;
            i++;
            if (v1 && c->hlen == 6) {
                c->pp = PP_V1;
                c->skip = 6;
            } else if (c->hlen == 16) {
                c->skip = ((uint32_t)c->hbuf[14] << 8) | c->hbuf[15];
                c->pp = c->skip ? PP_SKIP : PP_DONE;
            }
        }
    }
    *n = len - i;
    return buf + i;
}

static int listen_on(const char *host, int port, int type) {
    struct sockaddr_storage ss;
    socklen_t len = make_addr(host, port, &ss);
    int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) die("bind");
    if (type == SOCK_STREAM) {
        if (listen(fd, 4096) < 0) die("listen");
    } else {
        int sz = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
    return fd;
}

static void ep_add(int ep, int fd, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl add");
}

static void ep_mod(int ep, int fd, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

static void conn_close(int fd) {
    struct conn *c = g_conns[fd];
    if (c) {
        if (c->kind == K_BULK) s_bulk_open--;
        else s_echo_open--;
        free(c->pend);
        free(c);
        g_conns[fd] = NULL;
    }
    close(fd); /* also removes it from epoll */
}

static void do_accept(int ep, int lfd, int kind, int port_index) {
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (fd >= MAXFD) {
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->kind = kind;
        g_conns[fd] = c;
        if (kind == K_BULK) {
            s_bulk_acc++;
            s_bulk_open++;
            ep_add(ep, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
        } else {
            set_nodelay(fd);
            s_echo_acc++;
            s_echo_port_acc[port_index]++;
            s_echo_open++;
            ep_add(ep, fd, EPOLLIN | EPOLLRDHUP);
        }
    }
}

static void bulk_event(int fd, uint32_t ev) {
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        ssize_t n = recv(fd, g_rbuf, BUFSZ, 0);
        if (n > 0) {
            struct conn *c = g_conns[fd];
            size_t len = (size_t)n;
            if (c->pp != PP_DONE && !pp_strip(c, g_rbuf, &len)) {
                conn_close(fd);
                return;
            }
            s_bulk_rx += (uint64_t)len;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            struct conn *c = g_conns[fd];
            if (c->pp == PP_START) s_bulk_rx += c->hlen; /* held back, yet payload */
            conn_close(fd);
            return;
        }
    }
    if (ev & EPOLLOUT) {
        ssize_t n = send(fd, g_wbuf, BUFSZ, MSG_NOSIGNAL);
        if (n > 0) {
            s_bulk_tx += (uint64_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(fd);
        }
    }
}

static void echo_flush(int ep, int fd, struct conn *c) {
    while (c->pend_off < c->pend_len) {
        ssize_t w = send(fd, c->pend + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) return;
            conn_close(fd);
            return;
        }
        s_echo_tx += (uint64_t)w;
        c->pend_off += (size_t)w;
    }
    c->pend_len = c->pend_off = 0;
    ep_mod(ep, fd, EPOLLIN | EPOLLRDHUP);
}

static void echo_event(int ep, int fd, uint32_t ev) {
    struct conn *c = g_conns[fd];
    if (c->pend_len) {
        if (ev & EPOLLOUT) echo_flush(ep, fd, c);
        if (ev & (EPOLLHUP | EPOLLERR)) {
            if (g_conns[fd]) conn_close(fd);
        }
        return;
    }
    for (int i = 0; i < 8; i++) {
        ssize_t n = recv(fd, g_rbuf, BUFSZ, 0);
        if (n == 0) {
            if (c->pp == PP_START && c->hlen) { /* EOF: the bytes held back were payload */
                s_echo_rx += c->hlen;
                ssize_t w = send(fd, c->hbuf, c->hlen, MSG_NOSIGNAL);
                if (w > 0) s_echo_tx += (uint64_t)w;
            }
            conn_close(fd);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            conn_close(fd);
            return;
        }
        char *p = g_rbuf;
        size_t got = (size_t)n;
        if (c->pp != PP_DONE) {
            p = pp_strip(c, g_rbuf, &got);
            if (!p) {
                conn_close(fd);
                return;
            }
            if (!got) continue; /* all header so far */
            n = (ssize_t)got;
        }
        s_echo_rx += (uint64_t)n;
        ssize_t w = send(fd, p, (size_t)n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) {
                conn_close(fd);
                return;
            }
            w = 0;
        }
        s_echo_tx += (uint64_t)w;
        if (w < n) {
            size_t rest = (size_t)(n - w);
            c->pend = realloc(c->pend, rest);
            if (!c->pend) {
                conn_close(fd);
                return;
            }
            memcpy(c->pend, p + w, rest);
            c->pend_len = rest;
            c->pend_off = 0;
            ep_mod(ep, fd, EPOLLOUT | EPOLLRDHUP);
            return;
        }
        if ((size_t)n < BUFSZ) return;
    }
}

#define UDP_BATCH 64
static void udp_event(int fd) {
    static char bufs[UDP_BATCH][2048];
    static struct mmsghdr msgs[UDP_BATCH];
    static struct iovec iovs[UDP_BATCH];
    static struct sockaddr_storage addrs[UDP_BATCH];
    for (int round = 0; round < 16; round++) {
        for (int i = 0; i < UDP_BATCH; i++) {
            iovs[i].iov_base = bufs[i];
            iovs[i].iov_len = sizeof bufs[i];
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
        }
        int n = recvmmsg(fd, msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        s_udp_rx += (uint64_t)n;
        for (int i = 0; i < n; i++) iovs[i].iov_len = msgs[i].msg_len;
        int off = 0;
        while (off < n) {
            int s = sendmmsg(fd, msgs + off, (unsigned)(n - off), MSG_DONTWAIT);
            if (s <= 0) break; /* drop the rest: UDP */
            s_udp_tx += (uint64_t)s;
            off += s;
        }
    }
}

static void publish(void) {
    STORE(g_shm->bulk_accepted, s_bulk_acc);
    STORE(g_shm->bulk_open, s_bulk_open);
    STORE(g_shm->bulk_rx, s_bulk_rx);
    STORE(g_shm->bulk_tx, s_bulk_tx);
    STORE(g_shm->echo_accepted, s_echo_acc);
    STORE(g_shm->echo_open, s_echo_open);
    STORE(g_shm->echo_rx, s_echo_rx);
    STORE(g_shm->echo_tx, s_echo_tx);
    STORE(g_shm->udp_rx, s_udp_rx);
    STORE(g_shm->udp_tx, s_udp_tx);
    for (int i = 0; i < MAX_ECHO_PORTS; i++)
        STORE(g_shm->echo_port_accepted[i], s_echo_port_acc[i]);
}

static int cmd_backend(struct opts *o) {
    g_shm = map_shm(o->shm_path, 1);
    memset(g_rbuf_mem, 0, sizeof g_rbuf_mem);
    memset(g_wbuf, 'x', sizeof g_wbuf);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    int lb = listen_on(o->host, o->bulk_port, SOCK_STREAM);
    int le[MAX_ECHO_PORTS];
    int n_echo = 0;
    le[n_echo++] = listen_on(o->host, o->echo_port, SOCK_STREAM);
    for (const char *p = o->more_echo_ports; p && *p;) {
        if (n_echo == MAX_ECHO_PORTS) {
            fprintf(stderr, "loadgen: at most %d more echo ports\n", MAX_ECHO_PORTS - 1);
            exit(2);
        }
        le[n_echo++] = listen_on(o->host, atoi(p), SOCK_STREAM);
        p = strchr(p, ',');
        if (p) p++;
    }
    int lu = listen_on(o->host, o->udp_port, SOCK_DGRAM);
    ep_add(ep, lb, EPOLLIN);
    for (int i = 0; i < n_echo; i++) ep_add(ep, le[i], EPOLLIN);
    ep_add(ep, lu, EPOLLIN);
    STORE(g_shm->pid, (uint64_t)getpid());
    STORE(g_shm->magic, SHM_MAGIC);
    printf("{\"ready\": true, \"pid\": %d}\n", (int)getpid());
    fflush(stdout);
    struct epoll_event evs[512];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, 512, 200);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            uint32_t ev = evs[i].events;
            int echo_index = -1;
            for (int k = 0; k < n_echo; k++)
                if (fd == le[k]) echo_index = k;
            if (fd == lb) do_accept(ep, lb, K_BULK, 0);
            else if (echo_index >= 0) do_accept(ep, fd, K_ECHO, echo_index);
            else if (fd == lu) udp_event(lu);
            else if (g_conns[fd] && g_conns[fd]->kind == K_BULK) bulk_event(fd, ev);
            else if (g_conns[fd]) echo_event(ep, fd, ev);
        }
        publish();
    }
    return 0;
}

/* ================= clients ================= */

static int tcp_connect_blocking(const struct sockaddr_storage *ss, socklen_t len) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (const struct sockaddr *)ss, len) < 0) die("connect");
    return fd;
}

/* --- bulk: N streams, each reading and writing at once --- */
static int cmd_bulk(struct opts *o) {
    struct sockaddr_storage ss;
    socklen_t len = make_addr(o->host, o->port, &ss);
    check_loopback(&ss);
    struct shm *sh = map_shm(o->shm_path, 0);
    static char rbuf[BUFSZ], wbuf[BUFSZ];
    memset(wbuf, 'y', sizeof wbuf);
    int n = o->streams < 1 ? 1 : (o->streams > 256 ? 256 : o->streams);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++) {
        fds[i] = tcp_connect_blocking(&ss, len);
        set_nonblock(fds[i]);
        ep_add(ep, fds[i], EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    }
    uint64_t rx = 0, tx = 0, errors = 0;
    int alive = n;
    uint64_t t0 = now_ns();
    uint64_t t_start = t0 + (uint64_t)(o->warmup * 1e9);
    uint64_t t_end = t_start + (uint64_t)(o->duration * 1e9);
    int in_window = 0;
    uint64_t rx0 = 0, brx0 = 0, w0 = 0;
    double cpu0 = 0;
    struct epoll_event evs[256];
    while (!g_stop && alive > 0) {
        uint64_t t = now_ns();
        if (!in_window && t >= t_start) {
            in_window = 1;
            rx0 = rx;
            brx0 = LOAD(sh->bulk_rx);
            cpu0 = cpu_of_pids(o->pids);
            g_gen0 = gen_cpu();
            w0 = t;
        }
        if (t >= t_end) break;
        int k = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(fd, rbuf, BUFSZ, 0);
                if (r > 0) rx += (uint64_t)r;
                else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    errors++;
                    alive--;
                    close(fd);
                    continue;
                }
            }
            if (evs[i].events & EPOLLOUT) {
                ssize_t w = send(fd, wbuf, BUFSZ, MSG_NOSIGNAL);
                if (w > 0) tx += (uint64_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    errors++;
                    alive--;
                    close(fd);
                }
            }
        }
    }
    uint64_t t1 = now_ns();
    uint64_t brx1 = LOAD(sh->bulk_rx);
    double cpu1 = cpu_of_pids(o->pids);
    double gen1 = gen_cpu() - g_gen0;
    if (!in_window) {
        rx0 = 0;
        brx0 = brx1;
        w0 = t1;
    }
    for (int i = 0; i < n; i++) {
        set_linger0(fds[i]);
        close(fds[i]);
    }
    double secs = (double)(t1 - w0) / 1e9;
    printf("{\"secs\": %.6f, \"down_bytes\": %llu, \"up_bytes\": %llu, \"client_tx\": %llu, "
           "\"errors\": %llu, \"streams\": %d, \"cpu_s\": %.4f, \"gen_cpu_s\": %.4f}\n",
           secs, (unsigned long long)(rx - rx0), (unsigned long long)(brx1 - brx0),
           (unsigned long long)tx, (unsigned long long)errors, n,
           (o->pids && in_window) ? cpu1 - cpu0 : -1.0, gen1);
    return 0;
}

/* --- connrate: connect, echo SIZE bytes, close; CONCURRENCY at a time --- */
struct cslot {
    int fd;
    int state; /* 0 idle, 1 connecting, 2 waiting for echo */
    int got;
    uint64_t t0;
};

static int cmd_connrate(struct opts *o) {
    struct sockaddr_storage ss;
    socklen_t len = make_addr(o->host, o->port, &ss);
    check_loopback(&ss);
    int n = o->concurrency < 1 ? 1 : (o->concurrency > 1024 ? 1024 : o->concurrency);
    int size = o->size < 1 ? 1 : (o->size > 4096 ? 4096 : o->size);
    char msg[4096], rbuf[8192];
    memset(msg, 'c', sizeof msg);
    struct cslot *sl = calloc((size_t)n, sizeof *sl);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    size_t cap = 4000000, ns = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    uint64_t done = 0, errors = 0, total_done = 0;
    unsigned seq = 0;
    uint64_t t0 = now_ns();
    uint64_t t_start = t0 + (uint64_t)(o->warmup * 1e9);
    uint64_t t_end = t_start + (uint64_t)(o->duration * 1e9);
    int in_window = 0;
    double cpu0 = 0;
    uint64_t w0 = 0;

#define START(i)                                                                     \
    do {                                                                             \
        int fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); \
        if (fd_ < 0) die("socket");                                                  \
        bind_spread(fd_, &ss, seq++);                                                \
        set_nodelay(fd_);                                                            \
        sl[i].fd = fd_;                                                              \
        sl[i].got = 0;                                                               \
        sl[i].t0 = now_ns();                                                         \
        int rc_ = connect(fd_, (struct sockaddr *)&ss, len);                         \
        if (rc_ < 0 && errno != EINPROGRESS) {                                       \
            errors++;                                                                \
            close(fd_);                                                              \
            sl[i].state = 0;                                                         \
        } else {                                                                     \
            sl[i].state = 1;                                                         \
            struct epoll_event e_ = {.events = EPOLLOUT, .data.u32 = (uint32_t)(i)}; \
            epoll_ctl(ep, EPOLL_CTL_ADD, fd_, &e_);                                  \
        }                                                                            \
    } while (0)

    for (int i = 0; i < n; i++) START(i);
    struct epoll_event evs[1024];
    while (!g_stop) {
        uint64_t t = now_ns();
        if (!in_window && t >= t_start) {
            in_window = 1;
            cpu0 = cpu_of_pids(o->pids);
            g_gen0 = gen_cpu();
            w0 = t;
        }
        if (t >= t_end) break;
        if (o->count > 0 && done >= (uint64_t)o->count) break; /* count bound */
        if (errors > 100000) break; /* something is badly wrong; stop */
        int k = epoll_wait(ep, evs, 1024, 20);
        for (int j = 0; j < k; j++) {
            int i = (int)evs[j].data.u32;
            struct cslot *s = &sl[i];
            if (s->state == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (evs[j].events & (EPOLLERR | EPOLLHUP))) {
                    errors++;
                    close(s->fd);
                    START(i);
                    continue;
                }
                if (send(s->fd, msg, (size_t)size, MSG_NOSIGNAL) != size) {
                    errors++;
                    close(s->fd);
                    START(i);
                    continue;
                }
                s->state = 2;
                struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
            } else if (s->state == 2) {
                ssize_t r = recv(s->fd, rbuf, sizeof rbuf, 0);
                if (r < 0 && errno == EAGAIN) continue;
                if (r <= 0) {
                    errors++;
                    close(s->fd);
                    START(i);
                    continue;
                }
                s->got += (int)r;
                if (s->got >= size) {
                    close(s->fd);
                    total_done++;
                    if (in_window) {
                        done++;
                        if (ns < cap) lat[ns++] = now_ns() - s->t0;
                    }
                    START(i);
                }
            }
        }
        /* slots whose connect() failed outright */
        for (int i = 0; i < n; i++)
            if (sl[i].state == 0) START(i);
    }
    uint64_t t1 = now_ns();
    double cpu1 = cpu_of_pids(o->pids);
    double gen1 = gen_cpu() - g_gen0;
    for (int i = 0; i < n; i++)
        if (sl[i].state) {
            set_linger0(sl[i].fd);
            close(sl[i].fd);
        }
    if (!in_window) w0 = t1;
    qsort(lat, ns, sizeof *lat, cmp_u64);
    double secs = (double)(t1 - w0) / 1e9;
    printf("{\"secs\": %.6f, \"conns\": %llu, \"errors\": %llu, \"total_conns\": %llu, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"cpu_s\": %.4f, \"gen_cpu_s\": %.4f}\n",
           secs, (unsigned long long)done, (unsigned long long)errors,
           (unsigned long long)total_done, pct_us(lat, ns, 0.50), pct_us(lat, ns, 0.99),
           (o->pids && in_window) ? cpu1 - cpu0 : -1.0, gen1);
    return 0;
}

/* --- rtt: 1-byte ping-pong on one persistent connection --- */
static int cmd_rtt(struct opts *o) {
    struct sockaddr_storage ss;
    socklen_t len = make_addr(o->host, o->port, &ss);
    check_loopback(&ss);
    int fd = tcp_connect_blocking(&ss, len);
    set_nodelay(fd);
    struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int count = o->count < 1 ? 1 : (o->count > 2000000 ? 2000000 : o->count);
    uint64_t *lat = malloc((size_t)count * sizeof *lat);
    char b = 'r';
    uint64_t deadline_warm = now_ns() + (uint64_t)(o->warmup * 1e9);
    long errors = 0;
    /* warm-up: at least 200 round trips or the warm-up time */
    for (int i = 0; i < 100000 && !g_stop; i++) {
        if (send(fd, &b, 1, MSG_NOSIGNAL) != 1 || recv(fd, &b, 1, MSG_WAITALL) != 1) {
            errors++;
            break;
        }
        if (i >= 200 && now_ns() >= deadline_warm) break;
    }
    double cpu0 = cpu_of_pids(o->pids);
            g_gen0 = gen_cpu();
    uint64_t w0 = now_ns();
    uint64_t t_end = w0 + (uint64_t)(o->duration * 1e9);
    size_t ns = 0;
    while (!g_stop && !errors && ns < (size_t)count) {
        uint64_t a = now_ns();
        if (a >= t_end) break;
        if (send(fd, &b, 1, MSG_NOSIGNAL) != 1 || recv(fd, &b, 1, MSG_WAITALL) != 1) {
            errors++;
            break;
        }
        lat[ns++] = now_ns() - a;
    }
    uint64_t t1 = now_ns();
    double cpu1 = cpu_of_pids(o->pids);
    double gen1 = gen_cpu() - g_gen0;
    close(fd);
    double sum = 0;
    for (size_t i = 0; i < ns; i++) sum += (double)lat[i];
    qsort(lat, ns, sizeof *lat, cmp_u64);
    printf("{\"secs\": %.6f, \"count\": %zu, \"errors\": %ld, \"p50_us\": %.2f, "
           "\"p99_us\": %.2f, \"mean_us\": %.2f, \"cpu_s\": %.4f, \"gen_cpu_s\": %.4f}\n",
           (double)(t1 - w0) / 1e9, ns, errors, pct_us(lat, ns, 0.50), pct_us(lat, ns, 0.99),
           ns ? sum / (double)ns / 1000.0 : -1.0, o->pids ? cpu1 - cpu0 : -1.0, gen1);
    return 0;
}

/* --- udp: SOCKETS sockets, one request in flight each --- */
struct uslot {
    int fd;
    uint32_t seq;
    uint64_t sent;
};

static int cmd_udp(struct opts *o) {
    struct sockaddr_storage ss;
    socklen_t len = make_addr(o->host, o->port, &ss);
    check_loopback(&ss);
    int n = o->sockets < 1 ? 1 : (o->sockets > 1024 ? 1024 : o->sockets);
    int size = o->size < 16 ? 16 : (o->size > 1400 ? 1400 : o->size);
    uint64_t tmo = (uint64_t)(o->timeout_ms < 1 ? 1 : o->timeout_ms) * 1000000ULL;
    struct uslot *sl = calloc((size_t)n, sizeof *sl);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    char pkt[2048], rbuf[2048];
    memset(pkt, 'u', sizeof pkt);
    size_t cap = 8000000, ns = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    uint64_t done = 0, lost = 0, stale = 0, send_err = 0;
    for (int i = 0; i < n; i++) {
        int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&ss, len) < 0) die("connect udp");
        sl[i].fd = fd;
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    }
#define USEND(i)                                                        \
    do {                                                                \
        sl[i].seq++;                                                    \
        sl[i].sent = now_ns();                                          \
        uint32_t hdr_[2] = {(uint32_t)(i), sl[i].seq};                  \
        memcpy(pkt, hdr_, sizeof hdr_);                                 \
        if (send(sl[i].fd, pkt, (size_t)size, 0) != size) send_err++;  \
    } while (0)

    uint64_t t0 = now_ns();
    uint64_t t_start = t0 + (uint64_t)(o->warmup * 1e9);
    uint64_t t_end = t_start + (uint64_t)(o->duration * 1e9);
    int in_window = 0;
    double cpu0 = 0;
    uint64_t w0 = 0, last_scan = t0;
    for (int i = 0; i < n; i++) USEND(i);
    struct epoll_event evs[1024];
    while (!g_stop) {
        uint64_t t = now_ns();
        if (!in_window && t >= t_start) {
            in_window = 1;
            cpu0 = cpu_of_pids(o->pids);
            g_gen0 = gen_cpu();
            w0 = t;
        }
        if (t >= t_end) break;
        int k = epoll_wait(ep, evs, 1024, 5);
        for (int j = 0; j < k; j++) {
            int i = (int)evs[j].data.u32;
            for (;;) {
                ssize_t r = recv(sl[i].fd, rbuf, sizeof rbuf, 0);
                if (r < 0) break;
                uint32_t hdr[2] = {0, 0};
                if (r >= 8) memcpy(hdr, rbuf, sizeof hdr);
                if (r != size || hdr[0] != (uint32_t)i || hdr[1] != sl[i].seq) {
                    stale++;
                    continue;
                }
                uint64_t now = now_ns();
                if (in_window) {
                    done++;
                    if (ns < cap) lat[ns++] = now - sl[i].sent;
                }
                USEND(i);
            }
        }
        uint64_t now = now_ns();
        if (now - last_scan >= 5000000ULL) { /* every 5 ms */
            last_scan = now;
            for (int i = 0; i < n; i++)
                if (now - sl[i].sent > tmo) {
                    if (in_window) lost++;
                    USEND(i);
                }
        }
    }
    uint64_t t1 = now_ns();
    double cpu1 = cpu_of_pids(o->pids);
    double gen1 = gen_cpu() - g_gen0;
    for (int i = 0; i < n; i++) close(sl[i].fd);
    if (!in_window) w0 = t1;
    qsort(lat, ns, sizeof *lat, cmp_u64);
    printf("{\"secs\": %.6f, \"exchanges\": %llu, \"lost\": %llu, \"stale\": %llu, "
           "\"send_errors\": %llu, \"p50_us\": %.1f, \"p99_us\": %.1f, \"cpu_s\": %.4f, \"gen_cpu_s\": %.4f}\n",
           (double)(t1 - w0) / 1e9, (unsigned long long)done, (unsigned long long)lost,
           (unsigned long long)stale, (unsigned long long)send_err, pct_us(lat, ns, 0.50),
           pct_us(lat, ns, 0.99), (o->pids && in_window) ? cpu1 - cpu0 : -1.0, gen1);
    return 0;
}

/* --- idle: open COUNT connections, wait for the backend to hold them, hold --- */
static int cmd_idle(struct opts *o) {
    struct sockaddr_storage ss;
    socklen_t len = make_addr(o->host, o->port, &ss);
    check_loopback(&ss);
    struct shm *sh = map_shm(o->shm_path, 0);
    int count = o->count < 1 ? 1 : (o->count > 15000 ? 15000 : o->count);
    int *fds = malloc((size_t)count * sizeof *fds);
    char *st = calloc((size_t)count, 1); /* 0 not started, 1 connecting, 2 connected, 3 failed */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t base = LOAD(sh->echo_open);
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(o->timeout * 1e9);
    int next = 0, inflight = 0, connected = 0, failed = 0;
    struct epoll_event evs[512];
    while (!g_stop && connected + failed < count && now_ns() < deadline) {
        while (next < count && inflight < 128) {
            int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
                failed += count - next;
                next = count;
                break;
            }
            bind_spread(fd, &ss, (unsigned)next);
            fds[next] = fd;
            int rc = connect(fd, (struct sockaddr *)&ss, len);
            if (rc < 0 && errno != EINPROGRESS) {
                st[next] = 3;
                failed++;
                close(fd);
                fds[next] = -1;
            } else {
                st[next] = 1;
                inflight++;
                struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)next};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            }
            next++;
        }
        int k = epoll_wait(ep, evs, 512, 50);
        for (int j = 0; j < k; j++) {
            int i = (int)evs[j].data.u32;
            if (st[i] != 1) continue;
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &el);
            epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
            inflight--;
            if (err) {
                st[i] = 3;
                failed++;
                close(fds[i]);
                fds[i] = -1;
            } else {
                st[i] = 2;
                connected++;
            }
        }
    }
    double open_secs = (double)(now_ns() - t0) / 1e9;
    uint64_t held = 0;
    while (!g_stop) {
        held = LOAD(sh->echo_open) - base;
        if (held >= (uint64_t)connected || now_ns() >= deadline) break;
        usleep(20000);
    }
    /* let the proxy settle (lazy allocations, timers) before the harness reads RSS */
    usleep(300000);
    held = LOAD(sh->echo_open) - base;
    printf("{\"requested\": %d, \"connected\": %d, \"failed\": %d, \"backend_held\": %llu, "
           "\"open_secs\": %.3f, \"ready_secs\": %.3f}\n",
           count, connected, failed, (unsigned long long)held, open_secs,
           (double)(now_ns() - t0) / 1e9);
    fflush(stdout);
    /* hold until stdin closes (the harness has read RSS) or --hold seconds */
    struct pollfd p = {.fd = 0, .events = POLLIN};
    uint64_t hold_end = now_ns() + (uint64_t)(o->hold * 1e9);
    while (!g_stop) {
        uint64_t t = now_ns();
        if (t >= hold_end) break;
        int r = poll(&p, 1, (int)((hold_end - t) / 1000000ULL) + 1);
        if (r > 0) {
            char c;
            if (read(0, &c, 1) <= 0) break;
        }
    }
    for (int i = 0; i < next; i++)
        if (st[i] == 1 || st[i] == 2) {
            set_linger0(fds[i]);
            close(fds[i]);
        }
    return 0;
}

#include "loadgen_tls.c" /* the TLS modes: one translation unit with the helpers above */

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen backend|bulk|connrate|rtt|udp|idle|"
                        "tlsbackend|tlsconn|tlsbulk [options]\n");
        return 2;
    }
    setup_process();
    struct opts o;
    parse_opts(argc, argv, &o);
    g_gen_pids = o.gen_pids;
    const char *c = argv[1];
    if (!strcmp(c, "backend")) return cmd_backend(&o);
    if (!strcmp(c, "bulk")) return cmd_bulk(&o);
    if (!strcmp(c, "connrate")) return cmd_connrate(&o);
    if (!strcmp(c, "rtt")) return cmd_rtt(&o);
    if (!strcmp(c, "udp")) return cmd_udp(&o);
    if (!strcmp(c, "idle")) return cmd_idle(&o);
    if (!strcmp(c, "tlsbackend")) return cmd_tlsbackend(&o);
    if (!strcmp(c, "tlsconn")) return cmd_tlsconn(&o);
    if (!strcmp(c, "tlsbulk")) return cmd_tlsbulk(&o);
    fprintf(stderr, "loadgen: unknown command %s\n", c);
    return 2;
}
