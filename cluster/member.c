/*
 * member.c — a node's membership (member.h): lease, key, keepalives and the member list, as a small state machine on
 * the etcd client's callbacks and one timer.
 */
#include "member.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

struct st_member_t {
    etcd_t *etcd;
    char *name, *node, *advertise, *version, *key, *prefix;
    unsigned shards;
    member_state_t state;
    uint64_t ttl_ms, margin_ms, retry_ms;
    member_callbacks_t cb;
    void *data;
    void *timer;
    int64_t lease;  /* 0: none */
    int registered; /* our key is put under `lease` */
    int held;       /* what on_lease said last */
    uint64_t valid_until, next_keepalive;
    int granting, putting, keeping; /* a request of that kind is in flight */
    int listing;                    /* reading the list, or waiting to */
    etcd_watch_t *watch;
    uint64_t relist_at; /* 0: no re-read due */
    member_node_t *nodes;
    size_t n_nodes;
    unsigned inflight;
    int stopped;
    char last_warn[512]; /* a failure repeated every retry_ms is logged once, until something succeeds */
};

static void warn(member_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(member_t *m, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (strcmp(msg, m->last_warn) == 0)
        return;
    snprintf(m->last_warn, sizeof(m->last_warn), "%s", msg);
    log_warn("%s", msg);
}

static void tick(member_t *m);

static void schedule(member_t *m)
{
    if (m->stopped)
        return;
    uint64_t now = base_now_mono_ms(), due = UINT64_MAX;
    if (m->registered && !m->keeping)
        due = m->next_keepalive;
    if (m->held && m->valid_until < due)
        due = m->valid_until;
    if (m->relist_at != 0 && m->relist_at < due)
        due = m->relist_at;
    if (m->lease == 0 && !m->granting && m->next_keepalive < due)
        due = m->next_keepalive; /* a new grant after a failure */
    if (due == UINT64_MAX)
        etcd_io(m->etcd)->timer_stop(m->timer);
    else
        etcd_io(m->etcd)->timer_start(m->timer, due > now ? due - now : 0);
}

/* Returns 1 when the member was stopped and has now been freed (the caller returns at once). */
static int request_done(member_t *m)
{
    --m->inflight;
    if (!m->stopped)
        return 0;
    if (m->inflight == 0) {
        for (size_t i = 0; i < m->n_nodes; ++i) {
            free(m->nodes[i].id);
            free(m->nodes[i].value);
        }
        free(m->nodes);
        free(m->name), free(m->node), free(m->advertise), free(m->version), free(m->key), free(m->prefix);
        free(m);
    }
    return 1;
}

static void set_held(member_t *m, int held)
{
    if (m->held == held)
        return;
    m->held = held;
    if (!held)
        log_warn("cluster: node %s lost its lease; it must not serve until it holds a new one", m->node);
    else
        log_info("cluster: node %s holds lease %" PRIx64 " (%s)", m->node, (uint64_t)m->lease, member_state_name(m->state));
    if (m->cb.on_lease != NULL)
        m->cb.on_lease(m, held, m->data);
}

static void lease_lost(member_t *m)
{
    m->lease = 0;
    m->registered = 0;
    m->next_keepalive = base_now_mono_ms();
    set_held(m, 0);
}

/* ---- lease and key ------------------------------------------------------------------------------------------------- */

static void put_key(member_t *m);

static void on_put(etcd_t *etcd, const etcd_result_t *res, void *data)
{
    (void)etcd;
    member_t *m = data;
    m->putting = 0;
    if (request_done(m))
        return;
    if (res->err != 0) {
        warn(m, "cluster: putting %s: %s", m->key, res->message);
        if (res->err == -EREMOTEIO && res->etcd_code == 5) { /* the lease is gone */
            lease_lost(m);
        } else if (m->lease != 0) {
            m->next_keepalive = base_now_mono_ms() + m->retry_ms;
            m->registered = 0;
        }
        schedule(m);
        return;
    }
    m->registered = 1;
    m->last_warn[0] = '\0';
    if (m->next_keepalive < base_now_mono_ms())
        m->next_keepalive = base_now_mono_ms() + m->ttl_ms / 3;
    set_held(m, member_lease_valid(m, base_now_mono_ms()));
    schedule(m);
}

static void put_key(member_t *m)
{
    json_t *v = json_pack("{s:s, s:i, s:s, s:s}", "advertise", m->advertise, "shards", (json_int_t)m->shards, "version", m->version,
                          "state", member_state_name(m->state));
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    m->putting = 1;
    ++m->inflight;
    etcd_put(m->etcd, m->key, s, strlen(s), m->lease, on_put, m);
    free(s);
}

typedef struct st_sent_t {
    member_t *m;
    uint64_t sent_ms;
    int64_t lease; /* the keepalive's: an answer for a lease given up meanwhile is ignored */
} sent_t;

static void on_grant(etcd_t *etcd, const etcd_result_t *res, void *data)
{
    (void)etcd;
    sent_t *s = data;
    member_t *m = s->m;
    uint64_t sent_ms = s->sent_ms;
    free(s);
    m->granting = 0;
    if (request_done(m))
        return;
    if (res->err != 0) {
        warn(m, "cluster: granting a lease: %s", res->message);
        m->next_keepalive = base_now_mono_ms() + m->retry_ms;
        schedule(m);
        return;
    }
    m->lease = res->lease_id;
    uint64_t ttl = (uint64_t)res->lease_ttl * 1000 < m->ttl_ms ? (uint64_t)res->lease_ttl * 1000 : m->ttl_ms;
    m->valid_until = sent_ms + ttl - m->margin_ms;
    m->next_keepalive = sent_ms + m->ttl_ms / 3;
    put_key(m);
}

static void grant(member_t *m)
{
    sent_t *s = xmalloc(sizeof(*s));
    s->m = m;
    s->sent_ms = base_now_mono_ms();
    m->granting = 1;
    ++m->inflight;
    etcd_lease_grant(m->etcd, (int64_t)((m->ttl_ms + 999) / 1000), on_grant, s);
}

static void on_keepalive(etcd_t *etcd, const etcd_result_t *res, void *data)
{
    (void)etcd;
    sent_t *s = data;
    member_t *m = s->m;
    uint64_t sent_ms = s->sent_ms;
    int64_t lease = s->lease;
    free(s);
    m->keeping = 0;
    if (request_done(m))
        return;
    uint64_t now = base_now_mono_ms();
    if (lease != m->lease) {
        /* given up meanwhile: a lease is never taken back once this node stopped trusting it (DESIGN.md) */
    } else if (res->err != 0) {
        warn(m, "cluster: keeping lease %" PRIx64 " alive: %s", (uint64_t)m->lease, res->message);
        m->next_keepalive = now + m->retry_ms;
    } else if (res->lease_ttl <= 0) {
        log_warn("cluster: lease %" PRIx64 " expired in etcd", (uint64_t)m->lease);
        lease_lost(m);
    } else {
        /* from when it was SENT: etcd renewed the lease at some moment after that, so this never overstates it */
        uint64_t ttl = (uint64_t)res->lease_ttl * 1000 < m->ttl_ms ? (uint64_t)res->lease_ttl * 1000 : m->ttl_ms;
        if (sent_ms + ttl - m->margin_ms > m->valid_until)
            m->valid_until = sent_ms + ttl - m->margin_ms;
        m->next_keepalive = sent_ms + m->ttl_ms / 3;
        set_held(m, m->registered && member_lease_valid(m, now));
    }
    tick(m);
}

static void keepalive(member_t *m)
{
    sent_t *s = xmalloc(sizeof(*s));
    s->m = m;
    s->sent_ms = base_now_mono_ms();
    s->lease = m->lease;
    m->keeping = 1;
    ++m->inflight;
    etcd_lease_keepalive(m->etcd, m->lease, on_keepalive, s);
}

/* ---- the member list ----------------------------------------------------------------------------------------------- */

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const member_node_t *)a)->id, ((const member_node_t *)b)->id);
}

