/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-private.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dbus-errors.h"
#include "wb-build-config.h"

/* Reconnect() from the bus: at most one per this many µs. */
#define RECONNECT_MIN_INTERVAL_US (5 * G_USEC_PER_SEC)

/* ---- properties -------------------------------------------------------- */

static void
snapshot_clear (WbDbusManagerSnapshot *snapshot)
{
  g_clear_pointer (&snapshot->state, g_free);
  g_clear_pointer (&snapshot->upstream_url, g_free);
  g_clear_pointer (&snapshot->last_error, g_free);
  snapshot->valid = FALSE;
}

static void
snapshot_take (WbDbusFrontend *frontend, WbDbusManagerSnapshot *out_snapshot)
{
  const WbUpstreamStatus *status = wb_hub_get_upstream_status (frontend->hub);
  const WbHubCounters *counters = wb_hub_get_counters (frontend->hub);

  memset (out_snapshot, 0, sizeof (*out_snapshot));
  out_snapshot->valid = TRUE;
  if (status != NULL)
    {
      out_snapshot->state = g_strdup (wb_upstream_state_to_string (status->state));
      out_snapshot->upstream_url = g_strdup (status->redacted_url);
      out_snapshot->upstream_rtt = status->rtt_us;
      out_snapshot->connected_since = (guint64)MAX (status->connected_since_realtime_us, 0);
      out_snapshot->reconnects = status->reconnects;
      out_snapshot->last_close_code = status->last_close_code;
      out_snapshot->last_error = g_strdup (status->last_error);
    }
  if (counters != NULL)
    {
      out_snapshot->clients = counters->clients;
      out_snapshot->events_received = counters->events_received;
      out_snapshot->events_delivered = counters->events_delivered;
      out_snapshot->events_dropped = counters->events_dropped;
    }
  if (out_snapshot->state == NULL)
    out_snapshot->state = g_strdup (wb_upstream_state_to_string (WB_UPSTREAM_IDLE));
  if (out_snapshot->upstream_url == NULL)
    out_snapshot->upstream_url = g_strdup ("");
  if (out_snapshot->last_error == NULL)
    out_snapshot->last_error = g_strdup ("");
}

typedef struct
{
  const char *name;
  char type;
  size_t offset; /* in WbDbusManagerSnapshot */
} WbDbusManagerProperty;

#define MANAGER_PROPERTY(name, type, member)                                                       \
  {                                                                                                \
    name, type, offsetof (WbDbusManagerSnapshot, member)                                           \
  }

/* Version is constant and not in the table. */
static const WbDbusManagerProperty manager_properties[] = {
  MANAGER_PROPERTY ("State", 's', state),
  MANAGER_PROPERTY ("UpstreamURL", 's', upstream_url),
  MANAGER_PROPERTY ("UpstreamRTT", 't', upstream_rtt),
  MANAGER_PROPERTY ("ConnectedSince", 't', connected_since),
  MANAGER_PROPERTY ("Reconnects", 'u', reconnects),
  MANAGER_PROPERTY ("LastCloseCode", 'q', last_close_code),
  MANAGER_PROPERTY ("LastError", 's', last_error),
  MANAGER_PROPERTY ("Clients", 'u', clients),
  MANAGER_PROPERTY ("EventsReceived", 't', events_received),
  MANAGER_PROPERTY ("EventsDelivered", 't', events_delivered),
  MANAGER_PROPERTY ("EventsDropped", 't', events_dropped),
};

static gsize
property_size (char type)
{
  switch (type)
    {
    case 't':
      return sizeof (guint64);
    case 'u':
      return sizeof (guint);
    case 'q':
      return sizeof (guint16);
    default:
      return 0;
    }
}

static gboolean
property_equal (const WbDbusManagerProperty *p, const WbDbusManagerSnapshot *a,
                const WbDbusManagerSnapshot *b)
{
  const guint8 *field_a = (const guint8 *)a + p->offset;
  const guint8 *field_b = (const guint8 *)b + p->offset;

  if (p->type == 's')
    return g_strcmp0 (*(char *const *)field_a, *(char *const *)field_b) == 0;
  return memcmp (field_a, field_b, property_size (p->type)) == 0;
}

