/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-hub"

#include "hub.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit.h"
#include "stream-cache.h"
#include "stream-history.h"
#include "text.h"
#include "wb-build-config.h"

/*
 * Nothing the hub calls calls back into it before returning: upstream
 * reports through the main loop, a frontend's deliver() only queues, and
 * observers only publish. So fan-out walks its lists directly, and the
 * entry points that change them assert that no fan-out is under way.
 */

#define TYPE_BIT(type) (1u << (type))
/* How much of an unknown event name an error repeats (bytes, "…" included). */
#define EVENT_NAME_SHOWN_BYTES 64
/* Upstream frames dropped under a flood are logged at most this often. */
#define HUB_DROP_LOG_INTERVAL_US (60 * G_USEC_PER_SEC)

G_STATIC_ASSERT (WB_MESSAGE_N_TYPES <= 32);

typedef struct _HubStream HubStream;

typedef struct
{
  WbHubClient *client;
  HubStream *stream;
  guint32 type_mask;              /* TYPE_BIT of each stream event wanted */
  WbHistoryCursor history_cursor; /* what of the stream's history it has */
} HubSubscription;

struct _HubStream
{
  char *stream_id;
  guint type_counts[WB_MESSAGE_N_TYPES]; /* subscriptions wanting each type */
  guint32 union_mask;                    /* types with a non-zero count */
  GPtrArray *subscriptions;              /* HubSubscription, owned */
  WbStreamCache *cache;
  WbStreamHistory *history;
};

typedef struct
{
  guint id;
  WbHubObserver vtable;
  gpointer user_data;
} HubObserver;

/* A send handed to upstream; owned by the upstream callback. The frontend's
 * context (@user_data) is the hub's to destroy. */
typedef struct
{
  WbHubClient *client; /* NULL once the client is freed */
  GList link;          /* in client->pending */
  WbHubSendCallback callback;
  gpointer user_data;
  GDestroyNotify destroy;
} PendingSend;

static void
pending_send_release (PendingSend *pending)
{
  if (pending->destroy != NULL && pending->user_data != NULL)
    pending->destroy (pending->user_data);
  pending->user_data = NULL;
}

struct _WbHub
{
  const WbConfig *config;
  const WbHubUpstreamOps *ops;
  gpointer upstream;

  GHashTable *streams; /* stream_id → HubStream (the union) */
  GTree *sorted;       /* the same, by id: status pages cost O(log n + page) */
  GQueue clients;      /* WbHubClient, by client->link */
  GPtrArray *observers;
  guint next_observer_id;
  WbBridgeStatus status;
  /* Inside a fan-out: deliver() and observers must not change the hub. */
  guint dispatching;
  guint64 upstream_dropped_unlogged;
  gint64 upstream_drop_logged_us;
  /* uid → HubUser: one entry per user ever seen, so bounded by the users of
   * the machine; kept so that reconnecting refills no allowance. */
  GHashTable *users;
  /* [Access] SendGroup: NULL = anyone may send; unresolved = only root. */
  char *send_group;
  gboolean send_group_resolved;
  gid_t send_gid;
};

/* Everything counted per user: all connections of one uid, on both
 * transports, share it. A client without a known uid is a user of its own. */
typedef struct
{
  gint64 uid;      /* WB_HUB_UID_UNKNOWN: this client's own */
  gboolean exempt; /* root and the daemon's own user: no per-user quotas */
  guint clients;
  guint subscriptions;
  WbRateLimit chat;
  WbRateLimit reaction;
} HubUser;

struct _WbHubClient
{
  WbHub *hub; /* NULL once the hub is gone */
  char *name;
  WbHubClientSink sink;
  gpointer user_data;
  GHashTable *subscriptions; /* stream->stream_id → HubSubscription (borrowed) */
  GList link;                /* in hub->clients */
  GQueue pending;            /* PendingSend, by link */
  HubUser *user;             /* shared by uid, or owned when the uid is unknown */
  gboolean owns_user;
  WbPeerCredentials *credentials; /* NULL: unknown */
};

/* clang-format off */
G_DEFINE_QUARK (wb-hub-error-quark, wb_hub_error)
/* clang-format on */

/* ---- bookkeeping --------------------------------------------------------- */

static void
hub_stream_free (HubStream *stream)
{
  g_ptr_array_unref (stream->subscriptions);
  wb_stream_cache_free (stream->cache);
  wb_stream_history_free (stream->history);
  g_free (stream->stream_id);
  g_free (stream);
}

static void
client_destroy (WbHubClient *client)
{
  if (client->owns_user)
    g_free (client->user);
  g_clear_pointer (&client->credentials, wb_peer_credentials_free);
  g_hash_table_unref (client->subscriptions);
  g_free (client->name);
  g_free (client);
}

/* ---- observers ----------------------------------------------------------- */

/* Calls @member of every observer. */
#define NOTIFY(hub, member, ...)                                                                   \
  G_STMT_START                                                                                     \
  {                                                                                                \
    (hub)->dispatching++;                                                                          \
    for (guint notify_i_ = 0; notify_i_ < (hub)->observers->len; notify_i_++)                      \
      {                                                                                            \
        HubObserver *notify_o_ = g_ptr_array_index ((hub)->observers, notify_i_);                  \
        if (notify_o_->vtable.member != NULL)                                                      \
          notify_o_->vtable.member (__VA_ARGS__, notify_o_->user_data);                            \
      }                                                                                            \
    (hub)->dispatching--;                                                                          \
  }                                                                                                \
  G_STMT_END

