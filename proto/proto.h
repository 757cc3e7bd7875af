/*
 * proto.h — the messages between the router and the shards.
 *
 * Where things are (every file of proto/, the code every partyd process links; no h2o, no RocksDB):
 *   proto.c/.h   this wire format: frames, the message types, the msgpack codec
 *   slots.c/.h   room → slot → shard: the slot of a room key, the slot table by rendezvous hashing
 *   base.c/.h    below the protocol: allocation that aborts, a byte buffer, logging, clocks, UTF-8, hex, query
 *                strings, histograms, UUIDs, and the sizes every process agrees on (BASE_ROOM_KEY_MAX, BASE_PATH_MAX)
 *   names.c/.h   the rules every process applies to names: a valid party name, a valid room id
 *   meson.build  the sources above
 *
 * No loop: the codec is called by whoever owns a link (the router and the shards, through link.c), one
 * thread per decoder. Failures are return values (-EMSGSIZE, -1 with dec->error); out of memory aborts (base.h).
 *
 * A link is a byte stream (a Unix stream socket made by the supervisor). Each message is one frame:
 *
 *     [u32 big-endian payload length][payload: one msgpack array  [type, field, field, ...]]
 *
 * The length is checked against the link's cap *before* anything is allocated or parsed, so a corrupt peer costs
 * a clear error, never unbounded memory. The first frame each way is HELLO; a peer whose PROTO_VERSION differs is
 * refused (the link is closed with a log line naming both versions).
 *
 * Router → shard: HELLO, OPEN, MESSAGE, CLOSE, REQUEST, ADMIN, SLOT, FETCH_REPLY.
 * Shard → router: HELLO, ATTACH, ACCEPT, REJECT, SEND, BROADCAST, CLOSE_CONN, RESPONSE, ADMIN_REPLY, SLOT_REPLY, FETCH.
 *
 * FETCH is a room's request to another room (party_fetch): the router routes it like a client's request (party,
 * room, method, the sub-path in `path`, query, headers, body) and answers the asking shard with FETCH_REPLY (status,
 * headers, body) under the same id, which the asking shard chose.
 *
 * SLOT moves a slot's data between shards (router/migrate.c): `method` is "export", "import", "drop", "adopt" or
 * "unfreeze", `slot` the slot, `last` marks the last chunk of an import, `data` packed key/value pairs (proto_pairs_*);
 * or "owned", `data` the bitmap of the slots the shard owns (SLOTS_COUNT bits), sent when its link comes up.
 * SLOT_REPLY: "chunk" (export data; `last` on the last) or "ack" (import or drop done and committed), `status`.
 *
 * ADMIN carries an operation name (in `method`) and its arguments as a JSON object (in `data`); ADMIN_REPLY an HTTP-
 * like status and a JSON result. The operations are listed in shard/admin.c; they are few and rare, so JSON keeps
 * them readable without a message type each.
 *
 * A connection is named on the link by its `cid`, a number the router assigns and never reuses while it runs; an
 * HTTP request or stats query by its `rid`. A room is named by party and room id.
 *
 * Opening a WebSocket: the router sends OPEN and holds the HTTP request. The shard runs the room's start (when the
 * room is new) and the party's connect callback, framed by ATTACH (the connection is now in the room: broadcasts
 * from here on include it) and ACCEPT (answer 101) or REJECT (answer an HTTP status, the connection leaves the
 * room again). Anything the shard sends between ATTACH and ACCEPT is queued by the router and written after the 101.
 *
 * No h2o or RocksDB type appears here.
 *
 * proto/ is the lowest layer (with api/): it includes nothing of ours above it, nor h2o, RocksDB or jansson. Its files:
 *   base.c    allocation, the byte buffer, logging, clocks, UTF-8, the atomic file write (base.h)
 *   proto.c   these frames, encoded and decoded (msgpack)
 *   slots.c   room placement: a room's slot, a slot's shard (slots.h)
 *   names.c   the URL scheme's naming rules: party names, room ids (names.h)
 */
#ifndef PARTYD_PROTO_H
#define PARTYD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "base.h"

#define PROTO_VERSION 5
#define PROTO_FRAME_HEADER_SIZE 4
/* room-independent slack added to the message and body caps when sizing a link's frame cap */
#define PROTO_FRAME_OVERHEAD (64 * 1024)
#define PROTO_MAX_HEADERS 128
#define PROTO_MAX_EXCEPT 1024

