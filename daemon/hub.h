/* SPDX-License-Identifier: MIT */
/*
 * The hub: local clients' subscriptions, the per-stream union handed to
 * upstream, fan-out of upstream events, the per-stream state cache and the
 * bridge's counters. Frontends (socket, D-Bus) talk only to the hub; the hub
 * talks to upstream only through WbHubUpstreamOps.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "config.h"
#include "event.h"
#include "message.h"
#include "peer-credentials.h"
#include "status.h"
#include "stream-cache.h"

G_BEGIN_DECLS

#define WB_HUB_ERROR (wb_hub_error_quark ())
GQuark wb_hub_error_quark (void);

typedef enum
{
  WB_HUB_ERROR_INVALID_ARGUMENT, /* bad stream id, event name, empty text */
  WB_HUB_ERROR_RATE_LIMITED,     /* ChatPerMinute / ReactionsPerMinute */
  WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS,
  WB_HUB_ERROR_NOT_SUBSCRIBED,
  WB_HUB_ERROR_SHUTTING_DOWN,    /* the hub is gone; its clients linger a moment */
  WB_HUB_ERROR_TOO_MANY_CLIENTS, /* MaxClients, MaxClientsPerUser */
  WB_HUB_ERROR_FORBIDDEN,        /* a send from outside [Access] SendGroup */
} WbHubError;

/* A client whose user (uid) is not known: it counts as a user of its own. */
#define WB_HUB_UID_UNKNOWN ((gint64)-1)

/* Root and the daemon's own user are held to no per-user quota (the global
 * ones still apply): frontends ask here, so the rule has one home. */
gboolean wb_hub_uid_is_exempt (gint64 uid);

/* ---- the hub ----------------------------------------------------------- */

typedef struct _WbHub WbHub;
typedef struct _WbHubClient WbHubClient;

/* How the hub reaches upstream; main wires wb_upstream_*, tests substitute a
 * recorder. None of them calls back into the hub before returning. */
typedef struct
{
  /* @owner: the uid (or WB_HUB_UID_UNKNOWN) whose change or send it is. */
  void (*set_stream_events) (gpointer upstream, const char *stream_id, const char *const *events,
                             gint64 owner);
  void (*send) (gpointer upstream, JsonNode *message, gint64 owner, WbSendCallback callback,
                gpointer user_data);
  const WbLinkStatus *(*get_status) (gpointer upstream);
  /* FALSE with an error (WB_LINK_ERROR) where the server set the terms. */
  gboolean (*reconnect) (gpointer upstream, GError **error);
  /* A local client subscribed: connect if parked in idle or closed, even
   * when the union did not change (DESIGN.md: "reconnect on the next local
   * demand"). */
  void (*demand) (gpointer upstream);
} WbHubUpstreamOps;

/* @ops: every member set. */
WbHub *wb_hub_new (const WbConfig *config, const WbHubUpstreamOps *ops, gpointer upstream);
void wb_hub_free (WbHub *hub);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbHub, wb_hub_free)
/* Limits may change on reload; @config must outlive the hub or the next call. */
void wb_hub_set_config (WbHub *hub, const WbConfig *config);

/* Feed from upstream (main connects WbUpstreamCallbacks to these). */
void wb_hub_handle_upstream_message (WbHub *hub, const WbMessage *message);
void wb_hub_handle_upstream_state (WbHub *hub, WbLinkState old_state, WbLinkState new_state);
/* @stream_id is covered upstream again after a gap of @gap_ms: its
 * subscribers get bridge.resync. */
void wb_hub_handle_upstream_resynced (WbHub *hub, const char *stream_id, gint64 gap_ms);
void wb_hub_handle_upstream_status (WbHub *hub);
/* Upstream dropped @count frames it could not take in: any stream may have
 * lost events, so every client gets bridge.dropped ("upstream":true). */
void wb_hub_handle_upstream_dropped (WbHub *hub, guint count);

