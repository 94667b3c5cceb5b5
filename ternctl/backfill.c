/* backfill.c -- ternctl backfill: copy the items one region's table holds to another
 * region (a region or a table added after its items were written: Tern replicates
 * changes, and items not changed since never reach the new region on their own).
 *
 * Per table in both regions' configs: the source region's table is scanned page by page
 * (strongly consistent), and every item is applied in the destination exactly as its
 * replicator applies a put (apply_puts: one Redis round trip for what the destination
 * knows of the keys and their echo tokens, then conditional writes), at the version the
 * source knows of the item: the larger of its stored tern:ver and the source's last
 * local change of the key (ll:T:KID), or, for an item Tern never versioned (written
 * before Tern ran in the source region and not changed since), BACKFILL_UNVERSIONED_MS
 * with the source region, older than every version Tern makes. Hence:
 *  - an item the destination holds at a newer version, or deleted at a newer version
 *    (its tombstone), is left as it is (counted "kept newer");
 *  - an item already there at that version is "same": running it again is harmless;
 *  - the write carries an echo token, so the destination's agent does not ship it on;
 *  - it runs beside the daemons: a live change applied meanwhile is ordered by version
 *    like any other.
 * Writes are paced to at most --rate items/s (0: as fast as the store takes them), so
 * that a large table does not starve live replication. A change that fails (store or
 * Redis error) is tried again up to BACKFILL_TRIES times, then counted as failed: exit 1,
 * and running the command again completes it.
 * Threading: single-threaded (the handles of ctl_ctx). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "apply.h"
#include "daemon.h"
#include "item.h"
#include "ternctl.h"

#define BACKFILL_GROUP 25          /* puts per apply_puts call */
#define BACKFILL_PAGE_LIMIT 200    /* items per Scan page */
#define BACKFILL_TRIES 3           /* attempts per change before it counts as failed */
#define BACKFILL_RETRY_MS 500      /* pause before another attempt */
#define BACKFILL_UNVERSIONED_MS 0  /* version time of an item Tern never versioned */

typedef struct {
    const char *table;
    int src, dst;                  /* config indexes */
    const char *names[2];          /* key attribute names */
    size_t n_names;
    long long rate;                /* items/s, 0 = unpaced */
    long long t0;                  /* monotonic ms at the start */
    /* counts */
    size_t scanned, written, newer, same, refused, failed, skipped;
} bfill;

static void bf_sleep_ms(long long ms) {
    struct timespec ts;
    if (ms <= 0) return;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {}
}

/* One page's items, prepared for apply_puts: keys, image without tern:*, version, kid
 * (owned here); item is the scanned item (borrowed from the page). */
typedef struct {
    const cJSON *item;
    cJSON *keys, *image;
    char *kid;
    char version[LWW_VERSION_STRLEN];
} bf_item;

static void bf_items_free(bf_item *it, size_t n) {
    for (size_t i = 0; i < n; i++) {
        cJSON_Delete(it[i].keys);
        cJSON_Delete(it[i].image);
        free(it[i].kid);
    }
}

/* The version the source region knows of an item: max(valid stored tern:ver, ll), or
 * the unversioned one. */
static void bf_version(const bfill *b, ctl_ctx *c, const cJSON *item, const redisReply *ll, char *out) {
    const char *sv = item_get_s(item, ITEM_ATTR_VER);
    lww_version v;
    char e[64];
    out[0] = '\0';
    if (sv && lww_version_parse(sv, &v, e, sizeof e) == 0) snprintf(out, LWW_VERSION_STRLEN, "%s", sv);
    if (ll && ll->type == REDIS_REPLY_STRING && ll->len < LWW_VERSION_STRLEN &&
        lww_version_parse(ll->str, &v, e, sizeof e) == 0 && strcmp(ll->str, out) > 0)
        snprintf(out, LWW_VERSION_STRLEN, "%s", ll->str);
    if (!*out) {
        v.ms = BACKFILL_UNVERSIONED_MS;
        v.counter = 0;
        snprintf(v.region, sizeof v.region, "%s", c->cfgs[b->src]->region);
        lww_version_format(&v, out, LWW_VERSION_STRLEN);
    }
}

