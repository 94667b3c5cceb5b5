/* ctl.c -- ternctl's run context (see ternctl.h): loading the region configs, the
 * per-region Redis and store handles (opened on first use, closed by ctl_ctx_free),
 * the list of replication links, small Redis read helpers, aligned text tables, and
 * error lines that name the region and address but never a password or key.
 * Threading: main thread only. */
#include "ternctl.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "daemon.h"

void ctl_err(const char *fmt, ...) {
    va_list ap;
    fputs("ternctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int ctl_strcmp_p(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every config/NAME.json in the current directory, sorted. 0/-1 (printed). */
static int ctl_default_configs(char ***out, size_t *n) {
    DIR *d = opendir("config");
    struct dirent *e;
    char **list = NULL;
    size_t cnt = 0;
    if (!d) {
        ctl_err("no --config given and no config/ directory here (./config/*.json are the defaults)");
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char **nl;
        if (len <= 5 || e->d_name[0] == '.' || strcmp(e->d_name + len - 5, ".json") != 0) continue;
        nl = realloc(list, (cnt + 1) * sizeof *nl);
        if (!nl) goto oom;
        list = nl;
        list[cnt] = malloc(len + 8);
        if (!list[cnt]) goto oom;
        snprintf(list[cnt], len + 8, "config/%s", e->d_name);
        cnt++;
    }
    closedir(d);
    if (cnt == 0) {
        ctl_err("no --config given and no config/*.json here");
        free(list);
        return -1;
    }
    qsort(list, cnt, sizeof *list, ctl_strcmp_p);
    *out = list;
    *n = cnt;
    return 0;
oom:
    closedir(d);
    ctl_list_free(list, cnt);
    ctl_err("out of memory");
    return -1;
}

int ctl_load(ctl_ctx *c, char **paths, size_t n) {
    char **deflt = NULL, err[1024];
    size_t ndeflt = 0;
    int rc = -1;
    if (n == 0) {
        if (ctl_default_configs(&deflt, &ndeflt) != 0) return -1;
        paths = deflt;
        n = ndeflt;
    }
    if (n > CTL_CONFIG_MAX) {
        ctl_err("too many configs (%zu; at most %d)", n, CTL_CONFIG_MAX);
        goto out;
    }
    c->cfgs = calloc(n, sizeof *c->cfgs);
    c->st = calloc(n, sizeof *c->st);
    c->sto = calloc(n, sizeof *c->sto);
    c->streams = calloc(n, sizeof *c->streams);
    if (!c->cfgs || !c->st || !c->sto || !c->streams) {
        ctl_err("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        c->cfgs[i] = cfg_load(paths[i], err, sizeof err);
        if (!c->cfgs[i]) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        c->n = i + 1;
    }
    if (cfg_check_set(c->cfgs, c->n, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    rc = 0;
out:
    ctl_list_free(deflt, ndeflt);
    return rc;
}

void ctl_ctx_free(ctl_ctx *c) {
    for (size_t i = 0; i < c->n; i++) {
        if (c->st) state_free(c->st[i]);
        if (c->sto) store_free(c->sto[i]);
        if (c->streams) store_free(c->streams[i]);
        cfg_free(c->cfgs[i]);
    }
    free(c->st);
    free(c->sto);
    free(c->streams);
    free(c->cfgs);
    memset(c, 0, sizeof *c);
}

int ctl_find(const ctl_ctx *c, const char *region) {
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->cfgs[i]->region, region) == 0) return (int)i;
    return -1;
}

int ctl_has_table(const cfg_region *cfg, const char *table) {
    for (size_t i = 0; i < cfg->n_tables; i++)
        if (strcmp(cfg->tables[i], table) == 0) return 1;
    return 0;
}

int ctl_link_opt(int argc, char **argv, int *i, const char **from, const char **to, const char **table) {
    const char **dst = NULL;
    if (*i + 1 >= argc) return 0;
    if (strcmp(argv[*i], "--from") == 0) dst = from;
    else if (strcmp(argv[*i], "--to") == 0) dst = to;
    else if (table && strcmp(argv[*i], "--table") == 0) dst = table;
    if (!dst) return 0;
    *dst = argv[++*i];
    return 1;
}

int ctl_find_link(const ctl_ctx *c, const char *cmd, const char *from, const char *to, const char *table, int *r1,
                  int *r2) {
    if (!from || !to) {
        ctl_err("%s: --from R1 and --to R2 are required", cmd);
        return -1;
    }
    *r1 = ctl_find(c, from);
    *r2 = ctl_find(c, to);
    if (*r1 < 0 || *r2 < 0) {
        ctl_err("%s: region %s has no config loaded (both regions' configs are needed)", cmd, *r1 < 0 ? from : to);
        return -1;
    }
    if (!cfg_peer_find(c->cfgs[*r1], to)) {
        ctl_err("%s: %s is not a peer of %s in %s", cmd, to, from, c->cfgs[*r1]->path);
        return -1;
    }
    if (table && (!ctl_has_table(c->cfgs[*r1], table) || !ctl_has_table(c->cfgs[*r2], table))) {
        ctl_err("%s: table %s is not replicated from %s to %s (not in both configs)", cmd, table, from, to);
        return -1;
    }
    return 0;
}

int ctl_key_schema(ctl_ctx *c, const int *regs, size_t n, const char *table, store_table_info *out) {
    for (size_t r = 0; r < n; r++) {
        store_table_info ti;
        store *s = ctl_store(c, regs[r]);
        store_status ss;
        if (!s) return -1;
        ss = store_describe_table(s, table, &ti);
        if (ss != STORE_OK) {
            ctl_store_fail(c, regs[r], "DescribeTable", ss);
            return -1;
        }
        if (r == 0) {
            *out = ti;
        } else if (strcmp(ti.hash_key, out->hash_key) != 0 || strcmp(ti.range_key, out->range_key) != 0) {
            ctl_err("table %s: key schemas differ: %s has (%s%s%s), %s has (%s%s%s)", table, c->cfgs[regs[0]]->region,
                    out->hash_key, *out->range_key ? ", " : "", out->range_key, c->cfgs[regs[r]]->region, ti.hash_key,
                    *ti.range_key ? ", " : "", ti.range_key);
            return -1;
        }
    }
    return 0;
}

void ctl_redis_addr(const ctl_ctx *c, int i, char *buf, size_t len) {
    const cfg_region *cfg = c->cfgs[i];
    if (cfg->redis.unix_socket && *cfg->redis.unix_socket)
        snprintf(buf, len, "unix:%s", cfg->redis.unix_socket);
    else
        snprintf(buf, len, "%s:%d", cfg->redis.host ? cfg->redis.host : "?", cfg->redis.port);
}

state *ctl_state(ctl_ctx *c, int i) {
    char err[512], addr[300];
    if (c->st[i]) return c->st[i];
    c->st[i] = daemon_state_new(c->cfgs[i], err, sizeof err);
    if (!c->st[i]) {
        ctl_redis_addr(c, i, addr, sizeof addr);
        /* state_new's message already names the address; add it when it does not */
        if (strstr(err, addr) || strncmp(err, "redis ", 6) == 0)
            ctl_err("region %s: cannot reach Redis: %s", c->cfgs[i]->region, err);
        else
            ctl_err("region %s: cannot reach Redis at %s: %s", c->cfgs[i]->region, addr, err);
    }
    return c->st[i];
}

void ctl_store_opts(const ctl_ctx *c, int i, store_opts *o) {
    const cfg_region *cfg = c->cfgs[i];
    memset(o, 0, sizeof *o);
    o->endpoint = cfg->store.endpoint;
    o->region = cfg->store.signing_region;
    o->access_key_id = cfg->store.access_key_id;
    o->secret_access_key = cfg->store.secret_access_key;
    o->session_token = cfg->store.session_token;
    o->verify_tls = cfg->store.verify_tls ? STORE_TLS_VERIFY : STORE_TLS_NO_VERIFY;
    o->timeout_ms = (int)cfg->store.timeout_ms;
    o->max_retries = 2;          /* an operator waits: fail in seconds, not minutes */
    o->backoff_cap_ms = 500;
}

store *ctl_store(ctl_ctx *c, int i) {
    char err[512];
    store_opts o;
    if (c->sto[i]) return c->sto[i];
    ctl_store_opts(c, i, &o);
    c->sto[i] = store_new(&o, err, sizeof err);
    if (!c->sto[i]) ctl_err("region %s: store %s: %s", c->cfgs[i]->region, c->cfgs[i]->store.endpoint, err);
    return c->sto[i];
}

store *ctl_streams(ctl_ctx *c, int i) {
    char err[512];
    store_opts o;
    if (c->streams[i]) return c->streams[i];
    ctl_store_opts(c, i, &o);
    o.endpoint = c->cfgs[i]->store.streams_endpoint;
    c->streams[i] = store_new(&o, err, sizeof err);
    if (!c->streams[i])
        ctl_err("region %s: streams %s: %s", c->cfgs[i]->region, c->cfgs[i]->store.streams_endpoint, err);
    return c->streams[i];
}

void ctl_redis_fail(ctl_ctx *c, int i, const char *what) {
    char addr[300];
    const char *e = c->st[i] ? state_errstr(c->st[i]) : "";
    ctl_redis_addr(c, i, addr, sizeof addr);
    ctl_err("region %s: redis %s: %s: %s", c->cfgs[i]->region, addr, what, *e ? e : "failed");
}

void ctl_store_fail(ctl_ctx *c, int i, const char *op, store_status ss) {
    int streams_op = !strcmp(op, "DescribeStream") || !strcmp(op, "GetShardIterator") || !strcmp(op, "GetRecords");
    store *h = streams_op ? c->streams[i] : c->sto[i];
    const char *e = h ? store_errstr(h) : "";
    ctl_err("region %s: store %s: %s: %s%s%s", c->cfgs[i]->region,
            streams_op ? c->cfgs[i]->store.streams_endpoint : c->cfgs[i]->store.endpoint, op,
            store_status_name(ss), *e ? ": " : "", e);
}

int ctl_get(ctl_ctx *c, int i, const char *key, char **out) {
    state *st = ctl_state(c, i);
    redisReply *r;
    *out = NULL;
    if (!st) return -1;
    r = state_cmd(st, "GET %s", key);
    if (!r) {
        ctl_redis_fail(c, i, "GET");
        return -1;
    }
    if (r->type == REDIS_REPLY_STRING) {
        *out = strdup(r->str);
        if (!*out) {
            freeReplyObject(r);
            ctl_err("out of memory");
            return -1;
        }
    }
    freeReplyObject(r);
    return 0;
}

int ctl_hgetall(ctl_ctx *c, int i, const char *key, redisReply **out) {
    state *st = ctl_state(c, i);
    *out = NULL;
    if (!st) return -1;
    *out = state_cmd(st, "HGETALL %s", key);
    if (!*out) {
        ctl_redis_fail(c, i, "HGETALL");
        return -1;
    }
    return 0;
}

const char *ctl_hfield(const redisReply *h, const char *field) {
    if (!h || h->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING && strcmp(k->str, field) == 0)
            return v->str;
    }
    return NULL;
}

int ctl_hfield_ll(const redisReply *h, const char *field, long long *out) {
    return ctl_parse_ll(ctl_hfield(h, field), out);
}

int ctl_links(const ctl_ctx *c, const char *table_filter, ctl_link **out, size_t *n) {
    ctl_link *list = NULL;
    size_t cnt = 0;
    *out = NULL;
    *n = 0;
    for (size_t s = 0; s < c->n; s++) {
        const cfg_region *src = c->cfgs[s];
        for (size_t p = 0; p < src->n_peers; p++) {
            int d = ctl_find(c, src->peers[p].region);
            for (size_t t = 0; t < src->n_tables; t++) {
                ctl_link *nl;
                if (table_filter && strcmp(table_filter, src->tables[t]) != 0) continue;
                if (d >= 0 && !ctl_has_table(c->cfgs[d], src->tables[t])) continue;
                nl = realloc(list, (cnt + 1) * sizeof *nl);
                if (!nl) {
                    free(list);
                    return -1;
                }
                list = nl;
                list[cnt].src = (int)s;
                list[cnt].dst = d;
                list[cnt].src_name = src->region;
                list[cnt].dst_name = src->peers[p].region;
                list[cnt].table = src->tables[t];
                cnt++;
            }
        }
    }
    *out = list;
    *n = cnt;
    return 0;
}

/* ---- text tables ---- */

struct ctl_table {
    size_t ncols, nrows;
    char **cells;       /* nrows * ncols, row-major */
};

ctl_table *ctl_table_new(size_t ncols) {
    ctl_table *t = calloc(1, sizeof *t);
    if (t) t->ncols = ncols;
    return t;
}

void ctl_table_free(ctl_table *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t);
}

int ctl_table_row(ctl_table *t, const char *const *cells) {
    char **nc = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof *nc);
    if (!nc) return -1;
    t->cells = nc;
    for (size_t j = 0; j < t->ncols; j++) {
        char *v = strdup(cells[j] ? cells[j] : "-");
        if (!v) {
            for (size_t k = 0; k < j; k++) free(nc[t->nrows * t->ncols + k]);
            return -1;
        }
        nc[t->nrows * t->ncols + j] = v;
    }
    t->nrows++;
    return 0;
}

void ctl_table_print(const ctl_table *t, FILE *f) {
    size_t *w = calloc(t->ncols ? t->ncols : 1, sizeof *w);
    if (!w) return;
    for (size_t i = 0; i < t->nrows; i++)
        for (size_t j = 0; j < t->ncols; j++) {
            size_t x = ctl_text_width(t->cells[i * t->ncols + j]);
            if (x > w[j]) w[j] = x;
        }
    for (size_t i = 0; i < t->nrows; i++) {
        for (size_t j = 0; j < t->ncols; j++) {
            const char *v = t->cells[i * t->ncols + j];
            fputs(v, f);
            if (j + 1 < t->ncols)
                for (size_t k = ctl_text_width(v); k < w[j] + 2; k++) fputc(' ', f);
        }
        fputc('\n', f);
    }
    free(w);
}

int ctl_json_print(void *doc) {
    char *s = cJSON_Print((cJSON *)doc);
    cJSON_Delete((cJSON *)doc);
    if (!s) {
        ctl_err("out of memory");
        return -1;
    }
    printf("%s\n", s);
    free(s);
    fflush(stdout);
    return 0;
}