static int parse_state(const char *value)
{
    json_t *j = json_loads(value, 0, NULL);
    const char *s = json_string_value(json_object_get(j, "state"));
    int state = -1;
    for (int i = MEMBER_JOINING; s != NULL && i <= MEMBER_DRAINING; ++i)
        if (strcmp(s, member_state_name((member_state_t)i)) == 0)
            state = i;
    json_decref(j);
    return state;
}

static void nodes_remove(member_t *m, const char *id)
{
    for (size_t i = 0; i < m->n_nodes; ++i)
        if (strcmp(m->nodes[i].id, id) == 0) {
            free(m->nodes[i].id);
            free(m->nodes[i].value);
            m->nodes[i] = m->nodes[--m->n_nodes];
            return;
        }
}

static void nodes_set(member_t *m, const etcd_kv_t *kv)
{
    const char *id = kv->key + strlen(m->prefix);
    nodes_remove(m, id);
    m->nodes = xrealloc(m->nodes, (m->n_nodes + 1) * sizeof(*m->nodes));
    member_node_t *n = &m->nodes[m->n_nodes++];
    n->id = xstrdup(id);
    n->value = xstrndup(kv->value, kv->value_len);
    n->state = parse_state(n->value);
    n->mod_revision = kv->mod_revision;
    n->lease = kv->lease;
}