/* Applies n prepared items in the destination (groups of BACKFILL_GROUP, failed ones
 * again up to BACKFILL_TRIES times) and counts the outcomes. */
static void bf_apply(bfill *b, ctl_ctx *c, store *ds, state *dst, bf_item *it, size_t n) {
    apply_change cs[BACKFILL_GROUP];
    apply_outcome out[BACKFILL_GROUP];
    long ttl = c->cfgs[b->dst]->replicator.tombstone_ttl_s;
    for (size_t off = 0; off < n; off += BACKFILL_GROUP) {
        size_t m = n - off < BACKFILL_GROUP ? n - off : BACKFILL_GROUP;
        int left[BACKFILL_GROUP];
        for (size_t i = 0; i < m; i++) {
            memset(&cs[i], 0, sizeof cs[i]);
            cs[i].table = b->table;
            cs[i].keys = it[off + i].keys;
            cs[i].image = it[off + i].image;
            cs[i].version = it[off + i].version;
            cs[i].kid = it[off + i].kid;
            cs[i].ttl_s = ttl;
            left[i] = 1;
        }
        apply_puts(ds, dst, cs, m, out);
        for (int attempt = 1;; attempt++) {
            size_t errs = 0;
            for (size_t i = 0; i < m; i++) {
                if (!left[i]) continue;
                if (out[i].res == APPLY_ERROR && attempt < BACKFILL_TRIES) {
                    errs++;
                    continue;
                }
                left[i] = 0;
                switch (out[i].res) {
                case APPLY_WRITTEN: b->written++; break;
                case APPLY_LOST: b->newer++; break;
                case APPLY_SAME: b->same++; break;
                case APPLY_REFUSED:
                    b->refused++;
                    ctl_err("table %s: key %s: refused by %s's store: %s", b->table, it[off + i].kid,
                            c->cfgs[b->dst]->region, out[i].err);
                    break;
                case APPLY_ERROR:
                    b->failed++;
                    ctl_err("table %s: key %s: not copied after %d attempts: %s", b->table, it[off + i].kid,
                            BACKFILL_TRIES, out[i].err);
                    break;
                }
            }
            if (!errs) break;
            bf_sleep_ms(BACKFILL_RETRY_MS);
            for (size_t i = 0; i < m; i++)
                if (left[i])
                    out[i].res = apply_one(ds, dst, &cs[i], APPLY_PRECHECK, out[i].winner, out[i].err,
                                           sizeof out[i].err);
        }
        if (b->rate > 0) { /* pace: never ahead of rate items/s since the start */
            long long due = b->t0 + (long long)((b->written + b->newer + b->same + b->refused + b->failed) * 1000 /
                                                (unsigned long long)b->rate);
            bf_sleep_ms(due - daemon_mono_ms());
        }
    }
}

/* Prepares one Scan page's items (reading the source's ll of every key in one round trip)
 * and applies them. 0, or -1 (out of memory, or the source's Redis failed: printed). */
