/*
 * echo: the tiny TCP/UDP test server of the godoxy-streams Docker test kit.
 * Built static (gcc -static -O2) and imported as the only file of a scratch image.
 *
 *   echo [-t PORT]... [-u PORT]... [--tag TEXT] [--health-file PATH] [--grace SECONDS]
 *       TCP echo on every -t port, UDP echo on every -u port (default: -t 7 -u 7).
 *       A TCP session whose first bytes are exactly "whoami\n" gets TEXT "\n" back
 *       (then echoes on; "whoami\n" is matched again right after each answer); a UDP
 *       datagram "whoami" or "whoami\n" gets TEXT back. Everything else is echoed
 *       verbatim. TEXT defaults to the hostname (the container's short id). When the
 *       client half-closes, the server finishes echoing and closes. One process per
 *       TCP connection (fork), UDP in the main process. Prints "echo: ready" once
 *       every socket is bound, after creating --health-file PATH if given. With --grace,
 *       SIGTERM starts SECONDS more of normal service (as a service that waits for its load
 *       balancer to take it out), then exits; without, SIGTERM exits at once. With
 *       --close-after-whoami, a TCP session ends (FIN) right after its "whoami" answer.
 *   echo check HOST:PORT     exit 0 iff a TCP connect succeeds within 2 s (numeric HOST,
 *                            "localhost" or "[v6]")
 *   echo check-file PATH     exit 0 iff PATH exists
 *   echo touch PATH          create PATH (exit 0)
 *   echo rm PATH             remove PATH (exit 0, also when it did not exist)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXSOCK 64
#define WHOAMI "whoami\n"
#define WLEN (sizeof(WHOAMI) - 1)

static char tag[256];

static void die(const char *what) {
    fprintf(stderr, "echo: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Parse a numeric address (or "localhost", or "[v6]") and port into sa; 0 on success. */
static int parse_addr(const char *s, struct sockaddr_storage *sa, socklen_t *len) {
    char host[128];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof host) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535) return -1;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = 0;
        h++;
    }
    if (strcmp(h, "localhost") == 0) h = "127.0.0.1";
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
    } else if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
    } else {
        return -1;
    }
    return 0;
}

static void on_term(int sig) {
    _exit(sig == SIGALRM); /* SIGALRM: a check timed out */
}

static unsigned grace_seconds = 0;
static int close_after_whoami = 0;

static void on_stop(int sig) {
    if (sig == SIGTERM && grace_seconds > 0) {
        alarm(grace_seconds); /* serve on, then SIGALRM ends it */
        grace_seconds = 0;
        return;
    }
    _exit(0);
}

static int check(const char *target) {
    struct sockaddr_storage sa;
    socklen_t len;
    if (parse_addr(target, &sa, &len) != 0) {
        fprintf(stderr, "echo: check: bad address %s\n", target);
        return 2;
    }
    signal(SIGALRM, on_term);
    alarm(2); /* an unanswered SYN must not hang the health check */
    int fd = socket(sa.ss_family, SOCK_STREAM, 0);
    return fd >= 0 && connect(fd, (struct sockaddr *)&sa, len) == 0 ? 0 : 1;
}

/* Bind a dual-stack socket (IPv4-only when IPv6 is unavailable) on port. */
static int listen_on(int type, int port) {
    int fd = socket(AF_INET6, type, 0), one = 1, zero = 0;
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, (struct sockaddr *)&v6, sizeof v6) != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        fd = socket(AF_INET, type, 0);
        if (fd < 0) die("socket");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&v4, sizeof v4) != 0) die("bind");
    }
    if (type == SOCK_STREAM && listen(fd, 128) != 0) die("listen");
    return fd;
}

/* One TCP session (in a child process): echo until EOF, answering "whoami\n". */
static void serve_tcp(int fd) {
    static char buf[65536];
    size_t held = 0; /* bytes of WHOAMI matched so far, not echoed yet; SIZE_MAX: off */
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            _exit(1);
        }
        size_t i = 0;
        while (held != SIZE_MAX && i < (size_t)n) {
            if (buf[i] == WHOAMI[held]) {
                i++;
                if (++held == WLEN) {
                    char reply[sizeof tag + 1];
                    int len = snprintf(reply, sizeof reply, "%s\n", tag);
                    if (write_all(fd, reply, (size_t)len) != 0) _exit(1);
                    if (close_after_whoami) break;
                    held = 0;
                }
            } else {
                if (write_all(fd, WHOAMI, held) != 0) _exit(1);
                held = SIZE_MAX;
            }
        }
        if (held == WLEN) break; /* --close-after-whoami: answered, now end it */
        if (i < (size_t)n && write_all(fd, buf + i, (size_t)n - i) != 0) _exit(1);
    }
    if (held != SIZE_MAX && held > 0 && held != WLEN) write_all(fd, WHOAMI, held);
    shutdown(fd, SHUT_WR);
    close(fd);
    _exit(0);
}

