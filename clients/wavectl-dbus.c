/* SPDX-License-Identifier: MIT */
/*
 * The D-Bus transport (--dbus), with GDBus: inc.wave.Bridge1 methods and
 * properties, stream signals turned into the socket protocol's messages so
 * that tail and watch work unchanged. Signals are broadcast to everyone
 * subscribed to a stream, so they are filtered here by our own event set.
 */
#define G_LOG_DOMAIN "wave-ctl"

#include "wavectl.h"

#include <gio/gio.h>
#include <unistd.h>

#include "status.h"

#define BRIDGE_NAME "inc.wave.Bridge1"
#define BRIDGE_PATH "/inc/wave/Bridge1"
#define BRIDGE_IFACE "inc.wave.Bridge1"
#define STREAM_IFACE "inc.wave.Bridge1.Stream"
#define STREAM_PATH_PREFIX "/inc/wave/Bridge1/stream"
#define BRIDGE_ERROR_PREFIX "inc.wave.Bridge1.Error."
#define PROPERTIES_IFACE "org.freedesktop.DBus.Properties"

typedef struct
{
  const char *dbus_name;
  const char *json_name;
} NameMap;

static const NameMap stream_properties[] = {
  { "StreamId", "stream_id" },
  { "Live", "live" },
  { "StartedAt", "started_at" },
  { "EndedAt", "ended_at" },
  { "Protocol", "protocol" },
  { "IngestEndpoint", "ingest_endpoint" },
  { "Duration", "duration" },
  { "RecordingId", "recording_id" },
  { "Bitrate", "bitrate" },
  { "Fps", "fps" },
  { "PacketLoss", "packet_loss" },
  { "Latency", "latency" },
  { "ConcurrentViewers", "concurrent_viewers" },
  { "TotalViews", "total_views" },
  { "PeakViewers", "peak_viewers" },
  { "AverageWatchTime", "average_watch_time" },
  { NULL, NULL },
};

/* Each stream signal, the socket event it stands for, and its argument names. */
typedef struct
{
  const char *signal;
  const char *type;
  const char *args[6];
} SignalMap;

static const SignalMap stream_signals[] = {
  { "Started", "stream.started", { "started_at", "protocol", "ingest_endpoint", NULL } },
  { "Ended", "stream.ended", { "ended_at", "duration", "recording_id", NULL } },
  { "Health", "stream.health", { "bitrate", "fps", "packet_loss", "latency", NULL } },
  { "ViewerJoined", "viewer.joined", { "viewer_id", "country", "device", "joined_at", NULL } },
  { "ViewerLeft", "viewer.left", { "viewer_id", "watch_time", "left_at", NULL } },
  { "AnalyticsUpdate",
    "analytics.update",
    { "concurrent_viewers", "total_views", "peak_viewers", "average_watch_time", NULL } },
  { "ChatMessage",
    "chat.message",
    { "message_id", "user_id", "username", "message", "timestamp", NULL } },
  { "ReactionReceived", "reaction.received", { "reaction", "count", "timestamp", NULL } },
};

static const NameMap error_codes[] = {
  { "NotConnected", "not_connected" },
  { "RateLimited", "rate_limited" },
  { "InvalidArgument", "invalid_message" },
  { "SendFailed", "send_failed" },
  { "NotSubscribed", "not_subscribed" },
  { "TooManySubscriptions", "too_many_subscriptions" },
  { NULL, NULL },
};

typedef struct
{
  char *stream_id;
  char **events; /* NULL: all */
  guint signal_id;
} StreamSubscription;

typedef struct
{
  WctlClient parent;
  GDBusConnection *bus;
  gboolean system_bus;
  GCancellable *cancellable;
  GHashTable *streams; /* object path -> StreamSubscription */
  GQueue pending;      /* JsonObject *, before listen() */
  char *state;
  guint manager_signal_id;
  guint owner_signal_id;
  gulong closed_handler_id;
  gboolean lost;

  WctlMessageFunc func;
  gpointer func_data;
  guint idle_source_id;
} WctlDbusClient;

static void
stream_subscription_free (StreamSubscription *sub)
{
  g_free (sub->stream_id);
  g_strfreev (sub->events);
  g_free (sub);
}

