/*
 * shard.c — where a message enters a shard: the shard process, its loop (ipc/loop.h: no h2o here), its control
 * socket and its link to the router. Frames are decoded by link.c and dispatched to room.c here.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "child.h"
#include "link.h"
#include "loop.h"
#include "shard.h"

#define TICK_MS 50
#define MAX_FAILED_COMMITS 3

/* A growable list of ids (connection or request numbers). */
typedef struct st_idvec_t {
    uint64_t *ids;
    size_t n, cap;
} idvec_t;

static void idvec_push(idvec_t *v, uint64_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap == 0 ? 16 : v->cap * 2;
        v->ids = xrealloc(v->ids, v->cap * sizeof(*v->ids));
    }
    v->ids[v->n++] = id;
}

static struct {
    const config_t *conf;
    const partydefs_t *defs;
    int index;
    loop_t *loop;
    loop_watch_t *ctl; /* NULL once the supervisor's end closed */
    loop_watch_t *sig;
    link_t *link; /* to the router; NULL while there is none */
    size_t max_frame;
    store_t *store;
    loop_timer_t tick;
    loop_watch_t *alarm_timer; /* a timerfd at the earliest alarm's due time (NULL: the ticks alone look) */
    /* the output gate (see shard.h) */
    uint64_t pass;
    size_t event_mark;  /* bytes queued on the link when the current event began */
    int event_gated;    /* the current event's frames are held */
    idvec_t event_rids; /* answers (RESPONSE) and verdicts (ACCEPT/REJECT) emitted by the current event while not held */
    idvec_t event_cids;
    base_buf_t held;   /* frames waiting for this pass's commit */
    idvec_t held_rids; /* the answers and verdicts among them, to replace if the commit fails */
    idvec_t held_cids;
    int gated_this_pass;
    idvec_t pass_arrivals; /* when this pass's client events arrived, for the latency histogram */
    base_hist_t latency;
    unsigned failed_commits; /* in a row */
    pid_t supervisor;
    int orphaned; /* stopping because the supervisor's end of the control socket closed */
    int stop;
    int status;
} shard;

const config_t *shard_config(void)
{
    return shard.conf;
}

const partydefs_t *shard_partydefs(void)
{
    return shard.defs;
}

uint64_t shard_pass(void)
{
    return shard.pass;
}

int shard_index(void)
{
    return shard.index;
}

store_t *shard_store(void)
{
    return shard.store;
}

const base_hist_t *shard_latency(void)
{
    return &shard.latency;
}

void shard_event_begin(void)
{
    shard.event_mark = shard.link != NULL ? link_out_mark(shard.link) : 0;
    shard.event_gated = 0;
    shard.event_rids.n = shard.event_cids.n = 0;
}

void shard_gate_event(void)
{
    if (shard.event_gated)
        return;
    shard.event_gated = 1;
    shard.gated_this_pass = 1;
    if (shard.link != NULL)
        link_take_tail(shard.link, shard.event_mark, &shard.held);
    for (size_t i = 0; i < shard.event_rids.n; ++i)
        idvec_push(&shard.held_rids, shard.event_rids.ids[i]);
    for (size_t i = 0; i < shard.event_cids.n; ++i)
        idvec_push(&shard.held_cids, shard.event_cids.ids[i]);
    shard.event_rids.n = shard.event_cids.n = 0;
}

int shard_emit(const proto_msg_t *msg)
{
    if (shard.link == NULL)
        return -ENOTCONN;
    if (msg->type == PROTO_RESPONSE)
        idvec_push(shard.event_gated ? &shard.held_rids : &shard.event_rids, msg->id);
    else if (msg->type == PROTO_ACCEPT || msg->type == PROTO_REJECT)
        idvec_push(shard.event_gated ? &shard.held_cids : &shard.event_cids, msg->id);
    if (shard.event_gated)
        return proto_encode(&shard.held, msg, shard.max_frame);
    return link_emit(shard.link, msg);
}

/* End of a loop pass: commit the pass's writes (one WAL sync), then release what waited for them. */
static void commit_pass(void)
{
    if (shard.gated_this_pass || store_pending(shard.store) != 0) {
        char err[512];
        shard.event_gated = 0;
        if (store_commit(shard.store, err, sizeof(err)) == 0) {
            if (shard.link != NULL && base_buf_len(&shard.held) != 0)
                link_emit_raw(shard.link, base_buf_head(&shard.held), base_buf_len(&shard.held));
            rooms_on_committed();
            shard.failed_commits = 0;
        } else {
            log_error("storage: %s; the rooms that wrote are reset and their held output dropped", err);
            rooms_on_commit_failed(shard.held_rids.ids, shard.held_rids.n, shard.held_cids.ids, shard.held_cids.n);
            if (++shard.failed_commits >= MAX_FAILED_COMMITS) {
                /* RocksDB refuses writes after some errors until reopened: restart and reopen */
                log_error("storage: %u commits failed in a row; stopping so the supervisor restarts this shard",
                          shard.failed_commits);
                shard.stop = 1;
                shard.status = 3;
            }
        }
        base_buf_consume(&shard.held, base_buf_len(&shard.held));
        base_buf_shrink(&shard.held, 1 << 20);
        shard.held_rids.n = shard.held_cids.n = 0;
        shard.gated_this_pass = 0;
    }
    ++shard.pass;
    shard.event_gated = 0;
    if (shard.pass_arrivals.n != 0) {
        uint64_t now = base_now_mono_us();
        for (size_t i = 0; i < shard.pass_arrivals.n; ++i)
            base_hist_observe(&shard.latency, (double)(now - shard.pass_arrivals.ids[i]) / 1e6);
        shard.pass_arrivals.n = 0;
    }
}

