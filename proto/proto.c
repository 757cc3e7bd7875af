/*
 * proto.c — encoding and decoding of router⇄shard frames (see proto.h for the framing and the message flow).
 *
 * Each message type is a fixed list of fields (the `layouts` table below); the encoder and the decoder both walk that
 * table, so a field can never be written in one order and read in another.
 */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum {
    F_END = 0,
    F_ID,
    F_VERSION,
    F_ROLE,
    F_SHARD,
    F_PID,
    F_PARTY,
    F_ROOM,
    F_CONN_ID,
    F_METHOD,
    F_PATH,
    F_QUERY,
    F_HEADERS,
    F_DATA,
    F_BINARY,
    F_STATUS,
    F_CODE,
    F_REASON,
    F_CLEAN,
    F_EXCEPT,
    F_SLOT,
    F_LAST,
};

#define MAX_FIELDS 10

static const uint8_t layouts[PROTO_TYPE_MAX_ + 1][MAX_FIELDS] = {
    [PROTO_HELLO] = {F_VERSION, F_ROLE, F_SHARD, F_PID},
    [PROTO_OPEN] = {F_ID, F_PARTY, F_ROOM, F_CONN_ID, F_PATH, F_QUERY, F_HEADERS},
    [PROTO_ATTACH] = {F_ID},
    [PROTO_ACCEPT] = {F_ID},
    [PROTO_REJECT] = {F_ID, F_STATUS, F_DATA},
    [PROTO_MESSAGE] = {F_ID, F_BINARY, F_DATA},
    [PROTO_CLOSE] = {F_ID, F_CODE, F_REASON, F_CLEAN},
    [PROTO_SEND] = {F_ID, F_BINARY, F_DATA},
    [PROTO_BROADCAST] = {F_PARTY, F_ROOM, F_BINARY, F_DATA, F_EXCEPT},
    [PROTO_CLOSE_CONN] = {F_ID, F_CODE, F_REASON},
    [PROTO_REQUEST] = {F_ID, F_PARTY, F_ROOM, F_METHOD, F_PATH, F_QUERY, F_HEADERS, F_DATA},
    [PROTO_RESPONSE] = {F_ID, F_STATUS, F_HEADERS, F_DATA},
    [PROTO_ADMIN] = {F_ID, F_METHOD, F_DATA},
    [PROTO_ADMIN_REPLY] = {F_ID, F_STATUS, F_DATA},
    [PROTO_SLOT] = {F_ID, F_METHOD, F_SLOT, F_LAST, F_DATA},
    [PROTO_SLOT_REPLY] = {F_ID, F_METHOD, F_SLOT, F_LAST, F_STATUS, F_DATA},
    [PROTO_FETCH] = {F_ID, F_PARTY, F_ROOM, F_METHOD, F_PATH, F_QUERY, F_HEADERS, F_DATA},
    [PROTO_FETCH_REPLY] = {F_ID, F_STATUS, F_HEADERS, F_DATA},
};

static const char *const type_names[PROTO_TYPE_MAX_ + 1] = {
    [PROTO_HELLO] = "HELLO",         [PROTO_OPEN] = "OPEN",
    [PROTO_ATTACH] = "ATTACH",       [PROTO_ACCEPT] = "ACCEPT",
    [PROTO_REJECT] = "REJECT",       [PROTO_MESSAGE] = "MESSAGE",
    [PROTO_CLOSE] = "CLOSE",         [PROTO_SEND] = "SEND",
    [PROTO_BROADCAST] = "BROADCAST", [PROTO_CLOSE_CONN] = "CLOSE_CONN",
    [PROTO_REQUEST] = "REQUEST",     [PROTO_RESPONSE] = "RESPONSE",
    [PROTO_ADMIN] = "ADMIN",         [PROTO_ADMIN_REPLY] = "ADMIN_REPLY",
    [PROTO_SLOT] = "SLOT",           [PROTO_SLOT_REPLY] = "SLOT_REPLY",
    [PROTO_FETCH] = "FETCH",         [PROTO_FETCH_REPLY] = "FETCH_REPLY",
};

