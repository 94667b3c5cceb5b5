/* fuzz_config.c -- fuzz target for config/ (cfg_load).
 *
 * Input: the bytes of a region config file. On first use the target makes a private
 * directory (mkdtemp under $TMPDIR or /tmp) holding what the example configs refer to:
 * keys/{us-east-1,eu-west-1}.{key,pub} (fixed CURVE key pairs, secret keys mode 0600),
 * redis.pw and creds.ini (0600); it sets AWS_ACCESS_KEY_ID/SECRET_ACCESS_KEY/
 * SESSION_TOKEN. Each input is written to <dir>/region.json and loaded, so relative
 * paths in the input resolve inside that directory. Everything is removed at exit.
 * Checks: cfg_load returns a config, or NULL with exactly one non-empty line in err that
 * starts with the file name and carries no secret; a loaded config satisfies its
 * documented bounds, and cfg_check_set runs on it alone and with a fixed eu-west-1 peer
 * config (peer.json, loaded once) in both orders; no crash, no leak. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "cfg.h"
#include "fuzz.h"

#define CF_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define CF_TOKEN "fuzz-session-token"
#define CF_PW "fuzz-redis-password"

static char cf_dir[PATH_MAX];
static char cf_file[PATH_MAX + 32];
static char cf_secret_us[41], cf_secret_eu[41];

static const char *const cf_files[] = {"region.json", "keys/us-east-1.key", "keys/us-east-1.pub",
                                       "keys/eu-west-1.key", "keys/eu-west-1.pub", "redis.pw",
                                       "creds.ini", "peer.json"};
static cfg_region *cf_peer; /* eu-west-1, peer of the example us-east-1 config */

static void cf_cleanup(void)
{
    char p[PATH_MAX + 64];
    cfg_free(cf_peer);
    cf_peer = NULL;
    for (size_t i = 0; i < sizeof cf_files / sizeof cf_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", cf_dir, cf_files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/keys", cf_dir);
    rmdir(p);
    rmdir(cf_dir);
}

static int cf_write(const char *name, const void *data, size_t len, mode_t mode)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", cf_dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    const char *b = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, b + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    int rc = fchmod(fd, mode);
    return close(fd) == 0 && rc == 0 ? 0 : -1;
}

/* A fixed key pair: the secret from 32 bytes of seed, the public derived from it. */
static int cf_keypair(const char *region, unsigned char seed, char *secret)
{
    uint8_t raw[32];
    char pub[41], line[64], name[64];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)(seed + i * 7);
    if (!zmq_z85_encode(secret, raw, sizeof raw) || zmq_curve_public(pub, secret) != 0)
        return -1;
    snprintf(name, sizeof name, "keys/%s.key", region);
    snprintf(line, sizeof line, "%s\n", secret);
    if (cf_write(name, line, strlen(line), 0600) != 0)
        return -1;
    snprintf(name, sizeof name, "keys/%s.pub", region);
    snprintf(line, sizeof line, "%s\n", pub);
    return cf_write(name, line, strlen(line), 0644);
}

