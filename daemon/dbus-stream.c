/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-private.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dbus-errors.h"
#include "dbus-text.h"

/* ---- properties -------------------------------------------------------- */

typedef struct
{
  const char *name;
  char type;     /* D-Bus basic type of the property */
  size_t offset; /* in WbStreamState */
  WbStreamFields field;
} WbDbusStreamProperty;

#define STREAM_PROPERTY(name, type, member, field)                                                 \
  {                                                                                                \
    name, type, offsetof (WbStreamState, member), field                                            \
  }

static const WbDbusStreamProperty stream_properties[] = {
  STREAM_PROPERTY ("StreamId", 's', stream_id, 0),
  STREAM_PROPERTY ("Live", 'b', live, WB_STREAM_FIELD_LIVE),
  STREAM_PROPERTY ("StartedAt", 's', started_at, WB_STREAM_FIELD_STARTED),
  STREAM_PROPERTY ("Protocol", 's', protocol, WB_STREAM_FIELD_STARTED),
  STREAM_PROPERTY ("IngestEndpoint", 's', ingest_endpoint, WB_STREAM_FIELD_STARTED),
  STREAM_PROPERTY ("EndedAt", 's', ended_at, WB_STREAM_FIELD_ENDED),
  STREAM_PROPERTY ("Duration", 'd', duration, WB_STREAM_FIELD_ENDED),
  STREAM_PROPERTY ("RecordingId", 's', recording_id, WB_STREAM_FIELD_ENDED),
  STREAM_PROPERTY ("Bitrate", 'd', bitrate, WB_STREAM_FIELD_HEALTH),
  STREAM_PROPERTY ("Fps", 'd', fps, WB_STREAM_FIELD_HEALTH),
  STREAM_PROPERTY ("PacketLoss", 'd', packet_loss, WB_STREAM_FIELD_HEALTH),
  STREAM_PROPERTY ("Latency", 'd', latency, WB_STREAM_FIELD_HEALTH),
  STREAM_PROPERTY ("ConcurrentViewers", 'u', concurrent_viewers, WB_STREAM_FIELD_ANALYTICS),
  STREAM_PROPERTY ("TotalViews", 't', total_views, WB_STREAM_FIELD_ANALYTICS),
  STREAM_PROPERTY ("PeakViewers", 'u', peak_viewers, WB_STREAM_FIELD_ANALYTICS),
  STREAM_PROPERTY ("AverageWatchTime", 'd', average_watch_time, WB_STREAM_FIELD_ANALYTICS),
};

static int
stream_property_get_cb (sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  WbDbusStream *stream = user_data;
  const WbStreamState *state = wb_hub_get_stream (stream->frontend->hub, stream->stream_id);
  WbStreamState empty = { .stream_id = stream->stream_id };
  const guint8 *base;

  /* Between the hub forgetting a stream and our stream_removed, answer
   * with the "unknown" values rather than failing the whole GetAll. */
  if (state == NULL)
    state = &empty;
  base = (const guint8 *)state;

  for (gsize i = 0; i < G_N_ELEMENTS (stream_properties); i++)
    {
      const WbDbusStreamProperty *p = &stream_properties[i];
      const void *field;

      if (g_strcmp0 (p->name, property) != 0)
        continue;
      field = base + p->offset;
      switch (p->type)
        {
        case 's':
          {
            /* Upstream's text: one noncharacter must not fail GetAll and
             * GetManagedObjects for everyone. */
            g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);

            return sd_bus_message_append_basic (
                reply, 's', wb_dbus_text_carryable (*(const char *const *)field, keep));
          }
        case 'b':
          {
            int value = *(const gboolean *)field ? 1 : 0;
            return sd_bus_message_append_basic (reply, 'b', &value);
          }
        default:
          /* 'd', 'u', 't': WbStreamState stores double, guint, guint64. */
          return sd_bus_message_append_basic (reply, p->type, field);
        }
    }
  return sd_bus_error_setf (ret_error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s",
                            property);
}

/* ---- methods ------------------------------------------------------------ */

