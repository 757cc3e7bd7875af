/*
 * config_int.h — what config/'s files share: the error sink every check writes to, and the setters both the file
 * (read.c) and the flags (args.c) use, so that a value means the same from either. Only config/ includes it.
 *
 * Every function here fails by writing "SOURCE: FIELD: reason" into e->buf and returning -1; it runs in the
 * supervisor before anything starts (no loop).
 */
#ifndef PARTYD_CONFIG_INT_H
#define PARTYD_CONFIG_INT_H

#include <jansson.h>

#include "config.h"

typedef struct st_cfg_err_t {
    char *buf; /* the caller's */
    size_t len;
    const char *source;   /* the file's name, "embedded default" or "command line" */
    const char *base_dir; /* relative paths are relative to this folder (NULL: the working directory) */
} cfg_err_t;

/* Writes "SOURCE: FIELD: " and the formatted reason into e->buf; always returns -1. */
int cfg_fail(cfg_err_t *e, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "shards": a number from 1 to CONFIG_MAX_SHARDS, or "auto" (the CPUs this process may use). */
int cfg_set_shards(cfg_err_t *e, const char *field, config_t *c, json_t *v);
/* "admin.listen": HOST:PORT, [V6]:PORT, or "off". */
int cfg_set_admin_listen(cfg_err_t *e, const char *field, config_t *c, const char *s);
/* "log_level": error, warn, info or debug. */
int cfg_set_log_level(cfg_err_t *e, const char *field, config_t *c, const char *s);
/* Frees every party of `c` and empties the list (config_dispose; a "parties" object replaces the list). */
void cfg_parties_free(config_t *c);

#endif
