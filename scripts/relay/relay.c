/* relay.c -- tern-relay: the delaying TCP relay of the failover drill's --netns mode
 * (scripts/drill --netns, scripts/lib/netns.sh). Not part of the daemons.
 *
 *   tern-relay [--delay-ms MS] --route NAME,LISTEN_IP:PORT,TARGET_IP:PORT [--route ...]
 *       For every route, listens on LISTEN and, per accepted connection, connects to
 *       TARGET and forwards bytes both ways, each chunk held back until MS milliseconds
 *       (one-way delay, decimals allowed, default 0) after it was read. So a request and
 *       its response through the relay take 2*MS more than without it: RTT = 2*MS.
 *       Prints "ready" on stderr once every route listens.
 *   tern-relay --echo LISTEN_IP:PORT
 *       An echo server (no delay): what the RTT probe talks to.
 *   tern-relay --probe IP:PORT [--count N]
 *       Connects, then N times (default 20) sends 32 bytes and waits for them to come
 *       back; prints one JSON line {"count","connect_ms","min_ms","p50_ms","p90_ms",
 *       "max_ms"} on stdout. Exit 1 (reason on stderr) if anything fails or a round trip
 *       takes over 5 s.
 *
 * Owns: one epoll loop in one thread (no other threads), its listening sockets, the
 * connection pairs and their queues, a timerfd and a signalfd.
 * Invariants:
 *  - Each direction of a pair is a FIFO of chunks stamped due = read time + delay
 *    (CLOCK_MONOTONIC); a chunk is written only when due and after every chunk before
 *    it, so the byte order of each direction is preserved. Because the delay is fixed,
 *    each FIFO is sorted by due time, so its head is the next thing to do.
 *  - EOF from one side is queued as a marker and becomes shutdown(SHUT_WR) on the other
 *    side when due (half-close is delayed like data); a read or write error, or a failed
 *    connect to the target, closes both sides at once.
 *  - Backpressure: a side is not read while the queue towards the other side holds
 *    RELAY_QUEUE_MAX bytes or more; the relay never buffers more than that per direction.
 *  - No busy loop: the loop sleeps in epoll_wait(-1); the timerfd is armed (absolute
 *    time) at the earliest due chunk that can be written; a side with nothing left to
 *    do in either direction is removed from epoll.
 *  - SIGTERM or SIGINT (signalfd): stop accepting, close every connection, free
 *    everything, exit 0.
 * The connect to the target is not delayed (a connection is set up in ~0 ms instead of
 * one RTT); data and half-closes are. IPv4 only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define RELAY_MAX_ROUTES 16
#define RELAY_READ_BUF 65536               /* bytes per read() */
#define RELAY_QUEUE_MAX (4u << 20)         /* bytes queued per direction before reads stop */
#define RELAY_PROBE_BYTES 32
#define RELAY_PROBE_MAX 10000
#define RELAY_PROBE_TIMEOUT_S 5

enum { K_LISTEN, K_SIDE, K_TIMER, K_SIGNAL };

typedef struct chunk {
    struct chunk *next;
    uint64_t due_ns;                       /* CLOCK_MONOTONIC ns when it may be written */
    size_t len, off;                       /* off: bytes of data already written */
    int eof;                               /* 1: a half-close marker, no data */
    unsigned char data[];
} chunk;

struct pair;

typedef struct side {
    int kind;                              /* K_SIDE: first member, epoll tag */
    int fd;                                /* -1 when unused (echo pairs have no b) */
    struct pair *pair;
    struct side *peer;                     /* where bytes read here go (itself for echo) */
    chunk *head, *tail;                    /* bytes waiting to be written TO fd */
    size_t queued;                         /* data bytes in head..tail */
    int read_open;                         /* 0 after EOF was read */
    int wr_shut;                           /* 1 after shutdown(SHUT_WR) */
    int write_blocked;                     /* 1: the kernel buffer was full, wait EPOLLOUT */
    int hup;                               /* EPOLLHUP seen while reads were held back */
    int in_epoll;
    uint32_t mask;                         /* events currently registered */
    uint64_t bytes_in;                     /* bytes read from fd */
} side;