/* Both stream send methods take one string: the chat text or the reaction.
 * The stream is the object's: read from the path, since the object itself
 * may be gone by the time a new caller's call runs. */
static int
send_as_client (WbDbusFrontend *frontend, WbHubClient *client, sd_bus_message *call,
                sd_bus_error *ret_error)
{
  g_autofree char *stream_id = wb_dbus_stream_id_from_path (sd_bus_message_get_path (call));
  const char *text = NULL;
  int r;

  if (stream_id == NULL)
    return sd_bus_error_set (ret_error, SD_BUS_ERROR_UNKNOWN_OBJECT, "Not a stream object");
  r = sd_bus_message_read (call, "s", &text);
  if (r < 0)
    return wb_dbus_frontend_bad_arguments (ret_error, r);
  return wb_dbus_frontend_send (client, call, wb_dbus_send_type (call), stream_id, text, ret_error);
}

static int
stream_send_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  WbDbusStream *stream = user_data;

  return wb_dbus_frontend_call_with_client (stream->frontend, call, TRUE, send_as_client,
                                            ret_error);
}

/* Appends one history event as (s type, t age_ms, a{sv} fields): the fields
 * are the ChatMessage / ReactionReceived signal's arguments, by name. */
static int
append_history_event (sd_bus_message *reply, WbEvent *event, GPtrArray *keep)
{
  JsonObject *p = wb_event_get_payload (event);
  gint64 age_ms = wb_event_get_age_ms (event);
  int r;

#define BUS_TEXT(name) wb_dbus_text_carryable (wb_json_get_string (p, (name), ""), keep)
  r = sd_bus_message_open_container (reply, 'r', "sta{sv}");
  if (r >= 0)
    r = sd_bus_message_append (reply, "st", wb_event_get_type_name (event),
                               (guint64)MAX (age_ms, 0));
  if (r < 0)
    return r;
  switch (wb_event_get_message_type (event))
    {
    case WB_MESSAGE_CHAT_MESSAGE:
      r = sd_bus_message_append (reply, "a{sv}", 5, "message_id", "s", BUS_TEXT ("message_id"),
                                 "user_id", "s", BUS_TEXT ("user_id"), "username", "s",
                                 BUS_TEXT ("username"), "message", "s", BUS_TEXT ("message"),
                                 "timestamp", "s", BUS_TEXT ("timestamp"));
      break;
    case WB_MESSAGE_REACTION_RECEIVED:
      r = sd_bus_message_append (reply, "a{sv}", 3, "reaction", "s", BUS_TEXT ("reaction"), "count",
                                 "u", (guint32)wb_json_get_count (p, "count", G_MAXUINT32),
                                 "timestamp", "s", BUS_TEXT ("timestamp"));
      break;
    default:
      r = sd_bus_message_append (reply, "a{sv}", 0);
      break;
    }
#undef BUS_TEXT
  if (r < 0)
    return r;
  return sd_bus_message_close_container (reply);
}

/* Only a subscriber gets history, of the types it subscribed to; the stream
 * is read from the path, as for the sends. */
static int
get_history_as_client (WbDbusFrontend *frontend, WbHubClient *client, sd_bus_message *call,
                       sd_bus_error *ret_error)
{
  g_autofree char *stream_id = wb_dbus_stream_id_from_path (sd_bus_message_get_path (call));
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) events = NULL;
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (sd_bus_message) reply = NULL;
  guint32 requested = 0;
  guint count = 0;
  int r;

  if (stream_id == NULL)
    return sd_bus_error_set (ret_error, SD_BUS_ERROR_UNKNOWN_OBJECT, "Not a stream object");
  r = sd_bus_message_read (call, "u", &requested);
  if (r < 0)
    return wb_dbus_frontend_bad_arguments (ret_error, r);
  if (!wb_hub_check_history (frontend->hub, requested, &count, &error))
    return wb_dbus_error_set_from_gerror (ret_error, error);
  events = wb_hub_client_take_history (client, stream_id, count, &error);
  if (events == NULL)
    return wb_dbus_error_set_from_gerror (ret_error, error);

  r = sd_bus_message_new_method_return (call, &reply);
  if (r >= 0)
    r = sd_bus_message_open_container (reply, 'a', "(sta{sv})");
  for (guint i = 0; r >= 0 && i < events->len; i++)
    r = append_history_event (reply, g_ptr_array_index (events, i), keep);
  if (r >= 0)
    r = sd_bus_message_close_container (reply);
  if (r >= 0)
    r = sd_bus_send (NULL, reply, NULL);
  return r;
}

