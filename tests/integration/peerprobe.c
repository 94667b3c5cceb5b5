/* peerprobe.c -- a hostile (or merely curious) peer for integration tests: a ZeroMQ
 * DEALER that connects to a tern-replicator as a CURVE client (or plain), sends
 * frames that a real agent would never send, and reports the replies.
 *
 *   peerprobe [OPTIONS] raw FILE...      send the bytes of each FILE as one frame, all over
 *                                        one connection (at most 64 files)
 *   peerprobe [OPTIONS] craft            send a hand-made frame:
 *             [--magic TEXT4] [--version N] [--type N] [--reserved N] [--length N]
 *             (--body JSON | --body-file FILE)
 *             header fields default to a valid version 1 BATCH header (the body then
 *             has no acked); --length defaults to the body's size (give another value
 *             to lie about it)
 *   peerprobe [OPTIONS] garbage N [--seed S] [--max-len L]
 *             send N frames of random bytes (xorshift64 seeded with S, default 1), each
 *             0..L bytes long (default 256) and never starting with 'T' (so each is
 *             rejected as "short" below 12 bytes, else "magic"); prints
 *             "garbage N short K magic M"
 *   peerprobe [OPTIONS] batch --source R --table T --prev POS --pos POS --ver VERSION
 *             --keys JSON [--image JSON] [--sent-ms N] [--acked POS]
 *             one change encoded with wire_encode_batch (a put with --image, else a
 *             delete); a version 2 frame carrying acked with --acked, else version 1;
 *             the encoder's rules apply, use craft to break them
 *   peerprobe [OPTIONS] flood N [--frame-file FILE]
 *             open N connections at once, each sending one frame (FILE, or a 12-byte
 *             header with no body); prints "flood N connections R replies"
 *   peerprobe [--secret-key FILE | --plain] [--wait MS] serve --bind ENDPOINT --ack-pos POS
 *             the other way round: stands in for a replicator (a ROUTER bound to ENDPOINT,
 *             the CURVE server with that secret key, any client key accepted), waits up to
 *             --wait ms for an agent's first batch, prints "batch SOURCE TABLE FIRST LAST",
 *             and answers it with an acknowledgement of POS (whatever the batch held:
 *             a faulty peer); prints "acked POS", and stays connected 1 s more. Exit 3 when
 *             no batch came
 * OPTIONS:
 *   --connect ENDPOINT    the replicator, e.g. tcp://127.0.0.1:7201 (without it, raw,
 *                         craft and batch only write the frame to --out)
 *   --server-key FILE     the replicator's public key (Z85 file, as ternctl keygen writes)
 *   --secret-key FILE     this client's secret key (Z85 file); the public key is derived
 *   --plain               no CURVE (against a replicator with curve disabled)
 *   --wait MS             after sending, wait MS ms for replies (default 1000); each reply
 *                         is printed as "ack SOURCE TABLE POS" (or "reply-invalid STATUS: ERR",
 *                         "reply-type N"); "no-ack" if nothing came
 *   --connect-timeout MS  how long a single-connection send waits for the CURVE handshake
 *                         (default 5000); "not-connected" and exit 3 if it never completes
 *   --out FILE            also write the (single) frame to FILE
 * Exit: 0 sent (whatever the replies), 2 usage or local error, 3 not connected.
 * Single-threaded; everything allocated is freed before exit (ASan builds). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <zmq.h>

#include <cjson/cJSON.h>

#include "wire.h"

#define PROBE_MAX_FLOOD 4096

typedef struct {
    const char *connect, *server_key_file, *secret_key_file, *out;
    int plain;
    long wait_ms, connect_timeout_ms;
    /* craft */
    const char *magic, *body, *body_file;
    long version, type, reserved, length; /* length < 0: the body's size */
    /* garbage */
    unsigned long long seed;
    long max_len;
    /* batch */
    const char *source, *table, *prev, *pos, *ver, *keys, *image, *acked;
    unsigned long long sent_ms;
    /* flood */
    const char *frame_file;
    /* serve */
    const char *bind, *ack_pos;
    /* keys */
    char server_pub[41], client_pub[41], client_sec[41];
} probe_opts;

