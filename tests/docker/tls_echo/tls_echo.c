/*
 * tls-echo: the TLS upstream of the Docker tests of SNI routes. Built static against
 * OpenSSL (gcc -static ... -lssl -lcrypto) and imported as the only file of a scratch image,
 * like the kit's echo server.
 *
 *   tls-echo [-p PORT] [--tag TEXT]
 *       TLS on PORT (default 443), IPv4 and IPv6. The certificate chain and key come from
 *       the environment as PEM text: TLS_CERT, TLS_KEY; with TLS_CLIENT_CA (PEM) a client
 *       must present a certificate that CA issued. After the handshake, a session whose
 *       first bytes are "whoami\n" gets TEXT "\n" back (default: the hostname) and ends
 *       (close_notify, FIN), so that `openssl s_client` returns; any other session is
 *       echoed until the client closes. One process per connection (fork). Prints
 *       "echo: ready" once bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#define WHOAMI "whoami\n"
#define WLEN (sizeof(WHOAMI) - 1)

static char tag[256];

static void die(const char *what) {
    fprintf(stderr, "tls-echo: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(2);
}

static BIO *env_bio(const char *name, int required) {
    const char *text = getenv(name);
    if (!text || !*text) {
        if (required) die(name);
        return NULL;
    }
    return BIO_new_mem_buf(text, -1);
}

/* The server context: the chain and key of TLS_CERT/TLS_KEY, TLS_CLIENT_CA if set. */
static SSL_CTX *context(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) die("SSL_CTX_new");
    BIO *bio = env_bio("TLS_CERT", 1);
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (!cert || SSL_CTX_use_certificate(ctx, cert) != 1) die("TLS_CERT");
    X509 *extra;
    while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        SSL_CTX_add_extra_chain_cert(ctx, extra);
    ERR_clear_error();
    BIO_free(bio);
    bio = env_bio("TLS_KEY", 1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (!key || SSL_CTX_use_PrivateKey(ctx, key) != 1) die("TLS_KEY");
    BIO_free(bio);
    bio = env_bio("TLS_CLIENT_CA", 0);
    if (bio) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        X509 *ca;
        while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) X509_STORE_add_cert(store, ca);
        ERR_clear_error();
        BIO_free(bio);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
}

static int write_all(SSL *ssl, const char *p, int n) {
    while (n > 0) {
        int w = SSL_write(ssl, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= w;
    }
    return 0;
}

/* One connection: handshake, then whoami or echo until the client closes. */
static void serve(SSL_CTX *ctx, int fd) {
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        _exit(1);
    }
    char buf[16384];
    int matching = 1; /* still reading what may be "whoami\n" */
    size_t head = 0;  /* its bytes seen so far */
    for (;;) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) break;
        int from = 0;
        if (matching) {
            while (head < WLEN && from < n && buf[from] == WHOAMI[head]) {
                head++;
                from++;
            }
            if (head == WLEN) {
                char line[260];
                int len = snprintf(line, sizeof line, "%s\n", tag);
                write_all(ssl, line, len);
                break; /* answered: the session ends */
            } else if (from == n) {
                continue; /* a prefix of it so far */
            } else if (write_all(ssl, WHOAMI, (int)head) != 0) {
                break; /* it was not: echo what was held back */
            }
            matching = 0;
        }
        if (from < n && write_all(ssl, buf + from, n - from) != 0) break;
    }
    SSL_shutdown(ssl);
    _exit(0);
}

int main(int argc, char **argv) {
    int port = 443;
    gethostname(tag, sizeof tag - 1);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--tag") == 0 && i + 1 < argc) {
            snprintf(tag, sizeof tag, "%s", argv[++i]);
        } else {
            fprintf(stderr, "usage: tls-echo [-p PORT] [--tag TEXT]\n");
            return 2;
        }
    }
    signal(SIGCHLD, SIG_IGN); /* children reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, _exit);
    SSL_CTX *ctx = context();
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int off = 0, on = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
        perror("tls-echo: bind");
        return 2;
    }
    printf("echo: ready\n");
    fflush(stdout);
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) {
            if (errno == EINTR) continue;
            perror("tls-echo: accept");
            return 2;
        }
        if (fork() == 0) {
            close(fd);
            serve(ctx, conn);
        }
        close(conn);
    }
}