static void
notify_status_changed (WbHub *hub)
{
  hub->dispatching++;
  for (guint i = 0; i < hub->observers->len; i++)
    {
      HubObserver *observer = g_ptr_array_index (hub->observers, i);

      if (observer->vtable.status_changed != NULL)
        observer->vtable.status_changed (observer->user_data);
    }
  hub->dispatching--;
}

guint
wb_hub_add_observer (WbHub *hub, const WbHubObserver *observer, gpointer user_data)
{
  HubObserver *entry;

  g_return_val_if_fail (hub != NULL && observer != NULL, 0);
  g_return_val_if_fail (hub->dispatching == 0, 0);

  entry = g_new0 (HubObserver, 1);
  entry->id = ++hub->next_observer_id;
  entry->vtable = *observer;
  entry->user_data = user_data;
  g_ptr_array_add (hub->observers, entry);
  return entry->id;
}

void
wb_hub_remove_observer (WbHub *hub, guint observer_id)
{
  g_return_if_fail (hub != NULL);
  g_return_if_fail (hub->dispatching == 0);

  for (guint i = 0; i < hub->observers->len; i++)
    {
      HubObserver *observer = g_ptr_array_index (hub->observers, i);

      if (observer->id == observer_id)
        {
          g_ptr_array_remove_index (hub->observers, i);
          return;
        }
    }
  g_warning ("No hub observer with id %u", observer_id);
}

/* ---- the union ----------------------------------------------------------- */

/* Fills @names (room for every stream event + NULL) sorted, as upstream
 * and the acknowledgements want them. */
static void
mask_to_names (guint32 mask, const char **names)
{
  guint n = 0;

  /* wb_message_stream_event_names () is sorted. */
  for (const char *const *name = wb_message_stream_event_names (); *name != NULL; name++)
    if (mask & TYPE_BIT (wb_message_type_from_string (*name)))
      names[n++] = *name;
  names[n] = NULL;
}

static guint32
all_stream_events_mask (void)
{
  static guint32 mask;

  if (mask == 0)
    for (const char *const *name = wb_message_stream_event_names (); *name != NULL; name++)
      mask |= TYPE_BIT (wb_message_type_from_string (*name));
  return mask;
}

static void
tell_upstream (WbHub *hub, const char *stream_id, guint32 union_mask, gint64 owner)
{
  const char *names[WB_MESSAGE_N_TYPES + 1];

  mask_to_names (union_mask, names);
  hub->ops->set_stream_events (hub->upstream, stream_id, union_mask != 0 ? names : NULL, owner);
}

static void
stream_counts_add (HubStream *stream, guint32 mask, int delta)
{
  for (guint type = 0; type < WB_MESSAGE_N_TYPES; type++)
    {
      if ((mask & TYPE_BIT (type)) == 0)
        continue;
      g_assert (delta > 0 || stream->type_counts[type] > 0);
      stream->type_counts[type] += delta;
      if (stream->type_counts[type] > 0)
        stream->union_mask |= TYPE_BIT (type);
      else
        stream->union_mask &= ~TYPE_BIT (type);
    }
}

static void
stream_update_subscribers (HubStream *stream)
{
  wb_stream_cache_get_state (stream->cache)->subscribers = stream->subscriptions->len;
}

static HubStream *
hub_stream_add (WbHub *hub, const char *stream_id)
{
  HubStream *stream = g_new0 (HubStream, 1);

  stream->stream_id = g_strdup (stream_id);
  stream->subscriptions = g_ptr_array_new_with_free_func (g_free);
  stream->cache = wb_stream_cache_new (stream_id);
  stream->history = wb_stream_history_new (hub->config->history_per_stream,
                                           hub->config->history_bytes_per_stream);
  g_hash_table_insert (hub->streams, stream->stream_id, stream);
  g_tree_insert (hub->sorted, stream->stream_id, stream);
  hub->status.streams = g_hash_table_size (hub->streams);
  g_debug ("Stream %s joins the union", stream_id);
  return stream;
}

/* Ends @subscription; the caller then calls stream_union_changed(). */
static void
subscription_end (HubSubscription *subscription)
{
  HubStream *stream = subscription->stream;

  g_hash_table_remove (subscription->client->subscriptions, stream->stream_id);
  subscription->client->user->subscriptions--;
  stream_counts_add (stream, subscription->type_mask, -1);
  /* Order does not matter: fan-out is to a set. Frees @subscription. */
  g_ptr_array_remove_fast (stream->subscriptions, subscription);
  stream_update_subscribers (stream);
}

/* After @stream's union changed from @old_mask through @user: tell upstream,
 * and drop the stream if nobody is left. May free @stream. */
static void
stream_union_changed (WbHub *hub, HubStream *stream, guint32 old_mask, const HubUser *user)
{
  g_autofree char *stream_id = NULL;

  if (stream->union_mask == old_mask)
    return;
  tell_upstream (hub, stream->stream_id, stream->union_mask, user->uid);
  if (stream->union_mask != 0)
    return;

  stream_id = g_strdup (stream->stream_id);
  g_debug ("Stream %s leaves the union", stream_id);
  g_hash_table_remove (hub->streams, stream_id);
  g_tree_remove (hub->sorted, stream_id);
  hub->status.streams = g_hash_table_size (hub->streams);
  hub_stream_free (stream);
  NOTIFY (hub, stream_removed, stream_id);
}

