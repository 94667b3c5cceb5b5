/* status.c -- ternctl status and ternctl lag (see ternctl.h, docs/lag.md).
 *
 * Reads, per region, the heartbeats (hb:agent, hb:replicator), the rejected-frame
 * counters (rej), the trimmed-data alarms (alarm:trimmed) and the refused changes
 * (alarm:refused); per link S -> D and table T: in D's Redis the watermark wm:S:T, the lag
 * samples lag:S:T and the counters cnt:S:T (an alarm when its stale count is not 0); in
 * S's Redis the peer's ack ack:T[D], the pending part of log:T, the agent
 * counters acnt:T and the pause flag pause:D. Nothing is written.
 * Threading: main thread; lag --watch stops on SIGINT/SIGTERM through a flag. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "daemon.h"
#include "ternctl.h"
#include "wire.h"

/* What ternctl knows of one link. "has_*" = 0: absent or not readable. */
typedef struct {
    const ctl_link *l;
    int has_wm;
    char wm_pos[WIRE_POS_STRLEN];
    long long lag_ms, lag_at_ms;
    int has_lag;
    ctl_lag_stats st;
    int has_cnt;
    long long applied, lost, dup, skew, stale;
    int has_pending, pending_capped;
    long long pending;
    long long oldest_ms;             /* wall ms of the oldest pending change (its log id), or -1 */
    char ack[WIRE_POS_STRLEN];       /* "" when the peer never acknowledged */
    long long shipped, resent, trimmed;
    int has_acnt;
    int paused;
} link_info;

typedef struct {
    int alive;
    long long ms, pid;
    char status[256];
} hb_info;

/* An alarm list of one region: entries "<at_ms> <detail>", newest first. */
typedef struct {
    long long count;                 /* LLEN */
    redisReply *recent;              /* LRANGE 0 4 (owned) */
} alarm_list;

typedef struct {
    hb_info agent, repl;
    redisReply *rej;                 /* HGETALL rej (owned) */
    long long rej_total;
    alarm_list trimmed;              /* alarm:trimmed: detail "<table> <shard or peer:REGION>" */
    alarm_list refused;              /* alarm:refused: detail free text */
} region_info;

static long long ctl_hll(const redisReply *h, const char *f) {
    long long v;
    return ctl_hfield_ll(h, f, &v) == 0 ? v : 0;
}

