/* verify.c -- ternctl verify: do the regions hold the same items?
 *
 * Per table, every listed region's table is scanned (strongly consistent parallel
 * scan, store_scan_all: one thread and one store handle per segment) into a ctl_kmap
 * from the key id (item_key_id of the key attributes named by DescribeTable) to the
 * SHA-256 of item_canonical(item, skip_hidden=1): 64 bytes per item. The maps are then
 * compared: a key missing in some region, or whose digests differ, is a difference.
 * Only when there are differences, the first max-diffs of them are looked up again
 * with a second scan per region (stopped as soon as they are all found) to print their
 * key JSON and each region's item; nothing else is kept in memory.
 * Threading: the scan callbacks run concurrently on the segment threads and share one
 * vscan under its mutex; hashing happens outside the lock. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "item.h"
#include "ternctl.h"

#define CTL_SHOW_ITEM_MAX 400  /* characters of an item printed per region in text mode */

typedef struct {
    uint8_t kid[32];
    char *key_json;            /* canonical key, from the second scan (owned) or NULL */
    char **items;              /* per listed region: canonical item (owned) or NULL */
} vdiff;

typedef struct {
    pthread_mutex_t mu;
    const char *names[2];      /* key attribute names */
    size_t n_names;
    /* first scan */
    ctl_kmap *map;
    size_t items, skipped;
    int oom;
    /* second scan: find these kids */
    vdiff *want;
    size_t n_want, region;     /* region: index into vdiff.items */
    const ctl_kmap *present;   /* the region's map: which wanted kids it holds */
    size_t left;               /* wanted kids present in this region and not found yet */
} vscan;

/* Key id (binary) of item; 0, 1 = no key attributes (skip), -1 = out of memory. */
static int ctl_item_kid(const vscan *v, const cJSON *item, uint8_t kid[32], char **key_json) {
    cJSON *keys = item_project(item, v->names, v->n_names);
    char *hex;
    int rc;
    if (!keys) return 1;
    hex = item_key_id(keys);
    if (key_json) *key_json = item_canonical(keys, 0);
    cJSON_Delete(keys);
    rc = hex && ctl_hex_decode(hex, kid, 32) == 0 ? 0 : -1;
    free(hex);
    return rc;
}

