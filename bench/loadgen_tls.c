/*
 * The TLS modes of loadgen (OpenSSL), for the SNI scenarios of `make bench`. Included by
 * loadgen.c (one translation unit: they share its option parser, address checks and CPU
 * sampling) and linked with -lssl -lcrypto.
 *
 *   loadgen tlsbackend --echo-port P --bulk-port P --cert FILE --key FILE [--host H]
 *       TLS echo on --echo-port; on --bulk-port a TLS source that writes as fast as it can
 *       (and discards what it reads). One thread per connection (blocking I/O); session
 *       tickets off, so every client connection is a full handshake.
 *   loadgen tlsconn  --port P --sni NAME --concurrency N --size B --duration S --warmup S
 *                    --count MAX [--pids a,b] [--gen-pids p]
 *       N threads, each in a loop: connect, TLS handshake with SNI NAME (no certificate
 *       check, no resumption), write B bytes, read B bytes back, close.
 *   loadgen tlsbulk  --port P --sni NAME --streams N --duration S --warmup S [--pids a,b]
 *       N TLS connections reading what the source sends (backend to client).
 *
 * Every client mode is bounded in time (and tlsconn in count), targets loopback only and
 * prints one JSON object, like the plain modes.
 */
#include <pthread.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static SSL_CTX *tls_client_ctx(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) die("SSL_CTX_new");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* the client's cost is not measured */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

/* ---------- the TLS backend ---------- */

struct tls_job {
    SSL_CTX *ctx;
    int fd;
    int source; /* 1: write forever; 0: echo */
};

static void *tls_serve(void *arg) {
    struct tls_job job = *(struct tls_job *)arg;
    free(arg);
    SSL *ssl = SSL_new(job.ctx);
    SSL_set_fd(ssl, job.fd);
    static char wbuf[64 * 1024];
    char rbuf[16384];
    if (SSL_accept(ssl) == 1) {
        if (job.source) {
            set_nonblock(job.fd); /* SSL_write blocks on a full buffer by polling below */
            for (;;) {
                int w = SSL_write(ssl, wbuf, sizeof wbuf);
                if (w > 0) continue;
                int e = SSL_get_error(ssl, w);
                if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) break;
                struct pollfd p = {.fd = job.fd, .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
                if (poll(&p, 1, 5000) <= 0) break;
                if (p.revents & (POLLERR | POLLHUP)) break;
                if (e == SSL_ERROR_WANT_READ || (p.revents & POLLIN)) {
                    int r = SSL_read(ssl, rbuf, sizeof rbuf); /* discard; notice a close */
                    if (r <= 0 && SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN) break;
                }
            }
        } else {
            for (;;) {
                int r = SSL_read(ssl, rbuf, sizeof rbuf);
                if (r <= 0) break;
                if (SSL_write(ssl, rbuf, r) != r) break;
            }
        }
    }
    SSL_free(ssl);
    close(job.fd);
    ERR_clear_error();
    return NULL;
}

struct tls_listener {
    SSL_CTX *ctx;
    int fd;
    int source;
};

