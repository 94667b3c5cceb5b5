/* backfill.c -- ternctl backfill: copy the items one region's table holds to another
 * region (a region or a table added after its items were written: Tern replicates
 * changes, and items not changed since never reach the new region on their own).
 *
 * Per table in both regions' configs: the source region's table is scanned page by page
 * (eventually consistent: what matters is read again). For each page, the source's last
 * local version of every key (ll:T:KID) is read first (one round trip), then each item
 * again (consistent GetItem): an item read after its ll is at least as new as the change
 * ll names. Its version is
 *  - its stored tern:ver when it has a valid one (Tern wrote it, or an application
 *    updated a Tern-written item in place): exact for a replicated write, or older than
 *    the content when an application changed it since; ll is not used then, since a
 *    replicated write that overwrote an unread local write (to be repaired by the
 *    source's agent) carries a lower version than that local write's ll;
 *  - else ll (read before the item, so never newer than its content);
 *  - else BACKFILL_UNVERSIONED_MS with the source region, older than every version Tern
 *    makes (written before Tern ran there, or its ll expired with the tombstone TTL).
 * A version older than the content makes the copy lose (or count as same) where the
 * destination holds that version or a newer one; the source's own change, while it is
 * in its change log, still comes and wins (docs/operations.md §14 has the one case that
 * stays behind). Each item is applied in the destination as the replicator applies a put
 * and checked again like the agent's repairs (apply_one with APPLY_PRECHECK |
 * APPLY_TOMBCHECK): what the destination knows of the key first, an echo token (its
 * agent does not ship the copy on), the conditional PutItem, then its tombstone again: a
 * delete applied there between the check and the write (the replicator is a second
 * writer of the key) is made again rather than undone. Hence:
 *  - an item the destination holds at a newer version, or deleted at a newer version,
 *    stays as it is ("kept newer"); one already there at that version is "same";
 *  - it runs beside the daemons, and running it again is harmless.
 * One item at a time (a GetItem, a PutItem, two or three Redis round trips), paced to at
 * most --rate items/s (0: as fast as the stores take them). A copy that fails (the
 * destination's store or Redis) is tried again up to BACKFILL_TRIES times, then counted as
 * failed: exit 1, and running the command again completes it. An error reading the
 * source stops the run (exit 2).
 * Threading: single-threaded (the handles of ctl_ctx). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "apply.h"
#include "daemon.h"
#include "item.h"
#include "ternctl.h"

#define BACKFILL_PAGE_LIMIT 100    /* items per Scan page */
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
    size_t scanned, written, newer, same, gone, refused, failed, skipped;
} bfill;

/* The version to copy item at (see the header): a valid stored tern:ver, else the
 * source's ll (read before the item), else the unversioned one. out: LWW_VERSION_STRLEN. */
static void bf_version(const bfill *b, ctl_ctx *c, const cJSON *item, const redisReply *ll, char *out) {
    const char *sv = apply_stored_version(item);
    lww_version v;
    char e[64];
    if (*sv) {
        snprintf(out, LWW_VERSION_STRLEN, "%s", sv);
        return;
    }
    if (ll && ll->type == REDIS_REPLY_STRING && ll->len < LWW_VERSION_STRLEN &&
        lww_version_parse(ll->str, &v, e, sizeof e) == 0) {
        snprintf(out, LWW_VERSION_STRLEN, "%s", ll->str);
        return;
    }
    v.ms = BACKFILL_UNVERSIONED_MS;
    v.counter = 0;
    snprintf(v.region, sizeof v.region, "%s", c->cfgs[b->src]->region);
    lww_version_format(&v, out, LWW_VERSION_STRLEN);
}

/* Copies one item of the source (keys: its key attributes; ll: the source's GET ll reply,
 * read before) to the destination, and counts the outcome. 0, or -1 (the source's store
 * failed: printed). */
static int bf_item(bfill *b, ctl_ctx *c, store *ss, store *ds, state *dst, const cJSON *keys, const char *kid,
                   const redisReply *ll) {
    cJSON *item = NULL;
    apply_change ch;
    apply_result res = APPLY_ERROR;
    char ver[LWW_VERSION_STRLEN], winner[LWW_VERSION_STRLEN], err[256] = "";
    store_status st = store_get_item(ss, b->table, keys, 1, &item);
    if (st != STORE_OK) {
        ctl_store_fail(c, b->src, "GetItem", st);
        return -1;
    }
    if (!item) { /* deleted since the scan: nothing to copy */
        b->gone++;
        return 0;
    }
    bf_version(b, c, item, ll, ver);
    item_strip_hidden(item);
    memset(&ch, 0, sizeof ch);
    ch.table = b->table;
    ch.keys = keys;
    ch.image = item;
    ch.version = ver;
    ch.kid = kid;
    ch.ttl_s = c->cfgs[b->dst]->replicator.tombstone_ttl_s;
    for (int attempt = 1; attempt <= BACKFILL_TRIES; attempt++) {
        if (attempt > 1) daemon_sleep_ms(BACKFILL_RETRY_MS);
        res = apply_one(ds, dst, &ch, APPLY_PRECHECK | APPLY_TOMBCHECK, winner, err, sizeof err);
        if (res != APPLY_ERROR) break;
    }
    cJSON_Delete(item);
    switch (res) {
    case APPLY_WRITTEN: b->written++; break;
    case APPLY_LOST: b->newer++; break;
    case APPLY_SAME: b->same++; break;
    case APPLY_REFUSED:
        b->refused++;
        ctl_err("table %s: key %s: refused by %s's store: %s", b->table, kid, c->cfgs[b->dst]->region, err);
        break;
    case APPLY_ERROR:
        b->failed++;
        ctl_err("table %s: key %s: not copied after %d attempts: %s", b->table, kid, BACKFILL_TRIES, err);
        break;
    }
    return 0;
}

