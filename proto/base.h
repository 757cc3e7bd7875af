/*
 * base.h — what every partyd process shares below the protocol: allocation that aborts on failure, a growable
 * byte buffer, logging with the process role on every line, and clocks.
 *
 * Nothing here knows h2o or RocksDB; the router, the shards and the supervisor all link it. No loop: everything here
 * may be called from any code; a base_buf_t or base_hist_t belongs to one thread at a time; logging writes whole lines
 * (one write each) and is safe from any thread, but the role and level are set once at start.
 */
#ifndef PARTYD_BASE_H
#define PARTYD_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define PARTYD_VERSION "0.1.0"

/* Sizes every process agrees on. A party name is 1–BASE_PARTY_MAX bytes and a room id 1–BASE_ROOM_MAX (the router
 * checks both, router/route.h); a room's key is "party/room", at most BASE_ROOM_KEY_MAX bytes without a NUL. A file
 * path under the data directory fits in BASE_PATH_MAX bytes with its NUL (config.c caps the directory well below). */
#define BASE_PARTY_MAX 64
#define BASE_ROOM_MAX 256
#define BASE_ROOM_KEY_MAX (BASE_PARTY_MAX + 1 + BASE_ROOM_MAX)
#define BASE_PATH_MAX 4200

#define BASE_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define BASE_STRUCT_FROM_MEMBER(type, member, p) ((type *)((char *)(p)-offsetof(type, member)))

/* Allocation. Out of memory is not an error partyd recovers from: these abort with a log line. Sizes that come from
 * the network must be capped by the caller *before* they reach these functions. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t len);

/* A growable byte buffer. The buffer owns `data`; `base_buf_dispose` frees it. `off` marks bytes already consumed
 * from the front (consumption is O(1); the space is reclaimed when the buffer empties or on the next reserve). */
typedef struct st_base_buf_t {
    char *data;
    size_t off;  /* first unconsumed byte */
    size_t size; /* one past the last byte */
    size_t capacity;
} base_buf_t;

/* An empty buffer (nothing allocated yet). */
void base_buf_init(base_buf_t *b);
/* Frees `data`; the buffer is empty and may be used again. */
void base_buf_dispose(base_buf_t *b);
/* Makes room for `len` more bytes and returns where they go; commit them with base_buf_commit. */
char *base_buf_reserve(base_buf_t *b, size_t len);
static inline void base_buf_commit(base_buf_t *b, size_t len)
{
    b->size += len;
}
/* Copies src[0..len) to the end. */
void base_buf_append(base_buf_t *b, const void *src, size_t len);
/* Drops `len` bytes (≤ base_buf_len) from the front. */
void base_buf_consume(base_buf_t *b, size_t len);
static inline size_t base_buf_len(const base_buf_t *b)
{
    return b->size - b->off;
}
static inline char *base_buf_head(const base_buf_t *b)
{
    return b->data + b->off;
}
/* Frees the memory when it grew past `keep` bytes and is empty, so a burst does not pin memory forever. */
void base_buf_shrink(base_buf_t *b, size_t keep);

/* Logging. One line per event worth knowing, to stderr:
 *   2026-11-29T15:47:00.123Z partyd[shard/1 4242] info: started
 * The role is set once per process (after fork) by log_set_role. */
typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level_t;

void log_set_role(const char *role, int index);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int log_parse_level(const char *s);
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(log_level_t level, const char *fmt, va_list ap);
/* A line a party logs (party_log, party_edge_log): `level` as the party gave it, clamped to error..debug; the line is
 * "WHO: text", the party's text cut at 1023 bytes. */
void log_party_vmsg(int level, const char *who, const char *fmt, va_list ap);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                                                             \
    do {                                                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                                                          \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                                                       \
    } while (0)

/* Replaces the file `dir`/`name` with `len` bytes, all or nothing, across a crash or a power cut: written to
 * `name`.tmp, fsynced, renamed over `name`, then the folder fsynced so that the rename itself is durable. Blocking (a
 * small file, written rarely: the slot table, node.json). Returns 0 or -errno; on failure `name` is as it was. */
int base_write_file_atomic(const char *dir, const char *name, const void *data, size_t len);
/* Reads the whole file at `path` (at most 16 MiB: a config) into *out (the caller frees it), its length in *len.
 * Blocking. Returns 0, -errno from fopen, -EFBIG past the cap, or -EIO on a read error. */
int base_read_file(const char *path, char **out, size_t *len);

/* Clocks, in milliseconds. */
uint64_t base_now_wall_ms(void);
uint64_t base_now_mono_ms(void);

/* UTF-8. Returns 1 when `len` bytes at `s` are well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF). */
int base_utf8_valid(const void *s, size_t len);
/* Number of code points in valid UTF-8 (the caller validated it). */
size_t base_utf8_count(const void *s, size_t len);

/* Finds the first `name` parameter of a query string (without the '?') and decodes it as URLSearchParams does ('+' is
 * a space, %XX decoded, a malformed escape kept as it is) into out[0..cap), NUL-terminated. Returns the decoded length,
 * -1 when the parameter is absent, -2 when the value needs more than cap - 1 bytes. */
long base_query_param(const char *query, size_t len, const char *name, char *out, size_t cap);

/* HTTP: whether a NUL-terminated string is a token (a header name, a method: RFC 9110 tchar, not empty), and whether
 * it may be a header value (no control characters but tab: no CR or LF to split a header). */
int base_http_token_valid(const char *s);
int base_http_value_valid(const char *s);

/* Lower-case hex of src[0..len) into out (2 * len + 1 bytes, NUL-terminated). */
void base_hex_encode(const void *src, size_t len, char *out);
/* Decodes hex (either case) into out[0..cap); the number of bytes, or -1 when the text is not hex of at most cap bytes. */
long base_hex_decode(const char *hex, size_t len, void *out, size_t cap);

/* A latency histogram with fixed bucket bounds, in seconds, as Prometheus histograms are exposed: counts[i] holds the
 * observations ≤ BASE_HIST_BOUNDS[i] and > the bound before it; counts[BASE_HIST_NUM] those above the last bound. */
#define BASE_HIST_NUM 14
extern const double base_hist_bounds[BASE_HIST_NUM];
typedef struct st_base_hist_t {
    uint64_t counts[BASE_HIST_NUM + 1];
    uint64_t count;
    double sum;
} base_hist_t;
/* Counts one observation (a zeroed base_hist_t is empty). */
void base_hist_observe(base_hist_t *h, double seconds);
/* Monotonic time in microseconds, for latencies. */
uint64_t base_now_mono_us(void);

/* Fills `out` (37 bytes) with a random RFC 4122 version 4 UUID, NUL-terminated. */
void base_uuid4(char out[37]);

#endif
