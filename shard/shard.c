/*
 * shard.c — where a message enters a shard: the shard process, its loop, its control socket and its link to the
 * router. Frames are decoded by link.c and dispatched to room.c here.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <h2o/socket.h>
#include <h2o/socket/evloop.h>

#include "ctl.h"
#include "link.h"
#include "shard.h"

static struct {
    const config_t *conf;
    int index;
    h2o_evloop_t *loop;
    h2o_socket_t *ctl;
    h2o_socket_t *sig;
    link_t *link; /* to the router; NULL while there is none */
    size_t max_frame;
    int stop;
} shard;

const config_t *shard_config(void)
{
    return shard.conf;
}

int shard_emit(const proto_msg_t *msg)
{
    if (shard.link == NULL)
        return -ENOTCONN;
    return link_emit(shard.link, msg);
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
    case PROTO_STATS: {
        proto_msg_t reply = {.type = PROTO_STATS_REPLY, .id = msg->id};
        rooms_stats(&reply.stats);
        shard_emit(&reply);
        break;
    }
    default:
        log_warn("ignoring a %s frame from the router", proto_type_name(msg->type));
        break;
    }
    rooms_run_deferred();
}

static void on_link_closed(link_t *link, const char *why)
{
    (void)link;
    log_info("router link closed (%s); closing its connections", why);
    shard.link = NULL;
    rooms_on_router_lost();
}

static const link_callbacks_t link_callbacks = {on_link_hello, on_link_frame, on_link_closed, NULL};

static void replace_link(int fd)
{
    if (shard.link != NULL) {
        link_close(shard.link);
        shard.link = NULL;
        rooms_on_router_lost();
    }
    shard.link = link_open(shard.loop, fd, shard.max_frame, PROTO_ROLE_SHARD, shard.index, &link_callbacks, NULL);
}

/* ---- control socket and signals ---- */

static void on_ctl(h2o_socket_t *sock, const char *err)
{
    (void)err;
    for (;;) {
        ctl_msg_t m;
        int fd;
        int r = ctl_recv(h2o_socket_get_fd(sock), &m, &fd);
        if (r == -EAGAIN)
            return;
        if (r <= 0) {
            if (!shard.stop)
                log_info("supervisor went away; shutting down");
            shard.stop = 1;
            h2o_socket_read_stop(sock);
            return;
        }
        switch (m.type) {
        case CTL_LINK:
            if (fd == -1) {
                log_error("control: CTL_LINK without a socket");
                break;
            }
            replace_link(fd);
            fd = -1;
            break;
        case CTL_DRAIN:
            shard.stop = 1;
            break;
        default:
            log_warn("control: ignoring record type %u", m.type);
            break;
        }
        if (fd != -1)
            close(fd);
    }
}

static void on_signal(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct signalfd_siginfo si;
    while (read(h2o_socket_get_fd(sock), &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM) {
            log_info("SIGTERM: shutting down");
            shard.stop = 1;
        }
    }
}

int shard_main(const config_t *conf, int index, int ctl_fd)
{
    log_set_role("shard", index);
    prctl(PR_SET_NAME, "partyd-shard", 0, 0, 0);
    memset(&shard, 0, sizeof(shard));
    shard.conf = conf;
    shard.index = index;
    shard.max_frame =
        (conf->limits.message_bytes > conf->limits.body_bytes ? conf->limits.message_bytes : conf->limits.body_bytes) +
        conf->limits.header_bytes + PROTO_FRAME_OVERHEAD;

    /* SIGINT from a terminal reaches the whole process group; the supervisor alone decides how to stop */
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd == -1) {
        log_error("signalfd: %s", strerror(errno));
        return 1;
    }

    shard.loop = h2o_evloop_create();
    shard.ctl = h2o_evloop_socket_create(shard.loop, ctl_fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(shard.ctl, on_ctl);
    shard.sig = h2o_evloop_socket_create(shard.loop, sfd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(shard.sig, on_signal);
    rooms_init(conf);
    log_info("started");

    while (!shard.stop) {
        h2o_evloop_run(shard.loop, INT32_MAX);
        /* end of the pass: everything the rooms produced goes out in one write */
        if (shard.link != NULL)
            link_flush(shard.link);
    }

    rooms_dispose();
    if (shard.link != NULL)
        link_close(shard.link);
    h2o_socket_close(shard.ctl);
    h2o_socket_close(shard.sig);
    h2o_evloop_run(shard.loop, 0); /* lets h2o free the closed sockets */
    h2o_evloop_destroy(shard.loop);
    log_info("stopped");
    return 0;
}
