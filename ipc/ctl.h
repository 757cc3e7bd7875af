/*
 * ctl.h — the control channel between the supervisor and each child (router or shard): a SOCK_SEQPACKET socketpair
 * carrying fixed-size records, some with a file descriptor attached (SCM_RIGHTS).
 *
 * The supervisor hands out the router⇄shard links this way: for every (re)start of a shard it makes a fresh
 * socketpair and gives one end to the shard (CTL_LINK) and the other to the router (CTL_SHARD_UP). Nothing is named
 * on disk, so there is no stale socket file and no path to guess.
 *
 * A child whose control channel reaches EOF has lost its supervisor and shuts down.
 *
 * The functions keep no state: plain system calls on a socket the caller owns, callable on any loop; ctl_send may
 * block (see there), ctl_recv never does.
 */
#ifndef PARTYD_CTL_H
#define PARTYD_CTL_H

#include <stdint.h>

#include "base.h"

typedef enum {
    CTL_LINK = 1,      /* supervisor → shard: fd is the shard's new link to the router */
    CTL_SHARD_UP,      /* supervisor → router: shard `shard` (pid `pid`) is up; fd is the router's end of its link */
    CTL_SHARD_DOWN,    /* supervisor → router: shard `shard` died; it restarts after a backoff. `room` says why ("was killed
                        * by signal 11 (Segmentation fault) in on_message of room p/r", cut to fit) */
    CTL_DRAIN,         /* supervisor → child: shut down gracefully */
    CTL_SPAWN_SHARD,   /* router → supervisor: start a new shard (it arrives as CTL_SHARD_UP with its id) */
    CTL_RETIRE_SHARD,  /* router → supervisor: shard `shard` owns no slot any more: stop it for good, delete its data */
    CTL_SPAWN_FAILED,  /* supervisor → router: the CTL_SPAWN_SHARD asked for starts no shard. `pid` holds why, an errno:
                        * ERANGE when no shard id is left (`shard` -1), else why node.json could not record shard `shard` */
    CTL_SHARD_STALLED, /* supervisor → router: shard `shard`'s loop has not turned for `ms` (timers.stall_ms): not ready */
    CTL_SHARD_RESUMED, /* supervisor → router: the stalled shard `shard` turns again */
    CTL_QUARANTINE,    /* supervisor → router: room `room` ("party/room") crashed its shard too often: answer 503 for `ms` */
    CTL_UNQUARANTINE,  /* router → supervisor: an operator lifted room `room`'s quarantine: forget its crashes */
    CTL_RELOAD,        /* supervisor → child (SIGHUP): fd is a memfd with the config file's text, as the supervisor read
                        * and checked it (empty: no file); the child applies what changes live (config_reload_fd) */
    CTL_SERVING,       /* router → supervisor: every shard is linked, /health answers 200 (sent each time it becomes so) */
} ctl_type_t;

typedef struct st_ctl_msg_t {
    uint32_t type;
    int32_t shard;
    int32_t pid;
    uint32_t restarts; /* how many times the shard was restarted so far */
    uint32_t ms;       /* CTL_SHARD_STALLED, CTL_QUARANTINE: a duration */
    char room[BASE_ROOM_KEY_MAX + 1]; /* CTL_QUARANTINE, CTL_UNQUARANTINE: "party/room", NUL-terminated */
} ctl_msg_t;

/* Sends one record, with `fd` attached unless it is -1 (the fd stays open on this side; close it after). Blocking
 * (the records are tiny and the peer always reads); returns 0 or -errno. */
int ctl_send(int sock, const ctl_msg_t *msg, int fd);
/* Receives one record; a received fd is stored in *fd (-1 when none; the caller owns it, close-on-exec set).
 * Returns 1 for a record, 0 at EOF, -EAGAIN when nothing is ready, another -errno on error. */
int ctl_recv(int sock, ctl_msg_t *msg, int *fd);

/* What every child (router, shard) does first with signals: SIGINT is ignored (a terminal sends it to the whole
 * process group, and the supervisor alone decides how to stop), SIGPIPE too (writes report EPIPE instead), and SIGTERM
 * is delivered through the returned signalfd (non-blocking), to be read on the child's loop. -1 on failure (logged). */
int ctl_child_signals(void);

#endif
