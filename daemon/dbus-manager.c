/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-private.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dbus-errors.h"
#include "dbus-text.h"
#include "wb-build-config.h"

/* Reconnect() from the bus: at most one per this many µs. */
#define RECONNECT_MIN_INTERVAL_US (5 * G_USEC_PER_SEC)

/* ---- properties: status.h's fields ---------------------------------------- */

static void
snapshot_clear (WbDbusManagerSnapshot *snapshot)
{
  for (guint i = 0; i < WB_STATUS_N_FIELDS; i++)
    g_clear_pointer (&snapshot->strings[i], g_free);
  snapshot->valid = FALSE;
}

static gboolean
field_is_string (const WbStatusField *field)
{
  return field->kind == WB_STATUS_KIND_STATE || field->kind == WB_STATUS_KIND_STRING;
}

static void
snapshot_take (WbDbusFrontend *frontend, WbDbusManagerSnapshot *out_snapshot)
{
  const WbBridgeStatus *status = wb_hub_get_status (frontend->hub);

  memset (out_snapshot, 0, sizeof (*out_snapshot));
  out_snapshot->valid = TRUE;
  for (guint i = 0; i < WB_STATUS_N_FIELDS; i++)
    {
      const WbStatusField *field = &wb_status_fields[i];

      if (field_is_string (field))
        out_snapshot->strings[i] = g_strdup (wb_status_field_get_string (field, status));
      else
        out_snapshot->numbers[i] = wb_status_field_get_uint (field, status);
    }
}

static gboolean
snapshot_field_equal (guint i, const WbDbusManagerSnapshot *a, const WbDbusManagerSnapshot *b)
{
  if (field_is_string (&wb_status_fields[i]))
    return g_strcmp0 (a->strings[i], b->strings[i]) == 0;
  return a->numbers[i] == b->numbers[i];
}

static int
manager_property_get_cb (sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  const WbStatusField *field = wb_status_field_by_dbus_name (property);
  const WbBridgeStatus *status;
  const char *signature;
  guint64 number;

  if (field == NULL)
    return sd_bus_error_setf (ret_error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s",
                              property);
  status = wb_hub_get_status (frontend->hub);
  signature = wb_status_field_signature (field);
  if (field_is_string (field))
    {
      /* Server text is sanitized where it enters (text.h); this is the
       * bus's own rule, applied to whatever a field holds. */
      g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);

      return sd_bus_message_append_basic (
          reply, 's', wb_dbus_text_carryable (wb_status_field_get_string (field, status), keep));
    }
  number = wb_status_field_get_uint (field, status);
  switch (signature[0])
    {
    case 'u':
      {
        guint32 value = (guint32)MIN (number, G_MAXUINT32);

        return sd_bus_message_append_basic (reply, 'u', &value);
      }
    case 'q':
      {
        guint16 value = (guint16)MIN (number, G_MAXUINT16);

        return sd_bus_message_append_basic (reply, 'q', &value);
      }
    default:
      return sd_bus_message_append_basic (reply, 't', &number);
    }
}

static void
manager_publish (WbDbusFrontend *frontend)
{
  WbDbusManagerSnapshot now;
  const char *names[WB_STATUS_N_FIELDS + 1];
  gsize n = 0;

  snapshot_take (frontend, &now);
  for (guint i = 0; i < WB_STATUS_N_FIELDS; i++)
    if (!wb_status_fields[i].constant
        && (!frontend->published.valid || !snapshot_field_equal (i, &frontend->published, &now)))
      names[n++] = wb_status_fields[i].dbus_name;
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
subscribe_as_client (WbDbusFrontend *frontend, WbHubClient *client, sd_bus_message *call,
                     sd_bus_error *ret_error)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) events = NULL;
  g_autofree char *path = NULL;
  const char *stream_id = NULL;
  int r;

  r = sd_bus_message_read (call, "s", &stream_id);
  if (r < 0)
    return wb_dbus_frontend_bad_arguments (ret_error, r);
  /* malloc()ed by sd-bus; GLib allocates with malloc() too, so g_strfreev fits. */
  r = sd_bus_message_read_strv (call, &events);
  if (r < 0)
    return wb_dbus_frontend_bad_arguments (ret_error, r);
  if (!wb_hub_client_subscribe (client, stream_id, (const char *const *)events, NULL, &error))
    return wb_dbus_error_set_from_gerror (ret_error, error);

  g_debug ("%s subscribed to %s", wb_hub_client_get_name (client), stream_id);
  path = wb_dbus_stream_path (stream_id);
  return sd_bus_reply_method_return (call, "o", path);
}

static int
manager_subscribe_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  return wb_dbus_frontend_call_with_client (user_data, call, TRUE, subscribe_as_client, ret_error);
}

static int
unsubscribe_as_client (WbDbusFrontend *frontend, WbHubClient *client, sd_bus_message *call,
                       sd_bus_error *ret_error)
{
  g_autoptr (GError) error = NULL;
  const char *stream_id = NULL;
  int r;

  r = sd_bus_message_read (call, "s", &stream_id);
  if (r < 0)
    return wb_dbus_frontend_bad_arguments (ret_error, r);
  if (!wb_hub_client_unsubscribe (client, stream_id, &error))
    return wb_dbus_error_set_from_gerror (ret_error, error);
  return sd_bus_reply_method_return (call, NULL);
}

static int
manager_unsubscribe_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  return wb_dbus_frontend_call_with_client (user_data, call, FALSE, unsubscribe_as_client,
                                            ret_error);
}