/* One Scan page: the source's ll of every key in one round trip, then each item (read
 * again) copied, paced. 0, or -1 (printed; a key name too long is reported as out of
 * memory: state_key's only failure). */
static int bf_page(bfill *b, ctl_ctx *c, store *ss, state *sst, store *ds, state *dst, const cJSON *items) {
    size_t n = (size_t)cJSON_GetArraySize(items), k = 0;
    cJSON **keys = calloc(n ? n : 1, sizeof *keys);
    char **kids = calloc(n ? n : 1, sizeof *kids);
    redisReply **ll = calloc(n ? n : 1, sizeof *ll);
    const cJSON *item;
    int rc = -1;
    if (!keys || !kids || !ll) {
        ctl_err("out of memory");
        goto out;
    }
    cJSON_ArrayForEach(item, items) {
        char key[512];
        b->scanned++;
        if (!(keys[k] = item_project(item, b->names, b->n_names))) { /* not an item of this schema */
            b->skipped++;
            continue;
        }
        kids[k] = item_key_id(keys[k]);
        k++;
        if (!kids[k - 1] || state_key(sst, key, sizeof key, STATE_K_LASTLOCAL, b->table, kids[k - 1]) != 0) {
            ctl_err("out of memory");
            if (k > 1) state_flush(sst, NULL, 0); /* drops what was queued */
            goto out;
        }
        state_append(sst, "GET %s", key);
    }
    if (k && state_flush_ok(sst, ll, k) != 0) {
        ctl_redis_fail(c, b->src, "reading the items' last local versions");
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        if (bf_item(b, c, ss, ds, dst, keys[i], kids[i], ll[i]) != 0) goto out;
        if (b->rate > 0) { /* never ahead of rate items/s since the start */
            size_t done = b->written + b->newer + b->same + b->gone + b->refused + b->failed;
            daemon_sleep_ms(b->t0 + (long long)(done * 1000 / (unsigned long long)b->rate) - daemon_mono_ms());
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++) {
        if (keys) cJSON_Delete(keys[i]);
        if (kids) free(kids[i]);
        if (ll && ll[i]) freeReplyObject(ll[i]);
    }
    free(keys);
    free(kids);
    free(ll);
    return rc;
}

/* Backfills one table from b->src to b->dst. 0, or -1 (printed: an unreachable store or
 * Redis, a key schema that differs). */
static int bf_table(bfill *b, ctl_ctx *c) {
    store *ss = ctl_store(c, b->src), *ds = ctl_store(c, b->dst);
    state *sst = ctl_state(c, b->src), *dst = ctl_state(c, b->dst);
    const int regs[2] = {b->src, b->dst};
    store_table_info si;
    store_status st;
    cJSON *resp = NULL, *start = NULL;
    int rc = -1;
    if (!ss || !ds || !sst || !dst || ctl_key_schema(c, regs, 2, b->table, &si) != 0) return -1;
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
        q.consistent = 0; /* each item is read again, consistently */
        st = store_scan_page(ss, &q, &resp);
        if (st != STORE_OK) {
            ctl_store_fail(c, b->src, "Scan", st);
            goto out;
        }
        if (bf_page(b, c, ss, sst, ds, dst, cJSON_GetObjectItemCaseSensitive(resp, "Items")) != 0) goto out;
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
        if (ctl_link_opt(argc, argv, &i, &from, &to, &table)) {
            continue;
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
    if (ctl_find_link(c, "backfill", from, to, table, &src, &dst) != 0) return CTL_EXIT_ERROR;
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
            cJSON_AddNumberToObject(jt, "gone", (double)b.gone);
            cJSON_AddNumberToObject(jt, "refused", (double)b.refused);
            cJSON_AddNumberToObject(jt, "failed", (double)b.failed);
            cJSON_AddNumberToObject(jt, "skipped", (double)b.skipped);
            cJSON_AddNumberToObject(jt, "ms", (double)ms);
        } else {
            printf("table %s: %s -> %s: %zu scanned, %zu written, %zu kept newer, %zu same, %zu gone (deleted since "
                   "the scan), %zu refused, %zu failed, %zu skipped (no key attributes), in %.1f s\n",
                   t, from, to, b.scanned, b.written, b.newer, b.same, b.gone, b.refused, b.failed, b.skipped,
                   ms / 1000.0);
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