static void usage(void) {
    fprintf(stderr,
            "usage: peerprobe [--connect EP] [--server-key F] [--secret-key F | --plain] [--wait MS]\n"
            "                 [--connect-timeout MS] [--out F] COMMAND ...\n"
            "  raw FILE | craft [--magic T] [--version N] [--type N] [--reserved N] [--length N]\n"
            "  (--body JSON | --body-file F) | garbage N [--seed S] [--max-len L] |\n"
            "  batch --source R --table T --prev P --pos P --ver V --keys J [--image J] [--sent-ms N]\n"
            "        [--acked P] |\n"
            "  flood N [--frame-file F] |\n"
            "  serve --bind EP --ack-pos P   (with --secret-key F as the server's key, or --plain)\n");
}

static int parse_num(const char *s, const char *what, long long lo, long long hi, long long *out) {
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "peerprobe: %s: expected an integer %lld..%lld, got \"%s\"\n", what, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads a whole file; *out is malloc'd (caller frees), NUL-terminated, *len without it. */
static int read_file(const char *path, unsigned char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    *out = NULL;
    *len = 0;
    if (!f) {
        fprintf(stderr, "peerprobe: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t r;
        if (n + 4096 + 1 > cap) {
            unsigned char *nb;
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap);
            if (!nb) {
                fprintf(stderr, "peerprobe: %s: out of memory\n", path);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        fprintf(stderr, "peerprobe: %s: read error\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (!buf && !(buf = malloc(1))) return -1;
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Reads a Z85 key file (40 characters, optional trailing newline) into key[41]. */
static int read_key(const char *path, char key[41]) {
    unsigned char *buf;
    size_t len;
    if (read_file(path, &buf, &len) != 0) return -1;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
    if (len != 40) {
        fprintf(stderr, "peerprobe: %s: not a 40-character Z85 key\n", path);
        free(buf);
        return -1;
    }
    memcpy(key, buf, 40);
    key[40] = '\0';
    free(buf);
    return 0;
}

static int write_out(const char *path, const unsigned char *frame, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(frame, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "peerprobe: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* A DEALER configured as the options say; NULL on error (message printed). */
static void *probe_socket(void *zctx, const probe_opts *o, int immediate, int linger, int reconnect_ivl) {
    int one = 1, zero = 0;
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    if (!s) goto fail;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s, ZMQ_IMMEDIATE, immediate ? &one : &zero, sizeof one) != 0)
        goto fail;
    if (reconnect_ivl > 0 && zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &reconnect_ivl, sizeof reconnect_ivl) != 0)
        goto fail;
    if (!o->plain) {
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, o->server_pub, 41) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, o->client_pub, 41) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, o->client_sec, 41) != 0)
            goto fail;
    }
    if (zmq_connect(s, o->connect) != 0) goto fail;
    return s;
fail:
    fprintf(stderr, "peerprobe: socket to %s: %s\n", o->connect, zmq_strerror(zmq_errno()));
    if (s) zmq_close(s);
    return NULL;
}

static void print_reply(const void *data, size_t len) {
    wire_msg m;
    char err[512], pos[WIRE_POS_STRLEN];
    wire_status ws = wire_decode(data, len, &m, err, sizeof err);
    if (ws != WIRE_OK) {
        printf("reply-invalid %s: %s\n", wire_status_name(ws), err);
        return;
    }
    if (m.type == WIRE_ACK) {
        wire_pos_format(m.u.ack.pos, pos, sizeof pos);
        printf("ack %s %s %s\n", m.u.ack.source, m.u.ack.table, pos);
    } else {
        printf("reply-type %d\n", (int)m.type);
    }
    wire_msg_free(&m);
}

/* Polls the n sockets for wait_ms, printing replies; returns how many came. */
static long collect_replies(void **socks, size_t n, long wait_ms, int print) {
    zmq_pollitem_t *items = calloc(n, sizeof *items);
    long got = 0;
    long long waited = 0;
    if (!items) return 0;
    for (size_t i = 0; i < n; i++) {
        items[i].socket = socks[i];
        items[i].events = ZMQ_POLLIN;
    }
    while (waited < wait_ms) {
        long slice = wait_ms - waited > 50 ? 50 : wait_ms - waited;
        int rc = zmq_poll(items, (int)n, slice);
        waited += slice; /* an upper bound on elapsed time is enough here */
        if (rc < 0 && zmq_errno() != EINTR) break;
        for (size_t i = 0; rc > 0 && i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            for (;;) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, socks[i], ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    break;
                }
                got++;
                if (print) print_reply(zmq_msg_data(&m), zmq_msg_size(&m));
                zmq_msg_close(&m);
            }
        }
    }
    free(items);
    return got;
}