/* Reconnect(): refused (WB_LINK_ERROR) while a wait the server imposed runs. */
gboolean wb_hub_reconnect (WbHub *hub, GError **error);

/* ---- local clients ----------------------------------------------------- */

typedef struct
{
  /* An event for this client: subscribed stream events, cache replays,
   * `error` for its streams, bridge.resync, bridge.state. Return FALSE if
   * the frontend had to drop it (counted in events_dropped), TRUE if it was
   * queued or emitted (counted in events_delivered). NULL: client takes none. */
  gboolean (*deliver) (WbHubClient *client, WbEvent *event, gpointer user_data);
} WbHubClientSink;

/* @name is for logs ("socket pid=42 uid=1000", "dbus :1.7"). @credentials
 * (copied; NULL if unknown) say who the client is: its uid is the user it
 * counts against (MaxClientsPerUser, MaxSubscriptionsPerUser, and the
 * ChatPerMinute / ReactionsPerMinute allowances, shared by every client of
 * the uid so reconnecting refills nothing), its groups decide SendGroup. A
 * client without credentials is a user of its own and may not send if
 * SendGroup is set. NULL with WB_HUB_ERROR_TOO_MANY_CLIENTS past MaxClients
 * or the user's quota. */
WbHubClient *wb_hub_client_new (WbHub *hub, const char *name, const WbPeerCredentials *credentials,
                                const WbHubClientSink *sink, gpointer user_data, GError **error);
/* Ends its subscriptions (shrinking the union) and forgets its pending sends
 * (their outcome is then not reported). Accepts NULL. */
void wb_hub_client_free (WbHubClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbHubClient, wb_hub_client_free)
const char *wb_hub_client_get_name (WbHubClient *client);

/* @events: NULL or empty = every stream event. Replaces the client's previous
 * event set for the stream. @out_events (optional): the sorted set now held. */
gboolean wb_hub_client_subscribe (WbHubClient *client, const char *stream_id,
                                  const char *const *events, char ***out_events, GError **error);
gboolean wb_hub_client_unsubscribe (WbHubClient *client, const char *stream_id, GError **error);
gboolean wb_hub_client_is_subscribed (WbHubClient *client, const char *stream_id);
/* Delivers the cached stream.started/ended, stream.health, analytics.update
 * of @stream_id with "cached":true,"age_ms":N. Call after acknowledging.
 * The same as wb_hub_client_replay (client, stream_id, 0). */
void wb_hub_client_replay_cache (WbHubClient *client, const char *stream_id);

/* History on subscribe (stream-history.h). While anyone is subscribed to a
 * stream the hub keeps its last [Limits] HistoryPerStream chat.message and
 * reaction.received events (fewer if they pass HistoryBytesPerStream).
 *
 * The most a client can ask for: HistoryPerStream (0: history is off). */
guint wb_hub_get_history_limit (WbHub *hub);
/* A requested count (a JSON "history" member, D-Bus GetHistory's count):
 * negative, fractional or not finite is WB_HUB_ERROR_INVALID_ARGUMENT;
 * more than HistoryPerStream is cut to it (@out_count). */
gboolean wb_hub_check_history (WbHub *hub, double requested, guint *out_count, GError **error);
/* Call right after acknowledging a subscribe (wb_hub_client_subscribe):
 * delivers through the sink the cache replay, then at most @history (capped
 * at HistoryPerStream) of the stream's recent chat.message /
 * reaction.received events, oldest first, each marked like the cache replay
 * ("cached":true,"age_ms":N). Only types the subscription holds, and never
 * an event the client already had: not one it took live (each subscription
 * remembers from where it took each type live, across re-subscribes and
 * upstream reconnects) nor one an earlier replay gave it. Everything is
 * delivered before this returns, hence before any later live event.
 * Returns the number of history events delivered; 0 if not subscribed. */