/* sd_bus_path_encode (): alphanumerics stay, every other byte is _xx. */
static char *
stream_path (const char *stream_id)
{
  GString *path = g_string_new (STREAM_PATH_PREFIX "/");

  if (stream_id[0] == '\0')
    g_string_append_c (path, '_');
  for (const char *p = stream_id; *p != '\0'; p++)
    {
      if (g_ascii_isalnum (*p))
        g_string_append_c (path, *p);
      else
        g_string_append_printf (path, "_%02x", (guint)(guchar)*p);
    }
  return g_string_free (path, FALSE);
}

static void
dbus_set_error (GError **error, const GError *dbus_error, const char *bus_name)
{
  g_autoptr (GError) stripped = g_error_copy (dbus_error);
  g_autofree char *remote = g_dbus_error_get_remote_error (stripped);
  const char *text;

  g_dbus_error_strip_remote_error (stripped);
  text = stripped->message;

  if (g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN)
      || g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER)
      || g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT))
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING, "%s (%s is not on the %s bus)",
                   WCTL_NOT_RUNNING_HINT, BRIDGE_NAME, bus_name);
      return;
    }
  if (g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_ACCESS_DENIED))
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_PERMISSION,
                   "permission denied on the %s bus: add yourself to group 'wave' (%s)", bus_name,
                   text);
      return;
    }
  if (g_error_matches (dbus_error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)
      || g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY)
      || g_error_matches (dbus_error, G_DBUS_ERROR, G_DBUS_ERROR_TIMEOUT))
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_TIMEOUT, "no answer from the bridge: %s", text);
      return;
    }
  if (remote != NULL && g_str_has_prefix (remote, BRIDGE_ERROR_PREFIX))
    {
      const char *short_name = remote + strlen (BRIDGE_ERROR_PREFIX);
      const char *code = short_name;

      for (gsize i = 0; error_codes[i].dbus_name != NULL; i++)
        if (g_str_equal (error_codes[i].dbus_name, short_name))
          code = error_codes[i].json_name;
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_REMOTE, "%s: %s", code, text);
      return;
    }
  g_set_error (error, WCTL_ERROR, WCTL_ERROR_PROTOCOL, "%s", text);
}

static const char *
bus_label (WctlDbusClient *self)
{
  return self->system_bus ? "system" : "session";
}

static void
set_property_member (JsonObject *object, GVariant *properties, const char *dbus_name,
                     const char *json_name)
{
  g_autoptr (GVariant) value = g_variant_lookup_value (properties, dbus_name, NULL);

  if (value != NULL)
    json_object_set_member (object, json_name, json_gvariant_serialize (value));
}

/* The manager's a{sv} -> the bridge.status object: the daemon's own field
 * table (status.h) names both sides, so they cannot drift apart. */
static JsonObject *
status_properties_to_json (GVariant *properties)
{
  JsonObject *object = json_object_new ();

  for (guint i = 0; i < WB_STATUS_N_FIELDS; i++)
    set_property_member (object, properties, wb_status_fields[i].dbus_name,
                         wb_status_fields[i].json_name);
  return object;
}

/* a{sv} -> snake_case JSON object, known names only. */
static JsonObject *
properties_to_json (GVariant *properties, const NameMap *map)
{
  JsonObject *object = json_object_new ();

  for (gsize i = 0; map[i].dbus_name != NULL; i++)
    set_property_member (object, properties, map[i].dbus_name, map[i].json_name);
  return object;
}

static JsonObject *
envelope (const char *type, JsonObject *payload)
{
  JsonObject *message = json_object_new ();

  json_object_set_string_member (message, "type", type);
  json_object_set_object_member (message, "payload", payload);
  return message;
}

static void
deliver (WctlDbusClient *self, JsonObject *message)
{
  if (self->func == NULL || self->idle_source_id != 0)
    {
      g_queue_push_tail (&self->pending, json_object_ref (message));
      return;
    }
  self->func (message, NULL, NULL, self->func_data);
}

static void
lose_connection (WctlDbusClient *self, const char *why)
{
  g_autoptr (GError) error = NULL;

  if (self->lost)
    return;
  self->lost = TRUE;
  if (self->func == NULL)
    return;
  g_set_error (&error, WCTL_ERROR, WCTL_ERROR_PROTOCOL, "%s", why);
  self->func (NULL, NULL, error, self->func_data);
}

