/*
 * parties.h — the built-in parties, compiled into partyd. Each is written against party.h alone, exactly as a user's
 * party module would be.
 */
#ifndef PARTYD_PARTIES_H
#define PARTYD_PARTIES_H

#include <jansson.h>

#include "party.h"

extern const party_t party_relay;
extern const party_t party_chat;
extern const party_t party_counter;
extern const party_t party_kv;

/* The built-in party of this kind ("relay", "chat"), or NULL. */
const party_t *parties_find_kind(const char *kind);
/* Answers `req` with `body` (consumed) as compact JSON. */
void parties_respond_json(party_request_t *req, int status, json_t *body);

/* A comma-separated list of the built-in kinds, for error messages. */
const char *parties_kind_list(void);

#endif