static int
manager_property_get_cb (sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  WbDbusManagerSnapshot snapshot;
  int r = -ENOENT;

  if (g_strcmp0 (property, "Version") == 0)
    return sd_bus_message_append_basic (reply, 's', WB_VERSION);

  snapshot_take (frontend, &snapshot);
  for (gsize i = 0; i < G_N_ELEMENTS (manager_properties); i++)
    {
      const WbDbusManagerProperty *p = &manager_properties[i];
      const guint8 *field = (const guint8 *)&snapshot + p->offset;

      if (g_strcmp0 (p->name, property) != 0)
        continue;
      if (p->type == 's')
        r = sd_bus_message_append_basic (reply, 's', *(char *const *)field);
      else
        r = sd_bus_message_append_basic (reply, p->type, field);
      break;
    }
  snapshot_clear (&snapshot);
  if (r == -ENOENT)
    return sd_bus_error_setf (ret_error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s",
                              property);
  return r;
}

static void
manager_publish (WbDbusFrontend *frontend)
{
  WbDbusManagerSnapshot now;
  const char *names[G_N_ELEMENTS (manager_properties) + 1];
  gsize n = 0;

  snapshot_take (frontend, &now);
  for (gsize i = 0; i < G_N_ELEMENTS (manager_properties); i++)
    if (!frontend->published.valid
        || !property_equal (&manager_properties[i], &frontend->published, &now))
      names[n++] = manager_properties[i].name;
  names[n] = NULL;

  snapshot_clear (&frontend->published);
  frontend->published = now;
  frontend->last_status_us = g_get_monotonic_time ();
  if (n > 0)
    {
      int r = sd_bus_emit_properties_changed_strv (frontend->bus, WB_DBUS_MANAGER_PATH,
                                                   WB_DBUS_MANAGER_INTERFACE, (char **)names);

      wb_dbus_frontend_note_emit (frontend, r, "PropertiesChanged");
    }
}

static gboolean
manager_publish_cb (gpointer user_data)
{
  WbDbusFrontend *frontend = user_data;

  frontend->status_timeout_id = 0;
  manager_publish (frontend);
  return G_SOURCE_REMOVE;
}

void
wb_dbus_manager_status_changed (WbDbusFrontend *frontend, gboolean immediate)
{
  gint64 due_us;
  gint64 now_us;

  if (immediate)
    {
      g_clear_handle_id (&frontend->status_timeout_id, g_source_remove);
      manager_publish (frontend);
      return;
    }
  if (frontend->status_timeout_id != 0)
    return; /* a batch is already coming: it will carry this change */

  now_us = g_get_monotonic_time ();
  due_us = frontend->last_status_us + (gint64)WB_DBUS_STATUS_INTERVAL_MS * G_TIME_SPAN_MILLISECOND;
  if (now_us >= due_us)
    {
      manager_publish (frontend);
      return;
    }
  frontend->status_timeout_id = g_timeout_add (
      (guint)((due_us - now_us + G_TIME_SPAN_MILLISECOND - 1) / G_TIME_SPAN_MILLISECOND),
      manager_publish_cb, frontend);
}

void
wb_dbus_manager_clear (WbDbusFrontend *frontend)
{
  g_clear_handle_id (&frontend->status_timeout_id, g_source_remove);
  snapshot_clear (&frontend->published);
}

/* ---- methods ------------------------------------------------------------ */

static int
manager_subscribe_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) events = NULL;
  g_autofree char *path = NULL;
  const char *stream_id = NULL;
  WbHubClient *client;
  int r;

  r = sd_bus_message_read (call, "s", &stream_id);
  if (r < 0)
    return r;
  /* malloc()ed by sd-bus; GLib allocates with malloc() too, so g_strfreev fits. */
  r = sd_bus_message_read_strv (call, &events);
  if (r < 0)
    return r;

  client = wb_dbus_frontend_lookup_client (frontend, call, TRUE, &error);
  if (client == NULL
      || !wb_hub_client_subscribe (client, stream_id, (const char *const *)events, NULL, &error))
    return wb_dbus_error_set_from_gerror (ret_error, error);

  g_debug ("%s subscribed to %s", wb_hub_client_get_name (client), stream_id);
  path = wb_dbus_stream_path (stream_id);
  return sd_bus_reply_method_return (call, "o", path);
}

static int
manager_unsubscribe_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  g_autoptr (GError) error = NULL;
  const char *stream_id = NULL;
  WbHubClient *client;
  int r;

  r = sd_bus_message_read (call, "s", &stream_id);
  if (r < 0)
    return r;

  client = wb_dbus_frontend_lookup_client (frontend, call, FALSE, &error);
  if (client == NULL || !wb_hub_client_unsubscribe (client, stream_id, &error))
    return wb_dbus_error_set_from_gerror (ret_error, error);
  return sd_bus_reply_method_return (call, NULL);
}