static void put_u32(base_buf_t *out, size_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    base_buf_append(out, b, 4);
}

void proto_pairs_add(base_buf_t *out, const void *key, size_t klen, const void *value, size_t vlen)
{
    put_u32(out, klen);
    base_buf_append(out, key, klen);
    put_u32(out, vlen);
    base_buf_append(out, value, vlen);
}

static int get_len(proto_str_t d, size_t *off, size_t *len)
{
    if (d.len - *off < 4)
        return -1;
    const unsigned char *p = (const unsigned char *)d.base + *off;
    *len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    *off += 4;
    return *len <= d.len - *off ? 0 : -1;
}

int proto_pairs_next(proto_str_t d, size_t *off, proto_str_t *key, proto_str_t *value)
{
    if (*off == d.len)
        return 0;
    size_t kl, vl;
    if (get_len(d, off, &kl) != 0)
        return -1;
    *key = proto_str(d.base + *off, kl);
    *off += kl;
    if (get_len(d, off, &vl) != 0)
        return -1;
    *value = proto_str(d.base + *off, vl);
    *off += vl;
    return 1;
}

const char *proto_type_name(proto_type_t type)
{
    if (type < PROTO_HELLO || type > PROTO_TYPE_MAX_)
        return "UNKNOWN";
    return type_names[type];
}

static size_t num_fields(proto_type_t type)
{
    size_t n = 0;
    while (n < MAX_FIELDS && layouts[type][n] != F_END)
        ++n;
    return n;
}

/* ---- encoding ---- */

static int write_to_buf(void *data, const char *buf, size_t len)
{
    base_buf_append(data, buf, len);
    return 0;
}

static void pack_str(msgpack_packer *pk, proto_str_t s)
{
    msgpack_pack_str_with_body(pk, s.base != NULL ? s.base : "", s.len);
}

static void pack_field(msgpack_packer *pk, int field, const proto_msg_t *m)
{
    switch (field) {
    case F_ID:
        msgpack_pack_uint64(pk, m->id);
        break;
    case F_VERSION:
        msgpack_pack_uint32(pk, m->version);
        break;
    case F_ROLE:
        msgpack_pack_uint32(pk, m->role);
        break;
    case F_SHARD:
        msgpack_pack_int32(pk, m->shard);
        break;
    case F_PID:
        msgpack_pack_uint32(pk, m->pid);
        break;
    case F_PARTY:
        pack_str(pk, m->party);
        break;
    case F_ROOM:
        pack_str(pk, m->room);
        break;
    case F_CONN_ID:
        pack_str(pk, m->conn_id);
        break;
    case F_METHOD:
        pack_str(pk, m->method);
        break;
    case F_PATH:
        pack_str(pk, m->path);
        break;
    case F_QUERY:
        pack_str(pk, m->query);
        break;
    case F_HEADERS:
        msgpack_pack_array(pk, m->num_headers * 2);
        for (size_t i = 0; i < m->num_headers; ++i) {
            pack_str(pk, m->headers[i].name);
            pack_str(pk, m->headers[i].value);
        }
        break;
    case F_DATA:
        msgpack_pack_bin_with_body(pk, m->data.base != NULL ? m->data.base : "", m->data.len);
        break;
    case F_BINARY:
        if (m->binary)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case F_STATUS:
        msgpack_pack_int(pk, m->status);
        break;
    case F_CODE:
        msgpack_pack_int(pk, m->code);
        break;
    case F_SLOT:
        msgpack_pack_int(pk, m->slot);
        break;
    case F_LAST:
        if (m->last)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case F_REASON:
        pack_str(pk, m->reason);
        break;
    case F_CLEAN:
        if (m->clean)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case F_EXCEPT:
        msgpack_pack_array(pk, m->num_except);
        for (size_t i = 0; i < m->num_except; ++i)
            msgpack_pack_uint64(pk, m->except[i]);
        break;
    }
}