static int bf_page(bfill *b, ctl_ctx *c, state *sst, store *ds, state *dst, const cJSON *items) {
    size_t n = (size_t)cJSON_GetArraySize(items), k = 0, queued = 0;
    bf_item *it = calloc(n ? n : 1, sizeof *it);
    redisReply **ll = calloc(n ? n : 1, sizeof *ll);
    const cJSON *item;
    int rc = -1;
    if (!it || !ll) {
        ctl_err("out of memory");
        goto out;
    }
    cJSON_ArrayForEach(item, items) {
        char key[512];
        cJSON *keys;
        b->scanned++;
        keys = item_project(item, b->names, b->n_names);
        if (!keys) { /* without the key attributes: not an item of this schema */
            b->skipped++;
            continue;
        }
        it[k].item = item;
        it[k].keys = keys;
        it[k].kid = item_key_id(keys);
        it[k].image = cJSON_Duplicate(item, 1);
        k++;
        if (!it[k - 1].kid || !it[k - 1].image ||
            state_key(sst, key, sizeof key, STATE_K_LASTLOCAL, b->table, it[k - 1].kid) != 0) {
            ctl_err("out of memory");
            goto out;
        }
        item_strip_hidden(it[k - 1].image);
        state_append(sst, "GET %s", key);
        queued++;
    }
    if (queued && state_flush_ok(sst, ll, queued) != 0) {
        queued = 0;
        ctl_redis_fail(c, b->src, "reading the items' last local versions");
        goto out;
    }
    queued = 0;
    for (size_t i = 0; i < k; i++) bf_version(b, c, it[i].item, ll[i], it[i].version);
    bf_apply(b, c, ds, dst, it, k);
    rc = 0;
out:
    if (queued) state_flush(sst, NULL, 0); /* drops what was queued */
    for (size_t i = 0; ll && i < n; i++)
        if (ll[i]) freeReplyObject(ll[i]);
    if (it) bf_items_free(it, k);
    free(it);
    free(ll);
    return rc;
}

/* Backfills one table from b->src to b->dst. 0, or -1 (printed: an unreachable store or
 * Redis, a key schema that differs). */
static int bf_table(bfill *b, ctl_ctx *c) {
    store *ss = ctl_store(c, b->src), *ds = ctl_store(c, b->dst);
    state *sst = ctl_state(c, b->src), *dst = ctl_state(c, b->dst);
    store_table_info si, di;
    store_status st;
    cJSON *resp = NULL, *start = NULL;
    int rc = -1;
    if (!ss || !ds || !sst || !dst) return -1;
    if ((st = store_describe_table(ss, b->table, &si)) != STORE_OK) {
        ctl_store_fail(c, b->src, "DescribeTable", st);
        return -1;
    }
    if ((st = store_describe_table(ds, b->table, &di)) != STORE_OK) {
        ctl_store_fail(c, b->dst, "DescribeTable", st);
        return -1;
    }
    if (strcmp(si.hash_key, di.hash_key) != 0 || strcmp(si.range_key, di.range_key) != 0) {
        ctl_err("table %s: key schemas differ: %s has (%s%s%s), %s has (%s%s%s)", b->table,
                c->cfgs[b->src]->region, si.hash_key, *si.range_key ? ", " : "", si.range_key,
                c->cfgs[b->dst]->region, di.hash_key, *di.range_key ? ", " : "", di.range_key);
        return -1;
    }
    b->names[0] = si.hash_key;
    b->names[1] = si.range_key;
    b->n_names = *si.range_key ? 2 : 1;
    for (;;) {
        store_scan_opts q;
        const cJSON *last;
        memset(&q, 0, sizeof q);
        q.table = b->table;
        q.exclusive_start_key = start;
        q.limit = BACKFILL_PAGE_LIMIT;
        q.consistent = 1;
        st = store_scan_page(ss, &q, &resp);
        if (st != STORE_OK) {
            ctl_store_fail(c, b->src, "Scan", st);
            goto out;
        }
        if (bf_page(b, c, sst, ds, dst, cJSON_GetObjectItemCaseSensitive(resp, "Items")) != 0) goto out;
        last = cJSON_GetObjectItemCaseSensitive(resp, "LastEvaluatedKey");
        cJSON_Delete(start);
        start = last && last->child ? cJSON_Duplicate(last, 1) : NULL;
        cJSON_Delete(resp);
        resp = NULL;
        if (!start) break;
    }
    rc = 0;
out:
    cJSON_Delete(resp);
    cJSON_Delete(start);
    return rc;
}

