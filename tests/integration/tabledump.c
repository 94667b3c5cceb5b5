/* tabledump.c -- prints every item of a table, one canonical JSON line per item
 * (item_canonical: sorted map keys and set members), sorted, for integration tests
 * that compare regions with diff(1) independently of ternctl.
 *
 *   tabledump ENDPOINT TABLE [--hidden]
 * Without --hidden Tern's tern:* attributes are left out (they legitimately differ
 * between regions: tern:wid names the region that wrote the item). Exit 0, or 1 when
 * a Scan fails (message on stderr). Credentials: AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY or "local". Single-threaded; frees everything it allocates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "item.h"
#include "store.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    store_opts o;
    store *s;
    char err[256];
    cJSON *req;
    char **lines = NULL;
    size_t n = 0, cap = 0;
    int hidden = argc == 4 && strcmp(argv[3], "--hidden") == 0, rc = 0;

    if (argc != 3 && !hidden) {
        fprintf(stderr, "usage: tabledump ENDPOINT TABLE [--hidden]\n");
        return 2;
    }
    store_opts_client(&o, argv[1]);
    o.timeout_ms = 10000;
    s = store_new(&o, err, sizeof err);
    if (!s) {
        fprintf(stderr, "tabledump: %s\n", err);
        return 1;
    }
    req = cJSON_CreateObject();
    if (!req || !cJSON_AddStringToObject(req, "TableName", argv[2]) ||
        !cJSON_AddTrueToObject(req, "ConsistentRead")) {
        fprintf(stderr, "tabledump: out of memory\n");
        return 1;
    }
    for (;;) {
        cJSON *resp = NULL;
        const cJSON *items, *it, *lek;
        store_status st = store_call(s, "Scan", req, &resp);
        if (st != STORE_OK) {
            fprintf(stderr, "tabledump: Scan: %s: %s\n", store_status_name(st), store_errstr(s));
            cJSON_Delete(resp);
            rc = 1;
            break;
        }
        items = cJSON_GetObjectItemCaseSensitive(resp, "Items");
        cJSON_ArrayForEach(it, items) {
            char *c = item_canonical(it, !hidden);
            if (!c) {
                rc = 1;
                continue;
            }
            if (n == cap) {
                char **nl = realloc(lines, (cap ? cap * 2 : 256) * sizeof *nl);
                if (!nl) {
                    free(c);
                    rc = 1;
                    continue;
                }
                lines = nl;
                cap = cap ? cap * 2 : 256;
            }
            lines[n++] = c;
        }
        lek = cJSON_GetObjectItemCaseSensitive(resp, "LastEvaluatedKey");
        if (!lek) {
            cJSON_Delete(resp);
            break;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(req, "ExclusiveStartKey");
        cJSON_AddItemToObject(req, "ExclusiveStartKey", cJSON_Duplicate(lek, 1));
        cJSON_Delete(resp);
    }
    if (n) qsort(lines, n, sizeof *lines, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) printf("%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
    cJSON_Delete(req);
    store_free(s);
    return rc;
}
