/*
 * gate.c — the output gate (see gate.h): event begin and end, what is held, the end-of-pass commit, then the release
 * or the failure path.
 */
#include "gate.h"

#include <errno.h>
#include <stdlib.h>

#include "base.h"

/* A growable list of ids (request or connection numbers). */
typedef struct st_idvec_t {
    uint64_t *ids;
    size_t n, cap;
} idvec_t;

/* What is owed an answer in some output: requests (GATE_ANSWER) and connections (GATE_VERDICT), and the connections
 * closed in it (GATE_CLOSE). */
typedef struct st_owed_t {
    idvec_t rids, cids, closed;
} owed_t;

struct st_gate_t {
    const gate_ops_t *ops;
    void *ctx;
    size_t max_frame;
    uint64_t pass;
    int in_event;
    int event_held;    /* the current event wrote: its output joins `held` at its end */
    int pass_held;     /* some event of this pass wrote: the pass commits */
    base_buf_t event;  /* the current event's frames */
    owed_t event_owed; /* ... and what among them is owed */
    base_buf_t held;   /* frames waiting for this pass's commit */
    owed_t held_owed;
};

static void idvec_push(idvec_t *v, uint64_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap == 0 ? 16 : v->cap * 2;
        v->ids = xrealloc(v->ids, v->cap * sizeof(*v->ids));
    }
    v->ids[v->n++] = id;
}

static void owed_clear(owed_t *o)
{
    o->rids.n = o->cids.n = o->closed.n = 0;
}

static void owed_dispose(owed_t *o)
{
    free(o->rids.ids);
    free(o->cids.ids);
    free(o->closed.ids);
}

static void buf_clear(base_buf_t *b)
{
    base_buf_consume(b, base_buf_len(b));
    base_buf_shrink(b, 1 << 20);
}

gate_t *gate_new(const gate_ops_t *ops, void *ctx, size_t max_frame)
{
    gate_t *g = xcalloc(1, sizeof(*g));
    g->ops = ops;
    g->ctx = ctx;
    g->max_frame = max_frame;
    base_buf_init(&g->event);
    base_buf_init(&g->held);
    return g;
}

void gate_free(gate_t *g)
{
    base_buf_dispose(&g->event);
    base_buf_dispose(&g->held);
    owed_dispose(&g->event_owed);
    owed_dispose(&g->held_owed);
    free(g);
}

void gate_event_begin(gate_t *g)
{
    if (g->in_event)
        gate_event_end(g);
    g->in_event = 1;
    g->event_held = 0;
}

void gate_event_end(gate_t *g)
{
    if (!g->in_event)
        return;
    g->in_event = 0;
    if (g->event_held) {
        base_buf_append(&g->held, base_buf_head(&g->event), base_buf_len(&g->event));
        for (size_t i = 0; i < g->event_owed.rids.n; ++i)
            idvec_push(&g->held_owed.rids, g->event_owed.rids.ids[i]);
        for (size_t i = 0; i < g->event_owed.cids.n; ++i)
            idvec_push(&g->held_owed.cids, g->event_owed.cids.ids[i]);
        for (size_t i = 0; i < g->event_owed.closed.n; ++i)
            idvec_push(&g->held_owed.closed, g->event_owed.closed.ids[i]);
    } else if (base_buf_len(&g->event) != 0 && g->ops->connected(g->ctx)) {
        g->ops->out(g->ctx, base_buf_head(&g->event), base_buf_len(&g->event));
    }
    g->event_held = 0;
    buf_clear(&g->event);
    owed_clear(&g->event_owed);
}

void gate_hold(gate_t *g)
{
    g->pass_held = 1;
    if (g->in_event)
        g->event_held = 1;
}

int gate_emit(gate_t *g, const proto_msg_t *msg, gate_kind_t kind)
{
    if (!g->ops->connected(g->ctx))
        return -ENOTCONN;
    if (!g->in_event) {
        /* nothing of an event to hold it with: straight out */
        base_buf_t one;
        base_buf_init(&one);
        int r = proto_encode(&one, msg, g->max_frame);
        if (r == 0)
            g->ops->out(g->ctx, base_buf_head(&one), base_buf_len(&one));
        base_buf_dispose(&one);
        return r;
    }
    int r = proto_encode(&g->event, msg, g->max_frame);
    if (r != 0) {
        log_warn("gate: dropping a %s frame over the cap of %zu bytes", proto_type_name(msg->type), g->max_frame);
        return r;
    }
    if (kind == GATE_ANSWER)
        idvec_push(&g->event_owed.rids, msg->id);
    else if (kind == GATE_VERDICT)
        idvec_push(&g->event_owed.cids, msg->id);
    else if (kind == GATE_CLOSE)
        idvec_push(&g->event_owed.closed, msg->id);
    return 0;
}

int gate_end_pass(gate_t *g, char *err, size_t errlen)
{
    gate_event_end(g);
    int ret = 0;
    if (g->pass_held || g->ops->pending(g->ctx) != 0) {
        if (g->ops->commit(g->ctx, err, errlen) == 0) {
            ret = 1;
            if (base_buf_len(&g->held) != 0 && g->ops->connected(g->ctx))
                g->ops->out(g->ctx, base_buf_head(&g->held), base_buf_len(&g->held));
            buf_clear(&g->held);
            owed_clear(&g->held_owed);
            g->ops->committed(g->ctx);
        } else {
            ret = -EIO;
            buf_clear(&g->held);
            /* the ids stay valid during the call: they are cleared after it */
            g->ops->failed(g->ctx, g->held_owed.rids.ids, g->held_owed.rids.n, g->held_owed.cids.ids, g->held_owed.cids.n,
                           g->held_owed.closed.ids, g->held_owed.closed.n);
            owed_clear(&g->held_owed);
        }
        g->pass_held = 0;
    }
    ++g->pass;
    return ret;
}

void gate_drop_held(gate_t *g)
{
    buf_clear(&g->held);
    owed_clear(&g->held_owed);
    base_buf_consume(&g->event, base_buf_len(&g->event));
    owed_clear(&g->event_owed);
}

uint64_t gate_pass(const gate_t *g)
{
    return g->pass;
}

size_t gate_held_bytes(const gate_t *g)
{
    return base_buf_len(&g->held) + base_buf_len(&g->event);
}
