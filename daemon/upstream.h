/* SPDX-License-Identifier: MIT */
/*
 * The single upstream WebSocket to WAVE: connection, close policy,
 * reconnect state machine, heartbeat, subscription union re-sending and
 * the outbound send queue. DESIGN.md "Upstream behaviour".
 *
 * The hub is the only caller. It tells upstream the union of the local
 * subscriptions per stream and hands it sends; upstream reports parsed
 * server messages, state changes and reconnects through callbacks.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "config.h"
#include "message.h"

G_BEGIN_DECLS

typedef enum
{
  WB_UPSTREAM_IDLE,         /* no demand, not connected */
  WB_UPSTREAM_CONNECTING,   /* handshake under way */
  WB_UPSTREAM_CONNECTED,    /* open (healthy once the first pong arrived) */
  WB_UPSTREAM_WAITING,      /* backoff or fixed wait before the next attempt */
  WB_UPSTREAM_RATE_LIMITED, /* 4429 / HTTP 429: waiting 60 s */
  WB_UPSTREAM_AUTH_FAILED,  /* 4401 / HTTP 401/403: parked until key or config change */
  WB_UPSTREAM_CLOSED,       /* server closed with 1000: parked until local demand */
} WbUpstreamState;

const char *wb_upstream_state_to_string (WbUpstreamState state);

#define WB_UPSTREAM_ERROR (wb_upstream_error_quark ())
GQuark wb_upstream_error_quark (void);

typedef enum
{
  WB_UPSTREAM_ERROR_NOT_CONNECTED, /* cannot be queued: auth-failed, queue full */
  WB_UPSTREAM_ERROR_SEND_FAILED,   /* expired in the queue, write error, shut down */
} WbUpstreamError;

/* A read-only snapshot owned by the upstream; valid until the next main-loop
 * iteration. Times: *_realtime_us = g_get_real_time (), *_us durations. */
typedef struct
{
  WbUpstreamState state;
  gint64 state_since_realtime_us;
  gint64 connected_since_realtime_us; /* 0 unless connected */
  guint reconnects;                   /* successful connects after the first */
  guint16 last_close_code;            /* 0 = none yet */
  const char *last_close_reason;      /* "" if none */
  const char *last_error;             /* last upstream `error` message or failure, "" if none */
  guint64 rtt_us;                     /* last ping round trip, 0 = not measured */
  guint64 events_received;            /* valid server messages, pongs excluded */
  const char *redacted_url;           /* api_key replaced by "REDACTED" */
  guint send_queue_length;
  gint64 next_attempt_monotonic_us; /* 0 unless waiting */
  guint64 invalid_messages;         /* ignored server messages: unparsable, binary */
} WbUpstreamStatus;

typedef struct
{
  /* A valid server message other than pong. Borrowed for the call. */
  void (*message) (const WbMessage *message, gpointer user_data);
  /* Any change of WbUpstreamStatus.state. */
  void (*state_changed) (WbUpstreamState old_state, WbUpstreamState new_state, gpointer user_data);
  /* After a reconnect (not the first connect) once the union was re-sent:
   * events between @gap_ms ago and now may have been missed. */
  void (*resynced) (gint64 gap_ms, gpointer user_data);
  /* Counters or RTT changed (rate-limit your own publishing). May be NULL. */
  void (*status_changed) (gpointer user_data);
} WbUpstreamCallbacks;

typedef struct _WbUpstream WbUpstream;

/* Outcome of a send: @error NULL = written into a healthy connection.
 * Called exactly once per wb_upstream_send(), never re-entrantly from it. */
typedef void (*WbUpstreamSendCallback) (const GError *error, gpointer user_data);

/* Does not connect: the first demand (a stream or a send) does. */
WbUpstream *wb_upstream_new (const WbConfig *config, const char *api_key,
                             const WbUpstreamCallbacks *callbacks, gpointer user_data);
/* Closes with 1000 and fails queued sends with SEND_FAILED. */
void wb_upstream_free (WbUpstream *upstream);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbUpstream, wb_upstream_free)

/* Sets the union of local subscriptions for @stream_id: @events is a sorted
 * NULL-terminated list, NULL or empty = no local subscriber. Sends subscribe
 * or unsubscribe only if it differs from what upstream was last told. */
void wb_upstream_set_stream_events (WbUpstream *upstream, const char *stream_id,
                                    const char *const *events);

/* Sends chat.message / reaction.sent (flat JSON, validated by the caller).
 * Queued while not connected and healthy. */
void wb_upstream_send (WbUpstream *upstream, JsonNode *message, WbUpstreamSendCallback callback,
                       gpointer user_data);

/* A local client asked for something: connect if idle or closed (after a
 * server's 1000) and there is anything to connect for. Waits are kept. */
void wb_upstream_demand (WbUpstream *upstream);
/* Reconnect() on D-Bus: drop the current connection (if any) and connect now. */
void wb_upstream_reconnect (WbUpstream *upstream);
/* New configuration and key (SIGHUP, Reload()): leaves auth-failed, reconnects
 * if the URL or key changed. @config is copied as needed. */
void wb_upstream_reload (WbUpstream *upstream, const WbConfig *config, const char *api_key);
/* Skip the remaining wait and try now (network back, resume from sleep). */
void wb_upstream_network_changed (WbUpstream *upstream);

const WbUpstreamStatus *wb_upstream_get_status (WbUpstream *upstream);

G_END_DECLS