/* Sends frames[0..n) over one connection, then collects replies. 0, 2 or 3. */
static int send_frames(void *zctx, const probe_opts *o, unsigned char **frames, const size_t *lens, size_t n) {
    int tmo = (int)o->connect_timeout_ms;
    void *s = probe_socket(zctx, o, 1, 2000, 0);
    long got;
    if (!s) return 2;
    if (zmq_setsockopt(s, ZMQ_SNDTIMEO, &tmo, sizeof tmo) != 0) {
        zmq_close(s);
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        /* with ZMQ_IMMEDIATE the first send blocks until the handshake completed */
        if (zmq_send(s, frames[i], lens[i], 0) < 0) {
            printf("not-connected\n");
            fprintf(stderr, "peerprobe: frame %zu not sent: %s\n", i, zmq_strerror(zmq_errno()));
            zmq_close(s);
            return 3;
        }
    }
    got = collect_replies(&s, 1, o->wait_ms, 1);
    if (!got) printf("no-ack\n");
    fflush(stdout);
    zmq_close(s);
    return 0;
}

static int craft_frame(const probe_opts *o, unsigned char **out, size_t *len) {
    unsigned char *body = NULL, *f;
    size_t blen;
    uint32_t declared;
    if (o->body_file) {
        if (read_file(o->body_file, &body, &blen) != 0) return -1;
    } else if (o->body) {
        blen = strlen(o->body);
        body = (unsigned char *)strdup(o->body);
        if (!body) return -1;
    } else {
        fprintf(stderr, "peerprobe: craft needs --body or --body-file\n");
        return -1;
    }
    f = malloc(WIRE_HEADER_LEN + blen + 1);
    if (!f) {
        free(body);
        fprintf(stderr, "peerprobe: out of memory\n");
        return -1;
    }
    memset(f, 0, WIRE_HEADER_LEN);
    memcpy(f, o->magic, strlen(o->magic) < 4 ? strlen(o->magic) : 4);
    f[4] = (unsigned char)o->version;
    f[5] = (unsigned char)o->type;
    f[6] = (unsigned char)((unsigned long)o->reserved >> 8);
    f[7] = (unsigned char)((unsigned long)o->reserved & 0xff);
    declared = o->length >= 0 ? (uint32_t)o->length : (uint32_t)blen;
    f[8] = (unsigned char)(declared >> 24);
    f[9] = (unsigned char)(declared >> 16);
    f[10] = (unsigned char)(declared >> 8);
    f[11] = (unsigned char)declared;
    memcpy(f + WIRE_HEADER_LEN, body, blen);
    free(body);
    *out = f;
    *len = WIRE_HEADER_LEN + blen;
    return 0;
}