static void on_tick(loop_timer_t *timer)
{
    rooms_tick();
    loop_timer_start(shard.loop, timer, TICK_MS);
}

/* ---- the alarm timer ---- */

static void on_alarm_timer(loop_watch_t *watch, int events)
{
    (void)events;
    uint64_t expirations;
    while (read(loop_watch_fd(watch), &expirations, sizeof(expirations)) == (ssize_t)sizeof(expirations))
        ;
    rooms_fire_alarms();
}

/* An absolute CLOCK_REALTIME timer, since alarms are wall-clock times: it fires on time when the clock is set too. */
static void alarm_timer_open(void)
{
    int fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd == -1) {
        log_warn("timerfd_create: %s; alarms are looked for every %d ms only", strerror(errno), TICK_MS);
        return;
    }
    if ((shard.alarm_timer = loop_watch(shard.loop, fd, on_alarm_timer, NULL)) == NULL) {
        log_warn("epoll: %s; alarms are looked for every %d ms only", strerror(errno), TICK_MS);
        close(fd);
    }
}

void shard_alarms_wake_at(uint64_t wall_ms)
{
    if (shard.alarm_timer == NULL)
        return;
    struct itimerspec its = {0};
    if (wall_ms == 0) {
        its.it_value.tv_nsec = 1; /* long past: at once (all zeros would disarm it) */
    } else if (wall_ms != UINT64_MAX) {
        its.it_value.tv_sec = (time_t)(wall_ms / 1000);
        its.it_value.tv_nsec = (long)(wall_ms % 1000) * 1000000;
    }
    if (timerfd_settime(loop_watch_fd(shard.alarm_timer), TFD_TIMER_ABSTIME, &its, NULL) != 0)
        log_warn("timerfd_settime: %s; alarms are looked for every %d ms only", strerror(errno), TICK_MS);
}

/* ---- the router link ---- */

static void on_link_hello(link_t *link, const proto_msg_t *hello)
{
    (void)link;
    log_info("router (pid %u) connected", hello->pid);
}

static void on_link_frame(link_t *link, const proto_msg_t *msg)
{
    (void)link;
    if (msg->type == PROTO_OPEN || msg->type == PROTO_MESSAGE || msg->type == PROTO_REQUEST)
        idvec_push(&shard.pass_arrivals, base_now_mono_us());
    shard_event_begin();
    switch (msg->type) {
    case PROTO_OPEN:
        rooms_on_open(msg);
        break;
    case PROTO_MESSAGE:
        rooms_on_message(msg);
        break;
    case PROTO_CLOSE:
        rooms_on_close(msg);
        break;
    case PROTO_REQUEST:
        rooms_on_request(msg);
        break;
    case PROTO_FETCH_REPLY:
        rooms_on_fetch_reply(msg);
        break;
    case PROTO_ADMIN:
        shard_admin(msg);
        break;
    case PROTO_SLOT:
        shard_slot(msg);
        break;
    default:
        log_warn("ignoring a %s frame from the router", proto_type_name(msg->type));
        break;
    }
    rooms_run_deferred();
}

static void router_gone(void)
{
    /* moves in flight were the old router's: the slots serve here again until a new one moves them */
    rooms_slots_unfreeze_all();
    /* what was held for the router cannot reach it; the writes still commit */
    base_buf_consume(&shard.held, base_buf_len(&shard.held));
    shard.held_rids.n = shard.held_cids.n = 0;
}

static void on_link_closed(link_t *link, const char *why)
{
    (void)link;
    log_info("router link closed (%s); closing its connections", why);
    shard.link = NULL;
    router_gone();
    rooms_on_router_lost();
}

static const link_callbacks_t link_callbacks = {on_link_hello, on_link_frame, on_link_closed, NULL};

static void replace_link(int fd)
{
    if (shard.link != NULL) {
        link_close(shard.link);
        shard.link = NULL;
        router_gone();
        rooms_on_router_lost();
    }
    shard.link = link_open(&link_io_loop, shard.loop, fd, shard.max_frame, PROTO_ROLE_SHARD, shard.index, &link_callbacks, NULL);
}