static int ctl_scan_cb(const cJSON *item, int segment, void *ud) {
    vscan *v = ud;
    uint8_t kid[32], dig[32];
    unsigned int dlen = 0;
    char *canon;
    int rc, stop = 0;
    (void)segment;
    rc = ctl_item_kid(v, item, kid, NULL);
    if (rc == 1) {
        pthread_mutex_lock(&v->mu);
        v->skipped++;
        pthread_mutex_unlock(&v->mu);
        return 0;
    }
    canon = rc == 0 ? item_canonical(item, 1) : NULL;
    if (!canon || EVP_Digest(canon, strlen(canon), dig, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32) {
        free(canon);
        pthread_mutex_lock(&v->mu);
        v->oom = 1;
        pthread_mutex_unlock(&v->mu);
        return 1;
    }
    free(canon);
    pthread_mutex_lock(&v->mu);
    if (ctl_kmap_put(v->map, kid, dig) < 0) {
        v->oom = 1;
        stop = 1;
    } else {
        v->items++;
    }
    pthread_mutex_unlock(&v->mu);
    return stop;
}

static int ctl_find_cb(const cJSON *item, int segment, void *ud) {
    vscan *v = ud;
    uint8_t kid[32];
    char *key_json = NULL;
    int stop = 0;
    (void)segment;
    if (ctl_item_kid(v, item, kid, &key_json) != 0) {
        free(key_json);
        return 0;
    }
    pthread_mutex_lock(&v->mu);
    for (size_t i = 0; i < v->n_want; i++) {
        vdiff *d = &v->want[i];
        if (memcmp(d->kid, kid, 32) != 0 || d->items[v->region]) continue;
        d->items[v->region] = item_canonical(item, 1);
        if (!d->key_json) {
            d->key_json = key_json;
            key_json = NULL;
        }
        if (v->left > 0) v->left--;
        break;
    }
    stop = v->left == 0;
    pthread_mutex_unlock(&v->mu);
    free(key_json);
    return stop;
}

typedef struct {
    const char *table;
    int *regs;                 /* config indexes of the regions compared */
    size_t nr;
    ctl_kmap **maps;
    size_t *items, *skipped;
    size_t n_diffs;
    vdiff *diffs;              /* the first max_diffs */
    size_t n_shown;
} vtable;

static void ctl_vtable_free(vtable *t) {
    for (size_t i = 0; t->maps && i < t->nr; i++) ctl_kmap_free(t->maps[i]);
    for (size_t i = 0; i < t->n_shown; i++) {
        free(t->diffs[i].key_json);
        for (size_t r = 0; r < t->nr; r++) free(t->diffs[i].items[r]);
        free(t->diffs[i].items);
    }
    free(t->diffs);
    free(t->maps);
    free(t->items);
    free(t->skipped);
    free(t->regs);
}

/* Scans one region's table into a map (or, want != NULL, finds the wanted kids). */
static int ctl_verify_scan(ctl_ctx *c, int ci, const char *table, const store_table_info *ti, int segments,
                           vscan *v, int find) {
    store_opts o;
    char err[512];
    store_status ss;
    v->names[0] = ti->hash_key;
    v->names[1] = ti->range_key;
    v->n_names = *ti->range_key ? 2 : 1;
    ctl_store_opts(c, ci, &o);
    ss = store_scan_all(&o, table, segments, 1, find ? ctl_find_cb : ctl_scan_cb, v, err, sizeof err);
    if (v->oom) {
        ctl_err("region %s: table %s: out of memory while scanning", c->cfgs[ci]->region, table);
        return -1;
    }
    if (ss != STORE_OK && !(find && v->left == 0)) {
        ctl_err("region %s: store %s: Scan %s: %s: %s", c->cfgs[ci]->region, c->cfgs[ci]->store.endpoint, table,
                store_status_name(ss), err);
        return -1;
    }
    return 0;
}

static int ctl_verify_table(ctl_ctx *c, vtable *t, int segments, size_t max_diffs) {
    store_table_info ti0;
    vscan v;
    int rc = -1;

    t->maps = calloc(t->nr, sizeof *t->maps);
    t->items = calloc(t->nr, sizeof *t->items);
    t->skipped = calloc(t->nr, sizeof *t->skipped);
    t->diffs = calloc(max_diffs ? max_diffs : 1, sizeof *t->diffs);
    if (!t->maps || !t->items || !t->skipped || !t->diffs) goto oom;
    if (ctl_key_schema(c, t->regs, t->nr, t->table, &ti0) != 0) return -1;
    for (size_t r = 0; r < t->nr; r++) {
        memset(&v, 0, sizeof v);
        if (pthread_mutex_init(&v.mu, NULL) != 0) goto oom;
        v.map = ctl_kmap_new(0);
        if (!v.map) {
            pthread_mutex_destroy(&v.mu);
            goto oom;
        }
        t->maps[r] = v.map;
        rc = ctl_verify_scan(c, t->regs[r], t->table, &ti0, segments, &v, 0);
        pthread_mutex_destroy(&v.mu);
        t->items[r] = v.items;
        t->skipped[r] = v.skipped;
        if (rc != 0) return -1;
    }
    /* compare: every key of the union, each once (at the first region holding it) */
    for (size_t r = 0; r < t->nr; r++) {
        size_t pos = 0;
        const uint8_t *kid, *dig;
        while (ctl_kmap_next(t->maps[r], &pos, &kid, &dig)) {
            int seen = 0, same = 1;
            for (size_t q = 0; q < r && !seen; q++) seen = ctl_kmap_get(t->maps[q], kid) != NULL;
            if (seen) continue;
            for (size_t q = r + 1; q < t->nr && same; q++) {
                const uint8_t *d2 = ctl_kmap_get(t->maps[q], kid);
                same = d2 && memcmp(d2, dig, 32) == 0;
            }
            if (same && r == 0) continue; /* for r > 0 it is missing in region 0 */
            t->n_diffs++;
            if (t->n_shown < max_diffs) {
                vdiff *d = &t->diffs[t->n_shown];
                d->items = calloc(t->nr, sizeof *d->items);
                if (!d->items) goto oom;
                memcpy(d->kid, kid, 32);
                t->n_shown++;
            }
        }
    }
    /* look the shown differences up again for their keys and items */
    for (size_t r = 0; r < t->nr && t->n_shown > 0; r++) {
        memset(&v, 0, sizeof v);
        v.want = t->diffs;
        v.n_want = t->n_shown;
        v.region = r;
        for (size_t i = 0; i < t->n_shown; i++)
            if (ctl_kmap_get(t->maps[r], t->diffs[i].kid)) v.left++;
        if (v.left == 0) continue;
        if (pthread_mutex_init(&v.mu, NULL) != 0) goto oom;
        rc = ctl_verify_scan(c, t->regs[r], t->table, &ti0, segments, &v, 1);
        pthread_mutex_destroy(&v.mu);
        if (rc != 0) return -1;
    }
    return 0;
oom:
    ctl_err("out of memory");
    return -1;
}

/* Region names of a difference: missing ones, and groups of equal digests. */
static void ctl_diff_describe(ctl_ctx *c, const vtable *t, const vdiff *d, char *buf, size_t len,
                              cJSON *jo) {
    size_t off = 0, nmiss = 0, ngroups = 0;
    int *group = calloc(t->nr, sizeof *group);
    cJSON *miss = jo ? cJSON_AddArrayToObject(jo, "missing_in") : NULL;
    cJSON *groups = jo ? cJSON_AddArrayToObject(jo, "groups") : NULL;
    buf[0] = '\0';
    if (!group) return;
    for (size_t r = 0; r < t->nr; r++) {
        const uint8_t *dig = ctl_kmap_get(t->maps[r], d->kid);
        group[r] = -1;
        if (!dig) {
            nmiss++;
            continue;
        }
        for (size_t q = 0; q < r; q++) {
            const uint8_t *d2 = ctl_kmap_get(t->maps[q], d->kid);
            if (d2 && memcmp(d2, dig, 32) == 0) {
                group[r] = group[q];
                break;
            }
        }
        if (group[r] < 0) group[r] = (int)ngroups++;
    }
    if (nmiss) {
        off += (size_t)snprintf(buf + off, len - off, "missing in");
        for (size_t r = 0; r < t->nr && off < len; r++)
            if (group[r] < 0) {
                off += (size_t)snprintf(buf + off, len - off, " %s", c->cfgs[t->regs[r]]->region);
                if (miss) cJSON_AddItemToArray(miss, cJSON_CreateString(c->cfgs[t->regs[r]]->region));
            }
    }
    if (ngroups > 1 && off < len)
        off += (size_t)snprintf(buf + off, len - off, "%sdifferent items:", nmiss ? "; " : "");
    else if (off < len)
        off += (size_t)snprintf(buf + off, len - off, "; present in");
    for (int g = 0; g < (int)ngroups && off < len; g++) {
        cJSON *ga = groups ? cJSON_CreateArray() : NULL;
        int first = 1;
        off += (size_t)snprintf(buf + off, len - off, "%s", g ? " |" : "");
        for (size_t r = 0; r < t->nr && off < len; r++)
            if (group[r] == g) {
                off += (size_t)snprintf(buf + off, len - off, "%s%s", first ? " " : ",", c->cfgs[t->regs[r]]->region);
                first = 0;
                if (ga) cJSON_AddItemToArray(ga, cJSON_CreateString(c->cfgs[t->regs[r]]->region));
            }
        if (ga) cJSON_AddItemToArray(groups, ga);
    }
    free(group);
}

int ctl_cmd_verify(ctl_ctx *c, int argc, char **argv) {
    char **rnames = NULL, **tables = NULL;
    size_t nrn = 0, ntab = 0, ndiff_total = 0;
    const char *table = NULL;
    long long segments = 4, max_diffs = 10;
    int *regs = NULL, rc = CTL_EXIT_ERROR;
    size_t nregs = 0;
    vtable *vts = NULL;
    size_t nvt = 0;
    cJSON *doc = NULL, *jtabs = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--regions") == 0 && i + 1 < argc) {
            ctl_list_free(rnames, nrn);
            rnames = NULL;
            if (ctl_split_list(argv[++i], &rnames, &nrn) != 0) {
                ctl_err("verify: --regions wants R1,R2,... got '%s'", argv[i]);
                return CTL_EXIT_ERROR;
            }
        } else if (strcmp(argv[i], "--table") == 0 && i + 1 < argc) {
            table = argv[++i];
        } else if (strcmp(argv[i], "--segments") == 0 && i + 1 < argc) {
            if (ctl_parse_range(argv[++i], 1, 64, &segments) != 0) {
                ctl_err("verify: --segments must be 1..64, got '%s'", argv[i]);
                goto out;
            }
        } else if (strcmp(argv[i], "--max-diffs") == 0 && i + 1 < argc) {
            if (ctl_parse_range(argv[++i], 0, 100000, &max_diffs) != 0) {
                ctl_err("verify: --max-diffs must be 0..100000, got '%s'", argv[i]);
                goto out;
            }
        } else {
            ctl_err("verify: unexpected argument '%s' (usage: ternctl verify [--regions R1,R2,...] [--table T] "
                    "[--segments N] [--max-diffs K])", argv[i]);
            goto out;
        }
    }
    regs = calloc(c->n + (nrn ? nrn : 0) + 1, sizeof *regs);
    if (!regs) goto oom;
    if (nrn) {
        for (size_t k = 0; k < nrn; k++) {
            int ci = ctl_find(c, rnames[k]);
            if (ci < 0) {
                ctl_err("verify: region %s has no config loaded", rnames[k]);
                goto out;
            }
            for (size_t q = 0; q < nregs; q++)
                if (regs[q] == ci) ci = -1;
            if (ci >= 0) regs[nregs++] = ci;
        }
    } else {
        for (size_t k = 0; k < c->n; k++) regs[nregs++] = (int)k;
    }
    if (nregs < 2) {
        ctl_err("verify: needs at least two regions (loaded: %zu)", nregs);
        goto out;
    }
    /* tables: the union, in config order */
    tables = calloc(CFG_TABLES_MAX * nregs + 1, sizeof *tables);
    if (!tables) goto oom;
    for (size_t q = 0; q < nregs; q++) {
        const cfg_region *cfg = c->cfgs[regs[q]];
        for (size_t k = 0; k < cfg->n_tables; k++) {
            int dup = 0;
            if (table && strcmp(table, cfg->tables[k]) != 0) continue;
            for (size_t j = 0; j < ntab && !dup; j++) dup = strcmp(tables[j], cfg->tables[k]) == 0;
            if (!dup) tables[ntab++] = cfg->tables[k];
        }
    }
    if (table) {
        for (size_t q = 0; q < nregs; q++)
            if (!ctl_has_table(c->cfgs[regs[q]], table)) {
                ctl_err("verify: table %s is not in %s's config", table, c->cfgs[regs[q]]->path);
                goto out;
            }
    }
    vts = calloc(ntab + 1, sizeof *vts);
    if (!vts) goto oom;
    if (c->json) {
        doc = cJSON_CreateObject();
        jtabs = doc ? cJSON_AddArrayToObject(doc, "tables") : NULL;
        if (!jtabs) goto oom;
    }
    for (size_t k = 0; k < ntab; k++) {
        vtable *t = &vts[nvt];
        t->table = tables[k];
        t->regs = calloc(nregs, sizeof *t->regs);
        if (!t->regs) goto oom;
        nvt++;
        for (size_t q = 0; q < nregs; q++)
            if (ctl_has_table(c->cfgs[regs[q]], t->table)) t->regs[t->nr++] = regs[q];
        if (t->nr < 2) {
            if (!c->json)
                printf("table %s: only in %s's config; not compared\n", t->table, c->cfgs[t->regs[0]]->region);
            continue;
        }
        if (ctl_verify_table(c, t, (int)segments, (size_t)max_diffs) != 0) goto out;
        ndiff_total += t->n_diffs;
        if (c->json) {
            cJSON *jt = cJSON_CreateObject(), *jr, *jd;
            char hex[65];
            if (!jt) goto oom;
            cJSON_AddItemToArray(jtabs, jt);
            cJSON_AddStringToObject(jt, "table", t->table);
            jr = cJSON_AddArrayToObject(jt, "regions");
            for (size_t r = 0; jr && r < t->nr; r++) {
                cJSON *o = cJSON_CreateObject();
                if (!o) goto oom;
                cJSON_AddItemToArray(jr, o);
                cJSON_AddStringToObject(o, "region", c->cfgs[t->regs[r]]->region);
                cJSON_AddNumberToObject(o, "items", (double)t->items[r]);
                cJSON_AddNumberToObject(o, "skipped", (double)t->skipped[r]);
            }
            cJSON_AddNumberToObject(jt, "differences", (double)t->n_diffs);
            jd = cJSON_AddArrayToObject(jt, "shown");
            for (size_t i = 0; jd && i < t->n_shown; i++) {
                const vdiff *d = &t->diffs[i];
                cJSON *o = cJSON_CreateObject(), *items;
                char desc[1024];
                if (!o) goto oom;
                cJSON_AddItemToArray(jd, o);
                ctl_hex_encode(d->kid, 32, hex);
                cJSON_AddStringToObject(o, "key_id", hex);
                if (d->key_json) cJSON_AddItemToObject(o, "key", cJSON_Parse(d->key_json));
                else cJSON_AddNullToObject(o, "key");
                ctl_diff_describe(c, t, d, desc, sizeof desc, o);
                items = cJSON_AddObjectToObject(o, "items");
                for (size_t r = 0; items && r < t->nr; r++) {
                    cJSON *it = d->items[r] ? cJSON_Parse(d->items[r]) : NULL;
                    cJSON_AddItemToObject(items, c->cfgs[t->regs[r]]->region, it ? it : cJSON_CreateNull());
                }
            }
        } else {
            printf("table %s:", t->table);
            for (size_t r = 0; r < t->nr; r++)
                printf("%s %s %zu item(s)%s", r ? "," : "", c->cfgs[t->regs[r]]->region, t->items[r],
                       t->skipped[r] ? " (+ skipped without key attributes)" : "");
            if (t->n_diffs)
                printf("; %zu DIFFERENCE(S)%s\n", t->n_diffs, t->n_shown < t->n_diffs ? " (showing the first ones)" : "");
            else
                printf("; identical\n");
            for (size_t i = 0; i < t->n_shown; i++) {
                const vdiff *d = &t->diffs[i];
                char desc[1024], hex[65];
                ctl_diff_describe(c, t, d, desc, sizeof desc, NULL);
                ctl_hex_encode(d->kid, 32, hex);
                printf("  key %s: %s\n", d->key_json ? d->key_json : hex, desc);
                for (size_t r = 0; r < t->nr; r++) {
                    const char *it = d->items[r];
                    if (!ctl_kmap_get(t->maps[r], d->kid)) continue;
                    if (!it) {
                        printf("    %s: (changed or gone since the scan)\n", c->cfgs[t->regs[r]]->region);
                        continue;
                    }
                    if (strlen(it) > CTL_SHOW_ITEM_MAX)
                        printf("    %s: %.*s...\n", c->cfgs[t->regs[r]]->region, CTL_SHOW_ITEM_MAX, it);
                    else
                        printf("    %s: %s\n", c->cfgs[t->regs[r]]->region, it);
                }
            }
            fflush(stdout);
        }
    }
    if (c->json) {
        cJSON_AddBoolToObject(doc, "identical", ndiff_total == 0);
        cJSON_AddNumberToObject(doc, "differences", (double)ndiff_total);
        rc = ctl_json_print(doc) == 0 ? (ndiff_total ? CTL_EXIT_NEGATIVE : CTL_EXIT_OK) : CTL_EXIT_ERROR;
        doc = NULL;
    } else {
        printf("verify: %s (%zu difference(s) in %zu table(s))\n", ndiff_total ? "DIFFERENT" : "identical",
               ndiff_total, nvt);
        rc = ndiff_total ? CTL_EXIT_NEGATIVE : CTL_EXIT_OK;
    }
    goto out;
oom:
    ctl_err("out of memory");
out:
    cJSON_Delete(doc);
    for (size_t k = 0; k < nvt; k++) ctl_vtable_free(&vts[k]);
    free(vts);
    free(tables);
    free(regs);
    ctl_list_free(rnames, nrn);
    return rc;
}
