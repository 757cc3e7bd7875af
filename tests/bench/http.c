/*
 * http.c — see http.h. Written against RFC 9112 with the leniency of common clients (a bare LF ends a line) and
 * none of their guessing: when the framing is ambiguous the response is malformed, because a load generator that
 * miscounts bodies would report nonsense rather than fail.
 */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/* The end of the line starting at p (the index of its '\n'), or -2 when there is none before `end`. */
static ssize_t line_end(const char *buf, size_t p, size_t end)
{
    const char *nl = memchr(buf + p, '\n', end - p);
    return nl == NULL ? -2 : nl - buf;
}

/* Length of the line [p, nl) without a trailing CR. */
static size_t line_len(const char *buf, size_t p, size_t nl)
{
    return nl > p && buf[nl - 1] == '\r' ? nl - p - 1 : nl - p;
}

static int is_tchar(int c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int http_list_has(const char *v, size_t n, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            ++i;
        size_t start = i;
        while (i < n && v[i] != ',')
            ++i;
        size_t stop = i;
        while (stop > start && (v[stop - 1] == ' ' || v[stop - 1] == '\t'))
            --stop;
        if (stop - start == tlen && strncasecmp(v + start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

/* Whether the last item of the comma-separated list v[0..n) is `token`. */
static int list_last_is(const char *v, size_t n, const char *token)
{
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == ','))
        --n;
    size_t start = n;
    while (start > 0 && v[start - 1] != ',')
        --start;
    while (start < n && (v[start] == ' ' || v[start] == '\t'))
        ++start;
    size_t tlen = strlen(token);
    return n - start == tlen && strncasecmp(v + start, token, tlen) == 0;
}

/* Parses a chunked body starting at buf[p]; on success sets *body_len and returns the index just past it. */
static ssize_t parse_chunked(const char *buf, size_t len, size_t p, size_t *body_len)
{
    size_t total = 0;
    for (;;) {
        ssize_t nl = line_end(buf, p, len);
        if (nl < 0)
            return len - p > 1024 ? -1 : -2; /* a chunk-size line is short; a long one is garbage */
        size_t n = line_len(buf, p, (size_t)nl), i = 0;
        uint64_t size = 0;
        while (i < n && isxdigit((unsigned char)buf[p + i])) {
            if (i == 15)
                return -1; /* would overflow what any sane body is */
            int c = (unsigned char)buf[p + i];
            size = size * 16 + (uint64_t)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
            ++i;
        }
        if (i == 0)
            return -1;
        while (i < n && (buf[p + i] == ' ' || buf[p + i] == '\t'))
            ++i;
        if (i < n && buf[p + i] != ';')
            return -1; /* only a chunk extension may follow the size */
        p = (size_t)nl + 1;
        if (size == 0)
            break;
        if (len - p < size)
            return -2;
        p += size;
        total += size;
        /* the chunk data ends with CRLF (or LF) */
        if (p == len)
            return -2;
        if (buf[p] == '\r') {
            if (p + 1 == len)
                return -2;
            if (buf[p + 1] != '\n')
                return -1;
            p += 2;
        } else if (buf[p] == '\n') {
            p += 1;
        } else {
            return -1;
        }
    }
    /* trailer fields, then an empty line */
    for (;;) {
        ssize_t nl = line_end(buf, p, len);
        if (nl < 0)
            return len - p > HTTP_MAX_HEAD ? -1 : -2;
        size_t n = line_len(buf, p, (size_t)nl);
        p = (size_t)nl + 1;
        if (n == 0)
            break;
    }
    *body_len = total;
    return (ssize_t)p;
}

ssize_t http_response_parse(const char *buf, size_t len, int eof, http_response_t *out)
{
    size_t limit = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;

    /* say "garbage" at the first wrong byte rather than after 64 KiB */
    if (memcmp(buf, "HTTP/1.", len < 7 ? len : 7) != 0)
        return -1;
    /* status line: HTTP/1.x SP 3DIGIT [SP reason] */
    ssize_t nl = line_end(buf, 0, limit);
    if (nl < 0)
        return len >= HTTP_MAX_HEAD || eof ? -1 : -2;
    size_t n = line_len(buf, 0, (size_t)nl);
    if (n < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)buf[7]) || buf[8] != ' ' ||
        !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) || !isdigit((unsigned char)buf[11]) ||
        (n > 12 && buf[12] != ' '))
        return -1;
    if (buf[9] == '0')
        return -1;
    http_response_t r = {0};
    r.minor_version = buf[7] - '0';
    r.status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');

    /* headers */
    int has_length = 0, close = 0, keep_alive = 0, te = 0;
    uint64_t length = 0;
    size_t p = (size_t)nl + 1;
    for (;;) {
        nl = line_end(buf, p, limit);
        if (nl < 0)
            return len >= HTTP_MAX_HEAD || eof ? -1 : -2;
        n = line_len(buf, p, (size_t)nl);
        const char *line = buf + p;
        p = (size_t)nl + 1;
        if (n == 0)
            break;
        if (line[0] == ' ' || line[0] == '\t')
            return -1; /* obsolete line folding */
        size_t colon = 0;
        while (colon < n && is_tchar((unsigned char)line[colon]))
            ++colon;
        if (colon == 0 || colon == n || line[colon] != ':')
            return -1;
        const char *v = line + colon + 1;
        size_t vlen = n - colon - 1;
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
            ++v, --vlen;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            --vlen;
        if (colon == 14 && strncasecmp(line, "content-length", 14) == 0) {
            if (vlen == 0 || vlen > 18)
                return -1;
            uint64_t l = 0;
            for (size_t i = 0; i < vlen; ++i) {
                if (!isdigit((unsigned char)v[i]))
                    return -1;
                l = l * 10 + (uint64_t)(v[i] - '0');
            }
            if (has_length && l != length)
                return -1;
            has_length = 1;
            length = l;
        } else if (colon == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            /* the last header's last coding decides, as for a combined list */
            te = list_last_is(v, vlen, "chunked") ? 2 : 1;
        } else if (colon == 10 && strncasecmp(line, "connection", 10) == 0) {
            close |= http_list_has(v, vlen, "close");
            keep_alive |= http_list_has(v, vlen, "keep-alive");
        }
    }
    r.head_len = p;
    r.keep_alive = !close && (r.minor_version >= 1 || keep_alive);

    if ((r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304) {
        r.body = buf + p;
    } else if (te == 2) {
        size_t body_len;
        ssize_t end = parse_chunked(buf, len, p, &body_len);
        if (end == -2 && eof)
            return -1;
        if (end < 0)
            return end;
        r.chunked = 1;
        r.body_len = body_len;
        p = (size_t)end;
    } else if (te == 0 && has_length) {
        if (len - p < length)
            return eof ? -1 : -2;
        r.body = buf + p;
        r.body_len = (size_t)length;
        p += (size_t)length;
    } else {
        /* no framing (or a coding we cannot undo): the body runs to the close */
        if (!eof)
            return -2;
        r.body = buf + p;
        r.body_len = len - p;
        r.keep_alive = 0;
        p = len;
    }
    *out = r;
    return (ssize_t)p;
}

const char *http_header_find(const char *head, size_t head_len, const char *name, size_t *value_len)
{
    size_t name_len = strlen(name);
    /* skip the status line; every line after it up to the empty one is "name: value" (the parser checked) */
    ssize_t nl = line_end(head, 0, head_len);
    if (nl < 0)
        return NULL;
    size_t p = (size_t)nl + 1;
    while ((nl = line_end(head, p, head_len)) >= 0) {
        size_t n = line_len(head, p, (size_t)nl);
        const char *line = head + p;
        p = (size_t)nl + 1;
        if (n == 0)
            break;
        if (n > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0) {
            const char *v = line + name_len + 1;
            size_t vlen = n - name_len - 1;
            while (vlen > 0 && (*v == ' ' || *v == '\t'))
                ++v, --vlen;
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                --vlen;
            *value_len = vlen;
            return v;
        }
    }
    return NULL;
}