/* ---- control socket and signals ---- */

static void on_ctl_record(const ctl_msg_t *m, int *fd, void *data)
{
    (void)data;
    switch (m->type) {
    case CTL_LINK:
        if (*fd == -1) {
            log_error("control: CTL_LINK without a socket");
            break;
        }
        replace_link(*fd);
        *fd = -1;
        break;
    case CTL_DRAIN:
        rooms_node_stopping();
        shard.stop = 1;
        break;
    default:
        log_warn("control: ignoring record type %u", m->type);
        break;
    }
}

static void on_orphaned(void *data)
{
    (void)data;
    if (!shard.stop)
        log_info("supervisor went away; shutting down");
    shard.orphaned = 1;
    shard.stop = 1;
}

static void on_term(void *data)
{
    (void)data;
    log_info("SIGTERM: shutting down");
    rooms_node_stopping();
    shard.stop = 1;
}

static const child_callbacks_t child_callbacks = {on_ctl_record, on_orphaned, on_term};

static void on_ctl(loop_watch_t *watch, int events)
{
    (void)events;
    if (child_ctl_readable(loop_watch_fd(watch), &child_callbacks, NULL) != 0) {
        loop_unwatch(watch);
        shard.ctl = NULL;
    }
}

static void on_signal(loop_watch_t *watch, int events)
{
    (void)events;
    child_signals_readable(loop_watch_fd(watch), &child_callbacks, NULL);
}

/* The loop's before-sleep hook: the end of the pass. One commit for every write, then everything the rooms produced
 * goes out in one write. */
static void end_of_pass(void *data)
{
    (void)data;
    commit_pass();
    if (shard.link != NULL)
        link_flush(shard.link);
}

/* A dying supervisor closes its files before the kernel hands its children to a new parent, and the shard can be
 * woken by the first and be gone before the second. The router tells "the node is going away" (1001 to clients)
 * from "a shard crashed" (1011) by its own parent having changed when our link closes, so the link stays open until
 * we see that change too: the kernel reparents all the supervisor's children at once. Bounded, since a control
 * socket can also close while the supervisor lives on. */
static void await_reparenting(void)
{
    for (int i = 0; i < 1000 && getppid() == shard.supervisor; ++i)
        usleep(1000);
}

int shard_main(const config_t *conf, const partydefs_t *defs, int index, int ctl_fd)
{
    log_set_role("shard", index);
    prctl(PR_SET_NAME, "partyd-shard", 0, 0, 0);
    memset(&shard, 0, sizeof(shard));
    shard.conf = conf;
    shard.defs = defs;
    shard.index = index;
    shard.max_frame = config_frame_cap(conf);
    shard.supervisor = getppid();
    int sfd = ctl_child_signals();
    if (sfd == -1)
        return 1;

    char path[4200], err[600];
    snprintf(path, sizeof(path), "%s/shard-%d", conf->data_dir, index);
    if (store_open(path, strcmp(conf->durability, "sync") == 0, &shard.store, err, sizeof(err)) != 0) {
        log_error("cannot open the shard's storage: %s", err);
        close(sfd);
        return 1;
    }

    shard.loop = loop_create();
    shard.tick.cb = on_tick;
    loop_timer_start(shard.loop, &shard.tick, TICK_MS);
    shard.ctl = loop_watch(shard.loop, ctl_fd, on_ctl, NULL);
    shard.sig = loop_watch(shard.loop, sfd, on_signal, NULL);
    if (shard.ctl == NULL || shard.sig == NULL) {
        log_error("epoll: %s", strerror(errno));
        return 1;
    }
    loop_set_before_sleep(shard.loop, end_of_pass, NULL);
    alarm_timer_open();
    rooms_init(conf, shard.store);
    log_info("started (storage %s, durability %s)", path, conf->durability);

    while (!shard.stop)
        if (loop_run_once(shard.loop, -1) != 0) {
            log_error("epoll_wait: %s; stopping", strerror(errno));
            shard.status = 1;
            break;
        }

    shard_event_begin();
    rooms_dispose();
    commit_pass();
    if (shard.orphaned)
        await_reparenting();
    if (shard.link != NULL) {
        link_flush(shard.link);
        link_close(shard.link);
    }
    loop_timer_stop(&shard.tick);
    store_close(shard.store);
    base_buf_dispose(&shard.held);
    free(shard.event_rids.ids);
    free(shard.event_cids.ids);
    free(shard.held_rids.ids);
    free(shard.held_cids.ids);
    free(shard.pass_arrivals.ids);
    if (shard.ctl != NULL)
        loop_unwatch(shard.ctl);
    close(ctl_fd);
    loop_unwatch(shard.sig);
    close(sfd);
    if (shard.alarm_timer != NULL) {
        close(loop_watch_fd(shard.alarm_timer));
        loop_unwatch(shard.alarm_timer);
    }
    loop_destroy(shard.loop);
    log_info("stopped");
    return shard.status;
}