/* D-side lag only (lag command) or everything (status). 0/-1 (printed). */
static int ctl_link_read(ctl_ctx *c, const ctl_link *l, link_info *li, int full, long long now) {
    char key[512];
    redisReply *r = NULL;
    memset(li, 0, sizeof *li);
    li->l = l;
    if (l->dst >= 0) {
        state *st = ctl_state(c, l->dst);
        if (!st) return -1;
        state_key(st, key, sizeof key, STATE_K_WM, l->src_name, l->table);
        if (ctl_hgetall(c, l->dst, key, &r) != 0) return -1;
        if (ctl_hfield(r, "pos")) {
            li->has_wm = 1;
            snprintf(li->wm_pos, sizeof li->wm_pos, "%s", ctl_hfield(r, "pos"));
        }
        if (ctl_hfield_ll(r, "lag_ms", &li->lag_ms) == 0) {
            li->has_lag = 1;
            if (ctl_hfield_ll(r, "at_ms", &li->lag_at_ms) != 0) li->lag_at_ms = 0;
        }
        freeReplyObject(r);
        state_key(st, key, sizeof key, STATE_K_LAG, l->src_name, l->table);
        r = state_cmd(st, "LRANGE %s 0 -1", key);
        if (!r) {
            ctl_redis_fail(c, l->dst, "LRANGE");
            return -1;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
            const char **s = calloc(r->elements, sizeof *s);
            if (!s) {
                freeReplyObject(r);
                ctl_err("out of memory");
                return -1;
            }
            for (size_t i = 0; i < r->elements; i++)
                s[i] = r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : NULL;
            if (ctl_lag_window(s, r->elements, now, CTL_LAG_WINDOW_MS, &li->st) != 0) {
                free(s);
                freeReplyObject(r);
                ctl_err("out of memory");
                return -1;
            }
            free(s);
        }
        freeReplyObject(r);
        if (full) {
            state_key(st, key, sizeof key, STATE_K_CNT, l->src_name, l->table);
            if (ctl_hgetall(c, l->dst, key, &r) != 0) return -1;
            li->has_cnt = 1;
            li->applied = ctl_hll(r, "applied");
            li->lost = ctl_hll(r, "lost");
            li->dup = ctl_hll(r, "dup");
            li->skew = ctl_hll(r, "skew");
            li->stale = ctl_hll(r, "stale");
            freeReplyObject(r);
        }
    }
    if (full) {
        state *st = ctl_state(c, l->src);
        char logkey[512], start[WIRE_POS_STRLEN + 2];
        wire_pos p;
        if (!st) return -1;
        state_key(st, key, sizeof key, STATE_K_ACK, l->table);
        r = state_cmd(st, "HGET %s %s", key, l->dst_name);
        if (!r) {
            ctl_redis_fail(c, l->src, "HGET");
            return -1;
        }
        if (r->type == REDIS_REPLY_STRING && wire_pos_parse(r->str, &p) == 0)
            snprintf(li->ack, sizeof li->ack, "%s", r->str);
        freeReplyObject(r);
        state_key(st, logkey, sizeof logkey, STATE_K_LOG, l->table);
        if (*li->ack) {
            snprintf(start, sizeof start, "(%s", li->ack);
            r = state_cmd(st, "XRANGE %s %s + COUNT %d", logkey, start, CTL_PENDING_CAP);
            if (!r) {
                ctl_redis_fail(c, l->src, "XRANGE");
                return -1;
            }
            li->has_pending = r->type == REDIS_REPLY_ARRAY;
            li->pending = (long long)r->elements;
            li->pending_capped = li->pending >= CTL_PENDING_CAP;
        } else {
            r = state_cmd(st, "XLEN %s", logkey);
            if (!r) {
                ctl_redis_fail(c, l->src, "XLEN");
                return -1;
            }
            li->has_pending = r->type == REDIS_REPLY_INTEGER;
            li->pending = r->integer;
            freeReplyObject(r);
            r = state_cmd(st, "XRANGE %s - + COUNT 1", logkey);
            if (!r) {
                ctl_redis_fail(c, l->src, "XRANGE");
                return -1;
            }
        }
        li->oldest_ms = -1;
        if (li->has_pending && li->pending > 0 && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements > 0 &&
            r->element[0]->element[0]->type == REDIS_REPLY_STRING &&
            wire_pos_parse(r->element[0]->element[0]->str, &p) == 0)
            li->oldest_ms = (long long)p.ms; /* the entry's id: when the agent logged it */
        freeReplyObject(r);
        state_key(st, key, sizeof key, STATE_K_ACNT, l->table);
        if (ctl_hgetall(c, l->src, key, &r) != 0) return -1;
        {
            char f[64];
            li->has_acnt = 1;
            snprintf(f, sizeof f, "shipped:%s", l->dst_name);
            li->shipped = ctl_hll(r, f);
            snprintf(f, sizeof f, "resent:%s", l->dst_name);
            li->resent = ctl_hll(r, f);
            li->trimmed = ctl_hll(r, "trimmed");
        }
        freeReplyObject(r);
        state_key(st, key, sizeof key, STATE_K_PAUSE, l->dst_name);
        r = state_cmd(st, "EXISTS %s", key);
        if (!r) {
            ctl_redis_fail(c, l->src, "EXISTS");
            return -1;
        }
        li->paused = state_reply_ll(r, 0) > 0;
        freeReplyObject(r);
    }
    return 0;
}

static int ctl_hb_read(ctl_ctx *c, int i, const char *who, hb_info *hb) {
    char key[256], *v = NULL;
    const char *status;
    memset(hb, 0, sizeof *hb);
    state_key(c->st[i], key, sizeof key, STATE_K_HB, who);
    if (ctl_get(c, i, key, &v) != 0) return -1;
    if (v) {
        hb->alive = 1;
        if (ctl_parse_heartbeat(v, &hb->ms, &hb->pid, &status) == 0)
            snprintf(hb->status, sizeof hb->status, "%s", status);
        else
            snprintf(hb->status, sizeof hb->status, "unparsable heartbeat");
    }
    free(v);
    return 0;
}

/* Alarm list name (a STATE_K_ALARM_*) of region i into *a: its length and newest 5 entries
 * (a->recent owned by the caller, freed with freeReplyObject). 0/-1 (printed). */