static int batch_frame(const probe_opts *o, unsigned char **out, size_t *len) {
    wire_batch b;
    wire_change c;
    char err[512];
    int rc = -1;
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    if (!o->source || !o->table || !o->prev || !o->pos || !o->ver || !o->keys) {
        fprintf(stderr, "peerprobe: batch needs --source --table --prev --pos --ver --keys\n");
        return -1;
    }
    if (strlen(o->source) >= sizeof b.source || strlen(o->table) >= sizeof b.table ||
        strlen(o->ver) >= sizeof c.version) {
        fprintf(stderr, "peerprobe: --source, --table or --ver too long\n");
        return -1;
    }
    snprintf(b.source, sizeof b.source, "%s", o->source);
    snprintf(b.table, sizeof b.table, "%s", o->table);
    snprintf(c.version, sizeof c.version, "%s", o->ver);
    if (wire_pos_parse(o->prev, &b.prev) != 0 || wire_pos_parse(o->pos, &c.pos) != 0 ||
        (o->acked && wire_pos_parse(o->acked, &b.acked) != 0)) {
        fprintf(stderr, "peerprobe: --prev/--pos/--acked: expected positions \"ms-seq\"\n");
        return -1;
    }
    b.has_acked = o->acked != NULL;
    c.keys = cJSON_Parse(o->keys);
    c.image = o->image ? cJSON_Parse(o->image) : NULL;
    if (!c.keys || (o->image && !c.image)) {
        fprintf(stderr, "peerprobe: --keys/--image: not JSON\n");
        goto out;
    }
    c.op = o->image ? WIRE_OP_PUT : WIRE_OP_DELETE;
    b.first = b.last = c.pos;
    b.sent_ms = o->sent_ms;
    b.n = 1;
    b.changes = &c;
    if (wire_encode_batch(&b, out, len, err, sizeof err) != 0) {
        fprintf(stderr, "peerprobe: wire_encode_batch: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(c.keys);
    cJSON_Delete(c.image);
    return rc;
}

static uint64_t xorshift64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int cmd_garbage(void *zctx, const probe_opts *o, long n) {
    unsigned char **frames = calloc((size_t)n, sizeof *frames);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    uint64_t st = o->seed ? o->seed : 1;
    long nshort = 0;
    int rc = 2;
    if (!frames || !lens) goto out;
    for (long i = 0; i < n; i++) {
        size_t len = (size_t)(xorshift64(&st) % (uint64_t)(o->max_len + 1));
        frames[i] = malloc(len ? len : 1);
        if (!frames[i]) goto out;
        for (size_t j = 0; j < len; j++) frames[i][j] = (unsigned char)xorshift64(&st);
        if (len > 0 && frames[i][0] == 'T') frames[i][0] = 'X';
        lens[i] = len;
        if (len < WIRE_HEADER_LEN) nshort++;
    }
    printf("garbage %ld short %ld magic %ld\n", n, nshort, n - nshort);
    fflush(stdout);
    rc = send_frames(zctx, o, frames, lens, (size_t)n);
out:
    for (long i = 0; frames && i < n; i++) free(frames[i]);
    free(frames);
    free(lens);
    return rc;
}

static int cmd_flood(void *zctx, const probe_opts *o, long n) {
    void **socks = calloc((size_t)n, sizeof *socks);
    unsigned char *frame = NULL;
    size_t flen = WIRE_HEADER_LEN;
    long opened = 0, queued = 0, got;
    int rc = 2;
    struct rlimit rl;
    /* two descriptors per connection (mailbox, TCP) and some: raise the soft limit */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!socks) goto out;
    if (o->frame_file) {
        if (read_file(o->frame_file, &frame, &flen) != 0) goto out;
    } else {
        frame = calloc(1, WIRE_HEADER_LEN);
        if (!frame) goto out;
        memcpy(frame, "TERN\x01\x01", 6);
    }
    for (long i = 0; i < n; i++) {
        /* one handshake per connection during the test: reconnect only after the wait */
        socks[i] = probe_socket(zctx, o, 0, 0, (int)(o->wait_ms + 2000));
        if (!socks[i]) goto out;
        opened++;
    }
    for (long i = 0; i < n; i++)
        if (zmq_send(socks[i], frame, flen, ZMQ_DONTWAIT) >= 0) queued++;
    got = collect_replies(socks, (size_t)n, o->wait_ms, 0);
    printf("flood %ld connections %ld queued %ld replies\n", opened, queued, got);
    rc = 0;
out:
    for (long i = 0; socks && i < opened; i++) zmq_close(socks[i]);
    free(socks);
    free(frame);
    return rc;
}

/* Monotonic time, ms. */
static long long now_ms(void) {
    struct timespec ts = {0, 0};
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* serve: one batch received, answered with an ack of o->ack_pos. 0, 3 (no batch within
 * o->wait_ms) or 2 (a local error, printed). */
static int cmd_serve(const probe_opts *o) {
    void *zctx = zmq_ctx_new(), *s = NULL;
    char sec[41], first[WIRE_POS_STRLEN], last[WIRE_POS_STRLEN];
    int one = 1, linger = 2000, rc = 2;
    wire_ack ack;
    unsigned char *frame = NULL;
    size_t flen = 0;
    long long until;
    memset(&ack, 0, sizeof ack);
    if (wire_pos_parse(o->ack_pos, &ack.pos) != 0) {
        fprintf(stderr, "peerprobe: --ack-pos: not a position \"ms-seq\": %s\n", o->ack_pos);
        goto out;
    }
    if (!zctx || !(s = zmq_socket(zctx, ZMQ_ROUTER)) ||
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0)
        goto zfail;
    if (!o->plain) {
        if (read_key(o->secret_key_file, sec) != 0) goto out;
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 41) != 0)
            goto zfail;
    }
    if (zmq_bind(s, o->bind) != 0) goto zfail;
    until = now_ms() + o->wait_ms;
    for (;;) {
        zmq_msg_t id, m;
        wire_msg wm;
        char err[256];
        int more = 0, got;
        size_t ml = sizeof more;
        zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
        long long left = until - now_ms();
        if (left <= 0) {
            printf("no-batch\n");
            rc = 3;
            goto out;
        }
        int pr = zmq_poll(&pi, 1, (long)left);
        if (pr < 0 && zmq_errno() != EINTR) goto zfail;
        if (pr <= 0) continue;
        zmq_msg_init(&id);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&id, s, 0) < 0 || zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml) != 0 || !more ||
            zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&id);
            zmq_msg_close(&m);
            continue;
        }
        got = wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &wm, err, sizeof err) == WIRE_OK;
        zmq_msg_close(&m);
        if (!got || wm.type != WIRE_BATCH) {
            if (got) wire_msg_free(&wm);
            zmq_msg_close(&id);
            continue;
        }
        wire_pos_format(wm.u.batch.first, first, sizeof first);
        wire_pos_format(wm.u.batch.last, last, sizeof last);
        printf("batch %s %s %s %s\n", wm.u.batch.source, wm.u.batch.table, first, last);
        snprintf(ack.source, sizeof ack.source, "%s", wm.u.batch.source);
        snprintf(ack.table, sizeof ack.table, "%s", wm.u.batch.table);
        wire_msg_free(&wm);
        if (wire_encode_ack(&ack, &frame, &flen, err, sizeof err) != WIRE_OK) {
            fprintf(stderr, "peerprobe: encoding the ack: %s\n", err);
            zmq_msg_close(&id);
            goto out;
        }
        if (zmq_msg_send(&id, s, ZMQ_SNDMORE) < 0 || zmq_send(s, frame, flen, 0) < 0) {
            zmq_msg_close(&id);
            goto zfail;
        }
        printf("acked %s\n", o->ack_pos);
        rc = 0;
        {
            /* connected a while longer: a peer that drops at once can take the ack's
             * delivery with it (the agent's end of the connection is torn down) */
            struct timespec hold = {1, 0};
            nanosleep(&hold, NULL);
        }
        goto out;
    }
