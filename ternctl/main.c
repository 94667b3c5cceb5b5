/* main.c -- ternctl's entry point: global options and dispatch to the commands
 * (ternctl.h lists the files). Global options may appear before or after the command.
 * Threading: main thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ternctl.h"

static void ctl_usage(FILE *f) {
    fprintf(f,
            "usage: ternctl [--config FILE]... [--json] COMMAND [ARGS]\n"
            "\n"
            "Operator CLI of Tern (active-active replication for DynamoDB-API table stores).\n"
            "\n"
            "Global options:\n"
            "  --config FILE   a region config; repeatable (default: every ./config/*.json, sorted)\n"
            "  --json          machine-readable output (one JSON document)\n"
            "  --help          this text\n"
            "  --version       print the version\n"
            "\n"
            "Commands:\n"
            "  status                             heartbeats, lag, pending, counters of every link\n"
            "  lag [--watch [SECONDS]]            lag last/p50/p99 per link (reprint every SECONDS, default 1)\n"
            "  wait-caught-up --from R1 --to R2 [--timeout S] [--table T]\n"
            "                                     wait until every change R1 had at the call is applied in R2\n"
            "  verify [--regions R1,R2,...] [--table T] [--segments N] [--max-diffs K]\n"
            "                                     scan the tables in every region and compare the items\n"
            "  backfill --from R1 --to R2 [--table T] [--rate N]\n"
            "                                     copy R1's items to R2 under last-writer-wins (a new region\n"
            "                                     or table); newer versions in R2 stay; N items/s at most\n"
            "  pause --from R1 --to R2            stop shipping R1's changes to R2 (durable)\n"
            "  resume --from R1 --to R2           resume it\n"
            "  keygen REGION [--dir DIR] [--force]\n"
            "                                     write DIR/REGION.key (0600) and DIR/REGION.pub (CURVE keys;\n"
            "                                     default DIR config/keys); needs no config\n"
            "\n"
            "Exit status: 0 success (identical, caught up, copied); 1 a negative answer (differences,\n"
            "timeout, items not copied);\n"
            "2 usage or config error, or a region's Redis or store cannot be reached.\n"
            "docs/lag.md defines lag and pending; docs/redis-keys.md the state read.\n");
}

int main(int argc, char **argv) {
    char **paths = NULL, **rest = NULL;
    size_t npaths = 0;
    int nrest = 0, json = 0, rc = CTL_EXIT_ERROR;
    ctl_ctx c;
    const char *cmd;

    memset(&c, 0, sizeof c);
    paths = calloc((size_t)argc + 1, sizeof *paths);
    rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!paths || !rest) {
        ctl_err("out of memory");
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                ctl_err("--config needs a FILE");
                goto out;
            }
            paths[npaths++] = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            paths[npaths++] = argv[i] + 9;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("ternctl %s\n", TERN_VERSION);
            rc = CTL_EXIT_OK;
            goto out;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
                   (nrest == 0 && strcmp(argv[i], "help") == 0)) {
            ctl_usage(stdout);
            rc = CTL_EXIT_OK;
            goto out;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0) {
        ctl_usage(stderr);
        goto out;
    }
    cmd = rest[0];
    if (strcmp(cmd, "keygen") == 0) {
        rc = ctl_cmd_keygen(json, nrest, rest);
        goto out;
    }
    if (strcmp(cmd, "status") != 0 && strcmp(cmd, "lag") != 0 && strcmp(cmd, "wait-caught-up") != 0 &&
        strcmp(cmd, "verify") != 0 && strcmp(cmd, "backfill") != 0 && strcmp(cmd, "pause") != 0 &&
        strcmp(cmd, "resume") != 0) {
        ctl_err("unknown command '%s' (see ternctl --help)", cmd);
        goto out;
    }
    c.json = json;
    if (ctl_load(&c, paths, npaths) != 0) goto out;
    if (strcmp(cmd, "status") == 0) rc = ctl_cmd_status(&c, nrest, rest);
    else if (strcmp(cmd, "lag") == 0) rc = ctl_cmd_lag(&c, nrest, rest);
    else if (strcmp(cmd, "wait-caught-up") == 0) rc = ctl_cmd_wait(&c, nrest, rest);
    else if (strcmp(cmd, "verify") == 0) rc = ctl_cmd_verify(&c, nrest, rest);
    else if (strcmp(cmd, "backfill") == 0) rc = ctl_cmd_backfill(&c, nrest, rest);
    else rc = ctl_cmd_pause(&c, nrest, rest, strcmp(cmd, "pause") == 0);
out:
    ctl_ctx_free(&c);
    free(paths);
    free(rest);
    return rc;
}
