/* admin.c -- ternctl keygen, pause and resume (see ternctl.h).
 *
 * keygen writes a CURVE key pair: DIR/REGION.key holds the Z85 secret key (one line,
 * mode 0600, created with O_CREAT|O_EXCL so an existing key is never overwritten
 * unless --force, which removes it first), DIR/REGION.pub the Z85 public key (0644).
 * pause/resume SET/DEL pause:<to> in the source region's Redis; the source agent reads
 * it every 500 ms (region-agent/shipper.c), and it survives restarts of everything.
 * Threading: main thread. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zmq.h>

#include "daemon.h"
#include "lww.h"
#include "ternctl.h"

/* mkdir -p with mode for the directories it creates. 0/-1 (printed). */
static int ctl_mkdirs(const char *dir, mode_t mode) {
    char *p = strdup(dir);
    int rc = 0;
    if (!p) return -1;
    for (char *q = p + 1; ; q++) {
        char saved = *q;
        if (*q != '/' && *q != '\0') continue;
        *q = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            ctl_err("cannot create directory %s: %s", p, strerror(errno));
            rc = -1;
            break;
        }
        *q = saved;
        if (saved == '\0') break;
    }
    free(p);
    return rc;
}

/* Writes line + "\n" to a new file path with exactly mode. 0/-1 (printed). */
static int ctl_write_new(const char *path, const char *line, mode_t mode) {
    size_t len = strlen(line), off = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    char buf[128];
    if (fd < 0) {
        ctl_err("cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(buf, sizeof buf, "%s\n", line);
    len = strlen(buf);
    if (fchmod(fd, mode) != 0) goto fail; /* the umask may have narrowed it */
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        off += (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:
    ctl_err("cannot write %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    unlink(path);
    return -1;
}

int ctl_cmd_keygen(int json, int argc, char **argv) {
    const char *region = NULL, *dir = "config/keys";
    int force = 0, rc = CTL_EXIT_ERROR;
    char pub[41], sec[41], *keypath = NULL, *pubpath = NULL;
    struct stat sb;
    size_t plen;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--force") == 0) force = 1;
        else if (argv[i][0] != '-' && !region) region = argv[i];
        else {
            ctl_err("keygen: unexpected argument '%s' (usage: ternctl keygen REGION [--dir DIR] [--force])", argv[i]);
            return CTL_EXIT_ERROR;
        }
    }
    if (!region) {
        ctl_err("keygen: missing REGION (usage: ternctl keygen REGION [--dir DIR] [--force])");
        return CTL_EXIT_ERROR;
    }
    if (!lww_region_valid(region)) {
        ctl_err("keygen: region '%s' is not 1..31 characters of [a-z0-9-]", region);
        return CTL_EXIT_ERROR;
    }
    if (!*dir) {
        ctl_err("keygen: --dir is empty");
        return CTL_EXIT_ERROR;
    }
    if (!zmq_has("curve")) {
        ctl_err("keygen: this libzmq was built without CURVE support");
        return CTL_EXIT_ERROR;
    }
    plen = strlen(dir) + strlen(region) + 8;
    keypath = malloc(plen);
    pubpath = malloc(plen);
    if (!keypath || !pubpath) {
        ctl_err("out of memory");
        goto out;
    }
    snprintf(keypath, plen, "%s/%s.key", dir, region);
    snprintf(pubpath, plen, "%s/%s.pub", dir, region);
    if (!force && (lstat(keypath, &sb) == 0 || lstat(pubpath, &sb) == 0)) {
        ctl_err("keygen: %s exists; refusing to overwrite a key (use --force to replace it)",
                lstat(keypath, &sb) == 0 ? keypath : pubpath);
        goto out;
    }
    if (ctl_mkdirs(dir, 0700) != 0) goto out;
    if (force) {
        if (unlink(keypath) != 0 && errno != ENOENT) {
            ctl_err("keygen: cannot remove %s: %s", keypath, strerror(errno));
            goto out;
        }
        if (unlink(pubpath) != 0 && errno != ENOENT) {
            ctl_err("keygen: cannot remove %s: %s", pubpath, strerror(errno));
            goto out;
        }
    }
    if (zmq_curve_keypair(pub, sec) != 0) {
        ctl_err("keygen: zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
        goto out;
    }
    if (ctl_write_new(keypath, sec, 0600) != 0) goto out;
    if (ctl_write_new(pubpath, pub, 0644) != 0) {
        unlink(keypath);
        goto out;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "region", region) ||
            !cJSON_AddStringToObject(o, "secret_key_file", keypath) ||
            !cJSON_AddStringToObject(o, "public_key_file", pubpath) ||
            !cJSON_AddStringToObject(o, "public_key", pub)) {
            cJSON_Delete(o);
            ctl_err("out of memory");
            goto out;
        }
        if (ctl_json_print(o) != 0) goto out;
    } else {
        fprintf(stderr, "ternctl: wrote %s (secret key, 0600) and %s (public key, 0644)\n", keypath, pubpath);
        printf("%s\n", pub);
    }
    rc = CTL_EXIT_OK;
out:
    memset(sec, 0, sizeof sec);
    free(keypath);
    free(pubpath);
    return rc;
}

/* Parses --from R1 --to R2 (both required). 0/-1 (printed). */
static int ctl_from_to(int argc, char **argv, const char **from, const char **to) {
    *from = *to = NULL;
    for (int i = 1; i < argc; i++) {
        if (!ctl_link_opt(argc, argv, &i, from, to, NULL)) {
            ctl_err("%s: unexpected argument '%s' (usage: ternctl %s --from R1 --to R2)", argv[0], argv[i], argv[0]);
            return -1;
        }
    }
    if (!*from || !*to) {
        ctl_err("%s: --from R1 and --to R2 are required", argv[0]);
        return -1;
    }
    return 0;
}

int ctl_cmd_pause(ctl_ctx *c, int argc, char **argv, int pause) {
    const char *from, *to;
    char key[512], val[64];
    state *st;
    redisReply *r;
    int s;
    long long n;

    if (ctl_from_to(argc, argv, &from, &to) != 0) return CTL_EXIT_ERROR;
    s = ctl_find(c, from);
    if (s < 0) {
        ctl_err("%s: region %s has no config loaded (give it with --config)", argv[0], from);
        return CTL_EXIT_ERROR;
    }
    if (!cfg_peer_find(c->cfgs[s], to)) {
        ctl_err("%s: %s is not a peer of %s in %s", argv[0], to, from, c->cfgs[s]->path);
        return CTL_EXIT_ERROR;
    }
    st = ctl_state(c, s);
    if (!st) return CTL_EXIT_ERROR;
    if (state_key(st, key, sizeof key, STATE_K_PAUSE, to) != 0) {
        ctl_err("key too long");
        return CTL_EXIT_ERROR;
    }
    if (pause) {
        snprintf(val, sizeof val, "%lld ternctl", daemon_wall_ms());
        r = state_cmd(st, "SET %s %s", key, val);
    } else {
        r = state_cmd(st, "DEL %s", key);
    }
    if (!r) {
        ctl_redis_fail(c, s, pause ? "SET" : "DEL");
        return CTL_EXIT_ERROR;
    }
    n = r->type == REDIS_REPLY_INTEGER ? r->integer : 1;
    freeReplyObject(r);
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "from", from) || !cJSON_AddStringToObject(o, "to", to) ||
            !cJSON_AddBoolToObject(o, "paused", pause) || !cJSON_AddStringToObject(o, "key", key) ||
            (!pause && !cJSON_AddBoolToObject(o, "was_paused", n > 0))) {
            cJSON_Delete(o);
            ctl_err("out of memory");
            return CTL_EXIT_ERROR;
        }
        return ctl_json_print(o) == 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
    }
    if (pause)
        printf("paused shipping %s -> %s (SET %s in %s's Redis); the agent stops sending within 500 ms "
               "and keeps the changes; undo with: ternctl resume --from %s --to %s\n",
               from, to, key, from, from, to);
    else
        printf("resumed shipping %s -> %s (DEL %s in %s's Redis; it %s paused)\n", from, to, key, from,
               n > 0 ? "was" : "was not");
    return CTL_EXIT_OK;
}
