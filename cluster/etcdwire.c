/*
 * etcdwire.c — the gateway's JSON shapes (etcdwire.h): base64 keys and values, int64 as strings, omitted defaults.
 */
#include "etcdwire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

/* ---- base64 and small JSON helpers ------------------------------------------------------------------------------ */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcd_b64_encode(const void *src, size_t len)
{
    const unsigned char *s = src;
    char *out = xmalloc((len + 2) / 3 * 4 + 1), *o = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < len ? s[i + 2] : 0);
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? b64chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int b64_value(int c)
{
    const char *p = c != 0 ? strchr(b64chars, c) : NULL;
    return p != NULL ? (int)(p - b64chars) : -1;
}

/* Decodes into a new NUL-terminated buffer (*out, owned by the caller); -1 when malformed. */
int etcd_b64_decode(const char *s, char **out, size_t *out_len)
{
    size_t len = strlen(s);
    if (len % 4 != 0)
        return -1;
    char *buf = xmalloc(len / 4 * 3 + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int j = 0; j < 4; ++j) {
            v[j] = s[i + j] == '=' && i + 4 == len && j >= 2 ? 0 : b64_value((unsigned char)s[i + j]);
            if (v[j] < 0)
                goto bad;
        }
        if (s[i + 2] == '=' && s[i + 3] != '=')
            goto bad;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        buf[n++] = (char)(w >> 16);
        if (s[i + 2] != '=')
            buf[n++] = (char)(w >> 8);
        if (s[i + 3] != '=')
            buf[n++] = (char)w;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
bad:
    free(buf);
    return -1;
}

/* The gateway writes int64 as a string; a plain number is accepted too. An absent field is its default, 0. */
int64_t etcd_json_i64(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    if (json_is_integer(v))
        return json_integer_value(v);
    return 0;
}

void etcd_json_set_b64(json_t *obj, const char *name, const void *src, size_t len)
{
    char *s = etcd_b64_encode(src, len);
    json_object_set_new(obj, name, json_string(s));
    free(s);
}

void etcd_json_set_i64(json_t *obj, const char *name, int64_t v)
{
    char s[24];
    snprintf(s, sizeof(s), "%" PRId64, v);
    json_object_set_new(obj, name, json_string(s));
}

long etcd_prefix_end(const char *key, size_t key_len, char *out, size_t cap)
{
    size_t n = key_len;
    while (n > 0 && (unsigned char)key[n - 1] == 0xff)
        --n;
    if (n == 0) {
        if (cap < 1)
            return -1;
        out[0] = '\0';
        return 1;
    }
    if (n > cap)
        return -1;
    memcpy(out, key, n);
    out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
    return (long)n;
}

void etcd_json_set_key(json_t *obj, const char *key, int prefix)
{
    size_t len = strlen(key);
    etcd_json_set_b64(obj, "key", key, len);
    if (prefix) {
        char *end = xmalloc(len + 1);
        long n = etcd_prefix_end(key, len, end, len + 1);
        etcd_json_set_b64(obj, "range_end", end, (size_t)n);
        free(end);
    }
}

/* Parses one mvccpb.KeyValue; its key and value are new buffers (freed by etcd_kvs_free). */
int etcd_parse_kv(json_t *j, etcd_kv_t *kv)
{
    memset(kv, 0, sizeof(*kv));
    const char *key = json_string_value(json_object_get(j, "key")), *value = json_string_value(json_object_get(j, "value"));
    char *k = NULL, *v = NULL;
    if (key == NULL || etcd_b64_decode(key, &k, &kv->key_len) != 0)
        return -1;
    if (etcd_b64_decode(value != NULL ? value : "", &v, &kv->value_len) != 0) {
        free(k);
        return -1;
    }
    kv->key = k;
    kv->value = v;
    kv->create_revision = etcd_json_i64(j, "create_revision");
    kv->mod_revision = etcd_json_i64(j, "mod_revision");
    kv->version = etcd_json_i64(j, "version");
    kv->lease = etcd_json_i64(j, "lease");
    return 0;
}

void etcd_kvs_free(etcd_kv_t *kvs, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        free((char *)kvs[i].key);
        free((char *)kvs[i].value);
    }
    free(kvs);
}

/* Appends the kvs of a RangeResponse to res. */
int etcd_parse_range(json_t *range, etcd_result_t *res)
{
    json_t *kvs = json_object_get(range, "kvs");
    size_t n = json_array_size(kvs);
    if (n == 0)
        return 0;
    res->kvs = xrealloc(res->kvs, (res->n_kvs + n) * sizeof(*res->kvs));
    for (size_t i = 0; i < n; ++i) {
        if (etcd_parse_kv(json_array_get(kvs, i), &res->kvs[res->n_kvs]) != 0)
            return -1;
        ++res->n_kvs;
    }
    return 0;
}

/* An error object of the gateway: {"error": "...", "code": N, "message": "..."}, or in a stream
 * {"error": {"grpc_code": N, "message": "..."}}. Returns its message, or NULL when `j` is no error. */
const char *etcd_json_error(json_t *j, int *code)
{
    json_t *e = json_object_get(j, "error");
    if (e == NULL)
        return NULL;
    if (json_is_object(e)) {
        *code = (int)etcd_json_i64(e, "grpc_code");
        const char *m = json_string_value(json_object_get(e, "message"));
        return m != NULL ? m : "error";
    }
    *code = (int)etcd_json_i64(j, "code");
    const char *m = json_string_value(json_object_get(j, "message"));
    if (m == NULL || *m == '\0')
        m = json_string_value(e);
    return m != NULL ? m : "error";
}