int proto_encode(base_buf_t *out, const proto_msg_t *msg, size_t max_frame)
{
    if (msg->type < PROTO_HELLO || msg->type > PROTO_TYPE_MAX_)
        return -EINVAL;
    if (msg->num_headers > PROTO_MAX_HEADERS || msg->num_except > PROTO_MAX_EXCEPT)
        return -EMSGSIZE;
    /* positions relative to the unconsumed head: appending may slide the bytes to the front of the buffer */
    size_t start = base_buf_len(out);
    char *hdr = base_buf_reserve(out, PROTO_FRAME_HEADER_SIZE);
    memset(hdr, 0, PROTO_FRAME_HEADER_SIZE);
    base_buf_commit(out, PROTO_FRAME_HEADER_SIZE);

    msgpack_packer pk;
    msgpack_packer_init(&pk, out, write_to_buf);
    size_t n = num_fields(msg->type);
    msgpack_pack_array(&pk, n + 1);
    msgpack_pack_uint32(&pk, msg->type);
    for (size_t i = 0; i < n; ++i)
        pack_field(&pk, layouts[msg->type][i], msg);

    size_t payload = base_buf_len(out) - start - PROTO_FRAME_HEADER_SIZE;
    if (payload > max_frame || payload > UINT32_MAX) {
        out->size = out->off + start; /* take the partial frame back */
        return -EMSGSIZE;
    }
    unsigned char *p = (unsigned char *)base_buf_head(out) + start;
    p[0] = payload >> 24;
    p[1] = payload >> 16;
    p[2] = payload >> 8;
    p[3] = payload;
    return 0;
}

/* ---- decoding ---- */

void proto_decoder_init(proto_decoder_t *dec, size_t max_frame)
{
    if (!msgpack_zone_init(&dec->zone, 4096)) {
        log_error("msgpack_zone_init failed");
        abort();
    }
    dec->max_frame = max_frame;
    dec->error[0] = '\0';
}

void proto_decoder_dispose(proto_decoder_t *dec)
{
    msgpack_zone_destroy(&dec->zone);
}

#define FAIL(...)                                                                                                                  \
    do {                                                                                                                           \
        snprintf(dec->error, sizeof(dec->error), __VA_ARGS__);                                                                     \
        return -1;                                                                                                                 \
    } while (0)

static int get_str(const msgpack_object *o, proto_str_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return -1;
    *out = proto_str(o->via.str.ptr, o->via.str.size);
    return 0;
}

static int get_uint(const msgpack_object *o, uint64_t max, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
        return -1;
    *out = o->via.u64;
    return 0;
}

static int get_int(const msgpack_object *o, int64_t min, int64_t max, int64_t *out)
{
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT64_MAX)
            return -1;
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = o->via.i64;
    } else {
        return -1;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int get_bool(const msgpack_object *o, int *out)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return -1;
    *out = o->via.boolean;
    return 0;
}

