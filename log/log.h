/* log.h -- the one logging module of Tern.
 *
 * Every line goes to stderr as
 *   2026-11-22T18:43:22.123Z LEVEL region=us-east-1 peer=eu-west-1 message
 * When stderr is the journal (JOURNAL_STREAM set and matching), lines carry the
 * sd-daemon "<N>" priority prefix instead of the timestamp so journald records levels.
 * Messages never contain secrets: callers pass key/credential material only as
 * file names, never contents.
 *
 * Threading: log_msg() may be called from any thread; each line is written with a
 * single write(2), so lines never interleave. log_init()/log_set_level() are called
 * from the main thread before or between worker activity (the level is an atomic). */
#ifndef TERN_LOG_H
#define TERN_LOG_H

/* Levels, most to least severe; numeric values are syslog priorities. */
typedef enum {
    LOG_LVL_ERROR = 3,   /* something failed; data may be at risk or a request was dropped */
    LOG_LVL_WARN = 4,    /* degraded but continuing (peer down, retrying, config concern) */
    LOG_LVL_INFO = 6,    /* lifecycle and rare events (start, stop, lost conflicts) */
    LOG_LVL_DEBUG = 7    /* per-batch detail; off by default */
} log_level;

/* Sets the region shown on every line (copied) and the threshold. Safe to call again. */
void log_init(const char *region, log_level level);
void log_set_level(log_level level);
log_level log_get_level(void);

/* Parses "error"|"warn"|"info"|"debug" into *out; returns 0, or -1 if unknown. */
int log_level_parse(const char *s, log_level *out);
const char *log_level_name(log_level level);

/* Writes one line if level passes the threshold. peer may be NULL ("-"). */
void log_msg(log_level level, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Rate limit of one stream of repeated lines (the same failure again and again): at most
 * one line per every_ms, the occurrences in between counted and reported with the next
 * line. Zero-initialised; setting `at` to 0 re-arms it (the next occurrence is a new
 * episode, logged at once). Not locked: one per thread. */
typedef struct {
    long long at;     /* monotonic ms of the last line; 0: armed */
    long skipped;     /* occurrences not logged since then */
} log_limit;

/* Whether an occurrence at now_ms (monotonic) is to be logged: 1, with *skipped set to the
 * occurrences not logged since the last line (counted as 0 from then on); 0, counted. */
int log_limit_pass(log_limit *l, long long now_ms, long long every_ms, long *skipped);

#define log_error(peer, ...) log_msg(LOG_LVL_ERROR, (peer), __VA_ARGS__)
#define log_warn(peer, ...)  log_msg(LOG_LVL_WARN, (peer), __VA_ARGS__)
#define log_info(peer, ...)  log_msg(LOG_LVL_INFO, (peer), __VA_ARGS__)
#define log_debug(peer, ...) \
    do { if (log_get_level() >= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, (peer), __VA_ARGS__); } while (0)

#endif