static GVariant *
get_all (WctlDbusClient *self, const char *path, const char *iface, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      self->bus, BRIDGE_NAME, path, PROPERTIES_IFACE, "GetAll", g_variant_new ("(s)", iface),
      G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, WCTL_REQUEST_TIMEOUT_MS, NULL,
      &local_error);

  if (reply == NULL)
    {
      dbus_set_error (error, local_error, bus_label (self));
      return NULL;
    }
  return g_variant_get_child_value (reply, 0);
}

static JsonArray *
list_streams (WctlDbusClient *self, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      self->bus, BRIDGE_NAME, BRIDGE_PATH, "org.freedesktop.DBus.ObjectManager",
      "GetManagedObjects", NULL, G_VARIANT_TYPE ("(a{oa{sa{sv}}})"), G_DBUS_CALL_FLAGS_NONE,
      WCTL_REQUEST_TIMEOUT_MS, NULL, &local_error);
  g_autoptr (GVariant) objects = NULL;
  JsonArray *array = json_array_new ();
  GVariantIter iter;
  const char *path;
  GVariant *interfaces;

  if (reply == NULL)
    {
      json_array_unref (array);
      dbus_set_error (error, local_error, bus_label (self));
      return NULL;
    }
  objects = g_variant_get_child_value (reply, 0);
  g_variant_iter_init (&iter, objects);
  while (g_variant_iter_next (&iter, "{&o@a{sa{sv}}}", &path, &interfaces))
    {
      g_autoptr (GVariant) owned = interfaces;
      g_autoptr (GVariant) properties
          = g_variant_lookup_value (interfaces, STREAM_IFACE, G_VARIANT_TYPE_VARDICT);

      if (properties != NULL)
        json_array_add_object_element (array, properties_to_json (properties, stream_properties));
    }
  return array;
}

static JsonObject *
dbus_get_status (WctlClient *client, GError **error)
{
  WctlDbusClient *self = (WctlDbusClient *)client;
  g_autoptr (GVariant) properties = get_all (self, BRIDGE_PATH, BRIDGE_IFACE, error);
  JsonObject *status;
  JsonArray *streams;

  if (properties == NULL)
    return NULL;
  status = status_properties_to_json (properties);
  streams = list_streams (self, error);
  if (streams == NULL)
    {
      json_object_unref (status);
      return NULL;
    }
  json_object_set_array_member (status, "streams", streams);
  return status;
}

static void
stream_signal_cb (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
                  const char *signal, GVariant *parameters, gpointer user_data)
{
  WctlDbusClient *self = user_data;
  StreamSubscription *sub = g_hash_table_lookup (self->streams, path);
  const SignalMap *map = NULL;
  g_autoptr (JsonObject) message = NULL;
  JsonObject *payload;

  if (sub == NULL)
    return;
  for (gsize i = 0; i < G_N_ELEMENTS (stream_signals); i++)
    if (g_str_equal (stream_signals[i].signal, signal))
      map = &stream_signals[i];
  if (map == NULL)
    return;
  if (sub->events != NULL && !g_strv_contains ((const char *const *)sub->events, map->type))
    return;

  payload = json_object_new ();
  json_object_set_string_member (payload, "stream_id", sub->stream_id);
  for (gsize i = 0; map->args[i] != NULL && i < g_variant_n_children (parameters); i++)
    {
      g_autoptr (GVariant) value = g_variant_get_child_value (parameters, i);
      json_object_set_member (payload, map->args[i], json_gvariant_serialize (value));
    }
  message = envelope (map->type, payload);
  deliver (self, message);
}

static gboolean
wants (StreamSubscription *sub, const char *type)
{
  return sub->events == NULL || g_strv_contains ((const char *const *)sub->events, type);
}