static int decode_field(proto_decoder_t *dec, int field, const msgpack_object *o, proto_msg_t *m)
{
    uint64_t u;
    int64_t i;
    switch (field) {
    case F_ID:
        return get_uint(o, UINT64_MAX, &m->id);
    case F_VERSION:
        if (get_uint(o, UINT32_MAX, &u) != 0)
            return -1;
        m->version = (uint32_t)u;
        return 0;
    case F_ROLE:
        if (get_uint(o, PROTO_ROLE_SHARD, &u) != 0)
            return -1;
        m->role = (uint32_t)u;
        return 0;
    case F_SHARD:
        if (get_int(o, -1, INT32_MAX, &i) != 0)
            return -1;
        m->shard = (int32_t)i;
        return 0;
    case F_PID:
        if (get_uint(o, UINT32_MAX, &u) != 0)
            return -1;
        m->pid = (uint32_t)u;
        return 0;
    case F_PARTY:
        return get_str(o, &m->party);
    case F_ROOM:
        return get_str(o, &m->room);
    case F_CONN_ID:
        return get_str(o, &m->conn_id);
    case F_METHOD:
        return get_str(o, &m->method);
    case F_PATH:
        return get_str(o, &m->path);
    case F_QUERY:
        return get_str(o, &m->query);
    case F_REASON:
        return get_str(o, &m->reason);
    case F_HEADERS: {
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size % 2 != 0 || o->via.array.size / 2 > PROTO_MAX_HEADERS)
            return -1;
        size_t n = o->via.array.size / 2;
        proto_header_t *h = n == 0 ? NULL : msgpack_zone_malloc(&dec->zone, n * sizeof(*h));
        if (n != 0 && h == NULL)
            return -1;
        for (size_t k = 0; k < n; ++k)
            if (get_str(&o->via.array.ptr[2 * k], &h[k].name) != 0 || get_str(&o->via.array.ptr[2 * k + 1], &h[k].value) != 0)
                return -1;
        m->headers = h;
        m->num_headers = n;
        return 0;
    }
    case F_DATA:
        if (o->type != MSGPACK_OBJECT_BIN)
            return -1;
        m->data = proto_str(o->via.bin.ptr, o->via.bin.size);
        return 0;
    case F_BINARY:
        return get_bool(o, &m->binary);
    case F_STATUS:
        if (get_int(o, 100, 999, &i) != 0)
            return -1;
        m->status = (int)i;
        return 0;
    case F_CODE:
        if (get_int(o, 0, 65535, &i) != 0)
            return -1;
        m->code = (int)i;
        return 0;
    case F_SLOT:
        if (get_int(o, 0, 65535, &i) != 0)
            return -1;
        m->slot = (int)i;
        return 0;
    case F_LAST:
        return get_bool(o, &m->last);
    case F_CLEAN:
        return get_bool(o, &m->clean);
    case F_EXCEPT: {
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > PROTO_MAX_EXCEPT)
            return -1;
        size_t n = o->via.array.size;
        uint64_t *e = n == 0 ? NULL : msgpack_zone_malloc(&dec->zone, n * sizeof(*e));
        if (n != 0 && e == NULL)
            return -1;
        for (size_t k = 0; k < n; ++k)
            if (get_uint(&o->via.array.ptr[k], UINT64_MAX, &e[k]) != 0)
                return -1;
        m->except = e;
        m->num_except = n;
        return 0;
    }
    }
    (void)dec;
    return -1;
}

static const char *const field_names[] = {
    [F_ID] = "id",       [F_VERSION] = "version", [F_ROLE] = "role",       [F_SHARD] = "shard",   [F_PID] = "pid",
    [F_PARTY] = "party", [F_ROOM] = "room",       [F_CONN_ID] = "conn_id", [F_METHOD] = "method", [F_PATH] = "path",
    [F_QUERY] = "query", [F_HEADERS] = "headers", [F_DATA] = "data",       [F_BINARY] = "binary", [F_STATUS] = "status",
    [F_CODE] = "code",   [F_REASON] = "reason",   [F_CLEAN] = "clean",     [F_EXCEPT] = "except",
    [F_SLOT] = "slot",   [F_LAST] = "last",
};

/* msgpack-c allocates a container's elements as soon as it reads the container's header, so "an array of 2^32
 * elements" in a 5-byte frame would make it ask for ~100 GB. This walk checks, before msgpack-c sees the bytes, that
 * every container announces no more elements than there are bytes left (each element takes at least one). */
