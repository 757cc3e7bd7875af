/*
 * parties.c — the table of built-in parties, and what they share.
 */
#include <stdlib.h>
#include <string.h>

#include "parties.h"

static const party_t *const builtins[] = {&party_chat, &party_counter, &party_kv, &party_relay};

const party_t *parties_find_kind(const char *kind)
{
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); ++i)
        if (strcmp(builtins[i]->kind, kind) == 0)
            return builtins[i];
    return NULL;
}

const char *parties_kind_list(void)
{
    return "chat, counter, kv, relay";
}

void parties_respond_json(party_request_t *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        party_respond(req, 500, "application/json", "{\"error\":\"could not encode the response\"}", 41);
        return;
    }
    party_respond(req, status, "application/json", text, strlen(text));
    free(text);
}