static int cf_init(void)
{
    static int state; /* 0 not yet, 1 ready, -1 failed */
    if (state)
        return state;
    state = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(cf_dir, sizeof cf_dir, "%s/tern-fuzz-cfg-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(cf_dir))
        return state;
    atexit(cf_cleanup);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/keys", cf_dir);
    static const char creds[] = "[default]\naws_access_key_id = AKIDDEFAULT\n"
                                "aws_secret_access_key = " CF_SECRET "\n\n[tern]\n"
                                "aws_access_key_id=AKIDTERN\naws_secret_access_key=" CF_SECRET
                                "\naws_session_token = " CF_TOKEN "\n";
    if (mkdir(p, 0700) != 0 || cf_keypair("us-east-1", 1, cf_secret_us) != 0 ||
        cf_keypair("eu-west-1", 2, cf_secret_eu) != 0 ||
        cf_write("redis.pw", CF_PW "\n", strlen(CF_PW) + 1, 0600) != 0 ||
        cf_write("creds.ini", creds, strlen(creds), 0600) != 0)
        return state;
    snprintf(cf_file, sizeof cf_file, "%s/region.json", cf_dir);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", CF_SECRET, 1);
    setenv("AWS_SESSION_TOKEN", CF_TOKEN, 1);
    /* a loaded peer, so that cfg_check_set compares the input with another region */
    static const char peer[] =
        "{\"region\":\"eu-west-1\",\"store\":{\"endpoint\":\"http://127.0.0.1:8001\"},"
        "\"tables\":[\"demo-ecommerce-freetier\"],"
        "\"replicator\":{\"listen\":\"tcp://127.0.0.1:7201\"},"
        "\"peers\":[{\"region\":\"us-east-1\",\"endpoint\":\"tcp://127.0.0.1:7101\","
        "\"public_key_file\":\"keys/us-east-1.pub\"}],"
        "\"curve\":{\"secret_key_file\":\"keys/eu-west-1.key\"}}";
    char perr[512], ppath[PATH_MAX + 16];
    snprintf(ppath, sizeof ppath, "%s/peer.json", cf_dir);
    if (cf_write("peer.json", peer, strlen(peer), 0644) != 0 ||
        !(cf_peer = cfg_load(ppath, perr, sizeof perr))) {
        fprintf(stderr, "fuzz_config: the fixed peer config does not load: %s\n", perr);
        return state;
    }
    state = 1;
    return state;
}

static int cf_region_ok(const char *r)
{
    size_t n = strlen(r);
    return n >= 1 && n <= CFG_REGION_MAX && strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* 1 if the error quotes secret although the input does not hold it verbatim. */
static int cf_leaks(const char *err, const uint8_t *data, size_t size, const char *secret)
{
    size_t n = strlen(secret);
    if (!strstr(err, secret))
        return 0;
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(data + i, secret, n) == 0)
            return 0;
    return 1;
}

static void cf_check_loaded(const cfg_region *c)
{
    char err[1024];
    if (!cf_region_ok(c->region))
        fuzz_fail("loaded region \"%s\" is not a region name", c->region);
    if (!c->store.endpoint || !c->store.access_key_id || !c->store.secret_access_key)
        fuzz_fail("loaded config lacks store endpoint or credentials");
    if (c->n_tables < 1 || c->n_tables > CFG_TABLES_MAX || !c->tables)
        fuzz_fail("loaded config has %zu tables", c->n_tables);
    if (c->n_peers > CFG_PEERS_MAX)
        fuzz_fail("loaded config has %zu peers", c->n_peers);
    for (size_t i = 0; i < c->n_peers; i++) {
        if (strcmp(c->peers[i].region, c->region) == 0)
            fuzz_fail("a peer equals the region");
        if (cfg_peer_find(c, c->peers[i].region) == NULL)
            fuzz_fail("cfg_peer_find misses peer %s", c->peers[i].region);
    }
    if (c->redis.port < 1 || c->redis.port > 65535)
        fuzz_fail("redis port %d", c->redis.port);
    cfg_region *one[1] = {(cfg_region *)c};
    if (cfg_check_set(one, 1, err, sizeof err) != 0 && !err[0])
        fuzz_fail("cfg_check_set failed without an error");
    cfg_region *two[2] = {(cfg_region *)c, cf_peer}, *rev[2] = {cf_peer, (cfg_region *)c};
    int r1 = cfg_check_set(two, 2, err, sizeof err);
    if (r1 != 0 && !err[0])
        fuzz_fail("cfg_check_set of two failed without an error");
    int r2 = cfg_check_set(rev, 2, err, sizeof err);
    if (r2 != 0 && !err[0])
        fuzz_fail("cfg_check_set of two (reversed) failed without an error");
}

int fuzz_config(const uint8_t *data, size_t size)
{
    if (cf_init() != 1)
        return 0;
    if (cf_write("region.json", data, size, 0644) != 0)
        return 0;
    char err[1024];
    err[0] = '\0';
    cfg_region *c = cfg_load(cf_file, err, sizeof err);
    if (c) {
        cf_check_loaded(c);
        cfg_free(c);
        return 0;
    }
    size_t n = strlen(err);
    if (n == 0)
        fuzz_fail("cfg_load failed without an error line");
    if (memchr(err, '\n', n))
        fuzz_fail("error is not one line: %s", err);
    if (strncmp(err, cf_file, strlen(cf_file)) != 0)
        fuzz_fail("error does not start with the file name: %s", err);
    if (cf_leaks(err, data, size, CF_SECRET) || cf_leaks(err, data, size, CF_TOKEN) ||
        cf_leaks(err, data, size, CF_PW) || cf_leaks(err, data, size, cf_secret_us) ||
        cf_leaks(err, data, size, cf_secret_eu))
        fuzz_fail("error line leaks a secret: %s", err);
    return 0;
}

TERN_FUZZ_ENTRY(fuzz_config)