static void
add_cached (WctlDbusClient *self, StreamSubscription *sub, const char *type, JsonObject *state,
            const char *const *members)
{
  g_autoptr (JsonObject) message = NULL;
  JsonObject *payload;

  if (!wants (sub, type))
    return;
  payload = json_object_new ();
  json_object_set_string_member (payload, "stream_id", sub->stream_id);
  for (gsize i = 0; members[i] != NULL; i++)
    {
      JsonNode *node = json_object_get_member (state, members[i]);
      if (node != NULL)
        json_object_set_member (payload, members[i], json_node_copy (node));
    }
  message = envelope (type, payload);
  json_object_set_boolean_member (message, "cached", TRUE);
  deliver (self, message);
}

/* The stream object's properties are the bridge's cache: replay them like
 * the socket does on subscribe. */
static void
replay_properties (WctlDbusClient *self, const char *path, StreamSubscription *sub)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) properties = get_all (self, path, STREAM_IFACE, &error);
  g_autoptr (JsonObject) state = NULL;

  if (properties == NULL)
    {
      g_debug ("no properties for %s: %s", path, error->message);
      return;
    }
  state = properties_to_json (properties, stream_properties);
  /* Live is also known from health alone; replay a start only if one was seen. */
  if (json_object_get_boolean_member_with_default (state, "live", FALSE)
      && g_strcmp0 (wb_json_get_string (state, "started_at", NULL), "") != 0
      && wb_json_get_string (state, "started_at", NULL) != NULL)
    add_cached (self, sub, "stream.started", state,
                (const char *const[]){ "started_at", "protocol", "ingest_endpoint", NULL });
  else if (g_strcmp0 (wb_json_get_string (state, "ended_at", NULL), "") != 0
           && wb_json_get_string (state, "ended_at", NULL) != NULL)
    add_cached (self, sub, "stream.ended", state,
                (const char *const[]){ "ended_at", "duration", "recording_id", NULL });
  if (wb_json_get_double (state, "bitrate", 0) > 0 || wb_json_get_double (state, "fps", 0) > 0)
    add_cached (self, sub, "stream.health", state,
                (const char *const[]){ "bitrate", "fps", "packet_loss", "latency", NULL });
  if (wb_json_get_int (state, "total_views", 0) > 0
      || wb_json_get_int (state, "concurrent_viewers", 0) > 0)
    add_cached (self, sub, "analytics.update", state,
                (const char *const[]){ "concurrent_viewers", "total_views", "peak_viewers",
                                       "average_watch_time", NULL });
}

/* GetHistory's (type, age_ms, fields) entries as socket-shaped events
 * marked "cached", like the replayed properties. */
static void
replay_history (WctlDbusClient *self, const char *path, StreamSubscription *sub, guint history)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariantIter) entries = NULL;
  const char *type;
  guint64 age_ms;
  GVariantIter *fields;

  reply = g_dbus_connection_call_sync (self->bus, BRIDGE_NAME, path, STREAM_IFACE, "GetHistory",
                                       g_variant_new ("(u)", history),
                                       G_VARIANT_TYPE ("(a(sta{sv}))"), G_DBUS_CALL_FLAGS_NONE,
                                       WCTL_REQUEST_TIMEOUT_MS, NULL, &error);
  if (reply == NULL)
    {
      /* An older bridge: no history, the live events still come. */
      g_debug ("no history for %s: %s", path, error->message);
      return;
    }
  g_variant_get (reply, "(a(sta{sv}))", &entries);
  while (g_variant_iter_next (entries, "(&sta{sv})", &type, &age_ms, &fields))
    {
      g_autoptr (JsonObject) message = NULL;
      JsonObject *payload = json_object_new ();
      const char *name;
      GVariant *value;

      json_object_set_string_member (payload, "stream_id", sub->stream_id);
      while (g_variant_iter_next (fields, "{&sv}", &name, &value))
        {
          if (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
            json_object_set_string_member (payload, name, g_variant_get_string (value, NULL));
          else if (g_variant_is_of_type (value, G_VARIANT_TYPE_UINT32))
            json_object_set_int_member (payload, name, g_variant_get_uint32 (value));
          g_variant_unref (value);
        }
      g_variant_iter_free (fields);
      message = envelope (type, payload);
      json_object_set_boolean_member (message, "cached", TRUE);
      json_object_set_int_member (message, "age_ms", (gint64)MIN (age_ms, (guint64)G_MAXINT64));
      deliver (self, message);
    }
}

