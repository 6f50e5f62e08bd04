/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-hub"

#include "hub.h"

#include <string.h>

#include "ratelimit.h"
#include "stream-cache.h"
#include "wb-build-config.h"

/*
 * Re-entrancy: a client's deliver(), an observer or an upstream op may call
 * back into the hub (a frontend cutting a stuck client, upstream reporting a
 * state change from set_stream_events). Every entry point therefore runs
 * between hub_enter() and hub_leave(); while inside, nothing is freed or
 * moved: ended subscriptions, removed streams, freed clients and removed
 * observers are only marked, and swept when the outermost call leaves. Loops
 * over subscribers and clients skip what is marked.
 */

#define TYPE_BIT(type) (1u << (type))

G_STATIC_ASSERT (WB_MESSAGE_N_TYPES <= 32);

typedef struct _HubStream HubStream;

typedef struct
{
  WbHubClient *client; /* NULL once ended; swept later */
  HubStream *stream;
  guint32 type_mask; /* TYPE_BIT of each stream event wanted */
} HubSubscription;

struct _HubStream
{
  char *stream_id;
  guint type_counts[WB_MESSAGE_N_TYPES]; /* subscriptions wanting each type */
  guint32 union_mask;                    /* types with a non-zero count */
  GPtrArray *subscriptions;              /* HubSubscription, owned */
  guint live_subscriptions;
  WbStreamCache *cache;
  gboolean removed; /* left the union: no longer in hub->streams */
  gboolean dirty;   /* queued in hub->dirty_streams */
};

typedef struct
{
  guint id;
  WbHubObserver vtable;
  gpointer user_data;
  gboolean removed;
} HubObserver;

/* A send handed to upstream; owned by the upstream callback. */
typedef struct
{
  WbHubClient *client; /* NULL once the client is freed */
  GList link;          /* in client->pending */
  WbHubSendCallback callback;
  gpointer user_data;
} PendingSend;

struct _WbHub
{
  const WbConfig *config;
  const WbHubUpstreamOps *ops;
  gpointer upstream;

  GHashTable *streams; /* stream_id → HubStream (the union) */
  GQueue clients;      /* WbHubClient, by client->link */
  GPtrArray *observers;
  guint next_observer_id;
  WbHubCounters counters;

  guint depth;
  GPtrArray *dirty_streams; /* HubStream with ended subscriptions or removed */
  GPtrArray *dead_clients;
  gboolean observers_dirty;
  /* sender key → SendAllowance: one entry per user ever seen sending, so
   * bounded by the users of the machine; kept so reconnecting refills nothing. */
  GHashTable *allowances;
};

/* Chat and reaction tokens of one local client, or of all clients of one
 * sender (wb_hub_client_set_sender). */
typedef struct
{
  WbRateLimit chat;
  WbRateLimit reaction;
} SendAllowance;

struct _WbHubClient
{
  WbHub *hub; /* NULL once the hub is gone */
  char *name;
  WbHubClientSink sink;
  gpointer user_data;
  GHashTable *subscriptions; /* stream->stream_id → HubSubscription (borrowed) */
  GList link;                /* in hub->clients */
  GQueue pending;            /* PendingSend, by link */
  SendAllowance own_allowance;
  SendAllowance *allowance; /* own_allowance, or shared by sender key */
  gboolean dead;
};

/* clang-format off */
G_DEFINE_QUARK (wb-hub-error-quark, wb_hub_error)
/* clang-format on */

static const WbUpstreamStatus empty_status = {
  .state = WB_UPSTREAM_IDLE,
  .last_close_reason = "",
  .last_error = "",
  .redacted_url = "",
};

/* ---- bookkeeping --------------------------------------------------------- */

static void
hub_stream_free (HubStream *stream)
{
  g_ptr_array_unref (stream->subscriptions);
  wb_stream_cache_free (stream->cache);
  g_free (stream->stream_id);
  g_free (stream);
}