zfail:
    fprintf(stderr, "peerprobe: serve on %s: %s\n", o->bind, zmq_strerror(zmq_errno()));
out:
    fflush(stdout);
    free(frame);
    if (s) zmq_close(s); /* lingers until the ack has left */
    if (zctx) zmq_ctx_term(zctx);
    return rc;
}

int main(int argc, char **argv) {
    probe_opts o;
    const char *cmd = NULL, *pos_args[64] = {0};
    int npos = 0, rc = 2;
    long long v;
    void *zctx = NULL;
    unsigned char *frame = NULL;
    size_t flen = 0;

    memset(&o, 0, sizeof o);
    o.wait_ms = 1000;
    o.connect_timeout_ms = 5000;
    o.magic = "TERN";
    o.version = WIRE_VERSION_MIN; /* crafted bodies are version 1 bodies (no acked) */
    o.type = WIRE_BATCH;
    o.length = -1;
    o.seed = 1;
    o.max_len = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
#define OPT(name) (strcmp(a, name) == 0)
        if (OPT("--plain")) {
            o.plain = 1;
            takes = 0;
        } else if (OPT("-h") || OPT("--help")) {
            usage();
            return 0;
        } else if (a[0] == '-' && a[1] == '-') {
            if (!val) {
                fprintf(stderr, "peerprobe: %s needs a value\n", a);
                return 2;
            }
            if (OPT("--connect")) o.connect = val;
            else if (OPT("--server-key")) o.server_key_file = val;
            else if (OPT("--secret-key")) o.secret_key_file = val;
            else if (OPT("--out")) o.out = val;
            else if (OPT("--magic")) o.magic = val;
            else if (OPT("--body")) o.body = val;
            else if (OPT("--body-file")) o.body_file = val;
            else if (OPT("--source")) o.source = val;
            else if (OPT("--table")) o.table = val;
            else if (OPT("--prev")) o.prev = val;
            else if (OPT("--acked")) o.acked = val;
            else if (OPT("--pos")) o.pos = val;
            else if (OPT("--ver")) o.ver = val;
            else if (OPT("--keys")) o.keys = val;
            else if (OPT("--image")) o.image = val;
            else if (OPT("--frame-file")) o.frame_file = val;
            else if (OPT("--bind")) o.bind = val;
            else if (OPT("--ack-pos")) o.ack_pos = val;
            else if (OPT("--wait")) {
                if (parse_num(val, a, 0, 600000, &v)) return 2;
                o.wait_ms = (long)v;
            } else if (OPT("--connect-timeout")) {
                if (parse_num(val, a, 1, 600000, &v)) return 2;
                o.connect_timeout_ms = (long)v;
            } else if (OPT("--version")) {
                if (parse_num(val, a, 0, 255, &v)) return 2;
                o.version = (long)v;
            } else if (OPT("--type")) {
                if (parse_num(val, a, 0, 255, &v)) return 2;
                o.type = (long)v;
            } else if (OPT("--reserved")) {
                if (parse_num(val, a, 0, 65535, &v)) return 2;
                o.reserved = (long)v;
            } else if (OPT("--length")) {
                if (parse_num(val, a, 0, 4294967295LL, &v)) return 2;
                o.length = (long)v;
            } else if (OPT("--seed")) {
                if (parse_num(val, a, 0, 9007199254740991LL, &v)) return 2;
                o.seed = (unsigned long long)v;
            } else if (OPT("--max-len")) {
                if (parse_num(val, a, 0, 1 << 20, &v)) return 2;
                o.max_len = (long)v;
            } else if (OPT("--sent-ms")) {
                if (parse_num(val, a, 0, 9007199254740991LL, &v)) return 2;
                o.sent_ms = (unsigned long long)v;
            } else {
                fprintf(stderr, "peerprobe: unknown option %s\n", a);
                usage();
                return 2;
            }
        } else {
            takes = 0;
            if (!cmd) cmd = a;
            else if (npos < 64) pos_args[npos++] = a;
            else {
                usage();
                return 2;
            }
        }
        i += takes;
#undef OPT
    }
    if (!cmd) {
        usage();
        return 2;
    }
    if (o.connect && !o.plain) {
        if (!o.server_key_file || !o.secret_key_file) {
            fprintf(stderr, "peerprobe: CURVE needs --server-key and --secret-key (or --plain)\n");
            return 2;
        }
        if (read_key(o.server_key_file, o.server_pub) != 0 || read_key(o.secret_key_file, o.client_sec) != 0)
            return 2;
        if (zmq_curve_public(o.client_pub, o.client_sec) != 0) {
            fprintf(stderr, "peerprobe: %s: not a CURVE secret key\n", o.secret_key_file);
            return 2;
        }
    }
    if (o.connect && !(zctx = zmq_ctx_new())) {
        fprintf(stderr, "peerprobe: zmq_ctx_new failed\n");
        return 2;
    }

    if (strcmp(cmd, "raw") == 0 && npos > 1) {
        unsigned char *frames[64] = {0};
        size_t lens[64] = {0};
        int ok = 1;
        for (int i = 0; i < npos && ok; i++) ok = read_file(pos_args[i], &frames[i], &lens[i]) == 0;
        if (ok && o.connect) rc = send_frames(zctx, &o, frames, lens, (size_t)npos);
        else if (ok) fprintf(stderr, "peerprobe: raw needs --connect\n");
        for (int i = 0; i < npos; i++) free(frames[i]);
    } else if (strcmp(cmd, "raw") == 0 || strcmp(cmd, "craft") == 0 || strcmp(cmd, "batch") == 0) {
        int ok;
        if (strcmp(cmd, "raw") == 0) ok = npos == 1 && read_file(pos_args[0], &frame, &flen) == 0;
        else if (strcmp(cmd, "craft") == 0) ok = npos == 0 && craft_frame(&o, &frame, &flen) == 0;
        else ok = npos == 0 && batch_frame(&o, &frame, &flen) == 0;
        if (!ok) goto out;
        if (o.out && write_out(o.out, frame, flen) != 0) goto out;
        if (!o.connect) {
            if (!o.out) fprintf(stderr, "peerprobe: nothing to do without --connect or --out\n");
            rc = o.out ? 0 : 2;
            goto out;
        }
        rc = send_frames(zctx, &o, &frame, &flen, 1);
    } else if (strcmp(cmd, "serve") == 0) {
        if (npos != 0 || !o.bind || !o.ack_pos || (!o.plain && !o.secret_key_file)) {
            usage();
            goto out;
        }
        rc = cmd_serve(&o);
    } else if (strcmp(cmd, "garbage") == 0 || strcmp(cmd, "flood") == 0) {
        if (npos != 1 || parse_num(pos_args[0], cmd, 1, PROBE_MAX_FLOOD, &v) != 0 || !o.connect) {
            usage();
            goto out;
        }
        rc = strcmp(cmd, "garbage") == 0 ? cmd_garbage(zctx, &o, (long)v) : cmd_flood(zctx, &o, (long)v);
    } else {
        fprintf(stderr, "peerprobe: unknown command %s\n", cmd);
        usage();
    }
out:
    free(frame);
    if (zctx) zmq_ctx_term(zctx);
    return rc;
}