static StreamSubscription *
watch_path (WctlDbusClient *self, const char *path, const char *stream_id,
            const char *const *events)
{
  StreamSubscription *sub = g_hash_table_lookup (self->streams, path);

  if (sub == NULL)
    {
      sub = g_new0 (StreamSubscription, 1);
      sub->stream_id = g_strdup (stream_id);
      sub->signal_id = g_dbus_connection_signal_subscribe (
          self->bus, BRIDGE_NAME, STREAM_IFACE, NULL, path, NULL, G_DBUS_SIGNAL_FLAGS_NONE,
          stream_signal_cb, self, NULL);
      g_hash_table_insert (self->streams, g_strdup (path), sub);
    }
  g_strfreev (sub->events);
  sub->events = events != NULL && events[0] != NULL ? g_strdupv ((char **)events) : NULL;
  return sub;
}

static gboolean
dbus_subscribe (WctlClient *client, const char *stream_id, const char *const *events, guint history,
                GError **error)
{
  WctlDbusClient *self = (WctlDbusClient *)client;
  g_autofree char *expected_path = stream_path (stream_id);
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GVariant) reply = NULL;
  const char *path;
  StreamSubscription *sub;
  const char *const no_events[] = { NULL };

  /* Listen before asking, so no signal falls between reply and match. */
  watch_path (self, expected_path, stream_id, events);
  reply = g_dbus_connection_call_sync (
      self->bus, BRIDGE_NAME, BRIDGE_PATH, BRIDGE_IFACE, "Subscribe",
      g_variant_new ("(s^as)", stream_id, events != NULL ? events : no_events),
      G_VARIANT_TYPE ("(o)"), G_DBUS_CALL_FLAGS_NONE, WCTL_REQUEST_TIMEOUT_MS, NULL, &local_error);
  if (reply == NULL)
    {
      dbus_set_error (error, local_error, bus_label (self));
      return FALSE;
    }
  g_variant_get (reply, "(&o)", &path);
  sub = watch_path (self, path, stream_id, events);
  replay_properties (self, path, sub);
  if (history > 0)
    replay_history (self, path, sub, history);
  return TRUE;
}

static gboolean
dbus_send (WctlClient *client, const char *type, const char *stream_id, const char *text,
           GError **error)
{
  WctlDbusClient *self = (WctlDbusClient *)client;
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GVariant) reply = g_dbus_connection_call_sync (
      self->bus, BRIDGE_NAME, BRIDGE_PATH, BRIDGE_IFACE,
      g_str_equal (type, "chat.message") ? "SendChatMessage" : "SendReaction",
      g_variant_new ("(ss)", stream_id, text), NULL, G_DBUS_CALL_FLAGS_NONE, WCTL_SEND_TIMEOUT_MS,
      NULL, &local_error);

  if (reply == NULL)
    {
      dbus_set_error (error, local_error, bus_label (self));
      return FALSE;
    }
  return TRUE;
}

static void
status_reply_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  WctlDbusClient *self;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply
      = g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  g_autoptr (GVariant) properties = NULL;
  g_autoptr (JsonObject) message = NULL;

  /* Cancelled means the client is gone: user_data is dangling. */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  self = user_data;
  if (reply == NULL)
    {
      g_debug ("status request failed: %s", error->message);
      return;
    }
  properties = g_variant_get_child_value (reply, 0);
  message = envelope ("bridge.status", status_properties_to_json (properties));
  deliver (self, message);
}

static void
dbus_request_status (WctlClient *client)
{
  WctlDbusClient *self = (WctlDbusClient *)client;

  g_dbus_connection_call (self->bus, BRIDGE_NAME, BRIDGE_PATH, PROPERTIES_IFACE, "GetAll",
                          g_variant_new ("(s)", BRIDGE_IFACE), G_VARIANT_TYPE ("(a{sv})"),
                          G_DBUS_CALL_FLAGS_NONE, WCTL_REQUEST_TIMEOUT_MS, self->cancellable,
                          status_reply_cb, self);
}