static void *tls_accept_loop(void *arg) {
    struct tls_listener *l = arg;
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue;
            die("accept");
        }
        set_nodelay(fd);
        struct tls_job *job = malloc(sizeof *job);
        *job = (struct tls_job){l->ctx, fd, l->source};
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&t, &attr, tls_serve, job) != 0) {
            close(fd);
            free(job);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

static int listen_blocking(const char *host, int port) {
    struct sockaddr_storage ss;
    socklen_t len = make_addr(host, port, &ss);
    check_loopback(&ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    return fd;
}

static int cmd_tlsbackend(struct opts *o) {
    if (!o->cert || !o->key) {
        fprintf(stderr, "loadgen: tlsbackend needs --cert and --key\n");
        return 2;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    struct tls_listener ls[2] = {
        {ctx, listen_blocking(o->host, o->echo_port), 0},
        {ctx, listen_blocking(o->host, o->bulk_port), 1},
    };
    for (int i = 0; i < 2; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, tls_accept_loop, &ls[i]) != 0) die("pthread_create");
        pthread_detach(t);
    }
    fprintf(stderr, "loadgen: tls backend on %d (echo) and %d (source)\n", o->echo_port,
            o->bulk_port);
    while (!g_stop) pause();
    return 0;
}

/* ---------- shared by the TLS clients ---------- */

struct tls_run {
    struct opts *o;
    SSL_CTX *ctx;
    struct sockaddr_storage ss;
    socklen_t len;
    volatile int in_window, done;
    uint64_t conns, errors, bytes; /* atomics */
    unsigned seq;                  /* atomic: source address spreading */
};

/* The protocol version the connections negotiated: 0 none yet, -1 more than one. */
static int g_tls_version; /* atomic */

static void note_version(SSL *ssl) {
    int v = SSL_version(ssl), seen = 0;
    if (!__atomic_compare_exchange_n(&g_tls_version, &seen, v, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED) &&
        seen != v)
        __atomic_store_n(&g_tls_version, -1, __ATOMIC_RELAXED);
}

static const char *version_name(void) {
    switch (__atomic_load_n(&g_tls_version, __ATOMIC_RELAXED)) {
    case TLS1_3_VERSION: return "TLSv1.3";
    case TLS1_2_VERSION: return "TLSv1.2";
    case 0: return "none";
    case -1: return "mixed";
    default: return "older";
    }
}

/* A TLS connection to the target with the run's SNI, or NULL (counted as an error). */
static SSL *tls_open(struct tls_run *run, int *fd_out) {
    int fd = socket(run->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    bind_spread(fd, &run->ss, __atomic_fetch_add(&run->seq, 1, __ATOMIC_RELAXED));
    set_nodelay(fd);
    struct timeval tv = {5, 0}; /* no blocked thread outlives the run by much */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&run->ss, run->len) < 0) {
        close(fd);
        __atomic_fetch_add(&run->errors, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    SSL *ssl = SSL_new(run->ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, run->o->sni);
    if (SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        close(fd);
        ERR_clear_error();
        __atomic_fetch_add(&run->errors, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    note_version(ssl);
    *fd_out = fd;
    return ssl;
}

static void tls_close(SSL *ssl, int fd) {
    SSL_free(ssl);
    close(fd);
}

/* Run the threads; sample the window; print nothing (the caller does). */
static double tls_drive(struct tls_run *run, int threads, void *(*body)(void *), double *cpu,
                        double *gen, uint64_t *conns0, uint64_t *bytes0, uint64_t *secs_ns) {
    struct opts *o = run->o;
    pthread_t *ts = calloc((size_t)threads, sizeof *ts);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ts[i], NULL, body, run) != 0) die("pthread_create");
    uint64_t t0 = now_ns();
    uint64_t t_start = t0 + (uint64_t)(o->warmup * 1e9);
    uint64_t t_end = t_start + (uint64_t)(o->duration * 1e9);
    while (!g_stop && now_ns() < t_start) usleep(1000);
    double cpu0 = cpu_of_pids(o->pids);
    g_gen0 = gen_cpu();
    *conns0 = __atomic_load_n(&run->conns, __ATOMIC_RELAXED);
    *bytes0 = __atomic_load_n(&run->bytes, __ATOMIC_RELAXED);
    uint64_t w0 = now_ns();
    run->in_window = 1;
    while (!g_stop && now_ns() < t_end) {
        if (o->count > 0 && __atomic_load_n(&run->conns, __ATOMIC_RELAXED) - *conns0 >=
                                (uint64_t)o->count)
            break;
        usleep(1000);
    }
    run->in_window = 0;
    uint64_t w1 = now_ns();
    *cpu = o->pids ? cpu_of_pids(o->pids) - cpu0 : -1.0;
    *gen = gen_cpu() - g_gen0;
    *conns0 = __atomic_load_n(&run->conns, __ATOMIC_RELAXED) - *conns0;
    *bytes0 = __atomic_load_n(&run->bytes, __ATOMIC_RELAXED) - *bytes0;
    run->done = 1;
    for (int i = 0; i < threads; i++) pthread_join(ts[i], NULL);
    free(ts);
    *secs_ns = w1 - w0;
    return (double)(w1 - w0) / 1e9;
}

static int tls_setup(struct opts *o, struct tls_run *run) {
    if (!o->sni) {
        fprintf(stderr, "loadgen: TLS clients need --sni\n");
        return 2;
    }
    memset(run, 0, sizeof *run);
    run->o = o;
    run->ctx = tls_client_ctx();
    run->len = make_addr(o->host, o->port, &run->ss);
    check_loopback(&run->ss);
    return 0;
}

/* ---------- tlsconn: new TLS connections ---------- */

#define TLS_LAT_CAP 200000
static uint64_t g_tls_lat[TLS_LAT_CAP];
static size_t g_tls_nlat; /* atomic */

static void *tlsconn_body(void *arg) {
    struct tls_run *run = arg;
    int size = run->o->size < 1 ? 1 : (run->o->size > 4096 ? 4096 : run->o->size);
    char msg[4096], rbuf[4096];
    memset(msg, 'c', sizeof msg);
    while (!run->done && !g_stop) {
        uint64_t t0 = now_ns();
        int fd;
        SSL *ssl = tls_open(run, &fd);
        if (!ssl) {
            usleep(1000);
            continue;
        }
        int got = 0, ok = SSL_write(ssl, msg, size) == size;
        while (ok && got < size) {
            int r = SSL_read(ssl, rbuf, sizeof rbuf);
            if (r <= 0) ok = 0;
            else got += r;
        }
        tls_close(ssl, fd);
        if (!ok) {
            __atomic_fetch_add(&run->errors, 1, __ATOMIC_RELAXED);
            continue;
        }
        if (run->in_window) {
            __atomic_fetch_add(&run->conns, 1, __ATOMIC_RELAXED);
            size_t i = __atomic_fetch_add(&g_tls_nlat, 1, __ATOMIC_RELAXED);
            if (i < TLS_LAT_CAP) g_tls_lat[i] = now_ns() - t0;
        }
    }
    return NULL;
}

static int cmd_tlsconn(struct opts *o) {
    struct tls_run run;
    if (tls_setup(o, &run)) return 2;
    int n = o->concurrency < 1 ? 1 : (o->concurrency > 256 ? 256 : o->concurrency);
    double cpu, gen;
    uint64_t conns, bytes, ns;
    double secs = tls_drive(&run, n, tlsconn_body, &cpu, &gen, &conns, &bytes, &ns);
    size_t nl = g_tls_nlat < TLS_LAT_CAP ? g_tls_nlat : TLS_LAT_CAP;
    qsort(g_tls_lat, nl, sizeof *g_tls_lat, cmp_u64);
    printf("{\"secs\": %.6f, \"conns\": %llu, \"errors\": %llu, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"threads\": %d, \"cpu_s\": %.4f, \"gen_cpu_s\": %.4f, "
           "\"tls_version\": \"%s\"}\n",
           secs, (unsigned long long)conns, (unsigned long long)run.errors,
           pct_us(g_tls_lat, nl, 0.50), pct_us(g_tls_lat, nl, 0.99), n, cpu, gen,
           version_name());
    return 0;
}

/* ---------- tlsbulk: what a TLS source sends, read through the proxy ---------- */

static void *tlsbulk_body(void *arg) {
    struct tls_run *run = arg;
    int fd;
    SSL *ssl = tls_open(run, &fd);
    if (!ssl) return NULL;
    static __thread char rbuf[64 * 1024];
    while (!run->done && !g_stop) {
        int r = SSL_read(ssl, rbuf, sizeof rbuf);
        if (r <= 0) {
            __atomic_fetch_add(&run->errors, 1, __ATOMIC_RELAXED);
            break;
        }
        __atomic_fetch_add(&run->bytes, (uint64_t)r, __ATOMIC_RELAXED);
    }
    set_linger0(fd);
    tls_close(ssl, fd);
    return NULL;
}

static int cmd_tlsbulk(struct opts *o) {
    struct tls_run run;
    if (tls_setup(o, &run)) return 2;
    int n = o->streams < 1 ? 1 : (o->streams > 64 ? 64 : o->streams);
    double cpu, gen;
    uint64_t conns, bytes, ns;
    double secs = tls_drive(&run, n, tlsbulk_body, &cpu, &gen, &conns, &bytes, &ns);
    printf("{\"secs\": %.6f, \"down_bytes\": %llu, \"up_bytes\": 0, \"errors\": %llu, "
           "\"streams\": %d, \"cpu_s\": %.4f, \"gen_cpu_s\": %.4f, \"tls_version\": \"%s\"}\n",
           secs, (unsigned long long)bytes, (unsigned long long)run.errors, n, cpu, gen,
           version_name());
    return 0;
}