static int
manager_send_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error, WbMessageType type)
{
  WbDbusFrontend *frontend = user_data;
  const char *stream_id = NULL;
  const char *text = NULL;
  int r;

  r = sd_bus_message_read (call, "ss", &stream_id, &text);
  if (r < 0)
    return r;
  return wb_dbus_frontend_handle_send (frontend, call, type, stream_id, text, ret_error);
}

static int
manager_send_chat_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  return manager_send_cb (call, user_data, ret_error, WB_MESSAGE_CHAT_MESSAGE);
}

static int
manager_send_reaction_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  return manager_send_cb (call, user_data, ret_error, WB_MESSAGE_REACTION_SENT);
}

static int
manager_reconnect_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  gint64 now = g_get_monotonic_time ();

  /* Any member of group wave may call it, and every reconnect means a gap
   * (and resync) for everyone: one user must not make upstream flap. */
  if (frontend->last_reconnect_us != 0
      && now - frontend->last_reconnect_us < RECONNECT_MIN_INTERVAL_US)
    return sd_bus_error_setf (ret_error, WB_DBUS_ERROR_RATE_LIMITED,
                              "Reconnect at most every %d s; retry in %" G_GINT64_FORMAT " ms",
                              (int)(RECONNECT_MIN_INTERVAL_US / G_USEC_PER_SEC),
                              (frontend->last_reconnect_us + RECONNECT_MIN_INTERVAL_US - now + 999)
                                  / 1000);
  frontend->last_reconnect_us = now;
  g_message ("Reconnect requested over D-Bus by %s", sd_bus_message_get_sender (call));
  wb_hub_reconnect (frontend->hub);
  return sd_bus_reply_method_return (call, NULL);
}

static int
manager_reload_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  g_autoptr (GError) error = NULL;

  g_message ("Reload requested over D-Bus by %s", sd_bus_message_get_sender (call));
  if (!wb_hub_reload (frontend->hub, &error))
    {
      g_warning ("Reload failed: %s", error->message);
      return wb_dbus_error_set_from_gerror (ret_error, error);
    }
  return sd_bus_reply_method_return (call, NULL);
}

#define MANAGER_PROP(name, type, flags)                                                            \
  SD_BUS_PROPERTY (name, type, manager_property_get_cb, 0, flags)
#define CHANGES SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

/* Who may call what is the bus policy's business (dbus/inc.wave.Bridge1.conf),
 * so methods are UNPRIVILEGED, except Reload(): re-reading configuration and
 * key stays with root and the daemon's own user, like SIGHUP. */
const sd_bus_vtable wb_dbus_manager_vtable[] = {
  SD_BUS_VTABLE_START (0),
  SD_BUS_METHOD_WITH_NAMES ("Subscribe", "sas", SD_BUS_PARAM (stream_id) SD_BUS_PARAM (events), "o",
                            SD_BUS_PARAM (stream), manager_subscribe_cb,
                            SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("Unsubscribe", "s", SD_BUS_PARAM (stream_id), "", "",
                            manager_unsubscribe_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("SendChatMessage", "ss",
                            SD_BUS_PARAM (stream_id) SD_BUS_PARAM (message), "", "",
                            manager_send_chat_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("SendReaction", "ss", SD_BUS_PARAM (stream_id) SD_BUS_PARAM (reaction),
                            "", "", manager_send_reaction_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD ("Reconnect", "", "", manager_reconnect_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD ("Reload", "", "", manager_reload_cb, 0),
  MANAGER_PROP ("State", "s", CHANGES),
  MANAGER_PROP ("UpstreamURL", "s", CHANGES),
  MANAGER_PROP ("UpstreamRTT", "t", CHANGES),
  MANAGER_PROP ("ConnectedSince", "t", CHANGES),
  MANAGER_PROP ("Reconnects", "u", CHANGES),
  MANAGER_PROP ("LastCloseCode", "q", CHANGES),
  MANAGER_PROP ("LastError", "s", CHANGES),
  MANAGER_PROP ("Clients", "u", CHANGES),
  MANAGER_PROP ("EventsReceived", "t", CHANGES),
  MANAGER_PROP ("EventsDelivered", "t", CHANGES),
  MANAGER_PROP ("EventsDropped", "t", CHANGES),
  MANAGER_PROP ("Version", "s", SD_BUS_VTABLE_PROPERTY_CONST),
  SD_BUS_VTABLE_END,
};