/* SendChatMessage and SendReaction: the member says which. */
static int
send_as_client (WbDbusFrontend *frontend, WbHubClient *client, sd_bus_message *call,
                sd_bus_error *ret_error)
{
  const char *stream_id = NULL;
  const char *text = NULL;
  int r;

  r = sd_bus_message_read (call, "ss", &stream_id, &text);
  if (r < 0)
    return wb_dbus_frontend_bad_arguments (ret_error, r);
  return wb_dbus_frontend_send (client, call, wb_dbus_send_type (call), stream_id, text, ret_error);
}

static int
manager_send_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  return wb_dbus_frontend_call_with_client (user_data, call, TRUE, send_as_client, ret_error);
}

static int
manager_reconnect_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  gint64 now = g_get_monotonic_time ();
  g_autoptr (GError) error = NULL;

  /* Any member of group wave may call it, and every reconnect means a gap
   * (and resync) for everyone: one user must not make upstream flap. */
  if (frontend->last_reconnect_us != 0
      && now - frontend->last_reconnect_us < RECONNECT_MIN_INTERVAL_US)
    return sd_bus_error_setf (ret_error, WB_DBUS_ERROR_RATE_LIMITED,
                              "Reconnect at most every %d s; retry in %" G_GINT64_FORMAT " ms",
                              (int)(RECONNECT_MIN_INTERVAL_US / G_USEC_PER_SEC),
                              (frontend->last_reconnect_us + RECONNECT_MIN_INTERVAL_US - now + 999)
                                  / 1000);
  if (!wb_hub_reconnect (frontend->hub, &error))
    {
      /* Debug only: any member of group wave could flood the journal. */
      g_debug ("Reconnect by %s refused: %s", sd_bus_message_get_sender (call), error->message);
      return wb_dbus_error_set_from_gerror (ret_error, error);
    }
  g_message ("Reconnect requested over D-Bus by %s", sd_bus_message_get_sender (call));
  frontend->last_reconnect_us = now;
  return sd_bus_reply_method_return (call, NULL);
}

static int
reload_as_privileged (WbDbusFrontend *frontend, sd_bus_message *call, sd_bus_error *ret_error)
{
  g_message ("Reload requested over D-Bus by %s", sd_bus_message_get_sender (call));
  /* The daemon reloads from the main loop and we answer then
   * (wb_dbus_frontend_reload_finished): the reload reconfigures us too. */
  g_ptr_array_add (frontend->pending_reloads, sd_bus_message_ref (call));
  if (frontend->pending_reloads->len == 1)
    frontend->callbacks.reload_requested (frontend->callback_data);
  return 1;
}

static int
manager_reload_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  return wb_dbus_frontend_call_if_privileged (user_data, call, reload_as_privileged, ret_error);
}

#define MANAGER_PROP(name, type, flags)                                                            \
  SD_BUS_PROPERTY (name, type, manager_property_get_cb, 0, flags)
#define CHANGES SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

/* Who may call what is the bus policy's business (dbus/inc.wave.Bridge1.conf),
 * so methods are UNPRIVILEGED. Reload() too, but it checks its caller
 * itself (wb_dbus_frontend_call_if_privileged): re-reading configuration and
 * key stays with root and the daemon's own user, like SIGHUP. sd-bus's own
 * check would ask the bus synchronously. */
const sd_bus_vtable wb_dbus_manager_vtable[] = {
  SD_BUS_VTABLE_START (0),
  SD_BUS_METHOD_WITH_NAMES ("Subscribe", "sas", SD_BUS_PARAM (stream_id) SD_BUS_PARAM (events), "o",
                            SD_BUS_PARAM (stream), manager_subscribe_cb,
                            SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("Unsubscribe", "s", SD_BUS_PARAM (stream_id), "", "",
                            manager_unsubscribe_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("SendChatMessage", "ss",
                            SD_BUS_PARAM (stream_id) SD_BUS_PARAM (message), "", "",
                            manager_send_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD_WITH_NAMES ("SendReaction", "ss", SD_BUS_PARAM (stream_id) SD_BUS_PARAM (reaction),
                            "", "", manager_send_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD ("Reconnect", "", "", manager_reconnect_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  SD_BUS_METHOD ("Reload", "", "", manager_reload_cb, SD_BUS_VTABLE_UNPRIVILEGED),
  /* status.h's wb_status_fields, in its order (tests/test-status.c checks). */
  MANAGER_PROP ("State", "s", CHANGES),
  MANAGER_PROP ("StateSince", "t", CHANGES),
  MANAGER_PROP ("UpstreamURL", "s", CHANGES),
  MANAGER_PROP ("UpstreamRTT", "t", CHANGES),
  MANAGER_PROP ("ConnectedSince", "t", CHANGES),
  MANAGER_PROP ("NextAttempt", "t", CHANGES),
  MANAGER_PROP ("Reconnects", "u", CHANGES),
  MANAGER_PROP ("LastCloseCode", "q", CHANGES),
  MANAGER_PROP ("LastCloseReason", "s", CHANGES),
  MANAGER_PROP ("LastError", "s", CHANGES),
  MANAGER_PROP ("HeldSends", "u", CHANGES),
  MANAGER_PROP ("InvalidMessages", "t", CHANGES),
  MANAGER_PROP ("Clients", "u", CHANGES),
  MANAGER_PROP ("EventsReceived", "t", CHANGES),
  MANAGER_PROP ("EventsDelivered", "t", CHANGES),
  MANAGER_PROP ("EventsDropped", "t", CHANGES),
  MANAGER_PROP ("Version", "s", SD_BUS_VTABLE_PROPERTY_CONST),
  SD_BUS_VTABLE_END,
};
