/*
 * http.h — the HTTP/1.x response parser of partyload.
 *
 * Stateless: it looks at the bytes buffered so far from the start of a response and says whether a whole response is
 * there. The caller buffers what it reads, calls again when more arrives, and drops the bytes of each complete
 * response. That costs a re-scan of a partial response on every read, which is nothing for the small responses a
 * benchmark sees, and there is no parser state that can go stale between reads.
 *
 * What it accepts: a status line "HTTP/1.x NNN reason", header lines ending in CRLF (a bare LF is tolerated), a body
 * framed by RFC 9112 §6.3: none for 1xx, 204 and 304; chunked when Transfer-Encoding ends in "chunked" (chunk
 * extensions and trailers skipped); else Content-Length; else everything up to the connection's close. Anything else
 * (a bad status line, a header line without a colon, obsolete line folding, conflicting or overflowing
 * Content-Length, a bad chunk size, a missing CRLF after chunk data, a head longer than HTTP_MAX_HEAD) is malformed.
 */
#ifndef BENCH_HTTP_H
#define BENCH_HTTP_H

#include <stddef.h>
#include <sys/types.h>

/* the longest status line + headers accepted before the head is called malformed */
#define HTTP_MAX_HEAD 65536

typedef struct st_http_response_t {
    int minor_version; /* the x of HTTP/1.x */
    int status;        /* 100–999; a 1xx other than 101 is an interim response: the final one follows it */
    int keep_alive;    /* the connection may carry another response after this one */
    int chunked;       /* the body was chunked */
    size_t head_len;   /* status line, headers and the empty line */
    size_t body_len;   /* the body's length after removing any chunked framing */
    /* the body when it is contiguous in the buffer (not chunked), else NULL; points into the caller's buffer */
    const char *body;
} http_response_t;

/*
 * Parses the response that starts at buf[0]. `eof` says that no more bytes will come (the server closed), which is
 * what completes a body that runs to the close.
 *
 * Returns the number of bytes the response occupies (> 0) and fills *out; -2 when it is not complete yet (only when
 * `eof` is 0; with `eof` set an incomplete response is -1); -1 when it is malformed. *out is only meaningful after a
 * positive return. `buf` is borrowed; out->body points into it.
 */
ssize_t http_response_parse(const char *buf, size_t len, int eof, http_response_t *out);

/*
 * The value of the first header field called `name` (case-insensitive) in head[0..head_len), the head of a response
 * http_response_parse accepted (out->head_len bytes), without the whitespace around it; NULL when there is none.
 * Sets *value_len. The result points into `head`. A field repeated on several lines is not combined: partyload only
 * looks up fields that occur once (Upgrade, Sec-WebSocket-Accept).
 */
const char *http_header_find(const char *head, size_t head_len, const char *name, size_t *value_len);

/* Whether the comma-separated list v[0..n) holds `token` (case-insensitive, spaces around items ignored). */
int http_list_has(const char *v, size_t n, const char *token);

#endif