static void
manager_properties_cb (GDBusConnection *bus, const char *sender, const char *path,
                       const char *iface, const char *signal, GVariant *parameters,
                       gpointer user_data)
{
  WctlDbusClient *self = user_data;
  const char *changed_iface;
  g_autoptr (GVariant) changed = NULL;
  g_autoptr (GVariant) invalidated = NULL;
  const char *state;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sa{sv}as)")))
    return;
  g_variant_get (parameters, "(&s@a{sv}@as)", &changed_iface, &changed, &invalidated);
  if (!g_str_equal (changed_iface, BRIDGE_IFACE))
    return;
  if (g_variant_lookup (changed, "State", "&s", &state) && g_strcmp0 (state, self->state) != 0)
    {
      JsonObject *payload = json_object_new ();
      g_autoptr (JsonObject) message = NULL;

      json_object_set_string_member (payload, "state", state);
      if (self->state != NULL)
        json_object_set_string_member (payload, "previous", self->state);
      g_free (self->state);
      self->state = g_strdup (state);
      message = envelope ("bridge.state", payload);
      deliver (self, message);
    }
}

static void
owner_changed_cb (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
                  const char *signal, GVariant *parameters, gpointer user_data)
{
  const char *name;
  const char *old_owner;
  const char *new_owner;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(sss)")))
    return;
  g_variant_get (parameters, "(&s&s&s)", &name, &old_owner, &new_owner);
  if (g_str_equal (name, BRIDGE_NAME) && new_owner[0] == '\0')
    lose_connection (user_data, "wave-bridge left the bus");
}

static void
bus_closed_cb (GDBusConnection *bus, gboolean remote_peer_vanished, GError *error,
               gpointer user_data)
{
  lose_connection (user_data, "the D-Bus connection was closed");
}

static gboolean
flush_pending_cb (gpointer user_data)
{
  WctlDbusClient *self = user_data;
  JsonObject *message;

  self->idle_source_id = 0;
  while ((message = g_queue_pop_head (&self->pending)) != NULL)
    {
      self->func (message, NULL, NULL, self->func_data);
      json_object_unref (message);
    }
  if (self->lost)
    {
      self->lost = FALSE;
      lose_connection (self, "wave-bridge left the bus");
    }
  return G_SOURCE_REMOVE;
}

static void
dbus_listen (WctlClient *client, WctlMessageFunc func, gpointer user_data)
{
  WctlDbusClient *self = (WctlDbusClient *)client;

  g_return_if_fail (self->func == NULL);
  self->func = func;
  self->func_data = user_data;
  self->idle_source_id = g_idle_add (flush_pending_cb, self);
}

static void
dbus_free (WctlClient *client)
{
  WctlDbusClient *self = (WctlDbusClient *)client;
  GHashTableIter iter;
  StreamSubscription *sub;

  g_cancellable_cancel (self->cancellable);
  g_clear_handle_id (&self->idle_source_id, g_source_remove);
  g_hash_table_iter_init (&iter, self->streams);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *)&sub))
    g_dbus_connection_signal_unsubscribe (self->bus, sub->signal_id);
  g_hash_table_unref (self->streams);
  if (self->manager_signal_id != 0)
    g_dbus_connection_signal_unsubscribe (self->bus, self->manager_signal_id);
  if (self->owner_signal_id != 0)
    g_dbus_connection_signal_unsubscribe (self->bus, self->owner_signal_id);
  g_clear_signal_handler (&self->closed_handler_id, self->bus);
  g_queue_clear_full (&self->pending, (GDestroyNotify)json_object_unref);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->bus);
  g_free (self->state);
  g_free (self);
}

static const WctlClientOps dbus_ops = {
  .get_status = dbus_get_status,
  .subscribe = dbus_subscribe,
  .send = dbus_send,
  .listen = dbus_listen,
  .request_status = dbus_request_status,
  .free = dbus_free,
};