typedef struct route {
    int kind;                              /* K_LISTEN */
    int fd;
    char name[200];
    char listen_s[200], target_s[200];
    struct sockaddr_in listen, target;
    int echo;                              /* 1: echo server, no target */
} route;

typedef struct pair {
    side a, b;                             /* a: accepted, b: towards the target */
    int connecting;                        /* b's non-blocking connect in progress */
    int dead;                              /* close both sides at the end of this turn */
    unsigned long id;
    route *r;
    struct pair *prev, *next;
} pair;

static struct {
    int ep, tfd, sfd;
    int tfd_kind, sfd_kind;                /* epoll tags of the timerfd and signalfd */
    uint64_t delay_ns;
    route routes[RELAY_MAX_ROUTES];
    int n_routes;
    pair *pairs;
    unsigned long next_id;
    uint64_t armed_ns;                     /* the timerfd's current expiry, 0 disarmed */
    int accept_paused;                     /* out of fds: listeners out of epoll until a close */
} R;

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
    char ts[32];
    struct timespec now;
    struct tm tm;
    va_list ap;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld tern-relay: ", ts, now.tv_nsec / 1000000);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* parse_addr "IP:PORT" into sa; returns 0 or -1. */
static int parse_addr(const char *s, struct sockaddr_in *sa) {
    char host[64];
    const char *colon = strrchr(s, ':');
    char *end;
    long port;
    if (!colon || (size_t)(colon - s) >= sizeof host || colon == s) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 1 || port > 65535) return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void set_nodelay(int fd) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- queues ---- */

static void queue_free(side *s) {
    chunk *c = s->head, *n;
    for (; c; c = n) {
        n = c->next;
        free(c);
    }
    s->head = s->tail = NULL;
    s->queued = 0;
}

/* Appends a chunk (data, or an EOF marker when len == 0 and eof) due at due_ns to
 * the queue towards s. Returns 0, or -1 when out of memory. */
static int queue_push(side *s, const unsigned char *data, size_t len, int eof, uint64_t due_ns) {
    chunk *c = malloc(sizeof *c + len);
    if (!c) return -1;
    c->next = NULL;
    c->due_ns = due_ns;
    c->len = len;
    c->off = 0;
    c->eof = eof;
    if (len) memcpy(c->data, data, len);
    if (s->tail) s->tail->next = c;
    else s->head = c;
    s->tail = c;
    s->queued += len;
    return 0;
}

/* ---- epoll bookkeeping ---- */

static int side_done(const side *s) {
    return s->fd < 0 || (!s->read_open && s->wr_shut);
}

/* Registers the events s needs now (or removes it from epoll when it needs none). */
static void side_update(side *s) {
    pair *p = s->pair;
    uint32_t want = 0;
    struct epoll_event ev;
    if (s->fd < 0 || p->dead) return;
    if (s == &p->b && p->connecting) {
        want = EPOLLOUT;
    } else if (!side_done(s)) {
        if (s->read_open && s->peer->queued < RELAY_QUEUE_MAX) want |= EPOLLIN;
        if (s->write_blocked) want |= EPOLLOUT;
    }
    /* done, or hung up while reads are held back (HUP is level-triggered and cannot be
     * masked: leave epoll until the queue drains and reading can go on) */
    if (side_done(s) || (s->hup && !(want & EPOLLIN))) {
        if (s->in_epoll) {
            (void)epoll_ctl(R.ep, EPOLL_CTL_DEL, s->fd, NULL);
            s->in_epoll = 0;
        }
        return;
    }
    if (s->in_epoll && want == s->mask) return;
    s->hup = 0;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.ptr = s;
    if (epoll_ctl(R.ep, s->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        logf_("%s #%lu: epoll_ctl: %s", p->r->name, p->id, strerror(errno));
        p->dead = 1;
        return;
    }
    s->in_epoll = 1;
    s->mask = want;
}

static void listeners_set(int on) {
    for (int i = 0; i < R.n_routes; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &R.routes[i]};
        if (R.routes[i].fd >= 0)
            (void)epoll_ctl(R.ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, R.routes[i].fd, &ev);
    }
    R.accept_paused = !on;
}

