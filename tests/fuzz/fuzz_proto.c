/*
 * fuzz_proto.c — the router⇄shard frame decoder must take any bytes: decode, ask for more, or refuse; never crash,
 * never read past the input, never allocate out of proportion to it. A decoded message must re-encode and decode to
 * the same frame.
 */
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_decoder_t dec;
    proto_decoder_init(&dec, 1 << 16);
    size_t off = 0;
    while (off < size) {
        proto_msg_t m;
        long n = proto_decode(&dec, (const char *)data + off, size - off, &m);
        if (n < 0)
            break;
        if ((size_t)n > size - off)
            abort();
        base_buf_t buf;
        base_buf_init(&buf);
        if (proto_encode(&buf, &m, 1 << 16) == 0) {
            proto_decoder_t dec2;
            proto_decoder_init(&dec2, 1 << 16);
            proto_msg_t m2;
            if (proto_decode(&dec2, base_buf_head(&buf), base_buf_len(&buf), &m2) != (long)base_buf_len(&buf) ||
                m2.type != m.type || m2.id != m.id || m2.data.len != m.data.len || m2.num_headers != m.num_headers)
                abort();
            proto_decoder_dispose(&dec2);
        }
        base_buf_dispose(&buf);
        off += (size_t)n;
    }
    proto_decoder_dispose(&dec);
    return 0;
}