static int
stream_get_history_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  WbDbusStream *stream = user_data;

  return wb_dbus_frontend_call_with_client (stream->frontend, call, FALSE, get_history_as_client,
                                            ret_error);
}

#define STREAM_PROP(name, type, flags)                                                             \
  SD_BUS_PROPERTY (name, type, stream_property_get_cb, 0, flags)
#define CHANGES SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

/* Access control is the bus policy's (dbus/inc.wave.Bridge1.conf). */
const sd_bus_vtable wb_dbus_stream_vtable[] = {
  SD_BUS_VTABLE_START (0),
  SD_BUS_METHOD_WITH_NAMES ("SendChatMessage", "s", SD_BUS_PARAM (message), "", "", stream_send_cb,
                            SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("SendReaction", "s", SD_BUS_PARAM (reaction), "", "", stream_send_cb,
                            SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("GetHistory", "u", SD_BUS_PARAM (count), "a(sta{sv})",
                            SD_BUS_PARAM (events), stream_get_history_cb,
                            SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_SIGNAL_WITH_NAMES (
      "Started", "sss",
      SD_BUS_PARAM (started_at) SD_BUS_PARAM (protocol) SD_BUS_PARAM (ingest_endpoint), 0),
  SD_BUS_SIGNAL_WITH_NAMES (
      "Ended", "sds", SD_BUS_PARAM (ended_at) SD_BUS_PARAM (duration) SD_BUS_PARAM (recording_id),
      0),
  SD_BUS_SIGNAL_WITH_NAMES ("Health", "dddd",
                            SD_BUS_PARAM (bitrate) SD_BUS_PARAM (fps) SD_BUS_PARAM (packet_loss)
                                SD_BUS_PARAM (latency),
                            0),
  SD_BUS_SIGNAL_WITH_NAMES ("ViewerJoined", "ssss",
                            SD_BUS_PARAM (viewer_id) SD_BUS_PARAM (country) SD_BUS_PARAM (device)
                                SD_BUS_PARAM (joined_at),
                            0),
  SD_BUS_SIGNAL_WITH_NAMES (
      "ViewerLeft", "sds",
      SD_BUS_PARAM (viewer_id) SD_BUS_PARAM (watch_time) SD_BUS_PARAM (left_at), 0),
  SD_BUS_SIGNAL_WITH_NAMES ("AnalyticsUpdate", "utud",
                            SD_BUS_PARAM (concurrent_viewers) SD_BUS_PARAM (total_views)
                                SD_BUS_PARAM (peak_viewers) SD_BUS_PARAM (average_watch_time),
                            0),
  SD_BUS_SIGNAL_WITH_NAMES ("ChatMessage", "sssss",
                            SD_BUS_PARAM (message_id) SD_BUS_PARAM (user_id) SD_BUS_PARAM (username)
                                SD_BUS_PARAM (message) SD_BUS_PARAM (timestamp),
                            0),
  SD_BUS_SIGNAL_WITH_NAMES ("ReactionReceived", "sus",
                            SD_BUS_PARAM (reaction) SD_BUS_PARAM (count) SD_BUS_PARAM (timestamp),
                            0),
  STREAM_PROP ("StreamId", "s", SD_BUS_VTABLE_PROPERTY_CONST),
  STREAM_PROP ("Live", "b", CHANGES),
  STREAM_PROP ("StartedAt", "s", CHANGES),
  STREAM_PROP ("EndedAt", "s", CHANGES),
  STREAM_PROP ("Protocol", "s", CHANGES),
  STREAM_PROP ("IngestEndpoint", "s", CHANGES),
  STREAM_PROP ("Duration", "d", CHANGES),
  STREAM_PROP ("RecordingId", "s", CHANGES),
  STREAM_PROP ("Bitrate", "d", CHANGES),
  STREAM_PROP ("Fps", "d", CHANGES),
  STREAM_PROP ("PacketLoss", "d", CHANGES),
  STREAM_PROP ("Latency", "d", CHANGES),
  STREAM_PROP ("ConcurrentViewers", "u", CHANGES),
  STREAM_PROP ("TotalViews", "t", CHANGES),
  STREAM_PROP ("PeakViewers", "u", CHANGES),
  STREAM_PROP ("AverageWatchTime", "d", CHANGES),
  SD_BUS_VTABLE_END,
};

/* ---- objects ------------------------------------------------------------ */

char *
wb_dbus_stream_path (const char *stream_id)
{
  char *sd_path = NULL;
  char *path;

  if (sd_bus_path_encode (WB_DBUS_STREAM_PREFIX, stream_id, &sd_path) < 0)
    g_error ("Out of memory encoding a D-Bus path");
  /* Re-home the malloc()ed string so callers can g_free() it. */
  path = g_strdup (sd_path);
  free (sd_path);
  return path;
}

WbDbusStream *
wb_dbus_stream_new (WbDbusFrontend *frontend, const char *stream_id)
{
  WbDbusStream *stream = g_new0 (WbDbusStream, 1);

  stream->frontend = frontend;
  stream->stream_id = g_strdup (stream_id);
  stream->path = wb_dbus_stream_path (stream_id);
  return stream;
}

void
wb_dbus_stream_free (WbDbusStream *stream)
{
  if (stream == NULL)
    return;
  g_free (stream->stream_id);
  g_free (stream->path);
  g_free (stream);
}

char *
wb_dbus_stream_id_from_path (const char *path)
{
  char *sd_stream_id = NULL;
  char *stream_id;

  if (path == NULL || sd_bus_path_decode (path, WB_DBUS_STREAM_PREFIX, &sd_stream_id) <= 0)
    return NULL;
  /* malloc()ed by sd-bus: handed over as a GLib string. */
  stream_id = g_strdup (sd_stream_id);
  free (sd_stream_id);
  return stream_id;
}

int
wb_dbus_stream_find_cb (sd_bus *bus, const char *path, const char *interface, void *user_data,
                        void **out_found, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  g_autofree char *stream_id = wb_dbus_stream_id_from_path (path);
  WbDbusStream *stream;

  if (stream_id == NULL)
    return 0;
  stream = g_hash_table_lookup (frontend->streams, stream_id);
  if (stream == NULL)
    return 0;
  *out_found = stream;
  return 1;
}

int
wb_dbus_stream_enumerate_cb (sd_bus *bus, const char *prefix, void *user_data, char ***out_nodes,
                             sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  GHashTableIter iter;
  gpointer value;
  char **nodes;
  gsize n = 0;

  /* sd-bus frees the array with free(), so build it with malloc(). */
  nodes = calloc (g_hash_table_size (frontend->streams) + 1, sizeof (char *));
  if (nodes == NULL)
    return -ENOMEM;
  g_hash_table_iter_init (&iter, frontend->streams);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      WbDbusStream *stream = value;

      nodes[n] = strdup (stream->path);
      if (nodes[n] == NULL)
        {
          for (gsize i = 0; i < n; i++)
            free (nodes[i]);
          free (nodes);
          return -ENOMEM;
        }
      n++;
    }
  *out_nodes = nodes;
  return 0;
}

/* ---- signals and PropertiesChanged --------------------------------------- */

void
wb_dbus_stream_emit_event (WbDbusStream *stream, WbEvent *event)
{
  sd_bus *bus = stream->frontend->bus;
  JsonObject *p = wb_event_get_payload (event);
  const char *path = stream->path;
  const char *iface = WB_DBUS_STREAM_INTERFACE;
  const char *member = NULL;
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  int r;

/* A string member as D-Bus can carry it (dbus-text.h); the socket gets it intact. */
#define BUS_TEXT(name) wb_dbus_text_carryable (wb_json_get_string (p, (name), ""), keep)
#define EMIT(signature, ...)                                                                       \
  (wb_dbus_frontend_output_full (stream->frontend)                                                 \
       ? -ENOBUFS                                                                                  \
       : sd_bus_emit_signal (bus, path, iface, member, signature, __VA_ARGS__))

  /* D-Bus strings cannot be NULL: an absent or null member (recording_id)
   * is sent as "". Counts are clamped to their fixed unsigned types. */
  switch (wb_event_get_message_type (event))
    {
    case WB_MESSAGE_STREAM_STARTED:
      member = "Started";
      r = EMIT ("sss", BUS_TEXT ("started_at"), BUS_TEXT ("protocol"),
                BUS_TEXT ("ingest_endpoint"));
      break;
    case WB_MESSAGE_STREAM_ENDED:
      member = "Ended";
      r = EMIT ("sds", BUS_TEXT ("ended_at"), wb_json_get_double (p, "duration", 0.0),
                BUS_TEXT ("recording_id"));
      break;
    case WB_MESSAGE_STREAM_HEALTH:
      member = "Health";
      r = EMIT ("dddd", wb_json_get_double (p, "bitrate", 0.0), wb_json_get_double (p, "fps", 0.0),
                wb_json_get_double (p, "packet_loss", 0.0), wb_json_get_double (p, "latency", 0.0));
      break;
    case WB_MESSAGE_VIEWER_JOINED:
      member = "ViewerJoined";
      r = EMIT ("ssss", BUS_TEXT ("viewer_id"), BUS_TEXT ("country"), BUS_TEXT ("device"),
                BUS_TEXT ("joined_at"));
      break;
    case WB_MESSAGE_VIEWER_LEFT:
      member = "ViewerLeft";
      r = EMIT ("sds", BUS_TEXT ("viewer_id"), wb_json_get_double (p, "watch_time", 0.0),
                BUS_TEXT ("left_at"));
      break;
    case WB_MESSAGE_ANALYTICS_UPDATE:
      member = "AnalyticsUpdate";
      r = EMIT ("utud", (guint32)wb_json_get_count (p, "concurrent_viewers", G_MAXUINT32),
                (guint64)wb_json_get_count (p, "total_views", G_MAXUINT64),
                (guint32)wb_json_get_count (p, "peak_viewers", G_MAXUINT32),
                wb_json_get_double (p, "average_watch_time", 0.0));
      break;
    case WB_MESSAGE_CHAT_MESSAGE:
      member = "ChatMessage";
      r = EMIT ("sssss", BUS_TEXT ("message_id"), BUS_TEXT ("user_id"), BUS_TEXT ("username"),
                BUS_TEXT ("message"), BUS_TEXT ("timestamp"));
      break;
    case WB_MESSAGE_REACTION_RECEIVED:
      member = "ReactionReceived";
      r = EMIT ("sus", BUS_TEXT ("reaction"), (guint32)wb_json_get_count (p, "count", G_MAXUINT32),
                BUS_TEXT ("timestamp"));
      break;
    default:
      return; /* not a stream event: nothing on the bus for it */
    }
#undef EMIT
#undef BUS_TEXT
  wb_dbus_frontend_note_emit (stream->frontend, r, member);
}

void
wb_dbus_stream_emit_changed (WbDbusStream *stream, WbStreamFields changed)
{
  const char *names[G_N_ELEMENTS (stream_properties) + 1];
  gsize n = 0;
  int r;

  for (gsize i = 0; i < G_N_ELEMENTS (stream_properties); i++)
    if (stream_properties[i].field & changed)
      names[n++] = stream_properties[i].name;
  names[n] = NULL;
  if (n == 0)
    return;
  if (wb_dbus_frontend_output_full (stream->frontend))
    r = -ENOBUFS;
  else
    r = sd_bus_emit_properties_changed_strv (stream->frontend->bus, stream->path,
                                             WB_DBUS_STREAM_INTERFACE, (char **)names);
  wb_dbus_frontend_note_emit (stream->frontend, r, "PropertiesChanged");
}