static void pair_close(pair *p, const char *why) {
    side *ss[2] = {&p->a, &p->b};
    logf_("%s #%lu: closed (%s), %llu bytes in, %llu bytes back", p->r->name, p->id, why,
          (unsigned long long)p->a.bytes_in, (unsigned long long)p->b.bytes_in);
    for (int i = 0; i < 2; i++) {
        if (ss[i]->fd >= 0) {
            if (ss[i]->in_epoll) (void)epoll_ctl(R.ep, EPOLL_CTL_DEL, ss[i]->fd, NULL);
            close(ss[i]->fd);
            ss[i]->fd = -1;
        }
        queue_free(ss[i]);
    }
    if (p->prev) p->prev->next = p->next;
    else R.pairs = p->next;
    if (p->next) p->next->prev = p->prev;
    free(p);
    if (R.accept_paused) {
        logf_("a connection closed: accepting again");
        listeners_set(1);
    }
}

/* ---- data movement ---- */

/* Reads what s has (up to a bounded amount per turn) and queues it towards s->peer. */
static void side_read(side *s, uint64_t now) {
    pair *p = s->pair;
    unsigned char buf[RELAY_READ_BUF];
    int rounds = 0;
    while (s->read_open && s->peer->queued < RELAY_QUEUE_MAX && rounds++ < 16) {
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n > 0) {
            s->bytes_in += (uint64_t)n;
            if (queue_push(s->peer, buf, (size_t)n, 0, now + R.delay_ns) != 0) {
                logf_("%s #%lu: out of memory", p->r->name, p->id);
                p->dead = 1;
                return;
            }
        } else if (n == 0) {
            s->read_open = 0;
            if (queue_push(s->peer, NULL, 0, 1, now + R.delay_ns) != 0) p->dead = 1;
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else {
            logf_("%s #%lu: read: %s", p->r->name, p->id, strerror(errno));
            p->dead = 1;
            return;
        }
    }
}

/* Writes every due chunk of the queue towards s until the kernel buffer is full. */
static void side_flush(side *s, uint64_t now) {
    pair *p = s->pair;
    if (s->fd < 0 || p->dead || s->write_blocked || (s == &p->b && p->connecting)) return;
    while (s->head && s->head->due_ns <= now) {
        chunk *c = s->head;
        if (c->eof) {
            if (shutdown(s->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
                logf_("%s #%lu: shutdown: %s", p->r->name, p->id, strerror(errno));
                p->dead = 1;
                return;
            }
            s->wr_shut = 1;
        } else {
            ssize_t n = send(s->fd, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    s->write_blocked = 1;
                    return;
                }
                logf_("%s #%lu: write: %s", p->r->name, p->id, strerror(errno));
                p->dead = 1;
                return;
            }
            c->off += (size_t)n;
            s->queued -= (size_t)n;
            if (c->off < c->len) {
                s->write_blocked = 1;
                return;
            }
        }
        s->head = c->next;
        if (!s->head) s->tail = NULL;
        free(c);
    }
}

/* The earliest due time among heads that can be written now; 0 if none. */
static uint64_t next_due(void) {
    uint64_t best = 0;
    for (pair *p = R.pairs; p; p = p->next) {
        side *ss[2] = {&p->a, &p->b};
        for (int i = 0; i < 2; i++) {
            side *s = ss[i];
            if (s->fd < 0 || !s->head || s->write_blocked || (s == &p->b && p->connecting)) continue;
            if (!best || s->head->due_ns < best) best = s->head->due_ns;
        }
    }
    return best;
}