/* ---- events -------------------------------------------------------------- */

static void
client_deliver (WbHub *hub, WbHubClient *client, WbEvent *event)
{
  if (client->sink.deliver == NULL)
    return;
  hub->dispatching++;
  if (client->sink.deliver (client, event, client->user_data))
    hub->status.events_delivered++;
  else
    hub->status.events_dropped++;
  hub->dispatching--;
}

/* To every subscriber of @stream wanting @type_mask (0: regardless of type). */
static void
stream_deliver (WbHub *hub, HubStream *stream, WbEvent *event, guint32 type_mask)
{
  for (guint i = 0; i < stream->subscriptions->len; i++)
    {
      HubSubscription *subscription = g_ptr_array_index (stream->subscriptions, i);

      if (type_mask == 0 || (subscription->type_mask & type_mask) != 0)
        client_deliver (hub, subscription->client, event);
    }
}

static void
handle_stream_event (WbHub *hub, const WbMessage *message)
{
  HubStream *stream = g_hash_table_lookup (hub->streams, message->stream_id);
  g_autoptr (WbEvent) event = NULL;
  WbStreamFields changed;

  if (stream == NULL)
    {
      /* In flight while upstream was unsubscribing, or unasked for. */
      g_debug ("Dropping %s for stream %s: nobody subscribed",
               wb_message_type_to_string (message->type), message->stream_id);
      return;
    }

  event = wb_event_new_from_message (message);
  changed = wb_stream_cache_update (stream->cache, event, g_get_monotonic_time ());
  /* Numbered before the fan-out: a subscriber's cursor then tells what it took live. */
  wb_stream_history_add (stream->history, event, g_get_monotonic_time ());
  if (changed != 0)
    NOTIFY (hub, stream_changed, stream->stream_id, changed);
  NOTIFY (hub, stream_event, event);
  stream_deliver (hub, stream, event, TYPE_BIT (message->type));
}

static void
handle_error (WbHub *hub, const WbMessage *message)
{
  g_autoptr (WbEvent) event = wb_event_new_from_message (message);
  const char *stream_id = wb_event_get_stream_id (event);
  HubStream *stream;

  g_autofree char *code
      = wb_text_sanitize (wb_message_get_string (message, "code"), -1, WB_TEXT_MAX_BYTES);
  g_autofree char *text
      = wb_text_sanitize (wb_message_get_string (message, "message"), -1, WB_TEXT_MAX_BYTES);
  g_autofree char *named
      = stream_id != NULL ? wb_text_sanitize (stream_id, -1, WB_TEXT_MAX_BYTES) : NULL;

  g_debug ("Upstream error %s: %s%s%s", code, text, named != NULL ? ", stream " : "",
           named != NULL ? named : "");
  if (stream_id == NULL)
    return;
  stream = g_hash_table_lookup (hub->streams, stream_id);
  if (stream != NULL)
    stream_deliver (hub, stream, event, 0);
}

void
wb_hub_handle_upstream_message (WbHub *hub, const WbMessage *message)
{
  g_return_if_fail (hub != NULL && message != NULL);
  g_return_if_fail (hub->dispatching == 0);

  hub->status.events_received++;
  if (wb_message_type_is_stream_event (message->type) && message->stream_id != NULL)
    handle_stream_event (hub, message);
  else if (message->type == WB_MESSAGE_ERROR)
    handle_error (hub, message);
  else
    g_debug ("Ignoring upstream %s", wb_message_type_to_string (message->type));
  notify_status_changed (hub);
}

void
wb_hub_handle_upstream_state (WbHub *hub, WbLinkState old_state, WbLinkState new_state)
{
  g_autoptr (WbEvent) event = NULL;
  JsonObject *payload;

  g_return_if_fail (hub != NULL);
  g_return_if_fail (hub->dispatching == 0);

  payload = json_object_new ();
  json_object_set_string_member (payload, "state", wb_link_state_to_string (new_state));
  json_object_set_string_member (payload, "previous", wb_link_state_to_string (old_state));
  event = wb_event_new ("bridge.state", NULL, payload);

  NOTIFY (hub, state_changed, new_state);
  for (GList *l = hub->clients.head; l != NULL; l = l->next)
    client_deliver (hub, l->data, event);
  notify_status_changed (hub);
}

void
wb_hub_handle_upstream_resynced (WbHub *hub, const char *stream_id, gint64 gap_ms)
{
  HubStream *stream;
  g_autoptr (WbEvent) event = NULL;
  JsonObject *payload;

  g_return_if_fail (hub != NULL && stream_id != NULL);
  g_return_if_fail (hub->dispatching == 0);

  stream = g_hash_table_lookup (hub->streams, stream_id);
  if (stream == NULL)
    return; /* everyone left meanwhile */
  payload = json_object_new ();
  json_object_set_string_member (payload, "stream_id", stream->stream_id);
  json_object_set_int_member (payload, "gap_ms", MAX (gap_ms, 0));
  event = wb_event_new ("bridge.resync", stream->stream_id, payload);
  stream_deliver (hub, stream, event, 0);
}