static int ctl_alarm_read(ctl_ctx *c, int i, const char *name, alarm_list *a) {
    char key[256];
    state *st = ctl_state(c, i);
    redisReply *r;
    state_key(st, key, sizeof key, "%s", name);
    r = state_cmd(st, "LLEN %s", key);
    if (!r) {
        ctl_redis_fail(c, i, "LLEN");
        return -1;
    }
    a->count = state_reply_ll(r, 0);
    freeReplyObject(r);
    a->recent = state_cmd(st, "LRANGE %s 0 4", key);
    if (!a->recent) {
        ctl_redis_fail(c, i, "LRANGE");
        return -1;
    }
    return 0;
}

/* Wall time ms as "YYYY-MM-DDTHH:MM:SSZ" into buf ("" if it cannot be converted). */
static void ctl_fmt_utc(long long ms, char *buf, size_t len) {
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (len) *buf = '\0';
    if (gmtime_r(&secs, &tm)) strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Splits alarm entry v, "<at_ms> <detail>", into *ms and *detail (pointing into v). 0/-1. */
static int ctl_alarm_split(const char *v, long long *ms, const char **detail) {
    char at[32];
    const char *sp = strchr(v, ' ');
    if (!sp || sp == v || (size_t)(sp - v) >= sizeof at) return -1;
    memcpy(at, v, (size_t)(sp - v));
    at[sp - v] = '\0';
    if (ctl_parse_ll(at, ms) != 0) return -1;
    *detail = sp + 1;
    return 0;
}

static int ctl_region_read(ctl_ctx *c, int i, region_info *ri) {
    char key[256];
    state *st = ctl_state(c, i);
    memset(ri, 0, sizeof *ri);
    if (!st) return -1;
    if (ctl_hb_read(c, i, "agent", &ri->agent) != 0 || ctl_hb_read(c, i, "replicator", &ri->repl) != 0) return -1;
    state_key(st, key, sizeof key, STATE_K_REJ);
    if (ctl_hgetall(c, i, key, &ri->rej) != 0) return -1;
    for (size_t k = 1; ri->rej->type == REDIS_REPLY_ARRAY && k < ri->rej->elements; k += 2) {
        long long v;
        if (ri->rej->element[k]->type == REDIS_REPLY_STRING && ctl_parse_ll(ri->rej->element[k]->str, &v) == 0)
            ri->rej_total += v;
    }
    if (ctl_alarm_read(c, i, STATE_K_ALARM_TRIMMED, &ri->trimmed) != 0) return -1;
    return ctl_alarm_read(c, i, STATE_K_ALARM_REFUSED, &ri->refused);
}

static void ctl_region_clear(region_info *ri) {
    if (ri->rej) freeReplyObject(ri->rej);
    if (ri->trimmed.recent) freeReplyObject(ri->trimmed.recent);
    if (ri->refused.recent) freeReplyObject(ri->refused.recent);
    memset(ri, 0, sizeof *ri);
}

/* ---- text ---- */

static void ctl_fmt_opt_ms(int has, long long ms, char *buf, size_t len) {
    if (has) ctl_fmt_ms(ms, buf, len);
    else snprintf(buf, len, "-");
}

static void ctl_fmt_hb(const hb_info *hb, long long now, char *buf, size_t len) {
    char age[32];
    if (!hb->alive) {
        snprintf(buf, len, "DOWN (no heartbeat)");
        return;
    }
    ctl_fmt_ms(now - hb->ms, age, sizeof age);
    snprintf(buf, len, "up, %s ago, pid %lld%s%s", age, hb->pid, *hb->status ? ", " : "", hb->status);
}

static void ctl_lag_cells(const link_info *li, char *last, char *p50, char *p99, size_t len) {
    ctl_fmt_opt_ms(li->has_lag, li->lag_ms, last, len);
    ctl_fmt_opt_ms(li->st.n > 0, li->st.p50, p50, len);
    ctl_fmt_opt_ms(li->st.n > 0, li->st.p99, p99, len);
}

static void ctl_n(int has, long long v, char *buf, size_t len) {
    if (has) snprintf(buf, len, "%lld", v);
    else snprintf(buf, len, "-");
}

/* ---- JSON ---- */

static cJSON *ctl_jnum(int has, long long v) { return has ? cJSON_CreateNumber((double)v) : cJSON_CreateNull(); }

static cJSON *ctl_json_hb(const hb_info *hb, long long now) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddBoolToObject(o, "alive", hb->alive);
    if (hb->alive) {
        cJSON_AddNumberToObject(o, "at_ms", (double)hb->ms);
        cJSON_AddNumberToObject(o, "age_ms", (double)(now - hb->ms));
        cJSON_AddNumberToObject(o, "pid", (double)hb->pid);
        cJSON_AddStringToObject(o, "status", hb->status);
    }
    return o;
}

