/*
 * framing.c — request smuggling: a request's body must end where every reader of the stream says it ends.
 *
 * h2o 2.2.5 takes the first of two Content-Length headers, and Transfer-Encoding over Content-Length, and keeps the
 * connection. A proxy in front that reads the other length sees the body end elsewhere, and what it took for body is
 * read here as the next request. RFC 9112 §6.3 makes both an error that ends the connection, as nginx does.
 *
 * h2o drops both headers from req->headers (and copies the rest away from the input), so they are counted in the
 * request head itself. h2o 2.2.5's HTTP/1 (lib/http1.c) keeps the request being handled at the start of the
 * connection's input buffer until it is done, and a request with a body has its entity in that buffer right after
 * the head (the chunked decoder decodes in place): so the head is sock->input->bytes up to req->entity.base. A
 * request without a body had neither header. The parser lowercased the names in place.
 *
 * Bare LF in chunk lines: h2o decodes chunked bodies with picohttpparser's phr_decode_chunked, which takes "\n" where
 * "\r\n" belongs, and a proxy that does not may frame the body differently. Refusing them would mean replacing h2o's
 * decoder: the decoded body we get keeps no trace of the framing. What turns a framing difference into smuggling is
 * the rest of the connection being read as requests; so a request with a chunked body gets its answer and then the
 * connection is closed, and nothing after the body is ever read.
 */
#include <string.h>

#include "router.h"

/* Counts the Content-Length and Transfer-Encoding fields among the head's lines (the request line has neither). */
static void count_framing(const char *p, const char *end, size_t *lengths, size_t *codings)
{
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > sizeof("content-length:") - 1 && memcmp(p, "content-length:", sizeof("content-length:") - 1) == 0)
            ++*lengths;
        else if (len > sizeof("transfer-encoding:") - 1 && memcmp(p, "transfer-encoding:", sizeof("transfer-encoding:") - 1) == 0)
            ++*codings;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
}

int http_framing_refused(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->entity.base == NULL)
        return 0; /* no body, so neither header; or not HTTP/1, which has no such head */
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (sock == NULL || sock->input == NULL || req->entity.base < sock->input->bytes ||
        req->entity.base > sock->input->bytes + sock->input->size)
        return 0; /* not where h2o 2.2.5 leaves it: nothing to read */
    size_t lengths = 0, codings = 0;
    count_framing(sock->input->bytes, req->entity.base, &lengths, &codings);
    if (codings != 0)
        req->http1_is_persistent = 0;
    /* equal or not, two lengths are refused: RFC 9112 allows merging equal ones, nginx does not */
    if (lengths <= 1 && (lengths == 0 || codings == 0))
        return 0;
    req->http1_is_persistent = 0;
    http_send_error(req, 400, lengths > 1 ? "more than one Content-Length" : "Content-Length with Transfer-Encoding");
    return 1;
}
