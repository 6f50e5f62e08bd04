/* SPDX-License-Identifier: MIT */
/*
 * The single upstream WebSocket to WAVE: connection, close policy,
 * reconnect state machine and heartbeat. What is written on it (the
 * subscription union, held sends, pacing) is upstream-outbox.c's.
 * DESIGN.md "Upstream behaviour", docs/upstream.md.
 *
 * main.c wires the hub to it. It reports parsed server messages, state
 * changes, reconnects and status changes through callbacks that always run
 * from the main loop, never from inside a call made into it: a caller can
 * rely on its own state being unchanged by the time its call returns.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "config.h"
#include "message.h"
#include "status.h"

G_BEGIN_DECLS

/* A transition, as it was when it happened (it is reported a moment later). */
typedef struct
{
  WbLinkState old_state;
  WbLinkState new_state;
  gint64 at_us;            /* monotonic */
  gint64 next_attempt_us;  /* monotonic; 0 unless a retry is planned */
  guint16 last_close_code; /* 0 = none yet */
} WbUpstreamStateChange;

typedef struct
{
  /* A valid server message other than ping and pong. Borrowed for the call. */
  void (*message) (const WbMessage *message, gpointer user_data);
  void (*state_changed) (const WbUpstreamStateChange *change, gpointer user_data);
  /* After a connection carrying @stream_id's subscription was lost, the
   * subscription is back on a live connection (re-sent, and the connection
   * answered a ping): its events of the last @gap_ms may have been missed.
   * Once per stream and gap. May be NULL. */
  void (*resynced) (const char *stream_id, gint64 gap_ms, gpointer user_data);
  /* @count upstream frames were dropped unread: more arrived than the
   * bridge could take in (its queue of frames is bounded). May be NULL. */
  void (*frames_dropped) (guint count, gpointer user_data);
  /* Counters, RTT or held sends changed (rate-limit your own publishing).
   * Coalesced: at most once per main-loop iteration. May be NULL. */
  void (*status_changed) (gpointer user_data);
} WbUpstreamCallbacks;

typedef struct _WbUpstream WbUpstream;

/* Does not connect: the first demand (a stream or a send) does. @config is
 * borrowed: it must stay valid until wb_upstream_reload() gives a new one
 * or the upstream is freed. */
WbUpstream *wb_upstream_new (const WbConfig *config, const char *api_key,
                             const WbUpstreamCallbacks *callbacks, gpointer user_data);
/* Closes with 1000; held sends end with WB_SEND_ERROR_FAILED, reported
 * before it returns (the only callbacks that run inside a call). */
void wb_upstream_free (WbUpstream *upstream);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbUpstream, wb_upstream_free)

/* Sets the union of local subscriptions for @stream_id: @events is a sorted
 * NULL-terminated list, NULL or empty = no local subscriber. Sends subscribe
 * or unsubscribe only if it differs from what upstream was last told.
 * @owner: the uid whose change it is (users take turns upstream). */
void wb_upstream_set_stream_events (WbUpstream *upstream, const char *stream_id,
                                    const char *const *events, gint64 owner);

/* Sends chat.message / reaction.sent (flat JSON, validated by the caller).
 * Held while not connected and healthy; @callback runs exactly once. */
void wb_upstream_send (WbUpstream *upstream, JsonNode *message, gint64 owner,
                       WbSendCallback callback, gpointer user_data);

/* A local client asked for something: connect if idle or closed (after a
 * server's 1000) and there is anything to connect for. Waits are kept. */
void wb_upstream_demand (WbUpstream *upstream);
/* Reconnect() on D-Bus: drop the current connection (if any) and connect
 * now. Refused (WB_LINK_ERROR) where the server decided when to come back:
 * during its wait after 4429 or 1001 (the message says how long remains),
 * and after a rejected key. Backoff, idle and closed may be cut short. */
gboolean wb_upstream_reconnect (WbUpstream *upstream, GError **error);
/* New configuration and key (SIGHUP, Reload()): leaves auth-failed, reconnects
 * if the URL, key or CA file changed. @config is borrowed as in _new(). */
void wb_upstream_reload (WbUpstream *upstream, const WbConfig *config, const char *api_key);
/* Skip the remaining wait and try now (network back, resume from sleep). */
void wb_upstream_network_changed (WbUpstream *upstream);

/* Valid until the next main-loop iteration. */
const WbLinkStatus *wb_upstream_get_status (WbUpstream *upstream);

G_END_DECLS