typedef enum {
    PROTO_HELLO = 1,
    PROTO_OPEN,
    PROTO_ATTACH,
    PROTO_ACCEPT,
    PROTO_REJECT,
    PROTO_MESSAGE,
    PROTO_CLOSE,
    PROTO_SEND,
    PROTO_BROADCAST,
    PROTO_CLOSE_CONN,
    PROTO_REQUEST,
    PROTO_RESPONSE,
    PROTO_ADMIN,
    PROTO_ADMIN_REPLY,
    PROTO_SLOT,
    PROTO_SLOT_REPLY,
    PROTO_FETCH,
    PROTO_FETCH_REPLY,
    PROTO_TYPE_MAX_ = PROTO_FETCH_REPLY
} proto_type_t;

typedef enum { PROTO_ROLE_ROUTER = 0, PROTO_ROLE_SHARD = 1 } proto_role_t;

/* A byte string that is not NUL-terminated. After decoding it points into the frame that was decoded. */
typedef struct st_proto_str_t {
    const char *base;
    size_t len;
} proto_str_t;

#define PROTO_STR(lit) ((proto_str_t){(lit), sizeof(lit) - 1})
static inline proto_str_t proto_str(const char *s, size_t len)
{
    return (proto_str_t){s, len};
}

typedef struct st_proto_header_t {
    proto_str_t name;
    proto_str_t value;
} proto_header_t;

/* One message. Which fields are meaningful depends on `type` (see the table in proto.c); the others are zero. */
typedef struct st_proto_msg_t {
    proto_type_t type;
    uint64_t id; /* cid (OPEN ATTACH ACCEPT REJECT MESSAGE CLOSE SEND CLOSE_CONN) or rid (REQUEST RESPONSE ADMIN*) */
    /* HELLO */
    uint32_t version;
    uint32_t role;
    int32_t shard;
    uint32_t pid;
    /* rooms and requests */
    proto_str_t party;
    proto_str_t room;
    proto_str_t conn_id;
    proto_str_t method;
    proto_str_t path;
    proto_str_t query;
    const proto_header_t *headers;
    size_t num_headers;
    /* payloads: a WebSocket message, or an HTTP body */
    proto_str_t data;
    int binary;
    /* REJECT, RESPONSE */
    int status;
    /* CLOSE, CLOSE_CONN */
    int code;
    proto_str_t reason;
    int clean;
    /* BROADCAST */
    const uint64_t *except;
    size_t num_except;
    /* SLOT, SLOT_REPLY (on the wire where CLOSE's code and MESSAGE's binary flag are: an int and a bool) */
    int slot; /* 0 .. SLOTS_COUNT - 1 (proto/slots.h); the decoder accepts 0..65535, the shard checks the range */
    int last; /* the last chunk of an export or an import */
} proto_msg_t;

/* Appends one frame holding `msg` to `out`. `msg` and what it points to are only read (borrowed for the call). Returns
 * 0, or -EMSGSIZE when the frame would exceed `max_frame` (nothing is appended then). */
int proto_encode(base_buf_t *out, const proto_msg_t *msg, size_t max_frame);

/* A decoder keeps the scratch memory that decoded messages point into; reuse one per link. */
typedef struct st_proto_decoder_t {
    msgpack_zone zone;
    size_t max_frame;
    char error[128]; /* why the last call returned -1 */
} proto_decoder_t;

/* A decoder refusing frames over `max_frame` bytes. Cannot fail (out of memory aborts). */
void proto_decoder_init(proto_decoder_t *dec, size_t max_frame);
/* Frees the scratch memory: every message decoded with `dec` is invalid from here. */
void proto_decoder_dispose(proto_decoder_t *dec);

/* Decodes the first frame in `src`. Returns the number of bytes it used, -2 when more bytes are needed, or -1 when the
 * input is malformed (dec->error says why; the link must be dropped, there is no resynchronising a byte stream).
 * On success `msg` points into `src` and into `dec`; both must stay untouched until the message has been handled. */
long proto_decode(proto_decoder_t *dec, const char *src, size_t len, proto_msg_t *msg);

/* "HELLO", "SLOT_REPLY", ... (static), or "UNKNOWN" for a number that is no type: for log lines. */
const char *proto_type_name(proto_type_t type);

/* Key/value pairs packed for SLOT frames: [u32 key length][key][u32 value length][value]..., big-endian lengths.
 * proto_pairs_add copies the pair into `out`; proto_pairs_next's key and value point into `data`. */
void proto_pairs_add(base_buf_t *out, const void *key, size_t klen, const void *value, size_t vlen);
/* Reads the pair at *off; 1 with the pair and *off advanced, 0 at the end, -1 when malformed. */
int proto_pairs_next(proto_str_t data, size_t *off, proto_str_t *key, proto_str_t *value);

#endif