static cJSON *ctl_json_link(const link_info *li, int full) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "source", li->l->src_name);
    cJSON_AddStringToObject(o, "destination", li->l->dst_name);
    cJSON_AddStringToObject(o, "table", li->l->table);
    cJSON_AddBoolToObject(o, "destination_loaded", li->l->dst >= 0);
    cJSON_AddItemToObject(o, "lag_ms", ctl_jnum(li->has_lag, li->lag_ms));
    cJSON_AddItemToObject(o, "lag_at_ms", ctl_jnum(li->has_lag && li->lag_at_ms, li->lag_at_ms));
    cJSON_AddItemToObject(o, "p50_ms", ctl_jnum(li->st.n > 0, li->st.p50));
    cJSON_AddItemToObject(o, "p99_ms", ctl_jnum(li->st.n > 0, li->st.p99));
    cJSON_AddNumberToObject(o, "samples_last_minute", (double)li->st.n);
    if (!full) return o;
    if (li->has_wm) cJSON_AddStringToObject(o, "watermark", li->wm_pos);
    else cJSON_AddNullToObject(o, "watermark");
    if (*li->ack) cJSON_AddStringToObject(o, "acked", li->ack);
    else cJSON_AddNullToObject(o, "acked");
    cJSON_AddItemToObject(o, "pending", ctl_jnum(li->has_pending, li->pending));
    cJSON_AddBoolToObject(o, "pending_capped", li->pending_capped);
    cJSON_AddItemToObject(o, "oldest_pending_ms", ctl_jnum(li->oldest_ms >= 0, li->oldest_ms));
    cJSON_AddBoolToObject(o, "paused", li->paused);
    cJSON_AddItemToObject(o, "applied", ctl_jnum(li->has_cnt, li->applied));
    cJSON_AddItemToObject(o, "conflicts_lost", ctl_jnum(li->has_cnt, li->lost));
    cJSON_AddItemToObject(o, "duplicates", ctl_jnum(li->has_cnt, li->dup));
    cJSON_AddItemToObject(o, "skew_held", ctl_jnum(li->has_cnt, li->skew));
    cJSON_AddItemToObject(o, "stale_applied", ctl_jnum(li->has_cnt, li->stale));
    cJSON_AddItemToObject(o, "shipped", ctl_jnum(li->has_acnt, li->shipped));
    cJSON_AddItemToObject(o, "resent", ctl_jnum(li->has_acnt, li->resent));
    cJSON_AddItemToObject(o, "trimmed_alarms", ctl_jnum(li->has_acnt, li->trimmed));
    return o;
}

/* Entry v of an alarm list, split: 0 with *ms and *detail (into v), and for alarm:trimmed
 * (trimmed) tab and where ("<table> <shard or peer:REGION>", region-agent/); -1 when it
 * does not parse. */
static int ctl_alarm_entry(const char *v, int trimmed, long long *ms, const char **detail, char *tab, char *where) {
    if (ctl_alarm_split(v, ms, detail) != 0) return -1;
    return !trimmed || sscanf(*detail, "%255s %255s", tab, where) == 2 ? 0 : -1;
}

/* Adds {"count": N, "recent": [{"raw", "at_ms", then "table" and "shard" (trimmed) or
 * "detail"}]} as o's name; an entry that does not parse keeps "raw" alone. */