static void list(member_t *m);

static void on_watch(etcd_watch_t *watch, const etcd_watch_result_t *res, void *data)
{
    (void)watch;
    member_t *m = data;
    if (res->err != 0) {
        m->watch = NULL;
        if (res->compact_revision > 0) {
            log_info("cluster: %s", res->message);
            list(m); /* re-read, then watch from the read's revision + 1 */
        } else {
            warn(m, "cluster: watching %s: %s", m->prefix, res->message);
            m->relist_at = base_now_mono_ms() + m->retry_ms;
            schedule(m);
        }
        return;
    }
    for (size_t i = 0; i < res->n_events; ++i) {
        const etcd_kv_t *kv = &res->events[i].kv;
        if (kv->key_len <= strlen(m->prefix))
            continue;
        if (res->events[i].type == ETCD_EVENT_DELETE)
            nodes_remove(m, kv->key + strlen(m->prefix));
        else
            nodes_set(m, kv);
    }
    if (res->n_events > 0) {
        if (m->n_nodes > 1)
            qsort(m->nodes, m->n_nodes, sizeof(*m->nodes), node_cmp);
        if (m->cb.on_nodes != NULL)
            m->cb.on_nodes(m, m->data);
    }
}

static void on_list(etcd_t *etcd, const etcd_result_t *res, void *data)
{
    (void)etcd;
    member_t *m = data;
    m->listing = 0;
    if (request_done(m))
        return;
    if (res->err != 0) {
        warn(m, "cluster: reading %s: %s", m->prefix, res->message);
        m->relist_at = base_now_mono_ms() + m->retry_ms;
        schedule(m);
        return;
    }
    while (m->n_nodes > 0)
        nodes_remove(m, m->nodes[m->n_nodes - 1].id);
    for (size_t i = 0; i < res->n_kvs; ++i)
        if (res->kvs[i].key_len > strlen(m->prefix))
            nodes_set(m, &res->kvs[i]);
    if (m->n_nodes > 1)
        qsort(m->nodes, m->n_nodes, sizeof(*m->nodes), node_cmp);
    m->watch = etcd_watch(m->etcd, m->prefix, 1, res->revision + 1, on_watch, m);
    if (m->cb.on_nodes != NULL)
        m->cb.on_nodes(m, m->data);
}

static void list(member_t *m)
{
    m->relist_at = 0;
    m->listing = 1;
    ++m->inflight;
    etcd_get(m->etcd, m->prefix, 1, 0, on_list, m);
}

/* ---- the timer ----------------------------------------------------------------------------------------------------- */

