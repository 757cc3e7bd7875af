/*
 * fuzz_wsframe.c — the RFC 6455 parser on any client bytes, fed whole and then in small pieces: the two feeds must
 * report the same messages, and a message never exceeds the cap.
 */
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 4096

typedef struct {
    size_t count, bytes;
    uint32_t sum;
} tally_t;

static int on_any(void *ctx, int op, uint8_t *d, size_t len)
{
    tally_t *t = ctx;
    if (len > CAP && (op == 1 || op == 2))
        abort();
    if (op >= 8 && len > 125)
        abort();
    t->count++;
    t->bytes += len;
    for (size_t i = 0; i < len; ++i)
        t->sum = t->sum * 31 + d[i];
    return 0;
}

static const wsframe_callbacks_t cb = {on_any, on_any};

static int run(const uint8_t *data, size_t size, size_t step, tally_t *t)
{
    uint8_t *copy = malloc(size + 1);
    memcpy(copy, data, size);
    wsframe_parser_t p;
    wsframe_parser_init(&p);
    wsframe_error_t err;
    int failed = 0;
    for (size_t off = 0; off < size;) {
        size_t n = size - off < step ? size - off : step;
        if (wsframe_parse(&p, copy + off, n, CAP, &cb, t, &err) < 0) {
            if (err.code != 1002 && err.code != 1009)
                abort();
            failed = 1;
            break;
        }
        off += n;
    }
    wsframe_parser_dispose(&p);
    free(copy);
    return failed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tally_t whole = {0}, pieces = {0};
    int f1 = run(data, size, size == 0 ? 1 : size, &whole);
    int f2 = run(data, size, 3, &pieces);
    if (f1 != f2 || (!f1 && (whole.count != pieces.count || whole.bytes != pieces.bytes || whole.sum != pieces.sum)))
        abort();
    return 0;
}