static void ctl_json_alarms(cJSON *o, const char *name, const alarm_list *a, int trimmed) {
    cJSON *al = cJSON_AddObjectToObject(o, name), *recent;
    if (!al) return;
    cJSON_AddNumberToObject(al, "count", (double)a->count);
    recent = cJSON_AddArrayToObject(al, "recent");
    for (size_t k = 0; recent && a->recent->type == REDIS_REPLY_ARRAY && k < a->recent->elements; k++) {
        const char *v = a->recent->element[k]->str, *detail;
        char tab[256], where[256];
        long long ms;
        cJSON *e;
        if (a->recent->element[k]->type != REDIS_REPLY_STRING || !(e = cJSON_CreateObject())) continue;
        cJSON_AddStringToObject(e, "raw", v);
        if (ctl_alarm_entry(v, trimmed, &ms, &detail, tab, where) == 0) {
            cJSON_AddNumberToObject(e, "at_ms", (double)ms);
            if (trimmed) {
                cJSON_AddStringToObject(e, "table", tab);
                cJSON_AddStringToObject(e, "shard", where);
            } else {
                cJSON_AddStringToObject(e, "detail", detail);
            }
        }
        cJSON_AddItemToArray(recent, e);
    }
}

/* Prints the newest entries of an alarm list, one per line. */
static void ctl_print_alarms(const alarm_list *a, int trimmed) {
    for (size_t k = 0; a->recent->type == REDIS_REPLY_ARRAY && k < a->recent->elements; k++) {
        const char *v = a->recent->element[k]->str, *detail;
        char tab[256], where[256], ts[32];
        long long ms;
        if (a->recent->element[k]->type != REDIS_REPLY_STRING) continue;
        if (ctl_alarm_entry(v, trimmed, &ms, &detail, tab, where) != 0) {
            printf("  %s\n", v);
            continue;
        }
        ctl_fmt_utc(ms, ts, sizeof ts);
        if (!trimmed)
            printf("  %s %s\n", ts, detail);
        else if (strncmp(where, "peer:", 5) == 0) /* region-agent/shipper.c */
            printf("  %s table %s: the change log was trimmed past the acknowledgement of %s: backfill it\n", ts, tab,
                   where + 5);
        else
            printf("  %s table %s shard %s\n", ts, tab, where);
    }
}

static cJSON *ctl_json_region(ctl_ctx *c, int i, const region_info *ri, long long now) {
    cJSON *o = cJSON_CreateObject(), *rej, *by;
    char addr[300];
    if (!o) return NULL;
    ctl_redis_addr(c, i, addr, sizeof addr);
    cJSON_AddStringToObject(o, "region", c->cfgs[i]->region);
    cJSON_AddStringToObject(o, "redis", addr);
    cJSON_AddItemToObject(o, "agent", ctl_json_hb(&ri->agent, now));
    cJSON_AddItemToObject(o, "replicator", ctl_json_hb(&ri->repl, now));
    rej = cJSON_AddObjectToObject(o, "rejected");
    if (rej) {
        cJSON_AddNumberToObject(rej, "total", (double)ri->rej_total);
        by = cJSON_AddObjectToObject(rej, "by_reason");
        for (size_t k = 0; by && ri->rej->type == REDIS_REPLY_ARRAY && k + 1 < ri->rej->elements; k += 2) {
            long long v;
            if (ri->rej->element[k]->type == REDIS_REPLY_STRING &&
                ctl_parse_ll(ri->rej->element[k + 1]->str, &v) == 0)
                cJSON_AddNumberToObject(by, ri->rej->element[k]->str, (double)v);
        }
    }
    ctl_json_alarms(o, "trimmed_alarms", &ri->trimmed, 1);
    ctl_json_alarms(o, "refused_alarms", &ri->refused, 0);
    return o;
}