void
wb_hub_handle_upstream_dropped (WbHub *hub, guint count)
{
  g_autoptr (WbEvent) event = NULL;
  JsonObject *payload;

  g_return_if_fail (hub != NULL);
  g_return_if_fail (hub->dispatching == 0);

  hub->upstream_dropped_unlogged += count;
  /* A hostile server must not be able to flood the journal. */
  if (g_get_monotonic_time () - hub->upstream_drop_logged_us >= HUB_DROP_LOG_INTERVAL_US)
    {
      g_warning ("upstream sent faster than the bridge could take in: %" G_GUINT64_FORMAT
                 " message(s) dropped",
                 hub->upstream_dropped_unlogged);
      hub->upstream_dropped_unlogged = 0;
      hub->upstream_drop_logged_us = g_get_monotonic_time ();
    }
  hub->status.events_dropped += count;
  payload = json_object_new ();
  json_object_set_int_member (payload, "count", count);
  json_object_set_boolean_member (payload, "upstream", TRUE);
  event = wb_event_new ("bridge.dropped", NULL, payload);
  for (GList *l = hub->clients.head; l != NULL; l = l->next)
    client_deliver (hub, l->data, event);
  notify_status_changed (hub);
}

void
wb_hub_handle_upstream_status (WbHub *hub)
{
  g_return_if_fail (hub != NULL);

  notify_status_changed (hub);
}

/* ---- the hub ------------------------------------------------------------- */

static void
hub_apply_send_group (WbHub *hub, const WbConfig *config)
{
  g_autoptr (GError) error = NULL;

  g_clear_pointer (&hub->send_group, g_free);
  hub->send_group_resolved = FALSE;
  if (config->send_group == NULL || config->send_group[0] == '\0')
    return;
  hub->send_group = g_strdup (config->send_group);
  hub->send_group_resolved = wb_group_lookup (config->send_group, &hub->send_gid, &error);
  if (!hub->send_group_resolved)
    g_warning ("SendGroup: %s; only root may send chat messages and reactions", error->message);
}

WbHub *
wb_hub_new (const WbConfig *config, const WbHubUpstreamOps *ops, gpointer upstream)
{
  WbHub *hub;

  g_return_val_if_fail (config != NULL && ops != NULL, NULL);
  g_return_val_if_fail (ops->set_stream_events != NULL && ops->send != NULL
                            && ops->get_status != NULL && ops->reconnect != NULL
                            && ops->demand != NULL,
                        NULL);

  hub = g_new0 (WbHub, 1);
  hub->config = config;
  hub->ops = ops;
  hub->upstream = upstream;
  hub->streams = g_hash_table_new (g_str_hash, g_str_equal);
  hub->sorted = g_tree_new ((GCompareFunc)strcmp);
  hub->users = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, g_free);
  g_queue_init (&hub->clients);
  hub->observers = g_ptr_array_new_with_free_func (g_free);
  hub->status.version = WB_VERSION;
  hub_apply_send_group (hub, config);
  return hub;
}

void
wb_hub_free (WbHub *hub)
{
  GHashTableIter iter;
  gpointer value;

  if (hub == NULL)
    return;
  g_return_if_fail (hub->dispatching == 0);

  /* Clients outlived the hub (a frontend freed later): they stay valid for
   * wb_hub_client_free () but are cut off. Upstream is not told anything:
   * it may already be gone. */
  if (hub->clients.length > 0)
    g_debug ("Hub freed with %u clients left", hub->clients.length);
  while (hub->clients.head != NULL)
    {
      WbHubClient *client = hub->clients.head->data;

      g_hash_table_remove_all (client->subscriptions);
      g_queue_unlink (&hub->clients, &client->link);
      /* The users go with the hub; the client keeps a copy of its own. */
      if (!client->owns_user)
        client->user = g_memdup2 (client->user, sizeof (HubUser));
      client->owns_user = TRUE;
      client->hub = NULL;
    }

  g_hash_table_iter_init (&iter, hub->streams);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    hub_stream_free (value);
  g_hash_table_unref (hub->streams);
  g_tree_unref (hub->sorted);
  g_hash_table_unref (hub->users);
  g_free (hub->send_group);
  g_ptr_array_unref (hub->observers);
  g_free (hub);
}

void
wb_hub_set_config (WbHub *hub, const WbConfig *config)
{
  GHashTableIter iter;
  gpointer value;

  g_return_if_fail (hub != NULL && config != NULL);

  /* Rate buckets pick the new rates up on their next use. */
  hub->config = config;
  hub_apply_send_group (hub, config);
  g_hash_table_iter_init (&iter, hub->streams);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    wb_stream_history_set_limits (((HubStream *)value)->history, config->history_per_stream,
                                  config->history_bytes_per_stream);
}

gboolean
wb_hub_reconnect (WbHub *hub, GError **error)
{
  g_return_val_if_fail (hub != NULL, FALSE);

  return hub->ops->reconnect (hub->upstream, error);
}

const WbStreamState *
wb_hub_get_stream (WbHub *hub, const char *stream_id)
{
  HubStream *stream;

  g_return_val_if_fail (hub != NULL && stream_id != NULL, NULL);

  stream = g_hash_table_lookup (hub->streams, stream_id);
  return stream != NULL ? wb_stream_cache_get_state (stream->cache) : NULL;
}

static gboolean
collect_stream_id_cb (gpointer key, gpointer value, gpointer user_data)
{
  g_ptr_array_add (user_data, g_strdup (key));
  return FALSE;
}

