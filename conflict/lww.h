/* lww.h -- versions, the hybrid logical clock and the last-writer-wins decision.
 *
 * A version is (ms, counter, region): wall-clock milliseconds and a logical counter
 * from the hybrid logical clock (HLC) of the region that made the change. Its text
 * form is "MMMMMMMMMMMMM-CCCCCC-region" (13 and 6 zero-padded decimal digits), so
 * the byte order (strcmp) of the text is exactly the version order and DynamoDB
 * condition expressions can compare stored versions with "<".
 *
 * Ranges: ms 0..LWW_MS_MAX (13 digits, good until the year 2286), counter
 * 0..LWW_COUNTER_MAX, region 1..31 chars of [a-z0-9-]. A version outside these ranges
 * is "invalid": it cannot be formatted or parsed.
 *
 * Threading: every function is pure and thread-safe except the lww_clock, which is
 * internally locked (one clock may be shared by threads; each call is atomic). */
#ifndef TERN_LWW_H
#define TERN_LWW_H

#include <stddef.h>
#include <stdint.h>

#define LWW_REGION_MAX 32          /* region name buffer: [a-z0-9-], 1..31 chars + NUL */
#define LWW_VERSION_STRLEN 56      /* buffer size for a formatted version incl. NUL */
#define LWW_MS_MAX 9999999999999ULL /* largest ms that fits the 13-digit text form */
#define LWW_COUNTER_MAX 999999u    /* largest counter that fits the 6-digit text form */

typedef struct {
    uint64_t ms;                   /* wall-clock milliseconds since the Unix epoch */
    uint32_t counter;              /* HLC logical counter within one ms */
    char region[LWW_REGION_MAX];   /* region that made the change, NUL-terminated */
} lww_version;

/* Returns 1 if region is 1..31 chars of [a-z0-9-], else 0 (also for NULL). */
int lww_region_valid(const char *region);

/* Writes "%013llu-%06u-%s" into buf (caller's buffer of len bytes; LWW_VERSION_STRLEN
 * always suffices). Returns 0, or -1 (buf set to "" when len > 0) if v is invalid
 * (ms > LWW_MS_MAX, counter > LWW_COUNTER_MAX, bad region) or len is too small.
 * Nothing is allocated. */
int lww_version_format(const lww_version *v, char *buf, size_t len);

/* Parses the text form strictly: exactly 13 digits, '-', exactly 6 digits, '-', a valid
 * region, nothing else (no sign, spaces or trailing bytes). Returns 0 and fills *out,
 * or -1 with a reason in err (caller's buffer of errlen bytes; err may be NULL when
 * errlen is 0). *out is untouched on error. Nothing is allocated. */
int lww_version_parse(const char *s, lww_version *out, char *err, size_t errlen);

/* Total order: <0, 0, >0 comparing ms, then counter, then strcmp(region). For valid
 * versions its sign equals the sign of strcmp of the formatted texts. */
int lww_version_compare(const lww_version *a, const lww_version *b);

/* Outcome of comparing an incoming change with what a region currently knows. */
typedef enum {
    LWW_APPLY, /* incoming is newer (or nothing is known): write it */
    LWW_LOSE,  /* current is newer: incoming lost the conflict, drop it */
    LWW_SAME   /* same version: a duplicate delivery, nothing to do */
} lww_decision;

/* Decides incoming against current (NULL: nothing known -> LWW_APPLY). Depends only
 * on the two versions, so every region reaches the same decision for the same pair. */
lww_decision lww_decide(const lww_version *incoming, const lww_version *current);

/* Static name: "apply", "lose", "same" ("unknown" otherwise). Never freed. */
const char *lww_decision_name(lww_decision d);

/* Hybrid logical clock of one region. Opaque; internally locked. */
typedef struct lww_clock lww_clock;

/* Returns a new clock for region (copied) with last = (0, 0, region), or NULL on a bad
 * region or allocation failure. The caller frees it with lww_clock_free. */
lww_clock *lww_clock_new(const char *region);

/* Frees c (NULL is a no-op). */
void lww_clock_free(lww_clock *c);

/* Produces the next local version into *out (caller's struct): strictly greater than
 * every version this clock produced or observed. ms = max(wall_ms, last.ms); the
 * counter resets to 0 when ms advances past last.ms, else it is last.counter + 1; when
 * it would exceed LWW_COUNTER_MAX, ms advances by 1 and the counter restarts at 0.
 * wall_ms above LWW_MS_MAX is treated as LWW_MS_MAX. At the very top of the range
 * (LWW_MS_MAX, LWW_COUNTER_MAX) the clock saturates and repeats that version. */
void lww_clock_now(lww_clock *c, uint64_t wall_ms, lww_version *out);

/* Remembers v (any region) so that later lww_clock_now versions exceed it; versions
 * below the clock's last are ignored. Out-of-range fields are clamped to the maximum. */
void lww_clock_observe(lww_clock *c, const lww_version *v);

/* Copies the greatest version produced or observed so far into *out. */
void lww_clock_last(const lww_clock *c, lww_version *out);

/* CLOCK_REALTIME in milliseconds since the Unix epoch (0 if the clock is unreadable). */
uint64_t lww_wall_ms(void);

/* Clock-skew defence: returns 1 if v->ms > now_ms + bound_ms (no overflow), else 0.
 * A change versioned that far in the future is refused rather than allowed to win
 * every later conflict. */
int lww_ahead(const lww_version *v, uint64_t now_ms, uint64_t bound_ms);

#endif