int ctl_cmd_status(ctl_ctx *c, int argc, char **argv) {
    ctl_link *links = NULL;
    link_info *infos = NULL;
    region_info *regs = NULL;
    size_t nl = 0;
    int rc = CTL_EXIT_ERROR;
    long long now;

    if (argc > 1) {
        ctl_err("status: unexpected argument '%s' (usage: ternctl status)", argv[1]);
        return CTL_EXIT_ERROR;
    }
    if (ctl_links(c, NULL, &links, &nl) != 0) {
        ctl_err("out of memory");
        return CTL_EXIT_ERROR;
    }
    regs = calloc(c->n, sizeof *regs);
    infos = calloc(nl ? nl : 1, sizeof *infos);
    if (!regs || !infos) {
        ctl_err("out of memory");
        goto out;
    }
    now = daemon_wall_ms();
    for (size_t i = 0; i < c->n; i++)
        if (ctl_region_read(c, (int)i, &regs[i]) != 0) goto out;
    for (size_t k = 0; k < nl; k++)
        if (ctl_link_read(c, &links[k], &infos[k], 1, now) != 0) goto out;

    if (c->json) {
        cJSON *doc = cJSON_CreateObject(), *ra, *la;
        if (!doc) goto oom;
        cJSON_AddNumberToObject(doc, "now_ms", (double)now);
        ra = cJSON_AddArrayToObject(doc, "regions");
        la = cJSON_AddArrayToObject(doc, "links");
        if (!ra || !la) {
            cJSON_Delete(doc);
            goto oom;
        }
        for (size_t i = 0; i < c->n; i++) cJSON_AddItemToArray(ra, ctl_json_region(c, (int)i, &regs[i], now));
        for (size_t k = 0; k < nl; k++) cJSON_AddItemToArray(la, ctl_json_link(&infos[k], 1));
        if (ctl_json_print(doc) != 0) goto out;
    } else {
        static const char *const rh[] = {"REGION", "REDIS", "AGENT", "REPLICATOR", "REJECTED", "TRIMMED-ALARMS"};
        static const char *const lh[] = {"SOURCE", "DEST", "TABLE", "STATE", "LAG", "P50", "P99", "PENDING",
                                         "APPLIED", "LOST", "DUP", "SKEW-HELD", "SHIPPED", "RESENT", "TRIMMED"};
        ctl_table *rt = ctl_table_new(6), *lt = ctl_table_new(15);
        if (!rt || !lt || ctl_table_row(rt, rh) != 0 || ctl_table_row(lt, lh) != 0) {
            ctl_table_free(rt);
            ctl_table_free(lt);
            goto oom;
        }
        for (size_t i = 0; i < c->n; i++) {
            char addr[300], ag[400], rp[400], rej[512], al[32];
            const char *cells[6];
            size_t off;
            ctl_redis_addr(c, (int)i, addr, sizeof addr);
            ctl_fmt_hb(&regs[i].agent, now, ag, sizeof ag);
            ctl_fmt_hb(&regs[i].repl, now, rp, sizeof rp);
            off = (size_t)snprintf(rej, sizeof rej, "%lld", regs[i].rej_total);
            for (size_t k = 0; regs[i].rej_total && regs[i].rej->type == REDIS_REPLY_ARRAY &&
                               k + 1 < regs[i].rej->elements && off < sizeof rej; k += 2) {
                off += (size_t)snprintf(rej + off, sizeof rej - off, "%s%s=%s", k == 0 ? " (" : ",",
                                        regs[i].rej->element[k]->str, regs[i].rej->element[k + 1]->str);
                if (k + 3 >= regs[i].rej->elements && off < sizeof rej)
                    off += (size_t)snprintf(rej + off, sizeof rej - off, ")");
            }
            snprintf(al, sizeof al, "%lld", regs[i].trimmed.count);
            cells[0] = c->cfgs[i]->region;
            cells[1] = addr;
            cells[2] = ag;
            cells[3] = rp;
            cells[4] = rej;
            cells[5] = al;
            if (ctl_table_row(rt, cells) != 0) goto toom;
        }
        for (size_t k = 0; k < nl; k++) {
            const link_info *li = &infos[k];
            char last[32], p50[32], p99[32], pend[40], ap[24], lo[24], du[24], sk[24], sh[24], rs[24], tr[24];
            const char *cells[15];
            ctl_lag_cells(li, last, p50, p99, sizeof last);
            if (!li->has_pending) snprintf(pend, sizeof pend, "-");
            else snprintf(pend, sizeof pend, "%s%lld", li->pending_capped ? "≥" : "", li->pending);
            ctl_n(li->has_cnt, li->applied, ap, sizeof ap);
            ctl_n(li->has_cnt, li->lost, lo, sizeof lo);
            ctl_n(li->has_cnt, li->dup, du, sizeof du);
            ctl_n(li->has_cnt, li->skew, sk, sizeof sk);
            ctl_n(li->has_acnt, li->shipped, sh, sizeof sh);
            ctl_n(li->has_acnt, li->resent, rs, sizeof rs);
            ctl_n(li->has_acnt, li->trimmed, tr, sizeof tr);
            cells[0] = li->l->src_name;
            cells[1] = li->l->dst_name;
            cells[2] = li->l->table;
            cells[3] = li->paused ? "PAUSED" : "active";
            cells[4] = last;
            cells[5] = p50;
            cells[6] = p99;
            cells[7] = pend;
            cells[8] = ap;
            cells[9] = lo;
            cells[10] = du;
            cells[11] = sk;
            cells[12] = sh;
            cells[13] = rs;
            cells[14] = tr;
            if (ctl_table_row(lt, cells) != 0) goto toom;
        }
        ctl_table_print(rt, stdout);
        printf("\n");
        if (nl) ctl_table_print(lt, stdout);
        else printf("no links: no loaded region has peers\n");
        for (size_t i = 0; i < c->n; i++) {
            if (!regs[i].trimmed.count) continue;
            printf("\nALARM %s: %lld trimmed-data event(s): changes were lost before they reached a peer; run ternctl "
                   "verify (or backfill the peer named). Latest:\n", c->cfgs[i]->region, regs[i].trimmed.count);
            ctl_print_alarms(&regs[i].trimmed, 1);
        }
        for (size_t i = 0; i < c->n; i++) {
            if (!regs[i].refused.count) continue;
            printf("\nALARM %s: %lld peer change(s) refused for good and skipped (by the store, or keys not the "
                   "table's key schema): those items differ between regions until fixed; run ternctl verify. "
                   "Latest:\n", c->cfgs[i]->region, regs[i].refused.count);
            ctl_print_alarms(&regs[i].refused, 0);
        }
        for (size_t k = 0; k < nl; k++)
            if (infos[k].has_cnt && infos[k].stale)
                printf("\nALARM %s: %lld change(s) from %s (table %s) applied more than the tombstone TTL after they "
                       "were made: a delete or local write made in %s before it may have been undone; run ternctl "
                       "verify\n", infos[k].l->dst_name, infos[k].stale, infos[k].l->src_name, infos[k].l->table,
                       infos[k].l->dst_name);
        for (size_t k = 0; k < nl; k++) {
            /* the destination's tombstone TTL bounds how late a change may be applied with
             * last-writer-wins intact (its source config's when it is not loaded) */
            const link_info *li = &infos[k];
            const cfg_region *dc = c->cfgs[li->l->dst >= 0 ? li->l->dst : li->l->src];
            char age[32], ts[32];
            if (li->oldest_ms < 0 || now - li->oldest_ms <= dc->replicator.tombstone_ttl_s * 500LL) continue;
            ctl_fmt_ms(now - li->oldest_ms, age, sizeof age);
            ctl_fmt_utc(li->oldest_ms, ts, sizeof ts);
            printf("\nWARNING %s -> %s (table %s): a change has waited for %s since %s (%s ago), over half of "
                   "%s's tombstone TTL (%ld s): applied past the TTL, a change may undo a delete or a local write "
                   "made there meanwhile (a stale alarm, then ternctl verify); bring the link back before then\n",
                   li->l->src_name, li->l->dst_name, li->l->table, li->l->dst_name, ts, age, li->l->dst_name,
                   dc->replicator.tombstone_ttl_s);
        }
        for (size_t i = 0; i < c->n; i++)
            if (!regs[i].agent.alive || !regs[i].repl.alive)
                printf("\nWARNING %s: %s%s%s not running (no heartbeat within %d s)\n", c->cfgs[i]->region,
                       regs[i].agent.alive ? "" : "tern-region-agent",
                       !regs[i].agent.alive && !regs[i].repl.alive ? " and " : "",
                       regs[i].repl.alive ? "" : "tern-replicator", STATE_HEARTBEAT_TTL_S);
        ctl_table_free(rt);
        ctl_table_free(lt);
        goto done;
    toom:
        ctl_table_free(rt);
        ctl_table_free(lt);
        goto oom;
    }
done:
    rc = CTL_EXIT_OK;
    goto out;
oom:
    ctl_err("out of memory");
out:
    for (size_t i = 0; regs && i < c->n; i++) ctl_region_clear(&regs[i]);
    free(regs);
    free(infos);
    free(links);
    return rc;
}

