/* SPDX-License-Identifier: MIT */
/*
 * One local socket connection: newline framing of what the client sends,
 * and a bounded output queue of shared line buffers written with one
 * sendmsg() per batch. Knows nothing of the
 * protocol's meaning; socket-frontend.c does.
 *
 * Backpressure: events past queue_bytes are refused (the owner counts them
 * as dropped) until the queue drains to half, then one bridge.dropped line
 * is queued. Control lines (replies) are never refused but a queue past
 * hard_queue_bytes, or one over its bound for slow_timeout_ms, ends the
 * connection.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _WbSocketClient WbSocketClient;

/* All connections of one frontend share one epoll descriptor in the main
 * loop: a loop iteration costs the same with 1 or 1000 idle clients, poll
 * interest changes only when it really changes, and new output is written
 * once per client per iteration (one sendmsg for everything queued). */
typedef struct _WbSocketClientGroup WbSocketClientGroup;

WbSocketClientGroup *wb_socket_client_group_new (GError **error);
/* The group's clients must be freed first. Accepts NULL. */
void wb_socket_client_group_free (WbSocketClientGroup *group);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbSocketClientGroup, wb_socket_client_group_free)

typedef struct
{
  gsize max_line_bytes;   /* without the terminator */
  gsize queue_bytes;      /* events past this are dropped */
  gsize hard_queue_bytes; /* any line past this disconnects */
  guint slow_timeout_ms;  /* over queue_bytes this long disconnects */
} WbSocketClientLimits;

typedef enum
{
  WB_SOCKET_CLIENT_CLOSED_BY_PEER, /* EOF after half-close, HUP, EPIPE, ECONNRESET */
  WB_SOCKET_CLIENT_CLOSED_DONE,    /* close_after_flush() finished */
  WB_SOCKET_CLIENT_CLOSED_ERROR,   /* an unexpected read or write error */
  WB_SOCKET_CLIENT_CLOSED_SLOW,    /* over its bound for slow_timeout_ms */
  WB_SOCKET_CLIENT_CLOSED_OVERFLOW /* replies past hard_queue_bytes */
} WbSocketClientCloseReason;

const char *wb_socket_client_close_reason_to_string (WbSocketClientCloseReason reason);

typedef struct
{
  /* One non-empty line, terminator ("\n" or "\r\n") removed, not
   * NUL-terminated. Must not free the client; may queue and close. */
  void (*line) (WbSocketClient *client, const char *line, gsize length, gpointer user_data);
  /* A line grew past max_line_bytes: reading has stopped. The owner queues
   * its error and calls wb_socket_client_close_after_flush(). */
  void (*line_too_long) (WbSocketClient *client, gpointer user_data);
  /* The connection is over. The owner frees the client, typically from
   * this callback (and must not touch it afterwards). */
  void (*closed) (WbSocketClient *client, WbSocketClientCloseReason reason, gpointer user_data);
} WbSocketClientCallbacks;

/* Takes ownership of @fd (a connected, non-blocking stream socket). NULL if
 * the fd cannot be watched (it is closed then). */
WbSocketClient *wb_socket_client_new (WbSocketClientGroup *group, int fd,
                                      const WbSocketClientLimits *limits,
                                      const WbSocketClientCallbacks *callbacks, gpointer user_data);
/* Closes the fd without emitting closed. Accepts NULL. */
void wb_socket_client_free (WbSocketClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbSocketClient, wb_socket_client_free)

void wb_socket_client_set_limits (WbSocketClient *client, const WbSocketClientLimits *limits);

/* Output queued by several connections (one user's): while it is over
 * @limit, events to any of them are refused (counted, and announced with
 * bridge.dropped as soon as the total is under @limit again, whether or not
 * another event follows); a reply that leaves it past @hard_limit, once
 * what the kernel takes of the user's output has been written, ends the
 * connection it was for, as a connection's own hard bound does. The owner
 * keeps it alive while any client points at it. */
typedef struct
{
  gsize queued;
  gsize limit;
  gsize hard_limit;
  /* Request lines taken from the user's connections per dispatch of the
   * group (0: no bound); the rest wait in their sockets, so a user with
   * many busy connections cannot make everyone else's requests wait. */
  guint lines_per_dispatch;
  guint lines_used;
  guint64 serial; /* the group dispatch lines_used counts for */
  /* Private: connections that missed events to the user's total, waiting
   * for it to drop under @limit to announce them (zero-filled = empty). */
  GQueue starved;
} WbSocketAccount;

/* NULL: the connection answers only to its own queue_bytes. */
void wb_socket_client_set_account (WbSocketClient *client, WbSocketAccount *account);

/* Queues an event line (a ref is taken, the bytes are shared). FALSE: the
 * client is over its bound (or closing) and the line was dropped. */
gboolean wb_socket_client_queue_event (WbSocketClient *client, GBytes *line);
/* Queues a reply; never dropped, but past hard_queue_bytes the client is
 * disconnected. */
void wb_socket_client_queue_control (WbSocketClient *client, GBytes *line);
/* Stops reading; closed is emitted once the queued output is written (or
 * the slow timeout passes). */
void wb_socket_client_close_after_flush (WbSocketClient *client);

gsize wb_socket_client_get_queued_bytes (WbSocketClient *client);
/* Events refused over the connection's life. */
guint64 wb_socket_client_get_dropped_total (WbSocketClient *client);

G_END_DECLS