static void timer_arm(uint64_t at_ns) {
    struct itimerspec its;
    if (at_ns == R.armed_ns) return;
    memset(&its, 0, sizeof its);
    if (at_ns) {
        its.it_value.tv_sec = (time_t)(at_ns / 1000000000u);
        its.it_value.tv_nsec = (long)(at_ns % 1000000000u);
    }
    if (timerfd_settime(R.tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        logf_("timerfd_settime: %s", strerror(errno));
    else
        R.armed_ns = at_ns;
}

/* ---- accepting ---- */

static void side_init(side *s, pair *p, side *peer, int fd) {
    memset(s, 0, sizeof *s);
    s->kind = K_SIDE;
    s->fd = fd;
    s->pair = p;
    s->peer = peer;
    s->read_open = fd >= 0;
}

static void route_accept(route *r) {
    for (;;) {
        int cfd = accept4(r->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), tfd = -1;
        pair *p;
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* the listener would stay readable: stop accepting until a pair closes */
                logf_("%s: accept: %s: not accepting until a connection closes", r->name, strerror(errno));
                if (R.pairs) listeners_set(0);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                logf_("%s: accept: %s", r->name, strerror(errno));
            }
            return;
        }
        set_nodelay(cfd);
        if (!(p = calloc(1, sizeof *p))) {
            logf_("%s: out of memory", r->name);
            close(cfd);
            continue;
        }
        p->id = ++R.next_id;
        p->r = r;
        if (r->echo) {
            side_init(&p->a, p, &p->a, cfd);
            side_init(&p->b, p, &p->a, -1);
        } else {
            tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (tfd < 0) {
                logf_("%s: socket: %s", r->name, strerror(errno));
                close(cfd);
                free(p);
                continue;
            }
            set_nodelay(tfd);
            if (connect(tfd, (struct sockaddr *)&r->target, sizeof r->target) == 0) {
                p->connecting = 0;
            } else if (errno == EINPROGRESS) {
                p->connecting = 1;
            } else {
                logf_("%s: connect %s: %s", r->name, r->target_s, strerror(errno));
                close(cfd);
                close(tfd);
                free(p);
                continue;
            }
            side_init(&p->a, p, &p->b, cfd);
            side_init(&p->b, p, &p->a, tfd);
        }
        p->next = R.pairs;
        if (R.pairs) R.pairs->prev = p;
        R.pairs = p;
        logf_("%s #%lu: accepted%s", r->name, p->id, r->echo ? "" : ", connecting to target");
        side_update(&p->a);
        side_update(&p->b);
    }
}

static int route_listen(route *r) {
    int one = 1;
    r->kind = K_LISTEN;
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->fd < 0) {
        logf_("%s: socket: %s", r->name, strerror(errno));
        return -1;
    }
    (void)setsockopt(r->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(r->fd, (struct sockaddr *)&r->listen, sizeof r->listen) != 0 || listen(r->fd, 128) != 0) {
        logf_("%s: cannot listen on %s: %s", r->name, r->listen_s, strerror(errno));
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
    if (epoll_ctl(R.ep, EPOLL_CTL_ADD, r->fd, &ev) != 0) {
        logf_("%s: epoll_ctl: %s", r->name, strerror(errno));
        return -1;
    }
    if (r->echo) logf_("%s: echo server on %s", r->name, r->listen_s);
    else logf_("%s: %s -> %s, one-way delay %.3f ms", r->name, r->listen_s, r->target_s, (double)R.delay_ns / 1e6);
    return 0;
}

/* ---- the loop ---- */

static void on_side_event(side *s, uint32_t evs, uint64_t now) {
    pair *p = s->pair;
    if (p->dead) return;
    if (s == &p->b && p->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0 && !(evs & (EPOLLERR | EPOLLHUP))) {
            p->connecting = 0;
            logf_("%s #%lu: connected to %s", p->r->name, p->id, p->r->target_s);
        } else if (err != 0 || (evs & (EPOLLERR | EPOLLHUP))) {
            logf_("%s #%lu: connect %s: %s", p->r->name, p->id, p->r->target_s,
                  strerror(err ? err : ECONNREFUSED));
            p->dead = 1;
        }
        return;
    }
    if (evs & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        (void)getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        logf_("%s #%lu: socket error: %s", p->r->name, p->id, strerror(err ? err : EIO));
        p->dead = 1;
        return;
    }
    if (evs & EPOLLOUT) s->write_blocked = 0;
    if (evs & (EPOLLIN | EPOLLHUP)) side_read(s, now);
    if ((evs & EPOLLHUP) && s->read_open) s->hup = 1; /* held back: side_update parks it */
    /* HUP with nothing left to read and our side not finished: the connection is gone
     * (reset); going on would only see HUP again and again */
    if ((evs & EPOLLHUP) && !s->read_open && !s->wr_shut) {
        logf_("%s #%lu: connection hung up", p->r->name, p->id);
        p->dead = 1;
    }
}