char **
wb_hub_list_streams (WbHub *hub)
{
  GPtrArray *ids;

  g_return_val_if_fail (hub != NULL, NULL);

  ids = g_ptr_array_new_full (g_tree_nnodes (hub->sorted) + 1, g_free);
  g_tree_foreach (hub->sorted, collect_stream_id_cb, ids);
  g_ptr_array_add (ids, NULL);
  return (char **)g_ptr_array_free (ids, FALSE);
}

const WbBridgeStatus *
wb_hub_get_status (WbHub *hub)
{
  g_return_val_if_fail (hub != NULL, NULL);

  hub->status.link = *hub->ops->get_status (hub->upstream);
  return &hub->status;
}

static JsonObject *
stream_to_json (const WbStreamState *state)
{
  JsonObject *object = json_object_new ();

  json_object_set_string_member (object, "stream_id", state->stream_id);
  json_object_set_boolean_member (object, "live", state->live);
  json_object_set_int_member (object, "subscribers", state->subscribers);
  json_object_set_int_member (object, "concurrent_viewers", state->concurrent_viewers);
  json_object_set_int_member (object, "total_views",
                              (gint64)MIN (state->total_views, (guint64)G_MAXINT64));
  json_object_set_int_member (object, "peak_viewers", state->peak_viewers);
  json_object_set_double_member (object, "bitrate", state->bitrate);
  json_object_set_double_member (object, "fps", state->fps);
  json_object_set_double_member (object, "packet_loss", state->packet_loss);
  json_object_set_double_member (object, "latency", state->latency);
  json_object_set_string_member (object, "started_at", state->started_at);
  json_object_set_string_member (object, "ended_at", state->ended_at);
  return object;
}

JsonObject *
wb_hub_build_status (WbHub *hub, const char *streams_after, guint streams_limit)
{
  JsonObject *object;
  JsonArray *streams;
  GTreeNode *node;
  guint listed = 0;

  g_return_val_if_fail (hub != NULL, NULL);

  if (streams_limit == 0)
    streams_limit = WB_HUB_STATUS_STREAMS_PAGE;
  streams_limit = MIN (streams_limit, WB_HUB_STATUS_STREAMS_PAGE_MAX);
  object = json_object_new ();
  wb_bridge_status_to_json (wb_hub_get_status (hub), object);
  streams = json_array_new ();
  node = streams_after != NULL ? g_tree_upper_bound (hub->sorted, streams_after)
                               : g_tree_node_first (hub->sorted);
  for (; node != NULL && listed < streams_limit; node = g_tree_node_next (node), listed++)
    json_array_add_object_element (streams, stream_to_json (wb_stream_cache_get_state (
                                                ((HubStream *)g_tree_node_value (node))->cache)));
  json_object_set_array_member (object, "streams", streams);
  json_object_set_int_member (object, "streams_total", g_tree_nnodes (hub->sorted));
  if (node != NULL && listed > 0)
    json_object_set_string_member (
        object, "streams_next",
        ((HubStream *)g_tree_node_value (g_tree_node_previous (node)))->stream_id);
  return object;
}

/* ---- clients ------------------------------------------------------------- */

gboolean
wb_hub_uid_is_exempt (gint64 uid)
{
  return uid == 0 || uid == (gint64)geteuid ();
}

static HubUser *
hub_user_new (WbHub *hub, gint64 uid)
{
  HubUser *user = g_new0 (HubUser, 1);
  gint64 now = g_get_monotonic_time ();

  user->uid = uid;
  user->exempt = wb_hub_uid_is_exempt (uid);
  wb_rate_limit_init (&user->chat, hub->config->chat_per_minute, now);
  wb_rate_limit_init (&user->reaction, hub->config->reactions_per_minute, now);
  return user;
}

/* The shared entry of @uid, created on first sight; NULL for an unknown uid. */
static HubUser *
hub_user_lookup (WbHub *hub, gint64 uid)
{
  HubUser *user;

  if (uid == WB_HUB_UID_UNKNOWN)
    return NULL;
  user = g_hash_table_lookup (hub->users, &uid);
  if (user == NULL)
    {
      user = hub_user_new (hub, uid);
      g_hash_table_insert (hub->users, &user->uid, user);
    }
  return user;
}

WbHubClient *
wb_hub_client_new (WbHub *hub, const char *name, const WbPeerCredentials *credentials,
                   const WbHubClientSink *sink, gpointer user_data, GError **error)
{
  gint64 uid = credentials != NULL ? (gint64)credentials->uid : WB_HUB_UID_UNKNOWN;
  WbHubClient *client;
  HubUser *user;

  g_return_val_if_fail (hub != NULL, NULL);
  g_return_val_if_fail (hub->dispatching == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  user = hub_user_lookup (hub, uid);
  if (hub->status.clients >= hub->config->max_clients)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_CLIENTS,
                   "too many clients (MaxClients=%u)", hub->config->max_clients);
      return NULL;
    }
  if (user != NULL && !user->exempt && user->clients >= hub->config->max_clients_per_user)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_CLIENTS,
                   "too many clients of uid %" G_GINT64_FORMAT " (MaxClientsPerUser=%u)", uid,
                   hub->config->max_clients_per_user);
      return NULL;
    }

  client = g_new0 (WbHubClient, 1);
  client->hub = hub;
  client->name = g_strdup (name != NULL ? name : "client");
  if (sink != NULL)
    client->sink = *sink;
  client->user_data = user_data;
  client->subscriptions = g_hash_table_new (g_str_hash, g_str_equal);
  client->link.data = client;
  g_queue_init (&client->pending);
  if (credentials != NULL)
    client->credentials = wb_peer_credentials_copy (credentials);
  if (user == NULL)
    {
      /* No known uid: a user of its own, with the same quotas. */
      user = hub_user_new (hub, WB_HUB_UID_UNKNOWN);
      client->owns_user = TRUE;
    }
  client->user = user;
  user->clients++;
  g_queue_push_tail_link (&hub->clients, &client->link);
  hub->status.clients++;
  g_debug ("Client %s joined (%u clients)", client->name, hub->status.clients);
  notify_status_changed (hub);
  return client;
}