static void
client_destroy (WbHubClient *client)
{
  g_hash_table_unref (client->subscriptions);
  g_free (client->name);
  g_free (client);
}

static void
hub_enter (WbHub *hub)
{
  hub->depth++;
}

static void
sweep_stream (HubStream *stream)
{
  stream->dirty = FALSE;
  if (stream->removed)
    {
      hub_stream_free (stream);
      return;
    }
  for (guint i = 0; i < stream->subscriptions->len;)
    {
      HubSubscription *subscription = g_ptr_array_index (stream->subscriptions, i);

      /* Order does not matter: fan-out is to a set. */
      if (subscription->client == NULL)
        g_ptr_array_remove_index_fast (stream->subscriptions, i);
      else
        i++;
    }
}

static void
hub_leave (WbHub *hub)
{
  g_assert (hub->depth > 0);
  if (--hub->depth > 0)
    return;

  for (guint i = 0; i < hub->dirty_streams->len; i++)
    sweep_stream (g_ptr_array_index (hub->dirty_streams, i));
  g_ptr_array_set_size (hub->dirty_streams, 0);

  for (guint i = 0; i < hub->dead_clients->len; i++)
    {
      WbHubClient *client = g_ptr_array_index (hub->dead_clients, i);

      g_queue_unlink (&hub->clients, &client->link);
      client_destroy (client);
    }
  g_ptr_array_set_size (hub->dead_clients, 0);

  if (hub->observers_dirty)
    {
      for (guint i = 0; i < hub->observers->len;)
        if (((HubObserver *)g_ptr_array_index (hub->observers, i))->removed)
          g_ptr_array_remove_index (hub->observers, i);
        else
          i++;
      hub->observers_dirty = FALSE;
    }
}

static void
mark_stream_dirty (WbHub *hub, HubStream *stream)
{
  if (stream->dirty)
    return;
  stream->dirty = TRUE;
  g_ptr_array_add (hub->dirty_streams, stream);
}

/* ---- observers ----------------------------------------------------------- */

/* Calls @member of every observer still registered; the caller is inside. */
#define NOTIFY(hub, member, ...)                                                                   \
  G_STMT_START                                                                                     \
  {                                                                                                \
    for (guint notify_i_ = 0; notify_i_ < (hub)->observers->len; notify_i_++)                      \
      {                                                                                            \
        HubObserver *notify_o_ = g_ptr_array_index ((hub)->observers, notify_i_);                  \
        if (!notify_o_->removed && notify_o_->vtable.member != NULL)                               \
          notify_o_->vtable.member (__VA_ARGS__, notify_o_->user_data);                            \
      }                                                                                            \
  }                                                                                                \
  G_STMT_END

static void
notify_status_changed (WbHub *hub)
{
  for (guint i = 0; i < hub->observers->len; i++)
    {
      HubObserver *observer = g_ptr_array_index (hub->observers, i);

      if (!observer->removed && observer->vtable.status_changed != NULL)
        observer->vtable.status_changed (observer->user_data);
    }
}