static void tick(member_t *m)
{
    uint64_t now = base_now_mono_ms();
    if (m->lease != 0 && m->registered && !member_lease_valid(m, now)) {
        /* the fence: valid-until passed without a successful keepalive. The lease is given up for good, even if etcd
         * still holds it: the node serves again only under a new lease (and, once wired, after re-reading the homes). */
        log_warn("cluster: lease %" PRIx64 " of %s not renewed in time; granting a new one", (uint64_t)m->lease, m->node);
        lease_lost(m);
    }
    if (m->lease == 0 && !m->granting && now >= m->next_keepalive)
        grant(m);
    else if (m->lease != 0 && !m->registered && !m->putting && now >= m->next_keepalive)
        put_key(m);
    else if (m->registered && !m->keeping && now >= m->next_keepalive)
        keepalive(m);
    if (m->relist_at != 0 && now >= m->relist_at && !m->listing && m->watch == NULL)
        list(m);
    schedule(m);
}

static void on_timer(void *data)
{
    tick(data);
}

/* ---- the public calls ---------------------------------------------------------------------------------------------- */

member_t *member_start(etcd_t *etcd, const member_config_t *config, const member_callbacks_t *cb, void *data)
{
    member_t *m = xcalloc(1, sizeof(*m));
    m->etcd = etcd;
    m->name = xstrdup(config->name);
    m->node = xstrdup(config->node);
    m->advertise = xstrdup(config->advertise != NULL ? config->advertise : "");
    m->version = xstrdup(config->version != NULL ? config->version : "");
    m->shards = config->shards;
    m->ttl_ms = config->lease_ttl_ms < 2000 ? 2000 : config->lease_ttl_ms;
    m->margin_ms = config->margin_ms != 0 && config->margin_ms < m->ttl_ms / 2 ? config->margin_ms : m->ttl_ms / 5;
    m->retry_ms = config->retry_ms != 0 ? config->retry_ms : 500;
    size_t len = strlen(m->name) + strlen(m->node) + 16;
    m->key = xmalloc(len);
    snprintf(m->key, len, "%s/nodes/%s", m->name, m->node);
    m->prefix = xmalloc(len);
    snprintf(m->prefix, len, "%s/nodes/", m->name);
    if (cb != NULL)
        m->cb = *cb;
    m->data = data;
    m->timer = etcd_io(etcd)->timer_new(etcd_loop(etcd), on_timer, m);
    grant(m);
    list(m);
    return m;
}

static void on_revoke(etcd_t *etcd, const etcd_result_t *res, void *data)
{
    (void)etcd;
    member_t *m = data;
    if (res->err != 0)
        log_warn("cluster: revoking the lease of %s: %s", m->node, res->message);
    request_done(m);
}

void member_stop(member_t *m, int leave)
{
    if (m->watch != NULL)
        etcd_watch_cancel(m->watch);
    m->watch = NULL;
    etcd_io(m->etcd)->timer_free(m->timer);
    m->timer = NULL;
    if (leave && m->lease != 0) {
        ++m->inflight;
        etcd_lease_revoke(m->etcd, m->lease, on_revoke, m);
    }
    m->stopped = 1;
    ++m->inflight;
    request_done(m); /* frees it now when nothing is in flight */
}

void member_set_state(member_t *m, member_state_t state)
{
    m->state = state;
    if (m->lease != 0 && !m->putting)
        put_key(m);
}

int member_lease_valid(const member_t *m, uint64_t now_ms)
{
    return m->lease != 0 && m->registered && now_ms < m->valid_until;
}

uint64_t member_valid_until(const member_t *m)
{
    return m->valid_until;
}

int64_t member_lease_id(const member_t *m)
{
    return m->lease;
}

const member_node_t *member_nodes(const member_t *m, size_t *n)
{
    *n = m->n_nodes;
    return m->nodes;
}

const char *member_state_name(member_state_t state)
{
    static const char *const names[] = {"joining", "active", "draining"};
    return names[state];
}
