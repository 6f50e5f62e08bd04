/* SPDX-License-Identifier: MIT */
/*
 * One connection of the local WAVE endpoint: a SoupWebsocketConnection with
 * a bounded output queue in front of it. libsoup queues whatever it is
 * given without limit, so frames are handed to it only while the socket
 * takes them; the rest wait here, counted, with the same rules as a Unix
 * socket client (socket-client.h): events past queue_bytes are dropped and
 * announced once the queue drained to half, replies are never dropped but
 * past hard_queue_bytes end the connection, and a client over its bound for
 * slow_timeout_ms is cut. Knows nothing of the protocol's meaning;
 * ws-frontend.c does.
 */
#pragma once

#include <glib.h>
#include <libsoup/soup.h>

#include "ws-meter.h"

G_BEGIN_DECLS

typedef struct _WbWsClient WbWsClient;

typedef struct
{
  gsize max_message_bytes; /* longest incoming message; longer: closed with 1009 */
  gsize queue_bytes;       /* events past this are dropped */
  gsize hard_queue_bytes;  /* any reply past this closes the connection */
  guint slow_timeout_ms;   /* over queue_bytes this long closes the connection */
} WbWsClientLimits;

/* Output queued by all connections of one user (MaxQueuedBytesPerUser):
 * while over @limit, events to any of them are dropped; a reply past
 * @hard_limit ends the connection it was for. The owner keeps it alive
 * while any client points at it. */
typedef struct
{
  gsize queued;
  gsize limit;
  gsize hard_limit;
} WbWsAccount;

typedef enum
{
  WB_WS_CLIENT_CLOSED_BY_PEER,  /* the peer closed, or the connection broke */
  WB_WS_CLIENT_CLOSED_DONE,     /* wb_ws_client_close() finished */
  WB_WS_CLIENT_CLOSED_SLOW,     /* over its bound for slow_timeout_ms */
  WB_WS_CLIENT_CLOSED_OVERFLOW, /* replies past hard_queue_bytes */
} WbWsClientCloseReason;

const char *wb_ws_client_close_reason_to_string (WbWsClientCloseReason reason);

typedef struct
{
  /* One whole message; @text is NULL-terminated by libsoup but may hold
   * NULs; @is_text FALSE for a binary message. May queue and close, must
   * not free the client. */
  void (*message) (WbWsClient *client, gboolean is_text, const char *text, gsize length,
                   gpointer user_data);
  /* The connection is over; the owner frees the client, typically here. */
  void (*closed) (WbWsClient *client, WbWsClientCloseReason reason, gpointer user_data);
} WbWsClientCallbacks;

/* Control frames (pings) a peer may send between two messages, beyond
 * max_message_bytes, before the meter ends the connection. */
#define WB_WS_CLIENT_CONTROL_SLACK (64 * 1024)
/* The smallest header of a client's frame: 2 bytes and the 4-byte mask. */
#define WB_WS_CLIENT_MASKED_HEADER_BYTES 6

/* Takes a ref on @connection (open, server side) and on @meter (may be
 * NULL), the meter of what the peer sends: each message may take
 * max_message_bytes (plus WB_WS_CLIENT_CONTROL_SLACK); past it the
 * connection ends, however the message is fragmented. @dropped_notice builds
 * the line announcing @count dropped events (queued as a reply once the
 * queue has drained); called only from inside wb_ws_client_queue_event(). */
WbWsClient *wb_ws_client_new (SoupWebsocketConnection *connection, WbWsMeter *meter,
                              const WbWsClientLimits *limits,
                              GBytes *(*dropped_notice) (guint count, gpointer user_data),
                              const WbWsClientCallbacks *callbacks, gpointer user_data);
/* Drops the connection at once (no close frame) without emitting closed.
 * Accepts NULL. */
void wb_ws_client_free (WbWsClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbWsClient, wb_ws_client_free)

void wb_ws_client_set_limits (WbWsClient *client, const WbWsClientLimits *limits);
/* NULL: only its own bounds apply. */
void wb_ws_client_set_account (WbWsClient *client, WbWsAccount *account);

/* @line: one JSON line ending in '\n' (sent without it); a ref is taken.
 * FALSE: dropped (over a bound, or closing). */
gboolean wb_ws_client_queue_event (WbWsClient *client, GBytes *line);
void wb_ws_client_queue_control (WbWsClient *client, GBytes *line);
/* Hands everything queued to libsoup, then closes with @code and @reason;
 * closed is emitted when the close is done. Further calls are ignored. */
void wb_ws_client_close (WbWsClient *client, gushort code, const char *reason);
gboolean wb_ws_client_is_closing (WbWsClient *client);

gsize wb_ws_client_get_queued_bytes (WbWsClient *client);
guint64 wb_ws_client_get_dropped_total (WbWsClient *client);

G_END_DECLS
