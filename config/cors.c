/*
 * cors.c — the "cors" key, for the whole node and per party (as partyserver's `cors` option): which cross-origin
 * pages may call the rooms' HTTP endpoints from a browser. The router (router/cors.c) answers the preflight OPTIONS
 * and adds the Access-Control-* headers; this file only reads the key:
 *
 *   "cors": true                                      any Origin ("*"), any request header
 *   "cors": {"origins": ["https://app.example"], "headers": ["content-type", "authorization"]}
 *                                                     those origins only (echoed, with Vary: Origin); those headers
 *   "cors": false, or absent                          no CORS headers (a party's false turns the node's off for it)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base.h"
#include "config.h"

#define CORS_HEADERS_MAX 32

void config_cors_free(config_cors_t *c)
{
    config_origins_free(&c->origins);
    free(c->headers);
    memset(c, 0, sizeof(*c));
}

static int bad(char *why, size_t len, const char *text)
{
    snprintf(why, len, "%s", text);
    return -1;
}

int config_cors_parse(void *value, config_cors_t *out, char *why, size_t len)
{
    json_t *v = value;
    config_cors_t c = {.set = 1};
    if (json_is_boolean(v)) {
        c.enabled = json_is_true(v);
    } else if (json_is_object(v)) {
        c.enabled = 1;
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x)
        {
            if (strcmp(key, "origins") != 0 && strcmp(key, "headers") != 0)
                return bad(why, len, "expected true, false or {\"origins\": [ORIGIN, ...], \"headers\": [NAME, ...]}");
        }
        json_t *origins = json_object_get(v, "origins"), *headers = json_object_get(v, "headers");
        if (origins != NULL) {
            if (!json_is_array(origins) || json_array_size(origins) > CONFIG_MAX_ORIGINS)
                return bad(why, len, "origins: expected an array of origins like \"https://example.com\"");
            c.origins.list = xcalloc(json_array_size(origins) + 1, sizeof(char *));
            size_t i;
            json_array_foreach(origins, i, x)
            {
                const char *s = json_string_value(x);
                if (s == NULL || strlen(s) != json_string_length(x) || strstr(s, "://") == NULL || strlen(s) > 1024 ||
                    strpbrk(s, " \t\r\n,") != NULL) {
                    config_cors_free(&c);
                    return bad(why, len, "origins: expected origins like \"https://example.com\" (scheme://host[:port])");
                }
                c.origins.list[c.origins.num++] = xstrdup(s);
            }
        }
        if (headers != NULL) {
            if (!json_is_array(headers) || json_array_size(headers) > CORS_HEADERS_MAX) {
                config_cors_free(&c);
                return bad(why, len, "headers: expected an array of at most 32 header names");
            }
            base_buf_t b;
            base_buf_init(&b);
            size_t i;
            json_array_foreach(headers, i, x)
            {
                const char *s = json_string_value(x);
                size_t n = s != NULL ? strlen(s) : 0;
                /* a header name is an RFC 9110 token */
                int ok = n > 0 && n <= 128 && n == json_string_length(x) &&
                         strspn(s, "abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789!#$%&'*+-.^_`|~") == n;
                if (!ok) {
                    base_buf_dispose(&b);
                    config_cors_free(&c);
                    return bad(why, len, "headers: expected header names such as \"content-type\"");
                }
                if (i > 0)
                    base_buf_append(&b, ", ", 2);
                base_buf_append(&b, s, n);
            }
            base_buf_append(&b, "", 1);
            c.headers = xstrdup(base_buf_head(&b));
            base_buf_dispose(&b);
        }
    } else if (!json_is_null(v)) {
        return bad(why, len, "expected true, false or {\"origins\": [ORIGIN, ...], \"headers\": [NAME, ...]}");
    }
    config_cors_free(out);
    *out = c;
    return 0;
}

const config_cors_t *config_cors_for(const config_t *c, const config_party_t *p)
{
    const config_cors_t *cors = p != NULL && p->cors.set ? &p->cors : &c->cors;
    return cors->enabled ? cors : NULL;
}