static int check_shape(const unsigned char *p, size_t len)
{
    size_t pending = 1, i = 0;
    while (pending != 0) {
        if (i >= len)
            return -1;
        unsigned b = p[i++];
        size_t skip = 0, n = 0, lenbytes = 0;
        --pending;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixints, nil, booleans */
        } else if (b >= 0x80 && b <= 0x8f) {
            n = 2 * (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            n = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4:
            case 0xd9:
                lenbytes = 1;
                break; /* bin8, str8 */
            case 0xc5:
            case 0xda:
                lenbytes = 2;
                break; /* bin16, str16 */
            case 0xc6:
            case 0xdb:
                lenbytes = 4;
                break; /* bin32, str32 */
            case 0xc7:
                lenbytes = 1;
                skip = 1;
                break; /* ext8: length, type */
            case 0xc8:
                lenbytes = 2;
                skip = 1;
                break;
            case 0xc9:
                lenbytes = 4;
                skip = 1;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xca:
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcb:
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break; /* fixext: type + data */
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
            case 0xde:
            case 0xdd:
            case 0xdf: { /* array16/32, map16/32 */
                size_t w = (b == 0xdc || b == 0xde) ? 2 : 4;
                if (len - i < w)
                    return -1;
                for (size_t k = 0; k < w; ++k)
                    n = n << 8 | p[i + k];
                i += w;
                if (b == 0xde || b == 0xdf)
                    n *= 2;
                break;
            }
            default:
                return -1; /* 0xc1 */
            }
        }
        if (lenbytes != 0) {
            if (len - i < lenbytes)
                return -1;
            size_t l = 0;
            for (size_t k = 0; k < lenbytes; ++k)
                l = l << 8 | p[i + k];
            i += lenbytes;
            skip += l;
        }
        if (skip > len - i)
            return -1;
        i += skip;
        if (n > len - i || pending + n > len - i)
            return -1;
        pending += n;
    }
    return 0;
}

long proto_decode(proto_decoder_t *dec, const char *src, size_t len, proto_msg_t *msg)
{
    if (len < PROTO_FRAME_HEADER_SIZE)
        return -2;
    const unsigned char *p = (const unsigned char *)src;
    size_t payload = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (payload > dec->max_frame)
        FAIL("frame of %zu bytes exceeds the cap of %zu", payload, dec->max_frame);
    if (payload == 0)
        FAIL("empty frame");
    if (len - PROTO_FRAME_HEADER_SIZE < payload)
        return -2;

    if (check_shape((const unsigned char *)src + PROTO_FRAME_HEADER_SIZE, payload) != 0)
        FAIL("frame is not well-formed msgpack, or announces more elements than it holds");
    msgpack_zone_clear(&dec->zone);
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack(src + PROTO_FRAME_HEADER_SIZE, payload, &off, &dec->zone, &root);
    if (r != MSGPACK_UNPACK_SUCCESS || off != payload)
        FAIL("frame is not exactly one msgpack object (unpack result %d, %zu of %zu bytes used)", (int)r, off, payload);
    if (root.type != MSGPACK_OBJECT_ARRAY || root.via.array.size == 0)
        FAIL("frame is not a non-empty array");

    uint64_t type;
    if (get_uint(&root.via.array.ptr[0], PROTO_TYPE_MAX_, &type) != 0 || type < PROTO_HELLO)
        FAIL("unknown message type");
    size_t n = num_fields((proto_type_t)type);
    if (root.via.array.size != n + 1)
        FAIL("%s has %u fields, expected %zu", type_names[type], root.via.array.size - 1, n);

    memset(msg, 0, sizeof(*msg));
    msg->type = (proto_type_t)type;
    for (size_t i = 0; i < n; ++i) {
        int field = layouts[type][i];
        if (decode_field(dec, field, &root.via.array.ptr[i + 1], msg) != 0)
            FAIL("%s: bad field '%s'", type_names[type], field_names[field]);
    }
    return (long)(PROTO_FRAME_HEADER_SIZE + payload);
}