static void
client_forget_pending (WbHubClient *client)
{
  while (client->pending.head != NULL)
    {
      PendingSend *pending = client->pending.head->data;

      g_queue_unlink (&client->pending, &pending->link);
      pending->client = NULL;
      pending_send_release (pending);
    }
}

void
wb_hub_client_free (WbHubClient *client)
{
  WbHub *hub;
  GList *subscriptions;

  if (client == NULL)
    return;

  client_forget_pending (client);
  hub = client->hub;
  if (hub == NULL)
    {
      client_destroy (client);
      return;
    }
  g_return_if_fail (hub->dispatching == 0);

  g_queue_unlink (&hub->clients, &client->link);
  hub->status.clients--;
  client->user->clients--;
  g_debug ("Client %s left (%u clients)", client->name, hub->status.clients);

  /* A copy: each subscription_end() removes its entry. */
  subscriptions = g_hash_table_get_values (client->subscriptions);
  for (GList *l = subscriptions; l != NULL; l = l->next)
    {
      HubSubscription *subscription = l->data;
      HubStream *stream = subscription->stream;
      guint32 old_mask = stream->union_mask;

      subscription_end (subscription);
      stream_union_changed (hub, stream, old_mask, client->user);
    }
  g_list_free (subscriptions);
  client_destroy (client);
  notify_status_changed (hub);
}

const char *
wb_hub_client_get_name (WbHubClient *client)
{
  g_return_val_if_fail (client != NULL, NULL);
  return client->name;
}

static gboolean
set_shutting_down (GError **error)
{
  g_set_error_literal (error, WB_HUB_ERROR, WB_HUB_ERROR_SHUTTING_DOWN,
                       "The bridge is shutting down");
  return FALSE;
}

/* Socket and D-Bus alike: a stream id becomes a D-Bus string and object
 * path for everyone (text.h's identifier rule). */
static gboolean
check_stream_id (const char *stream_id, GError **error)
{
  const char *problem = NULL;

  if (!wb_text_check_identifier (stream_id, WB_MESSAGE_MAX_STREAM_ID_BYTES, &problem))
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                   "The stream id %s: a stream id is 1 to %d bytes of UTF-8 without control "
                   "characters, line separators, noncharacters or format characters",
                   problem, WB_MESSAGE_MAX_STREAM_ID_BYTES);
      return FALSE;
    }
  return TRUE;
}

static gboolean
events_to_mask (const char *const *events, guint32 *out_mask, GError **error)
{
  guint32 mask = 0;

  for (; events != NULL && *events != NULL; events++)
    {
      WbMessageType type = wb_message_type_from_string (*events);

      if (!wb_message_type_is_stream_event (type))
        {
          /* Cut by characters, controls replaced: the text goes back to the caller. */
          g_autofree char *shown = wb_text_sanitize (*events, -1, EVENT_NAME_SHOWN_BYTES);

          g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                       "'%s' is not a stream event type", shown);
          return FALSE;
        }
      mask |= TYPE_BIT (type);
    }
  *out_mask = mask != 0 ? mask : all_stream_events_mask ();
  return TRUE;
}

static char **
mask_to_strv (guint32 mask)
{
  const char *names[WB_MESSAGE_N_TYPES + 1];

  mask_to_names (mask, names);
  return g_strdupv ((char **)names);
}

/* A new subscription of @client to @stream_id: within its own, its user's
 * and the bridge's limits? */
static gboolean
check_subscription_quotas (WbHub *hub, WbHubClient *client, const char *stream_id, GError **error)
{
  const WbConfig *config = hub->config;

  if (g_hash_table_size (client->subscriptions) >= config->max_subscriptions)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS,
                   "At most %u streams per client (MaxSubscriptions)", config->max_subscriptions);
      return FALSE;
    }
  if (!client->user->exempt && client->user->subscriptions >= config->max_subscriptions_per_user)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS,
                   "At most %u subscriptions per user (MaxSubscriptionsPerUser)",
                   config->max_subscriptions_per_user);
      return FALSE;
    }
  if (!g_hash_table_contains (hub->streams, stream_id)
      && g_hash_table_size (hub->streams) >= config->max_streams)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS,
                   "The bridge follows at most %u streams (MaxStreams)", config->max_streams);
      return FALSE;
    }
  return TRUE;
}