/* The bus if the bridge is on it; NULL with an error saying why not. */
static GDBusConnection *
try_bus (GBusType type, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (GDBusConnection) bus = g_bus_get_sync (type, NULL, &local_error);
  g_autoptr (GVariant) reply = NULL;
  const char *label = type == G_BUS_TYPE_SYSTEM ? "system" : "session";
  gboolean has_owner = FALSE;

  if (bus == NULL)
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING, "%s (no %s bus: %s)",
                   WCTL_NOT_RUNNING_HINT, label, local_error->message);
      return NULL;
    }
  reply = g_dbus_connection_call_sync (
      bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
      g_variant_new ("(s)", BRIDGE_NAME), G_VARIANT_TYPE ("(b)"), G_DBUS_CALL_FLAGS_NONE,
      WCTL_REQUEST_TIMEOUT_MS, NULL, &local_error);
  if (reply == NULL)
    {
      dbus_set_error (error, local_error, label);
      return NULL;
    }
  g_variant_get (reply, "(b)", &has_owner);
  if (!has_owner)
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING, "%s (%s is not on the %s bus)",
                   WCTL_NOT_RUNNING_HINT, BRIDGE_NAME, label);
      return NULL;
    }
  return g_steal_pointer (&bus);
}

WctlClient *
wctl_dbus_client_new (WctlBusChoice choice, GError **error)
{
  g_autoptr (GError) first_error = NULL;
  g_autoptr (GDBusConnection) bus = NULL;
  g_autoptr (GVariant) properties = NULL;
  GBusType order[2];
  gsize n_order = 0;
  WctlDbusClient *self;

  if (choice == WCTL_BUS_SYSTEM)
    order[n_order++] = G_BUS_TYPE_SYSTEM;
  else if (choice == WCTL_BUS_SESSION)
    order[n_order++] = G_BUS_TYPE_SESSION;
  else if (geteuid () == 0 && g_getenv ("DBUS_SESSION_BUS_ADDRESS") == NULL)
    {
      order[n_order++] = G_BUS_TYPE_SYSTEM;
      order[n_order++] = G_BUS_TYPE_SESSION;
    }
  else
    {
      order[n_order++] = G_BUS_TYPE_SESSION;
      order[n_order++] = G_BUS_TYPE_SYSTEM;
    }

  for (gsize i = 0; i < n_order && bus == NULL; i++)
    {
      g_autoptr (GError) local_error = NULL;

      bus = try_bus (order[i], &local_error);
      if (bus != NULL)
        {
          order[0] = order[i];
          break;
        }
      if (first_error == NULL
          || (g_error_matches (first_error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING)
              && !g_error_matches (local_error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING)))
        {
          g_clear_error (&first_error);
          first_error = g_steal_pointer (&local_error);
        }
    }
  if (bus == NULL)
    {
      g_propagate_error (error, g_steal_pointer (&first_error));
      return NULL;
    }

  self = g_new0 (WctlDbusClient, 1);
  self->parent.ops = &dbus_ops;
  self->bus = g_steal_pointer (&bus);
  self->system_bus = order[0] == G_BUS_TYPE_SYSTEM;
  self->cancellable = g_cancellable_new ();
  self->streams = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify)stream_subscription_free);
  g_queue_init (&self->pending);
  /* The process ends with the client; a lost bus must not kill it first. */
  g_dbus_connection_set_exit_on_close (self->bus, FALSE);
  self->closed_handler_id
      = g_signal_connect (self->bus, "closed", G_CALLBACK (bus_closed_cb), self);
  self->manager_signal_id = g_dbus_connection_signal_subscribe (
      self->bus, BRIDGE_NAME, PROPERTIES_IFACE, "PropertiesChanged", BRIDGE_PATH, NULL,
      G_DBUS_SIGNAL_FLAGS_NONE, manager_properties_cb, self, NULL);
  self->owner_signal_id = g_dbus_connection_signal_subscribe (
      self->bus, "org.freedesktop.DBus", "org.freedesktop.DBus", "NameOwnerChanged",
      "/org/freedesktop/DBus", BRIDGE_NAME, G_DBUS_SIGNAL_FLAGS_NONE, owner_changed_cb, self, NULL);

  properties = get_all (self, BRIDGE_PATH, BRIDGE_IFACE, NULL);
  if (properties != NULL)
    {
      const char *state;

      if (g_variant_lookup (properties, "State", "&s", &state))
        {
          g_autoptr (JsonObject) payload = json_object_new ();
          g_autoptr (JsonObject) message = NULL;

          self->state = g_strdup (state);
          json_object_set_string_member (payload, "state", state);
          message = envelope ("bridge.hello", json_object_ref (payload));
          deliver (self, message);
        }
    }
  return &self->parent;
}