/* ---- lag ---- */

static volatile sig_atomic_t ctl_stop;

static void ctl_on_signal(int sig) {
    (void)sig;
    ctl_stop = 1;
}

/* One report of every link's lag. 0/-1 (printed). */
static int ctl_lag_once(ctl_ctx *c, const ctl_link *links, size_t nl, int watch) {
    link_info li;
    long long now = daemon_wall_ms();
    if (c->json) {
        cJSON *doc = cJSON_CreateObject(), *la;
        if (!doc || !cJSON_AddNumberToObject(doc, "now_ms", (double)now) || !(la = cJSON_AddArrayToObject(doc, "links"))) {
            cJSON_Delete(doc);
            ctl_err("out of memory");
            return -1;
        }
        for (size_t k = 0; k < nl; k++) {
            if (ctl_link_read(c, &links[k], &li, 0, now) != 0) {
                cJSON_Delete(doc);
                return -1;
            }
            cJSON_AddItemToArray(la, ctl_json_link(&li, 0));
        }
        if (watch) { /* one compact document per line */
            char *s = cJSON_PrintUnformatted(doc);
            cJSON_Delete(doc);
            if (!s) return -1;
            printf("%s\n", s);
            free(s);
            fflush(stdout);
            return 0;
        }
        return ctl_json_print(doc);
    } else {
        static const char *const h[] = {"SOURCE", "DEST", "TABLE", "LAG", "P50", "P99", "SAMPLES/MIN"};
        ctl_table *t = ctl_table_new(7);
        if (!t || ctl_table_row(t, h) != 0) {
            ctl_table_free(t);
            ctl_err("out of memory");
            return -1;
        }
        for (size_t k = 0; k < nl; k++) {
            char last[32], p50[32], p99[32], n[32];
            const char *cells[7];
            if (ctl_link_read(c, &links[k], &li, 0, now) != 0) {
                ctl_table_free(t);
                return -1;
            }
            ctl_lag_cells(&li, last, p50, p99, sizeof last);
            if (links[k].dst >= 0) snprintf(n, sizeof n, "%zu", li.st.n);
            else snprintf(n, sizeof n, "- (%s not loaded)", links[k].dst_name);
            cells[0] = links[k].src_name;
            cells[1] = links[k].dst_name;
            cells[2] = links[k].table;
            cells[3] = last;
            cells[4] = p50;
            cells[5] = p99;
            cells[6] = n;
            if (ctl_table_row(t, cells) != 0) {
                ctl_table_free(t);
                ctl_err("out of memory");
                return -1;
            }
        }
        if (watch) {
            char ts[32];
            ctl_fmt_utc(now, ts, sizeof ts);
            printf("%s\n", ts);
        }
        ctl_table_print(t, stdout);
        if (watch) printf("\n");
        fflush(stdout);
        ctl_table_free(t);
        return 0;
    }
}