gboolean
wb_hub_client_subscribe (WbHubClient *client, const char *stream_id, const char *const *events,
                         char ***out_events, GError **error)
{
  WbHub *hub;
  HubSubscription *subscription;
  HubStream *stream;
  guint32 mask = 0;
  guint32 old_mask;
  gboolean added = FALSE;

  g_return_val_if_fail (client != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  hub = client->hub;
  if (hub == NULL)
    return set_shutting_down (error);
  g_return_val_if_fail (hub->dispatching == 0, FALSE);
  if (!check_stream_id (stream_id, error) || !events_to_mask (events, &mask, error))
    return FALSE;

  subscription = g_hash_table_lookup (client->subscriptions, stream_id);
  if (subscription == NULL && !check_subscription_quotas (hub, client, stream_id, error))
    return FALSE;

  if (subscription != NULL)
    {
      stream = subscription->stream;
      old_mask = stream->union_mask;
      stream_counts_add (stream, subscription->type_mask, -1);
    }
  else
    {
      stream = g_hash_table_lookup (hub->streams, stream_id);
      if (stream == NULL)
        {
          stream = hub_stream_add (hub, stream_id);
          added = TRUE;
        }
      old_mask = stream->union_mask;
      subscription = g_new0 (HubSubscription, 1);
      subscription->client = client;
      subscription->stream = stream;
      g_ptr_array_add (stream->subscriptions, subscription);
      stream_update_subscribers (stream);
      g_hash_table_insert (client->subscriptions, stream->stream_id, subscription);
      client->user->subscriptions++;
    }
  subscription->type_mask = mask;
  /* Kinds it already took keep their place: a re-subscribe replays nothing twice. */
  wb_stream_history_cursor_update (stream->history, &subscription->history_cursor,
                                   &subscription->history_cursor, mask);
  stream_counts_add (stream, mask, +1);
  g_debug ("Client %s subscribed to %s", client->name, stream_id);

  if (out_events != NULL)
    *out_events = mask_to_strv (mask);
  if (added)
    NOTIFY (hub, stream_added, stream->stream_id);
  stream_union_changed (hub, stream, old_mask, client->user);
  hub->ops->demand (hub->upstream);
  return TRUE;
}

gboolean
wb_hub_client_unsubscribe (WbHubClient *client, const char *stream_id, GError **error)
{
  WbHub *hub;
  HubSubscription *subscription;
  HubStream *stream;
  guint32 old_mask;

  g_return_val_if_fail (client != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_stream_id (stream_id, error))
    return FALSE;
  hub = client->hub;
  subscription = g_hash_table_lookup (client->subscriptions, stream_id);
  if (hub == NULL || subscription == NULL)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_NOT_SUBSCRIBED, "Not subscribed to %s",
                   stream_id);
      return FALSE;
    }

  g_return_val_if_fail (hub->dispatching == 0, FALSE);
  stream = subscription->stream;
  old_mask = stream->union_mask;
  subscription_end (subscription);
  g_debug ("Client %s unsubscribed from %s", client->name, stream_id);
  stream_union_changed (hub, stream, old_mask, client->user);
  return TRUE;
}

gboolean
wb_hub_client_is_subscribed (WbHubClient *client, const char *stream_id)
{
  g_return_val_if_fail (client != NULL, FALSE);

  return stream_id != NULL && g_hash_table_contains (client->subscriptions, stream_id);
}

void
wb_hub_client_replay_cache (WbHubClient *client, const char *stream_id)
{
  wb_hub_client_replay (client, stream_id, 0);
}

guint
wb_hub_get_history_limit (WbHub *hub)
{
  g_return_val_if_fail (hub != NULL, 0);
  return hub->config->history_per_stream;
}

gboolean
wb_hub_check_history (WbHub *hub, double requested, guint *out_count, GError **error)
{
  g_return_val_if_fail (hub != NULL && out_count != NULL, FALSE);

  if (!isfinite (requested) || requested < 0 || requested != floor (requested))
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                   "history is a whole number of events, 0 or more (at most %u are kept: "
                   "HistoryPerStream)",
                   hub->config->history_per_stream);
      return FALSE;
    }
  *out_count = (guint)MIN (requested, (double)hub->config->history_per_stream);
  return TRUE;
}

/* Up to @count history events of @subscription's stream it has not had. */
static GPtrArray *
subscription_take_history (WbHub *hub, HubSubscription *subscription, guint count)
{
  count = MIN (count, hub->config->history_per_stream);
  return wb_stream_history_build_replay (
      subscription->stream->history, &subscription->history_cursor, count, g_get_monotonic_time ());
}

guint
wb_hub_client_replay (WbHubClient *client, const char *stream_id, guint history)
{
  WbHub *hub;
  HubSubscription *subscription;
  g_autoptr (GPtrArray) events = NULL;
  g_autoptr (GPtrArray) recent = NULL;

  g_return_val_if_fail (client != NULL, 0);

  hub = client->hub;
  subscription = stream_id != NULL ? g_hash_table_lookup (client->subscriptions, stream_id) : NULL;
  if (hub == NULL || subscription == NULL)
    return 0;
  g_return_val_if_fail (hub->dispatching == 0, 0);

  /* Only what the client asked for: a chat-only subscriber wants no health. */
  events = wb_stream_cache_build_replay (subscription->stream->cache, subscription->type_mask,
                                         g_get_monotonic_time ());
  for (guint i = 0; i < events->len; i++)
    client_deliver (hub, client, g_ptr_array_index (events, i));
  if (history == 0)
    return 0;
  /* Delivered now, before the loop runs again: before any live event. */
  recent = subscription_take_history (hub, subscription, history);
  for (guint i = 0; i < recent->len; i++)
    client_deliver (hub, client, g_ptr_array_index (recent, i));
  return recent->len;
}