int ctl_cmd_backfill(ctl_ctx *c, int argc, char **argv) {
    const char *from = NULL, *to = NULL, *table = NULL;
    long long rate = 0;
    int src, dst, rc = CTL_EXIT_ERROR, incomplete = 0;
    cJSON *doc = NULL, *jtabs = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            from = argv[++i];
        } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = argv[++i];
        } else if (strcmp(argv[i], "--table") == 0 && i + 1 < argc) {
            table = argv[++i];
        } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
            if (ctl_parse_range(argv[++i], 0, 1000000, &rate) != 0) {
                ctl_err("backfill: --rate must be 0..1000000 items/s (0: unpaced), got '%s'", argv[i]);
                return CTL_EXIT_ERROR;
            }
        } else {
            ctl_err("backfill: unexpected argument '%s' (usage: ternctl backfill --from R1 --to R2 [--table T] "
                    "[--rate N])", argv[i]);
            return CTL_EXIT_ERROR;
        }
    }
    if (!from || !to) {
        ctl_err("backfill: --from R1 and --to R2 are required");
        return CTL_EXIT_ERROR;
    }
    src = ctl_find(c, from);
    dst = ctl_find(c, to);
    if (src < 0 || dst < 0 || src == dst) {
        ctl_err("backfill: %s", src == dst && src >= 0 ? "--from and --to name the same region"
                                                         : "--from and --to must name regions whose configs are loaded");
        return CTL_EXIT_ERROR;
    }
    if (table && (!ctl_has_table(c->cfgs[src], table) || !ctl_has_table(c->cfgs[dst], table))) {
        ctl_err("backfill: table %s is not in both %s and %s", table, c->cfgs[src]->path, c->cfgs[dst]->path);
        return CTL_EXIT_ERROR;
    }
    if (c->json) {
        doc = cJSON_CreateObject();
        jtabs = doc ? cJSON_AddArrayToObject(doc, "tables") : NULL;
        if (!jtabs) {
            ctl_err("out of memory");
            goto out;
        }
    }
    for (size_t k = 0; k < c->cfgs[src]->n_tables; k++) {
        bfill b;
        long long ms;
        const char *t = c->cfgs[src]->tables[k];
        if ((table && strcmp(table, t) != 0) || !ctl_has_table(c->cfgs[dst], t)) continue;
        memset(&b, 0, sizeof b);
        b.table = t;
        b.src = src;
        b.dst = dst;
        b.rate = rate;
        b.t0 = daemon_mono_ms();
        if (bf_table(&b, c) != 0) goto out;
        ms = daemon_mono_ms() - b.t0;
        incomplete |= b.refused || b.failed;
        if (jtabs) {
            cJSON *jt = cJSON_CreateObject();
            if (!jt) {
                ctl_err("out of memory");
                goto out;
            }
            cJSON_AddItemToArray(jtabs, jt);
            cJSON_AddStringToObject(jt, "table", t);
            cJSON_AddNumberToObject(jt, "scanned", (double)b.scanned);
            cJSON_AddNumberToObject(jt, "written", (double)b.written);
            cJSON_AddNumberToObject(jt, "kept_newer", (double)b.newer);
            cJSON_AddNumberToObject(jt, "same", (double)b.same);
            cJSON_AddNumberToObject(jt, "refused", (double)b.refused);
            cJSON_AddNumberToObject(jt, "failed", (double)b.failed);
            cJSON_AddNumberToObject(jt, "skipped", (double)b.skipped);
            cJSON_AddNumberToObject(jt, "ms", (double)ms);
        } else {
            printf("table %s: %s -> %s: %zu scanned, %zu written, %zu kept newer, %zu same, %zu refused, %zu failed, "
                   "%zu skipped (no key attributes), in %.1f s\n",
                   t, from, to, b.scanned, b.written, b.newer, b.same, b.refused, b.failed, b.skipped, ms / 1000.0);
        }
    }
    rc = incomplete ? CTL_EXIT_NEGATIVE : CTL_EXIT_OK;
    if (doc) {
        cJSON_AddBoolToObject(doc, "complete", !incomplete);
        if (ctl_json_print(doc) != 0) rc = CTL_EXIT_ERROR;
        doc = NULL;
    }
out:
    cJSON_Delete(doc);
    return rc;
}
