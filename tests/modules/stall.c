/*
 * stall.c — a test party (tests/integration/stall.test.mjs) whose rooms misbehave on demand:
 *
 *   message "loop"   → on_message never returns (a busy loop: the shard's loop stops turning)
 *   message "crash"  → the shard dies of SIGSEGV. The default action is restored first, so the process dies of the
 *                      signal under AddressSanitizer too (whose SEGV handler would otherwise print a report and exit 1)
 *   message "segv"   → SIGSEGV with the handlers as the shard set them: the shard's crash
 *                      report (shard/crash.c) names the room and the callback, then the process dies of SIGSEGV
 *   any other        → echoed back
 *   request          → 200 "ok ROOM"
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "party.h"

static void on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    (void)room;
    if (!binary && len == 4 && memcmp(data, "loop", 4) == 0) {
        for (volatile unsigned long i = 0;; ++i)
            ;
    }
    if (!binary && len == 5 && memcmp(data, "crash", 5) == 0) {
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    if (!binary && len == 4 && memcmp(data, "segv", 4) == 0)
        raise(SIGSEGV); /* not a null store: UBSan would report that before the signal came */
    party_send(conn, data, len, binary);
}

static void on_request(party_room_t *room, party_request_t *req)
{
    char body[300];
    int n = snprintf(body, sizeof(body), "ok %s", party_room_id(room));
    party_respond(req, 200, "text/plain", body, (size_t)n);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "stall",
    .on_request = on_request,
    .on_message = on_message,
};