GPtrArray *
wb_hub_client_take_history (WbHubClient *client, const char *stream_id, guint count, GError **error)
{
  HubSubscription *subscription;

  g_return_val_if_fail (client != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (client->hub == NULL)
    {
      set_shutting_down (error);
      return NULL;
    }
  if (!check_stream_id (stream_id, error))
    return NULL;
  subscription = g_hash_table_lookup (client->subscriptions, stream_id);
  if (subscription == NULL)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_NOT_SUBSCRIBED, "Not subscribed to %s",
                   stream_id);
      return NULL;
    }
  return subscription_take_history (client->hub, subscription, count);
}

void
wb_hub_client_count_dropped (WbHubClient *client, guint count)
{
  g_return_if_fail (client != NULL);

  if (client->hub != NULL)
    client->hub->status.events_dropped += count;
}

void
wb_hub_count_dropped (WbHub *hub, guint count)
{
  g_return_if_fail (hub != NULL);
  hub->status.events_dropped += count;
}

/* ---- sends --------------------------------------------------------------- */

static void
send_done_cb (const GError *error, gpointer user_data)
{
  PendingSend *pending = user_data;
  WbHubClient *client = pending->client;

  /* A freed client's outcome has nobody to go to. */
  if (client != NULL)
    {
      g_queue_unlink (&client->pending, &pending->link);
      if (error != NULL)
        g_debug ("Send from %s failed: %s", client->name, error->message);
      if (pending->callback != NULL)
        pending->callback (client, error, pending->user_data);
      pending_send_release (pending);
    }
  g_free (pending);
}

static gboolean
check_text (const char *text, GError **error)
{
  gsize length = text != NULL ? strlen (text) : 0;

  if (length == 0 || length > WB_MESSAGE_MAX_TEXT_BYTES
      || !g_utf8_validate_len (text, length, NULL))
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                   "A message or reaction is 1 to %d bytes of UTF-8", WB_MESSAGE_MAX_TEXT_BYTES);
      return FALSE;
    }
  return TRUE;
}

/* [Access] SendGroup: root, and members by primary or supplementary group.
 * An unknown group admits nobody but root: fail closed. */
static gboolean
check_may_send (WbHub *hub, WbHubClient *client, GError **error)
{
  const WbPeerCredentials *credentials = client->credentials;

  if (hub->send_group == NULL)
    return TRUE;
  if (credentials != NULL
      && (credentials->uid == 0
          || (hub->send_group_resolved
              && wb_peer_credentials_in_group (credentials, hub->send_gid))))
    return TRUE;
  g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_FORBIDDEN,
               "sending requires membership of group '%s'", hub->send_group);
  return FALSE;
}

static gboolean
client_send (WbHubClient *client, WbMessageType type, const char *stream_id, const char *text,
             WbHubSendCallback callback, gpointer user_data, GDestroyNotify destroy, GError **error)
{
  WbHub *hub;
  WbRateLimit *limit;
  guint per_minute;
  gint64 now;
  g_autoptr (JsonNode) message = NULL;
  PendingSend *pending;

  g_return_val_if_fail (client != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  hub = client->hub;
  if (type != WB_MESSAGE_CHAT_MESSAGE && type != WB_MESSAGE_REACTION_SENT)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                   "Only chat messages and reactions can be sent");
      return FALSE;
    }
  if (hub == NULL)
    return set_shutting_down (error);
  if (!check_stream_id (stream_id, error) || !check_text (text, error)
      || !check_may_send (hub, client, error))
    return FALSE;

  /* Checked after validation so that invalid requests cost no tokens. */
  now = g_get_monotonic_time ();
  if (type == WB_MESSAGE_CHAT_MESSAGE)
    {
      limit = &client->user->chat;
      per_minute = hub->config->chat_per_minute;
    }
  else
    {
      limit = &client->user->reaction;
      per_minute = hub->config->reactions_per_minute;
    }
  wb_rate_limit_set_rate (limit, per_minute, now);
  if (!wb_rate_limit_take (limit, now))
    {
      gint64 wait_us = wb_rate_limit_get_wait_us (limit, now);

      if (wait_us == G_MAXINT64)
        g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_RATE_LIMITED, "Sending %s is disabled",
                     wb_message_type_to_string (type));
      else
        g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_RATE_LIMITED,
                     "At most %u %s per minute; retry in %" G_GINT64_FORMAT " ms", per_minute,
                     wb_message_type_to_string (type), (wait_us + 999) / 1000);
      return FALSE;
    }

  message = type == WB_MESSAGE_CHAT_MESSAGE ? wb_message_new_chat (stream_id, text)
                                            : wb_message_new_reaction (stream_id, text);
  pending = g_new0 (PendingSend, 1);
  pending->client = client;
  pending->link.data = pending;
  pending->callback = callback;
  pending->user_data = user_data;
  pending->destroy = destroy;
  g_queue_push_tail_link (&client->pending, &pending->link);

  hub->ops->send (hub->upstream, message, client->user->uid, send_done_cb, pending);
  return TRUE;
}

gboolean
wb_hub_client_send (WbHubClient *client, WbMessageType type, const char *stream_id,
                    const char *text, WbHubSendCallback callback, gpointer user_data,
                    GDestroyNotify destroy, GError **error)
{
  PendingSend refused = { .user_data = user_data, .destroy = destroy };

  if (!client_send (client, type, stream_id, text, callback, user_data, destroy, error))
    {
      pending_send_release (&refused);
      return FALSE;
    }
  return TRUE;
}