int ctl_cmd_lag(ctl_ctx *c, int argc, char **argv) {
    double every = 1.0;
    int watch = 0, rc;
    ctl_link *links = NULL;
    size_t nl = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--watch") == 0) {
            watch = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-') {
                if (ctl_parse_seconds(argv[i + 1], &every) != 0) {
                    ctl_err("lag: --watch SECONDS must be a positive number, got '%s'", argv[i + 1]);
                    return CTL_EXIT_ERROR;
                }
                i++;
            }
        } else {
            ctl_err("lag: unexpected argument '%s' (usage: ternctl lag [--watch [SECONDS]])", argv[i]);
            return CTL_EXIT_ERROR;
        }
    }
    if (ctl_links(c, NULL, &links, &nl) != 0) {
        ctl_err("out of memory");
        return CTL_EXIT_ERROR;
    }
    if (!watch) {
        rc = ctl_lag_once(c, links, nl, 0) == 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
        free(links);
        return rc;
    }
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = ctl_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    /* The first report must work (unreachable Redis: exit 2); later failures are
     * printed and the watch goes on, so a Redis restart does not end it. */
    rc = ctl_lag_once(c, links, nl, 1) == 0 ? CTL_EXIT_OK : CTL_EXIT_ERROR;
    while (rc == CTL_EXIT_OK && !ctl_stop) {
        struct timespec ts;
        ts.tv_sec = (time_t)every;
        ts.tv_nsec = (long)((every - (double)ts.tv_sec) * 1e9);
        while (!ctl_stop && nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        if (ctl_stop) break;
        ctl_lag_once(c, links, nl, 1);
    }
    free(links);
    return rc;
}