static int run_loop(void) {
    struct epoll_event evs[64];
    int stop = 0;
    for (;;) {
        uint64_t now;
        int n = epoll_wait(R.ep, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            logf_("epoll_wait: %s", strerror(errno));
            return 1;
        }
        now = mono_ns();
        for (int i = 0; i < n; i++) {
            int kind = *(int *)evs[i].data.ptr;
            if (kind == K_LISTEN) {
                route_accept(evs[i].data.ptr);
            } else if (kind == K_TIMER) {
                uint64_t exp;
                ssize_t rn = read(R.tfd, &exp, sizeof exp);
                (void)rn;
                R.armed_ns = 0;
            } else if (kind == K_SIGNAL) {
                struct signalfd_siginfo si;
                if (read(R.sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    logf_("signal %u: shutting down", si.ssi_signo);
                    stop = 1;
                }
            } else {
                on_side_event(evs[i].data.ptr, evs[i].events, now);
            }
        }
        if (stop) return 0;
        now = mono_ns();
        for (pair *p = R.pairs, *next; p; p = next) {
            next = p->next;
            side_flush(&p->a, now);
            side_flush(&p->b, now);
            /* reads that stopped for backpressure may go on now that a queue drained */
            side_update(&p->a);
            side_update(&p->b);
            if (p->dead) pair_close(p, "error");
            else if (side_done(&p->a) && side_done(&p->b) && !p->a.head && !p->b.head)
                pair_close(p, "both sides finished");
        }
        timer_arm(next_due());
    }
}

static int relay_main(void) {
    sigset_t mask;
    struct epoll_event ev;
    int rc;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        logf_("sigprocmask: %s", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    R.ep = epoll_create1(EPOLL_CLOEXEC);
    R.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    R.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (R.ep < 0 || R.tfd < 0 || R.sfd < 0) {
        logf_("epoll/timerfd/signalfd: %s", strerror(errno));
        return 1;
    }
    R.tfd_kind = K_TIMER;
    R.sfd_kind = K_SIGNAL;
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &R.tfd_kind};
    if (epoll_ctl(R.ep, EPOLL_CTL_ADD, R.tfd, &ev) != 0) return 1;
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &R.sfd_kind};
    if (epoll_ctl(R.ep, EPOLL_CTL_ADD, R.sfd, &ev) != 0) return 1;
    for (int i = 0; i < R.n_routes; i++)
        if (route_listen(&R.routes[i]) != 0) return 1;
    logf_("ready");
    rc = run_loop();
    while (R.pairs) pair_close(R.pairs, "relay stopping");
    for (int i = 0; i < R.n_routes; i++)
        if (R.routes[i].fd >= 0) close(R.routes[i].fd);
    close(R.tfd);
    close(R.sfd);
    close(R.ep);
    logf_("stopped");
    return rc;
}

/* ---- the RTT probe ---- */

static double ms_since(uint64_t t0) { return (double)(mono_ns() - t0) / 1e6; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int probe_main(const char *addr_s, long count) {
    struct sockaddr_in sa;
    struct timeval tv = {RELAY_PROBE_TIMEOUT_S, 0};
    unsigned char out[RELAY_PROBE_BYTES], in[RELAY_PROBE_BYTES];
    double *rtt, connect_ms;
    uint64_t t0;
    int fd;
    if (parse_addr(addr_s, &sa) != 0) {
        fprintf(stderr, "tern-relay: --probe: expected IP:PORT, got \"%s\"\n", addr_s);
        return 2;
    }
    if (!(rtt = calloc((size_t)count, sizeof *rtt))) return 1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "tern-relay: socket: %s\n", strerror(errno));
        free(rtt);
        return 1;
    }
    set_nodelay(fd);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    t0 = mono_ns();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "tern-relay: probe connect %s: %s\n", addr_s, strerror(errno));
        close(fd);
        free(rtt);
        return 1;
    }
    connect_ms = ms_since(t0);
    for (long i = 0; i < count; i++) {
        size_t got = 0;
        memset(out, (int)('a' + i % 26), sizeof out);
        t0 = mono_ns();
        if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t)sizeof out) {
            fprintf(stderr, "tern-relay: probe send: %s\n", strerror(errno));
            goto fail;
        }
        while (got < sizeof in) {
            ssize_t n = recv(fd, in + got, sizeof in - got, 0);
            if (n <= 0) {
                fprintf(stderr, "tern-relay: probe %ld: %s\n", i,
                        n == 0 ? "connection closed" : strerror(errno));
                goto fail;
            }
            got += (size_t)n;
        }
        rtt[i] = ms_since(t0);
        if (memcmp(in, out, sizeof in) != 0) {
            fprintf(stderr, "tern-relay: probe %ld: echo differs from what was sent\n", i);
            goto fail;
        }
    }
    close(fd);
    qsort(rtt, (size_t)count, sizeof *rtt, cmp_double);
    printf("{\"count\":%ld,\"connect_ms\":%.3f,\"min_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
           "\"max_ms\":%.3f}\n",
           count, connect_ms, rtt[0], rtt[(count - 1) / 2], rtt[(count * 9 + 9) / 10 - 1], rtt[count - 1]);
    free(rtt);
    return 0;