guint wb_hub_client_replay (WbHubClient *client, const char *stream_id, guint history);
/* The same history events, returned instead of delivered (D-Bus
 * GetHistory), with the same never-twice rule; free with
 * g_ptr_array_unref. NULL with WB_HUB_ERROR_NOT_SUBSCRIBED (or
 * INVALID_ARGUMENT, SHUTTING_DOWN). */
GPtrArray *wb_hub_client_take_history (WbHubClient *client, const char *stream_id, guint count,
                                       GError **error);

/* Outcome of a send: @error NULL = written upstream; WB_SEND_ERROR otherwise.
 * Always from the main loop, never inside wb_hub_client_send(). */
typedef void (*WbHubSendCallback) (WbHubClient *client, const GError *error, gpointer user_data);
/* @type: WB_MESSAGE_CHAT_MESSAGE or WB_MESSAGE_REACTION_SENT. Returns FALSE
 * (not in SendGroup, rate limit, invalid argument) without calling @callback; otherwise
 * @callback runs exactly once later, unless the client is freed first.
 * The hub owns @user_data: @destroy (may be NULL) runs once, after the
 * callback, when the client is freed first, or before a FALSE return. */
gboolean wb_hub_client_send (WbHubClient *client, WbMessageType type, const char *stream_id,
                             const char *text, WbHubSendCallback callback, gpointer user_data,
                             GDestroyNotify destroy, GError **error);
/* Events the frontend dropped for this client outside deliver() (e.g. when
 * draining). */
void wb_hub_client_count_dropped (WbHubClient *client, guint count);
/* Events a frontend dropped that belong to no one client (a broadcast D-Bus
 * signal the bus refused). */
void wb_hub_count_dropped (WbHub *hub, guint count);

/* ---- observers (D-Bus frontend, sd_notify) ----------------------------- */

typedef struct
{
  /* The union gained / lost a stream (anyone subscribed / nobody). */
  void (*stream_added) (const char *stream_id, gpointer user_data);
  void (*stream_removed) (const char *stream_id, gpointer user_data);
  /* Every upstream stream event of a stream in the union, before per-client
   * filtering, after the state cache was updated. */
  void (*stream_event) (WbEvent *event, gpointer user_data);
  void (*stream_changed) (const char *stream_id, WbStreamFields changed, gpointer user_data);
  void (*state_changed) (WbLinkState state, gpointer user_data);
  /* Counters, clients, RTT... changed; observers rate-limit themselves. */
  void (*status_changed) (gpointer user_data);
} WbHubObserver;

guint wb_hub_add_observer (WbHub *hub, const WbHubObserver *observer, gpointer user_data);
void wb_hub_remove_observer (WbHub *hub, guint observer_id);

/* NULL if no one is subscribed to @stream_id. Valid until the loop returns. */
const WbStreamState *wb_hub_get_stream (WbHub *hub, const char *stream_id);
/* Sorted stream ids of the union; free with g_strfreev. */
char **wb_hub_list_streams (WbHub *hub);

/* The snapshot frontends publish (status.h), current as of this call;
 * valid until the loop returns. */
const WbBridgeStatus *wb_hub_get_status (WbHub *hub);
/* Streams listed in one bridge.status unless a smaller page is asked for,
 * and the most a page may hold: the reply stays small whatever the number
 * of streams. */
#define WB_HUB_STATUS_STREAMS_PAGE 100
#define WB_HUB_STATUS_STREAMS_PAGE_MAX 1000

/* The bridge.status payload (snake_case, docs/protocol.md): every status
 * field, "streams_total", and "streams": one page of per-stream objects,
 * sorted by id, those after @streams_after (NULL: from the first), at most
 * @streams_limit (0: WB_HUB_STATUS_STREAMS_PAGE; capped at
 * WB_HUB_STATUS_STREAMS_PAGE_MAX). If more follow, "streams_next" is the
 * cursor for the next page. */
JsonObject *wb_hub_build_status (WbHub *hub, const char *streams_after, guint streams_limit);

G_END_DECLS
