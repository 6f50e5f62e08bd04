/* SPDX-License-Identifier: MIT */
/*
 * Everything the bridge writes to WAVE except its heartbeat: the union of
 * the local subscriptions per stream and what the current connection was
 * last told of each, the held chat messages and reactions, and the pace
 * (MessagesPerSecond) that keeps the bridge under WAVE's own rate limit.
 *
 * It knows nothing of libsoup or of the connection's state machine:
 * upstream.c tells it when a connection opens, proves healthy and closes,
 * and gives it a writer. On a new connection the whole union goes first;
 * after that, subscription changes and held sends (once the connection has
 * answered a ping) take turns, and so do the users they come from (see
 * upstream-outbox.c). Every held send ends exactly once.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "status.h"

G_BEGIN_DECLS

typedef struct _WbOutbox WbOutbox;

typedef struct
{
  /* Write @message on the open connection, now. FALSE if the write failed
   * (the connection broke): a held send then ends with WB_SEND_ERROR_FAILED. */
  gboolean (*write) (JsonNode *message, gpointer user_data);
  /* A send ended: @error NULL = written. Takes @error. Called from inside
   * the outbox's own calls and timers: the owner defers it to the main
   * loop before it reaches whoever sent. */
  void (*send_done) (WbSendCallback callback, gpointer callback_data, GError *error,
                     gpointer user_data);
  /* The number of held sends changed. May be NULL. */
  void (*held_changed) (gpointer user_data);
  /* @stream_id, uncovered since @since_us (monotonic: when a connection it
   * was subscribed on was lost), is covered again: its subscribe was written
   * on a connection that has answered a ping. May be NULL. */
  void (*stream_covered) (const char *stream_id, gint64 since_us, gpointer user_data);
} WbOutboxCallbacks;

typedef struct
{
  guint messages_per_second; /* also the burst; at least 1 */
  guint max_held;            /* held sends beyond this are refused */
  guint held_timeout_ms;     /* a send held this long fails */
} WbOutboxLimits;

WbOutbox *wb_outbox_new (const WbOutboxLimits *limits, const WbOutboxCallbacks *callbacks,
                         gpointer user_data);
/* Held sends end with WB_SEND_ERROR_FAILED. Accepts NULL. */
void wb_outbox_free (WbOutbox *outbox);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbOutbox, wb_outbox_free)
void wb_outbox_set_limits (WbOutbox *outbox, const WbOutboxLimits *limits);

/* Sets the union for @stream_id: a sorted NULL-terminated event list, NULL
 * or empty = nobody local wants it. TRUE if that changed the union. @owner
 * (a uid) is whose change it is: owners take turns. A change waits one pace
 * interval, and a stream changed several times before its turn costs one
 * message, or none if it ends where it started. */
gboolean wb_outbox_set_stream_events (WbOutbox *outbox, const char *stream_id,
                                      const char *const *events, gint64 owner);
guint wb_outbox_get_n_streams (WbOutbox *outbox);

/* A connection opened: the whole union is owed to it, before anything else. */
void wb_outbox_connection_opened (WbOutbox *outbox);
/* It answered its first ping: held sends may follow the union. */
void wb_outbox_connection_healthy (WbOutbox *outbox);
/* It is gone: nothing is written until the next one opens. If it was open,
 * every stream of the union is uncovered from now (unless it already was),
 * until stream_covered says otherwise. */
void wb_outbox_connection_closed (WbOutbox *outbox);

/* Holds @message (a flat chat.message or reaction.sent) until a healthy
 * connection and the pace allow it, @owner's sends taking turns with other
 * owners' and with subscription work; refused at once past max_held, or
 * past @owner's share of it (max_held / 16, at least 1). */
void wb_outbox_send (WbOutbox *outbox, JsonNode *message, gint64 owner, WbSendCallback callback,
                     gpointer callback_data);
/* Ends every held send with @code and @reason. */
void wb_outbox_fail_held (WbOutbox *outbox, WbSendError code, const char *reason);
guint wb_outbox_get_n_held (WbOutbox *outbox);

G_END_DECLS