fail:
    close(fd);
    free(rtt);
    return 1;
}

/* ---- command line ---- */

static int usage(void) {
    fprintf(stderr,
            "usage: tern-relay [--delay-ms MS] --route NAME,LISTEN_IP:PORT,TARGET_IP:PORT [--route ...]\n"
            "       tern-relay --echo LISTEN_IP:PORT\n"
            "       tern-relay --probe IP:PORT [--count N]\n");
    return 2;
}

static int add_route(const char *spec, int echo) {
    route *r;
    char buf[200], *name, *lis, *tgt = NULL, *save = NULL;
    if (R.n_routes >= RELAY_MAX_ROUTES) {
        fprintf(stderr, "tern-relay: at most %d routes\n", RELAY_MAX_ROUTES);
        return -1;
    }
    if (strlen(spec) >= sizeof buf) goto bad;
    strcpy(buf, spec);
    r = &R.routes[R.n_routes];
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->echo = echo;
    if (echo) {
        name = "echo";
        lis = buf;
    } else {
        name = strtok_r(buf, ",", &save);
        lis = strtok_r(NULL, ",", &save);
        tgt = strtok_r(NULL, ",", &save);
        if (!name || !lis || !tgt || strtok_r(NULL, ",", &save) || strlen(name) >= sizeof r->name) goto bad;
        if (parse_addr(tgt, &r->target) != 0) goto bad;
        snprintf(r->target_s, sizeof r->target_s, "%s", tgt);
    }
    if (parse_addr(lis, &r->listen) != 0) goto bad;
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->listen_s, sizeof r->listen_s, "%s", lis);
    R.n_routes++;
    return 0;
bad:
    fprintf(stderr, "tern-relay: %s: expected %s, got \"%s\"\n", echo ? "--echo" : "--route",
            echo ? "LISTEN_IP:PORT" : "NAME,LISTEN_IP:PORT,TARGET_IP:PORT (IPv4)", spec);
    return -1;
}

int main(int argc, char **argv) {
    const char *probe = NULL;
    long count = 20;
    int echo = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--delay-ms")) {
            double d;
            errno = 0;
            d = strtod(v, &end);
            if (errno || end == v || *end || !(d >= 0 && d <= 60000)) {
                fprintf(stderr, "tern-relay: --delay-ms: expected 0..60000, got \"%s\"\n", v);
                return 2;
            }
            R.delay_ns = (uint64_t)(d * 1e6 + 0.5);
        } else if (!strcmp(a, "--route")) {
            if (add_route(v, 0) != 0) return 2;
        } else if (!strcmp(a, "--echo")) {
            if (add_route(v, 1) != 0) return 2;
            echo = 1;
        } else if (!strcmp(a, "--probe")) {
            probe = v;
        } else if (!strcmp(a, "--count")) {
            errno = 0;
            count = strtol(v, &end, 10);
            if (errno || end == v || *end || count < 1 || count > RELAY_PROBE_MAX) {
                fprintf(stderr, "tern-relay: --count: expected 1..%d, got \"%s\"\n", RELAY_PROBE_MAX, v);
                return 2;
            }
        } else {
            fprintf(stderr, "tern-relay: unknown option %s\n", a);
            return usage();
        }
    }
    if (probe) return R.n_routes ? usage() : probe_main(probe, count);
    if (!R.n_routes || (echo && R.n_routes > 1)) return usage();
    if (echo) R.delay_ns = 0;
    return relay_main();
}