static void serve_udp(int fd) {
    static char buf[65536];
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
    if (n < 0) return;
    const char *out = buf;
    size_t len = (size_t)n;
    if ((len == WLEN && memcmp(buf, WHOAMI, WLEN) == 0) ||
        (len == WLEN - 1 && memcmp(buf, WHOAMI, WLEN - 1) == 0)) {
        out = tag;
        len = strlen(tag);
    }
    sendto(fd, out, len, 0, (struct sockaddr *)&peer, plen);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "check") == 0) return check(argv[2]);
    if (argc == 3 && strcmp(argv[1], "check-file") == 0) return access(argv[2], F_OK) ? 1 : 0;
    if (argc == 3 && strcmp(argv[1], "touch") == 0) {
        int fd = open(argv[2], O_WRONLY | O_CREAT, 0644);
        if (fd < 0) die(argv[2]);
        return close(fd);
    }
    if (argc == 3 && strcmp(argv[1], "rm") == 0)
        return unlink(argv[2]) == 0 || errno == ENOENT ? 0 : 1;

    struct pollfd fds[MAXSOCK];
    int udp[MAXSOCK], nfds = 0;
    const char *health_file = NULL;
    if (gethostname(tag, sizeof tag - 1) != 0) strcpy(tag, "echo");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-t") || !strcmp(a, "-u")) && i + 1 < argc && nfds < MAXSOCK) {
            int port = atoi(argv[++i]);
            if (port <= 0 || port > 65535) {
                fprintf(stderr, "echo: bad port %s\n", argv[i]);
                return 2;
            }
            udp[nfds] = a[1] == 'u';
            fds[nfds].fd = listen_on(udp[nfds] ? SOCK_DGRAM : SOCK_STREAM, port);
            fds[nfds++].events = POLLIN;
            printf("echo: %s %d\n", udp[nfds - 1] ? "udp" : "tcp", port);
        } else if (!strcmp(a, "--tag") && i + 1 < argc) {
            snprintf(tag, sizeof tag, "%s", argv[++i]);
        } else if (!strcmp(a, "--health-file") && i + 1 < argc) {
            health_file = argv[++i];
        } else if (!strcmp(a, "--close-after-whoami")) {
            close_after_whoami = 1;
        } else if (!strcmp(a, "--grace") && i + 1 < argc) {
            grace_seconds = (unsigned)atoi(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: echo [-t PORT]... [-u PORT]... [--tag TEXT] [--health-file PATH]"
                    " [--grace SECONDS] [--close-after-whoami]\n"
                    "       echo check HOST:PORT | check-file PATH | touch PATH | rm PATH\n");
            return 2;
        }
    }
    if (nfds == 0) {
        for (int u = 0; u < 2; u++) {
            udp[nfds] = u;
            fds[nfds].fd = listen_on(u ? SOCK_DGRAM : SOCK_STREAM, 7);
            fds[nfds++].events = POLLIN;
        }
        printf("echo: tcp 7\necho: udp 7\n");
    }
    signal(SIGCHLD, SIG_IGN); /* children are reaped automatically */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_stop); /* as PID 1 there is no default action */
    signal(SIGINT, on_stop);
    signal(SIGALRM, on_stop);
    if (health_file) {
        int fd = open(health_file, O_WRONLY | O_CREAT, 0644);
        if (fd < 0) die(health_file);
        close(fd);
    }
    printf("echo: ready (tag %s)\n", tag);

    for (;;) {
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        for (int i = 0; i < nfds; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            if (udp[i]) {
                serve_udp(fds[i].fd);
                continue;
            }
            int c = accept(fds[i].fd, NULL, NULL);
            if (c < 0) continue;
            pid_t pid = fork();
            if (pid == 0) {
                for (int j = 0; j < nfds; j++) close(fds[j].fd);
                signal(SIGTERM, SIG_DFL);
                signal(SIGALRM, SIG_DFL);
                alarm(0);
                serve_tcp(c);
            }
            close(c);
        }
    }
}
