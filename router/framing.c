/*
 * framing.c — request smuggling: a request's body must end where every reader of the stream says it ends.
 *
 * h2o 2.2.5 takes the first of two Content-Length headers, and Transfer-Encoding over Content-Length, and keeps the
 * connection; it drops both headers before a handler sees the request, so a handler cannot tell. A proxy in front
 * that reads the other length sees the body end elsewhere, and what it took for body is read here as the next
 * request. RFC 9112 §6.3 makes both an error that ends the connection, as nginx does.
 *
 * h2o parses request heads with picohttpparser's phr_parse_request, which libh2o-evloop calls through its PLT, so
 * partyd provides it here (as linger.c does h2o_socket_close): the library's own parser runs, then a head with two
 * Content-Length headers, or Content-Length with Transfer-Encoding, is reported as malformed. h2o answers that with
 * 400 and closes the connection.
 *
 * Bare LF in chunk lines: h2o decodes chunked bodies with phr_decode_chunked, which takes "\n" where "\r\n" belongs;
 * a proxy that does not may frame the body differently. The decoder's state does not say whether a CR came before an
 * LF at the end of an earlier read, so refusing them here would be a guess. What makes that a smuggling is the
 * connection being read on: so a request with a chunked body gets "Connection: close" added to its head, and h2o
 * closes the connection after the answer; nothing after the body is read as a request.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router.h"

/* picohttpparser's, as bundled in libh2o (its header is not installed) */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
typedef int (*phr_parse_request_fn)(const char *buf, size_t len, const char **method, size_t *method_len, const char **path,
                                    size_t *path_len, int *minor_version, struct phr_header *headers, size_t *num_headers,
                                    size_t last_len);

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path, size_t *path_len,
                      int *minor_version, struct phr_header *headers, size_t *num_headers, size_t last_len);

static int is_name(const struct phr_header *h, const char *name)
{
    return h->name != NULL && h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len, const char **path, size_t *path_len,
                      int *minor_version, struct phr_header *headers, size_t *num_headers, size_t last_len)
{
    static phr_parse_request_fn real;
    if (real == NULL) {
        real = (phr_parse_request_fn)dlsym(RTLD_NEXT, "phr_parse_request");
        if (real == NULL) {
            log_error("framing: phr_parse_request not found in libh2o: %s", dlerror());
            abort();
        }
    }
    size_t cap = *num_headers;
    int ret = real(buf, len, method, method_len, path, path_len, minor_version, headers, num_headers, last_len);
    if (ret <= 0)
        return ret; /* incomplete or malformed: h2o's own answer */
    size_t lengths = 0, codings = 0;
    for (size_t i = 0; i < *num_headers; ++i) {
        lengths += is_name(&headers[i], "content-length");
        codings += is_name(&headers[i], "transfer-encoding");
    }
    /* equal or not, two lengths are refused: RFC 9112 allows merging equal ones, nginx does not */
    if (lengths > 1 || (lengths != 0 && codings != 0))
        return -1;
    if (codings != 0) {
        if (*num_headers == cap)
            return -1; /* no room to say it: a head with the most headers h2o takes and a coding is refused */
        /* the last Connection header is the one h2o reads; writable, as h2o lowercases names in place */
        static char name[] = "connection", value[] = "close";
        headers[(*num_headers)++] = (struct phr_header){name, sizeof(name) - 1, value, sizeof(value) - 1};
    }
    return ret;
}
