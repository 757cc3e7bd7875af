/*
 * base.c — allocation, buffers, logging, clocks, UTF-8 and UUIDs shared by every partyd process.
 */
#include "base.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t size)
{
    log_error("out of memory allocating %zu bytes", size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size == 0 ? 1 : size);
    if (p == NULL)
        oom(size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size == 0 ? 1 : size);
    if (q == NULL)
        oom(size);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t len)
{
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* ---- buffer ---- */

void base_buf_init(base_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void base_buf_dispose(base_buf_t *b)
{
    free(b->data);
    base_buf_init(b);
}

char *base_buf_reserve(base_buf_t *b, size_t len)
{
    if (b->off != 0 && b->off == b->size)
        b->off = b->size = 0;
    if (b->capacity - b->size >= len)
        return b->data + b->size;
    /* slide the unconsumed bytes to the front when that alone makes room */
    if (b->off != 0 && b->capacity - (b->size - b->off) >= len && b->off >= b->size - b->off) {
        memmove(b->data, b->data + b->off, b->size - b->off);
        b->size -= b->off;
        b->off = 0;
        return b->data + b->size;
    }
    size_t need = b->size + len, cap = b->capacity < 256 ? 256 : b->capacity;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->capacity = cap;
    return b->data + b->size;
}

void base_buf_append(base_buf_t *b, const void *src, size_t len)
{
    if (len == 0)
        return;
    memcpy(base_buf_reserve(b, len), src, len);
    b->size += len;
}

void base_buf_consume(base_buf_t *b, size_t len)
{
    b->off += len;
    if (b->off >= b->size)
        b->off = b->size = 0;
}

void base_buf_shrink(base_buf_t *b, size_t keep)
{
    if (b->off == b->size && b->capacity > keep) {
        free(b->data);
        base_buf_init(b);
    }
}

/* ---- logging ---- */

static char log_role[32] = "node";
static log_level_t log_level = LOG_INFO;
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void log_set_role(const char *role, int index)
{
    if (index >= 0)
        snprintf(log_role, sizeof(log_role), "%s/%d", role, index);
    else
        snprintf(log_role, sizeof(log_role), "%s", role);
}

void log_set_level(log_level_t level)
{
    log_level = level;
}

log_level_t log_get_level(void)
{
    return log_level;
}

int log_parse_level(const char *s)
{
    for (size_t i = 0; i < BASE_ARRAY_SIZE(log_level_names); ++i)
        if (strcmp(s, log_level_names[i]) == 0)
            return (int)i;
    return -1;
}

void log_vmsg(log_level_t level, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    int saved_errno = errno;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ partyd[%s %d] %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_role, (int)getpid(),
                     log_level_names[level]);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof(line)) {
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* one write per line so lines of concurrent processes do not interleave */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
    errno = saved_errno;
}

void log_party_vmsg(int level, const char *who, const char *fmt, va_list ap)
{
    char text[1024];
    vsnprintf(text, sizeof(text), fmt, ap);
    if (level < LOG_ERROR)
        level = LOG_ERROR;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    log_msg((log_level_t)level, "%s: %s", who, text);
}

void log_msg(log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

/* ---- clocks ---- */

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t base_now_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

uint64_t base_now_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

uint64_t base_now_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- histograms ---- */

const double base_hist_bounds[BASE_HIST_NUM] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};

void base_hist_observe(base_hist_t *h, double seconds)
{
    size_t i = 0;
    while (i < BASE_HIST_NUM && seconds > base_hist_bounds[i])
        ++i;
    ++h->counts[i];
    ++h->count;
    h->sum += seconds;
}

/* ---- UTF-8 ---- */

int base_utf8_valid(const void *_s, size_t len)
{
    const unsigned char *s = _s, *end = s + len;
    while (s < end) {
        /* fast path: eight ASCII bytes at a time */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if ((w & 0x8080808080808080ull) != 0)
                break;
            s += 8;
        }
        if (s == end)
            break;
        unsigned c = *s;
        if (c < 0x80) {
            ++s;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* > U+10FFFF */
        } else {
            return 0;
        }
        if ((size_t)(end - s) < n + 1)
            return 0;
        if (s[1] < lo || s[1] > hi)
            return 0;
        for (size_t i = 2; i <= n; ++i)
            if ((s[i] & 0xc0) != 0x80)
                return 0;
        s += n + 1;
    }
    return 1;
}

size_t base_utf8_count(const void *_s, size_t len)
{
    const unsigned char *s = _s;
    size_t n = 0;
    for (size_t i = 0; i < len; ++i)
        if ((s[i] & 0xc0) != 0x80)
            ++n;
    return n;
}

/* ---- URL query strings ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes application/x-www-form-urlencoded bytes; returns the length or -2 when over cap - 1. */
static long form_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; ++i) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (o + 1 >= cap)
            return -2;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

long base_query_param(const char *query, size_t len, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = query, *end = query + len;
    char key[64];
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq != NULL ? eq : pe;
        /* keys are compared decoded, as URLSearchParams does */
        long klen = form_decode(p, (size_t)(ke - p), key, sizeof(key));
        if (klen == (long)nlen && memcmp(key, name, nlen) == 0)
            return eq != NULL ? form_decode(eq + 1, (size_t)(pe - eq - 1), out, cap) : form_decode("", 0, out, cap);
        p = pe + 1;
    }
    return -1;
}

/* ---- UUID ---- */

void base_uuid4(char out[37])
{
    /* a pool of random bytes refilled with one getrandom() per 16 UUIDs */
    static unsigned char pool[256];
    static size_t pool_left;
    unsigned char b[16];
    if (pool_left < sizeof(b)) {
        size_t got = 0;
        while (got < sizeof(pool)) {
            ssize_t r = getrandom(pool + got, sizeof(pool) - got, 0);
            if (r == -1) {
                if (errno == EINTR)
                    continue;
                log_error("getrandom: %s", strerror(errno));
                abort();
            }
            got += (size_t)r;
        }
        pool_left = sizeof(pool);
    }
    memcpy(b, pool + sizeof(pool) - pool_left, sizeof(b));
    pool_left -= sizeof(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
}

/* ---- hex ---- */

void base_hex_encode(const void *src, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = src;
    for (size_t i = 0; i < len; ++i) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

long base_hex_decode(const char *hex, size_t len, void *out, size_t cap)
{
    if (len % 2 != 0 || len / 2 > cap)
        return -1;
    unsigned char *o = out;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        o[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return (long)(len / 2);
}

/* ---- HTTP tokens ---- */

int base_http_token_valid(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; ++s)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return 0;
    return 1;
}

int base_http_value_valid(const char *s)
{
    for (; *s != '\0'; ++s)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 0;
    return 1;
}

int base_write_file_atomic(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4200], tmp[4300];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return -ENAMETOOLONG;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd == -1)
        return -errno;
    int err = 0;
    for (size_t off = 0; off < len && err == 0;) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n > 0)
            off += (size_t)n;
        else if (n == -1 && errno != EINTR)
            err = -errno;
        else if (n == 0)
            err = -EIO;
    }
    if (err == 0 && fsync(fd) != 0)
        err = -errno;
    close(fd);
    if (err == 0 && rename(tmp, path) != 0)
        err = -errno;
    if (err != 0) {
        unlink(tmp);
        return err;
    }
    /* the rename is an entry of the folder: durable once the folder is synced too */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd != -1) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int base_read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -errno;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap >= (16u << 20)) {
                fclose(f);
                free(buf);
                return -EFBIG;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -EIO;
    }
    *out = buf;
    *len = n;
    return 0;
}
