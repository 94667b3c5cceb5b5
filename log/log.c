/* log.c -- formats and writes log lines (see log.h for the line format).
 *
 * Owns: the region label and the level threshold, both process-wide.
 * Invariants: a line is at most LOG_LINE_MAX bytes (longer messages are cut and end
 * in "..."); every line ends in '\n' and is emitted with one write(2).
 * Threading: the level is an atomic int; the region label is written only by
 * log_init(), which callers run before starting threads. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static char log_region[64] = "-";
static atomic_int log_level_cur = LOG_LVL_INFO;
static int log_journal = -1; /* -1 unknown, 0 no, 1 stderr is the journal */

static int log_detect_journal(void) {
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long dev = 0, ino = 0;
    if (!js || sscanf(js, "%lu:%lu", &dev, &ino) != 2) return 0;
    if (fstat(STDERR_FILENO, &st) != 0) return 0;
    return (unsigned long)st.st_dev == dev && (unsigned long)st.st_ino == ino;
}

void log_init(const char *region, log_level level) {
    snprintf(log_region, sizeof log_region, "%s", region && *region ? region : "-");
    atomic_store(&log_level_cur, (int)level);
    log_journal = log_detect_journal();
}

void log_set_level(log_level level) { atomic_store(&log_level_cur, (int)level); }
log_level log_get_level(void) { return (log_level)atomic_load(&log_level_cur); }

const char *log_level_name(log_level level) {
    switch (level) {
    case LOG_LVL_ERROR: return "error";
    case LOG_LVL_WARN: return "warn";
    case LOG_LVL_INFO: return "info";
    case LOG_LVL_DEBUG: return "debug";
    }
    return "?";
}

int log_level_parse(const char *s, log_level *out) {
    static const log_level all[] = {LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG};
    if (!s) return -1;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, log_level_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

void log_msg(log_level level, const char *peer, const char *fmt, ...) {
    char line[LOG_LINE_MAX];
    size_t n = 0;
    int r;
    va_list ap;

    if ((int)level > atomic_load(&log_level_cur)) return;
    if (log_journal < 0) log_journal = log_detect_journal();
    if (log_journal) {
        r = snprintf(line, sizeof line, "<%d>%s region=%s peer=%s ", (int)level,
                     log_level_name(level), log_region, peer ? peer : "-");
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        r = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s region=%s peer=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000L, log_level_name(level), log_region,
                     peer ? peer : "-");
    }
    if (r < 0) return;
    n = (size_t)r < sizeof line ? (size_t)r : sizeof line - 1;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (r < 0) return;
    if ((size_t)r >= sizeof line - n) {
        n = sizeof line - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)r;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

int log_limit_pass(log_limit *l, long long now_ms, long long every_ms, long *skipped) {
    if (l->at && now_ms - l->at < every_ms) {
        l->skipped++;
        return 0;
    }
    *skipped = l->skipped;
    l->at = now_ms;
    l->skipped = 0;
    return 1;
}