guint
wb_hub_add_observer (WbHub *hub, const WbHubObserver *observer, gpointer user_data)
{
  HubObserver *entry;

  g_return_val_if_fail (hub != NULL && observer != NULL, 0);

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

  for (guint i = 0; i < hub->observers->len; i++)
    {
      HubObserver *observer = g_ptr_array_index (hub->observers, i);

      if (observer->id == observer_id && !observer->removed)
        {
          observer->removed = TRUE;
          hub->observers_dirty = TRUE;
          hub_enter (hub);
          hub_leave (hub);
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
tell_upstream (WbHub *hub, HubStream *stream)
{
  const char *names[WB_MESSAGE_N_TYPES + 1];

  if (hub->ops == NULL || hub->ops->set_stream_events == NULL)
    return;
  mask_to_names (stream->union_mask, names);
  hub->ops->set_stream_events (hub->upstream, stream->stream_id,
                               stream->union_mask != 0 ? names : NULL);
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

static HubStream *
hub_stream_add (WbHub *hub, const char *stream_id)
{
  HubStream *stream = g_new0 (HubStream, 1);

  stream->stream_id = g_strdup (stream_id);
  stream->subscriptions = g_ptr_array_new_with_free_func (g_free);
  stream->cache = wb_stream_cache_new (stream_id);
  g_hash_table_insert (hub->streams, stream->stream_id, stream);
  hub->counters.streams = g_hash_table_size (hub->streams);
  g_debug ("Stream %s joins the union", stream_id);
  return stream;
}

/* Ends @subscription; the caller tells upstream and observers afterwards. */
static void
subscription_end (WbHub *hub, HubSubscription *subscription)
{
  HubStream *stream = subscription->stream;

  g_hash_table_remove (subscription->client->subscriptions, stream->stream_id);
  subscription->client = NULL;
  stream_counts_add (stream, subscription->type_mask, -1);
  stream->live_subscriptions--;
  wb_stream_cache_get_state (stream->cache)->subscribers = stream->live_subscriptions;
  mark_stream_dirty (hub, stream);
}

/* After @stream's union changed from @old_mask: tell upstream, and drop the
 * stream if nobody is left. */
static void
stream_union_changed (WbHub *hub, HubStream *stream, guint32 old_mask)
{
  if (stream->union_mask == old_mask)
    return;
  if (stream->union_mask == 0)
    {
      g_autofree char *stream_id = g_strdup (stream->stream_id);

      g_debug ("Stream %s leaves the union", stream_id);
      g_hash_table_remove (hub->streams, stream->stream_id);
      hub->counters.streams = g_hash_table_size (hub->streams);
      stream->removed = TRUE;
      mark_stream_dirty (hub, stream);
      tell_upstream (hub, stream);
      NOTIFY (hub, stream_removed, stream_id);
      return;
    }
  tell_upstream (hub, stream);
}

/* ---- events -------------------------------------------------------------- */

static void
client_deliver (WbHub *hub, WbHubClient *client, WbEvent *event)
{
  if (client->dead || client->sink.deliver == NULL)
    return;
  if (client->sink.deliver (client, event, client->user_data))
    hub->counters.events_delivered++;
  else
    hub->counters.events_dropped++;
}

/* To every subscriber of @stream wanting @type_mask (0: regardless of type). */
static void
stream_deliver (WbHub *hub, HubStream *stream, WbEvent *event, guint32 type_mask)
{
  /* Subscriptions added meanwhile are not owed this event. */
  guint n = stream->subscriptions->len;

  for (guint i = 0; i < n; i++)
    {
      HubSubscription *subscription = g_ptr_array_index (stream->subscriptions, i);

      if (subscription->client != NULL
          && (type_mask == 0 || (subscription->type_mask & type_mask) != 0))
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

  g_debug ("Upstream error %s: %s%s%s", wb_message_get_string (message, "code"),
           wb_message_get_string (message, "message"), stream_id != NULL ? ", stream " : "",
           stream_id != NULL ? stream_id : "");
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

  hub->counters.events_received++;
  hub_enter (hub);
  if (wb_message_type_is_stream_event (message->type) && message->stream_id != NULL)
    handle_stream_event (hub, message);
  else if (message->type == WB_MESSAGE_ERROR)
    handle_error (hub, message);
  else
    g_debug ("Ignoring upstream %s", wb_message_type_to_string (message->type));
  notify_status_changed (hub);
  hub_leave (hub);
}

void
wb_hub_handle_upstream_state (WbHub *hub, WbUpstreamState old_state, WbUpstreamState new_state)
{
  g_autoptr (WbEvent) event = NULL;
  JsonObject *payload;

  g_return_if_fail (hub != NULL);

  payload = json_object_new ();
  json_object_set_string_member (payload, "state", wb_upstream_state_to_string (new_state));
  json_object_set_string_member (payload, "previous", wb_upstream_state_to_string (old_state));
  event = wb_event_new ("bridge.state", NULL, payload);

  hub_enter (hub);
  NOTIFY (hub, state_changed, new_state);
  for (GList *l = hub->clients.head; l != NULL; l = l->next)
    client_deliver (hub, l->data, event);
  notify_status_changed (hub);
  hub_leave (hub);
}

void
wb_hub_handle_upstream_resynced (WbHub *hub, gint64 gap_ms)
{
  GList *streams;

  g_return_if_fail (hub != NULL);

  hub_enter (hub);
  /* A snapshot: deliveries may change the union. */
  streams = g_hash_table_get_values (hub->streams);
  for (GList *l = streams; l != NULL; l = l->next)
    {
      HubStream *stream = l->data;
      g_autoptr (WbEvent) event = NULL;
      JsonObject *payload;

      if (stream->removed)
        continue;
      payload = json_object_new ();
      json_object_set_string_member (payload, "stream_id", stream->stream_id);
      json_object_set_int_member (payload, "gap_ms", MAX (gap_ms, 0));
      event = wb_event_new ("bridge.resync", stream->stream_id, payload);
      stream_deliver (hub, stream, event, 0);
    }
  g_list_free (streams);
  hub_leave (hub);
}

void
wb_hub_handle_upstream_status (WbHub *hub)
{
  g_return_if_fail (hub != NULL);

  hub_enter (hub);
  notify_status_changed (hub);
  hub_leave (hub);
}

/* ---- the hub ------------------------------------------------------------- */

WbHub *
wb_hub_new (const WbConfig *config, const WbHubUpstreamOps *ops, gpointer upstream)
{
  WbHub *hub;

  g_return_val_if_fail (config != NULL, NULL);

  hub = g_new0 (WbHub, 1);
  hub->config = config;
  hub->ops = ops;
  hub->upstream = upstream;
  hub->streams = g_hash_table_new (g_str_hash, g_str_equal);
  hub->allowances = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_queue_init (&hub->clients);
  hub->observers = g_ptr_array_new_with_free_func (g_free);
  hub->dirty_streams = g_ptr_array_new ();
  hub->dead_clients = g_ptr_array_new ();
  return hub;
}

void
wb_hub_free (WbHub *hub)
{
  GHashTableIter iter;
  gpointer value;

  if (hub == NULL)
    return;
  g_return_if_fail (hub->depth == 0);

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
      client->allowance = &client->own_allowance;
      client->hub = NULL;
    }

  g_hash_table_iter_init (&iter, hub->streams);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    hub_stream_free (value);
  g_hash_table_unref (hub->streams);
  g_hash_table_unref (hub->allowances);
  g_ptr_array_unref (hub->observers);
  g_ptr_array_unref (hub->dirty_streams);
  g_ptr_array_unref (hub->dead_clients);
  g_free (hub);
}

void
wb_hub_set_config (WbHub *hub, const WbConfig *config)
{
  g_return_if_fail (hub != NULL && config != NULL);

  /* Rate buckets pick the new rates up on their next use. */
  hub->config = config;
}

gboolean
wb_hub_reconnect (WbHub *hub)
{
  g_return_val_if_fail (hub != NULL, FALSE);

  if (hub->ops == NULL || hub->ops->reconnect == NULL)
    return FALSE;
  hub_enter (hub);
  hub->ops->reconnect (hub->upstream);
  hub_leave (hub);
  return TRUE;
}

gboolean
wb_hub_reload (WbHub *hub, GError **error)
{
  gboolean ok = TRUE;

  g_return_val_if_fail (hub != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (hub->ops == NULL || hub->ops->reload == NULL)
    return TRUE;
  hub_enter (hub);
  ok = hub->ops->reload (hub->upstream, error);
  hub_leave (hub);
  return ok;
}

const WbStreamState *
wb_hub_get_stream (WbHub *hub, const char *stream_id)
{
  HubStream *stream;

  g_return_val_if_fail (hub != NULL && stream_id != NULL, NULL);

  stream = g_hash_table_lookup (hub->streams, stream_id);
  return stream != NULL ? wb_stream_cache_get_state (stream->cache) : NULL;
}

static int
compare_strings_cb (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

char **
wb_hub_list_streams (WbHub *hub)
{
  g_autofree char **ids = NULL;
  guint n = 0;
  char **result;

  g_return_val_if_fail (hub != NULL, NULL);

  ids = (char **)g_hash_table_get_keys_as_array (hub->streams, &n);
  qsort (ids, n, sizeof (char *), compare_strings_cb);
  result = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++)
    result[i] = g_strdup (ids[i]);
  return result;
}

const WbHubCounters *
wb_hub_get_counters (WbHub *hub)
{
  g_return_val_if_fail (hub != NULL, NULL);
  return &hub->counters;
}

const WbUpstreamStatus *
wb_hub_get_upstream_status (WbHub *hub)
{
  const WbUpstreamStatus *status = NULL;

  g_return_val_if_fail (hub != NULL, &empty_status);

  if (hub->ops != NULL && hub->ops->get_status != NULL)
    status = hub->ops->get_status (hub->upstream);
  return status != NULL ? status : &empty_status;
}

static const char *
or_empty (const char *text)
{
  return text != NULL ? text : "";
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
wb_hub_build_status (WbHub *hub)
{
  const WbUpstreamStatus *status;
  g_auto (GStrv) stream_ids = NULL;
  JsonObject *object;
  JsonArray *streams;

  g_return_val_if_fail (hub != NULL, NULL);

  status = wb_hub_get_upstream_status (hub);
  object = json_object_new ();
  json_object_set_string_member (object, "state", wb_upstream_state_to_string (status->state));
  json_object_set_string_member (object, "upstream_url", or_empty (status->redacted_url));
  json_object_set_int_member (object, "upstream_rtt_us", (gint64)status->rtt_us);
  json_object_set_int_member (
      object, "connected_since",
      status->state == WB_UPSTREAM_CONNECTED ? status->connected_since_realtime_us : 0);
  json_object_set_int_member (object, "reconnects", status->reconnects);
  json_object_set_int_member (object, "last_close_code", status->last_close_code);
  json_object_set_string_member (object, "last_error", or_empty (status->last_error));
  json_object_set_int_member (object, "clients", hub->counters.clients);

  streams = json_array_new ();
  stream_ids = wb_hub_list_streams (hub);
  for (guint i = 0; stream_ids[i] != NULL; i++)
    json_array_add_object_element (streams,
                                   stream_to_json (wb_hub_get_stream (hub, stream_ids[i])));
  json_object_set_array_member (object, "streams", streams);

  json_object_set_int_member (object, "events_received", (gint64)hub->counters.events_received);
  json_object_set_int_member (object, "events_delivered", (gint64)hub->counters.events_delivered);
  json_object_set_int_member (object, "events_dropped", (gint64)hub->counters.events_dropped);
  json_object_set_string_member (object, "version", WB_VERSION);
  return object;
}

/* ---- clients ------------------------------------------------------------- */

WbHubClient *
wb_hub_client_new (WbHub *hub, const char *name, const WbHubClientSink *sink, gpointer user_data)
{
  WbHubClient *client;
  gint64 now = g_get_monotonic_time ();

  g_return_val_if_fail (hub != NULL, NULL);

  client = g_new0 (WbHubClient, 1);
  client->hub = hub;
  client->name = g_strdup (name != NULL ? name : "client");
  if (sink != NULL)
    client->sink = *sink;
  client->user_data = user_data;
  client->subscriptions = g_hash_table_new (g_str_hash, g_str_equal);
  client->link.data = client;
  g_queue_init (&client->pending);
  wb_rate_limit_init (&client->own_allowance.chat, hub->config->chat_per_minute, now);
  wb_rate_limit_init (&client->own_allowance.reaction, hub->config->reactions_per_minute, now);
  client->allowance = &client->own_allowance;
  g_queue_push_tail_link (&hub->clients, &client->link);
  hub->counters.clients++;
  g_debug ("Client %s joined (%u clients)", client->name, hub->counters.clients);

  hub_enter (hub);
  notify_status_changed (hub);
  hub_leave (hub);
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
    }
}

void
wb_hub_client_free (WbHubClient *client)
{
  WbHub *hub;
  GList *subscriptions;

  if (client == NULL)
    return;
  g_return_if_fail (!client->dead);

  client_forget_pending (client);
  hub = client->hub;
  if (hub == NULL)
    {
      client_destroy (client);
      return;
    }

  hub_enter (hub);
  client->dead = TRUE;
  hub->counters.clients--;
  g_debug ("Client %s left (%u clients)", client->name, hub->counters.clients);

  subscriptions = g_hash_table_get_values (client->subscriptions);
  for (GList *l = subscriptions; l != NULL; l = l->next)
    {
      HubSubscription *subscription = l->data;
      HubStream *stream = subscription->stream;
      guint32 old_mask = stream->union_mask;

      subscription_end (hub, subscription);
      stream_union_changed (hub, stream, old_mask);
    }
  g_list_free (subscriptions);
  g_ptr_array_add (hub->dead_clients, client);
  notify_status_changed (hub);
  hub_leave (hub);
}

const char *
wb_hub_client_get_name (WbHubClient *client)
{
  g_return_val_if_fail (client != NULL, NULL);
  return client->name;
}

static gboolean
check_stream_id (const char *stream_id, GError **error)
{
  gsize length = stream_id != NULL ? strlen (stream_id) : 0;

  if (length == 0 || length > WB_MESSAGE_MAX_STREAM_ID_BYTES
      || !g_utf8_validate_len (stream_id, length, NULL))
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                   "A stream id is 1 to %d bytes of UTF-8", WB_MESSAGE_MAX_STREAM_ID_BYTES);
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
          g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                       "'%.64s' is not a stream event type", *events);
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

  g_return_val_if_fail (client != NULL && !client->dead, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  hub = client->hub;
  if (hub == NULL)
    {
      g_set_error_literal (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                           "The bridge is shutting down");
      return FALSE;
    }
  if (!check_stream_id (stream_id, error) || !events_to_mask (events, &mask, error))
    return FALSE;

  subscription = g_hash_table_lookup (client->subscriptions, stream_id);
  if (subscription == NULL
      && g_hash_table_size (client->subscriptions) >= hub->config->max_subscriptions)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS,
                   "At most %u streams per client", hub->config->max_subscriptions);
      return FALSE;
    }

  hub_enter (hub);
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
      stream->live_subscriptions++;
      wb_stream_cache_get_state (stream->cache)->subscribers = stream->live_subscriptions;
      g_hash_table_insert (client->subscriptions, stream->stream_id, subscription);
    }
  subscription->type_mask = mask;
  stream_counts_add (stream, mask, +1);
  g_debug ("Client %s subscribed to %s", client->name, stream_id);

  if (out_events != NULL)
    *out_events = mask_to_strv (mask);
  /* Bookkeeping is complete: upstream and observers may call back in. */
  if (added)
    NOTIFY (hub, stream_added, stream->stream_id);
  stream_union_changed (hub, stream, old_mask);
  if (hub->ops != NULL && hub->ops->demand != NULL)
    hub->ops->demand (hub->upstream);
  hub_leave (hub);
  return TRUE;
}

gboolean
wb_hub_client_unsubscribe (WbHubClient *client, const char *stream_id, GError **error)
{
  WbHub *hub;
  HubSubscription *subscription;
  HubStream *stream;
  guint32 old_mask;

  g_return_val_if_fail (client != NULL && !client->dead, FALSE);
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

  hub_enter (hub);
  stream = subscription->stream;
  old_mask = stream->union_mask;
  subscription_end (hub, subscription);
  g_debug ("Client %s unsubscribed from %s", client->name, stream_id);
  stream_union_changed (hub, stream, old_mask);
  hub_leave (hub);
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
  WbHub *hub;
  HubSubscription *subscription;
  g_autoptr (GPtrArray) events = NULL;

  g_return_if_fail (client != NULL && !client->dead);

  hub = client->hub;
  subscription = stream_id != NULL ? g_hash_table_lookup (client->subscriptions, stream_id) : NULL;
  if (hub == NULL || subscription == NULL)
    return;

  /* Only what the client asked for: a chat-only subscriber wants no health. */
  events = wb_stream_cache_build_replay (subscription->stream->cache, subscription->type_mask,
                                         g_get_monotonic_time ());
  hub_enter (hub);
  for (guint i = 0; i < events->len; i++)
    client_deliver (hub, client, g_ptr_array_index (events, i));
  hub_leave (hub);
}

void
wb_hub_client_count_dropped (WbHubClient *client, guint count)
{
  g_return_if_fail (client != NULL);

  if (client->hub != NULL)
    client->hub->counters.events_dropped += count;
}

void
wb_hub_client_set_sender (WbHubClient *client, const char *sender_key)
{
  WbHub *hub;
  SendAllowance *allowance;

  g_return_if_fail (client != NULL && sender_key != NULL);
  hub = client->hub;
  if (hub == NULL)
    return;
  allowance = g_hash_table_lookup (hub->allowances, sender_key);
  if (allowance == NULL)
    {
      gint64 now = g_get_monotonic_time ();

      allowance = g_new0 (SendAllowance, 1);
      wb_rate_limit_init (&allowance->chat, hub->config->chat_per_minute, now);
      wb_rate_limit_init (&allowance->reaction, hub->config->reactions_per_minute, now);
      g_hash_table_insert (hub->allowances, g_strdup (sender_key), allowance);
    }
  client->allowance = allowance;
}

void
wb_hub_count_dropped (WbHub *hub, guint count)
{
  g_return_if_fail (hub != NULL);
  hub->counters.events_dropped += count;
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

gboolean
wb_hub_client_send (WbHubClient *client, WbMessageType type, const char *stream_id,
                    const char *text, WbHubSendCallback callback, gpointer user_data,
                    GError **error)
{
  WbHub *hub;
  WbRateLimit *limit;
  guint per_minute;
  gint64 now;
  g_autoptr (JsonNode) message = NULL;
  PendingSend *pending;

  g_return_val_if_fail (client != NULL && !client->dead, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  hub = client->hub;
  if (type != WB_MESSAGE_CHAT_MESSAGE && type != WB_MESSAGE_REACTION_SENT)
    {
      g_set_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                   "Only chat messages and reactions can be sent");
      return FALSE;
    }
  if (hub == NULL || hub->ops == NULL || hub->ops->send == NULL)
    {
      g_set_error_literal (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT,
                           "The bridge cannot send");
      return FALSE;
    }
  if (!check_stream_id (stream_id, error) || !check_text (text, error))
    return FALSE;

  /* Checked after validation so that invalid requests cost no tokens. */
  now = g_get_monotonic_time ();
  if (type == WB_MESSAGE_CHAT_MESSAGE)
    {
      limit = &client->allowance->chat;
      per_minute = hub->config->chat_per_minute;
    }
  else
    {
      limit = &client->allowance->reaction;
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
  g_queue_push_tail_link (&client->pending, &pending->link);

  hub_enter (hub);
  hub->ops->send (hub->upstream, message, send_done_cb, pending);
  hub_leave (hub);
  return TRUE;
}
