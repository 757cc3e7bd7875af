/*
 * etcdwire.h — etcd.c's private helpers for the gateway's JSON (etcdwire.c): keys and values are base64, int64 fields
 * are strings, fields with their default value are omitted. Not for use outside cluster/etcd.c.
 */
#ifndef PARTYD_ETCDWIRE_H
#define PARTYD_ETCDWIRE_H

#include <jansson.h>

#include "etcd.h"

/* A new NUL-terminated base64 text of src (the caller frees it). */
char *etcd_b64_encode(const void *src, size_t len);
/* Decodes into a new NUL-terminated buffer (*out, owned by the caller); -1 when malformed. */
int etcd_b64_decode(const char *s, char **out, size_t *out_len);
/* An int64 field (a string, or a number); 0 when absent (the gateway omits defaults). */
int64_t etcd_json_i64(json_t *obj, const char *name);
void etcd_json_set_b64(json_t *obj, const char *name, const void *src, size_t len);
void etcd_json_set_i64(json_t *obj, const char *name, int64_t v);
/* "key" (and "range_end" for a prefix) of a request. */
void etcd_json_set_key(json_t *obj, const char *key, int prefix);
/* One mvccpb.KeyValue; its key and value are new buffers (etcd_kvs_free frees them); -1 when malformed. */
int etcd_parse_kv(json_t *j, etcd_kv_t *kv);
void etcd_kvs_free(etcd_kv_t *kvs, size_t n);
/* Appends the kvs of a RangeResponse to res (res->kvs grows); -1 when one is malformed. */
int etcd_parse_range(json_t *range, etcd_result_t *res);
/* The message of an error reply ({"error", "code", "message"}, or a stream's {"error": {"grpc_code", "message"}}) with
 * its gRPC code in *code; NULL when `j` is no error. */
const char *etcd_json_error(json_t *j, int *code);

#endif
