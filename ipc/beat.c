/*
 * beat.c — a shard's heartbeat page (see beat.h for who writes, who reads, and why the race is safe).
 */
#include "beat.h"

#include <string.h>
#include <sys/mman.h>

beat_t *beat_map(size_t n)
{
    void *p = mmap(NULL, n * sizeof(beat_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p; /* anonymous mappings are zeroed */
}

void beat_reset(beat_t *b)
{
    memset(b, 0, sizeof(*b));
}

void beat_read(const beat_t *b, beat_snapshot_t *out)
{
    out->pass = __atomic_load_n(&b->pass, __ATOMIC_RELAXED);
    out->turned_ms = __atomic_load_n(&b->turned_ms, __ATOMIC_RELAXED);
    out->since_ms = __atomic_load_n(&b->since_ms, __ATOMIC_RELAXED);
    out->stopping = __atomic_load_n(&b->stopping, __ATOMIC_RELAXED) != 0;
    for (int tries = 0; tries < 8; ++tries) {
        uint32_t seq = __atomic_load_n(&b->seq, __ATOMIC_ACQUIRE);
        if ((seq & 1) != 0)
            continue;
        memcpy(out->callback, b->callback, sizeof(out->callback));
        memcpy(out->room, b->room, sizeof(out->room));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&b->seq, __ATOMIC_RELAXED) == seq) {
            out->callback[sizeof(out->callback) - 1] = '\0';
            out->room[sizeof(out->room) - 1] = '\0';
            return;
        }
    }
    out->callback[0] = out->room[0] = '\0';
}

void beat_turn(beat_t *b)
{
    if (b == NULL)
        return;
    __atomic_store_n(&b->turned_ms, base_now_mono_ms(), __ATOMIC_RELAXED);
    __atomic_store_n(&b->pass, b->pass + 1, __ATOMIC_RELAXED);
}

/* the sequence is odd from here to write_end: a reader retries */
static void write_begin(beat_t *b)
{
    __atomic_store_n(&b->seq, b->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void write_end(beat_t *b)
{
    __atomic_store_n(&b->seq, b->seq + 1, __ATOMIC_RELEASE);
}

void beat_event(beat_t *b, const char *callback)
{
    if (b == NULL)
        return;
    write_begin(b);
    size_t n = strlen(callback);
    if (n > BEAT_CALLBACK_MAX)
        n = BEAT_CALLBACK_MAX;
    memcpy(b->callback, callback, n);
    b->callback[n] = '\0';
    b->room[0] = '\0';
    write_end(b);
    __atomic_store_n(&b->since_ms, base_now_mono_ms(), __ATOMIC_RELAXED);
}

void beat_room(beat_t *b, const char *key, size_t len)
{
    if (b == NULL)
        return;
    write_begin(b);
    if (key == NULL)
        len = 0;
    if (len > BASE_ROOM_KEY_MAX)
        len = BASE_ROOM_KEY_MAX;
    if (len != 0)
        memcpy(b->room, key, len);
    b->room[len] = '\0';
    write_end(b);
}

void beat_idle(beat_t *b)
{
    if (b == NULL)
        return;
    write_begin(b);
    b->callback[0] = b->room[0] = '\0';
    write_end(b);
}

void beat_stopping(beat_t *b)
{
    if (b != NULL)
        __atomic_store_n(&b->stopping, 1, __ATOMIC_RELAXED);
}
