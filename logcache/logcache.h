/* logcache.h -- the newest entries of a table's change log (log:T) in memory, so that
 * the agent's shipper sends what its tailer just committed without reading it back from
 * Redis (one Redis round trip and one parse per batch fewer; docs/lag.md, "Where a
 * change's time goes at 1,000 writes/s, and the hand-off").
 *
 * Redis stays the log of record: the cache is only ever a copy of a contiguous run of
 * it, and whenever the cache cannot vouch for a position the shipper reads Redis as
 * before. Two parts:
 *
 *   logcache_queue -- the hand-off, shared by the two threads (a mutex). After each
 *     commit the tailer pushes a chunk: the entries the commit appended, with the ids
 *     Redis gave them, and the log's last id before them (read inside the commit's
 *     transaction, so an entry anyone else appended is never skipped: the chunk then
 *     does not chain). Every commit counts, per table, in the
 *     queue (no allocation): one whose outcome is unknown, or whose chunk could not be
 *     made or queued, counts without a chunk (logcache_queue_mark).
 *   logcache -- one table's cache, the shipper's own (one thread). A chunk whose prev is
 *     the cache's last id is appended; any other chunk starts the cache anew from it.
 *     The cache is complete (its last id is the log's last) while the last chunk it took
 *     is the table's last commit counted: after a commit counted without a chunk it is
 *     not, until the next chunk.
 *
 * A position is covered when it is the id just before the cache's first entry (prev,
 * when known) or the id of one of its entries: the entries after it are then exactly
 * the log's (XRANGE "(pos" +), as far as the cache goes. The shipper trims the entries
 * at or below the acknowledgement of every peer it is sending to (logcache_trim); past LOGCACHE_MAX_BYTES of entry
 * text the oldest go too, and a position before them is read from Redis.
 *
 * Entries are the tailer's log entries as cJSON objects {"op","keys","image","ver"}
 * (docs/redis-keys.md, log:T), owned by the chunk and then by the cache. */
#ifndef TERN_LOGCACHE_H
#define TERN_LOGCACHE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "wire.h"

/* Entry text (the JSON as appended to Redis) a table's cache holds at most, bytes; the
 * oldest entries go past it. The cache only has to hold what healthy peers have not
 * acknowledged yet (tens of ms of changes); a peer further behind reads Redis. Parsed,
 * an entry takes about 3 to 4 times its text. A queue holds at most LOGCACHE_QUEUE_BYTES
 * of chunks not yet taken (the shipper takes them every loop turn, at most 20 ms apart
 * unless a Redis call of its own is waiting); a chunk beyond that is dropped (counted
 * without it). */
#define LOGCACHE_MAX_BYTES (2u << 20)
#define LOGCACHE_QUEUE_BYTES (8u << 20)

typedef struct {
    wire_pos id;       /* its id in log:T */
    cJSON *change;     /* {"op","keys","image","ver"}, owned */
    size_t bytes;      /* its text's length as appended to Redis */
} logcache_entry;

typedef struct logcache_chunk logcache_chunk;

/* A chunk for table index `table` (cfg->tables). NULL when out of memory. */
logcache_chunk *logcache_chunk_new(size_t table);
/* Frees c and the entries it still owns. NULL is fine. */
void logcache_chunk_free(logcache_chunk *c);
/* Adds an entry in log order, id not known yet (logcache_chunk_set_id); takes ownership
 * of change in every case (freed on failure). 0, or -1 when out of memory. */
int logcache_chunk_add(logcache_chunk *c, cJSON *change, size_t bytes);
size_t logcache_chunk_len(const logcache_chunk *c);
/* Sets entry i's id (Redis's reply to its XADD). */
void logcache_chunk_set_id(logcache_chunk *c, size_t i, wire_pos id);
/* The log's last id before the chunk's first entry, when known. */
void logcache_chunk_set_prev(logcache_chunk *c, wire_pos prev);

typedef struct logcache_queue logcache_queue;

/* A queue for n_tables tables; NULL when out of memory. _free frees what is still queued. */
logcache_queue *logcache_queue_new(size_t n_tables);
void logcache_queue_free(logcache_queue *q);
/* Tailer: counts a commit of the chunk's table and queues chunk c (taken in every case;
 * past LOGCACHE_QUEUE_BYTES it is freed instead, counted without it). */
void logcache_queue_push(logcache_queue *q, logcache_chunk *c);
/* Tailer: counts a commit of table index `table` without a chunk (its outcome is unknown,
 * or the chunk could not be made). Never fails. */
void logcache_queue_mark(logcache_queue *q, size_t table);

typedef struct logcache logcache;

/* One table's cache; NULL when out of memory. */
logcache *logcache_new(void);
void logcache_free(logcache *lc);
/* Shipper: applies every chunk queued, in order, to caches[its table] (an array of the
 * queue's n_tables caches; a NULL cache drops its chunks), and tells each cache how many
 * commits its table counted. */
void logcache_queue_take(logcache_queue *q, logcache **caches);
/* Forgets every entry; the cache covers nothing until the next chunk (after an entry was
 * removed from the log by other means). */
void logcache_clear(logcache *lc);
/* Drops the entries at or below upto (acknowledged by every peer still served; the cache
 * keeps covering upto when it held it). */
void logcache_trim(logcache *lc, wire_pos upto);

/* The entries after position pos, up to max of them: *out points at the first of them
 * (borrowed: valid until the next call that changes lc). Returns how many, or -1 when pos
 * is not covered (read the log from Redis). *at_end is set to 1 when those reach the
 * cache's last entry and the cache is complete: nothing more is in the log after them. */
long logcache_after(const logcache *lc, wire_pos pos, size_t max, const logcache_entry **out, int *at_end);
/* Entries held, and their text's bytes (for tests and metrics). */
size_t logcache_len(const logcache *lc);
size_t logcache_bytes(const logcache *lc);

#endif
