/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-frontend.h"

#include <errno.h>

#include "dbus-errors.h"
#include "dbus-text.h"
#include "errno-util.h"
#include "dbus-private.h"

/* ---- sends: replied when the hub knows their outcome --------------------- */

static void
bus_message_unref (gpointer message)
{
  sd_bus_message_unref (message);
}

static void
send_done_cb (WbHubClient *client, const GError *error, gpointer user_data)
{
  sd_bus_message *call = user_data;
  int r;

  if (error != NULL)
    {
      g_auto (sd_bus_error) bus_error = SD_BUS_ERROR_NULL;

      wb_dbus_error_set_from_gerror (&bus_error, error);
      r = sd_bus_reply_method_error (call, &bus_error);
    }
  else
    {
      r = sd_bus_reply_method_return (call, NULL);
    }
  if (r < 0)
    g_debug ("Cannot reply to %s: %s", wb_hub_client_get_name (client), g_strerror (-r));
}

WbMessageType
wb_dbus_send_type (sd_bus_message *call)
{
  return sd_bus_message_is_method_call (call, NULL, "SendReaction") ? WB_MESSAGE_REACTION_SENT
                                                                    : WB_MESSAGE_CHAT_MESSAGE;
}

int
wb_dbus_frontend_send (WbHubClient *client, sd_bus_message *call, WbMessageType type,
                       const char *stream_id, const char *text, sd_bus_error *ret_error)
{
  g_autoptr (GError) error = NULL;

  /* The hub owns the reference from here, and drops it with the client. */
  if (!wb_hub_client_send (client, type, stream_id, text, send_done_cb, sd_bus_message_ref (call),
                           bus_message_unref, &error))
    return wb_dbus_error_set_from_gerror (ret_error, error);
  return 1; /* replied from send_done_cb */
}

void
wb_dbus_frontend_note_emit (WbDbusFrontend *frontend, int r, const char *what)
{
  if (r >= 0)
    return;
  /* Lost either way, and counted: nothing vanishes silently. */
  wb_hub_count_dropped (frontend->hub, 1);
  wb_dbus_manager_status_changed (frontend, FALSE);
  if (r == -ENOBUFS)
    {
      /* The outgoing queue is full: the bus daemon is not reading. Never
       * wait for it. Expected under load: not worth a warning each. */
      g_debug ("D-Bus output queue full, dropped %s", what);
      return;
    }
  /* Text is made carryable before it gets here (dbus-text.h), so this is a
   * bug or an exhausted resource; at most one line per interval. */
  if (g_get_monotonic_time () - frontend->last_emit_warning_us >= WB_DBUS_EMIT_WARNING_INTERVAL_US)
    {
      frontend->last_emit_warning_us = g_get_monotonic_time ();
      g_warning ("Cannot emit %s: %s (dropped, counted in EventsDropped)", what, g_strerror (-r));
    }
  else
    g_debug ("Cannot emit %s: %s", what, g_strerror (-r));
}

gboolean
wb_dbus_frontend_output_full (WbDbusFrontend *frontend)
{
  uint64_t queued = 0;

  return sd_bus_get_n_queued_write (frontend->bus, &queued) >= 0
         && queued >= WB_DBUS_MAX_QUEUED_MESSAGES;
}

int
wb_dbus_frontend_bad_arguments (sd_bus_error *ret_error, int r)
{
  if (r == -EBADMSG || r == -EINVAL)
    return sd_bus_error_setf (ret_error, WB_DBUS_ERROR_INVALID_ARGUMENT,
                              "An argument is not a string D-Bus can carry "
                              "(valid UTF-8 without Unicode noncharacters)");
  return r;
}

/* ---- hub observer ------------------------------------------------------- */

static void
stream_added_cb (const char *stream_id, gpointer user_data)
{
  WbDbusFrontend *frontend = user_data;
  WbDbusStream *stream;
  int r;

  if (g_hash_table_contains (frontend->streams, stream_id))
    return;
  stream = wb_dbus_stream_new (frontend, stream_id);
  g_hash_table_insert (frontend->streams, stream->stream_id, stream);
  r = sd_bus_emit_interfaces_added (frontend->bus, stream->path, WB_DBUS_STREAM_INTERFACE, NULL);
  wb_dbus_frontend_note_emit (frontend, r, "InterfacesAdded");
}

static void
stream_removed_cb (const char *stream_id, gpointer user_data)
{
  WbDbusFrontend *frontend = user_data;
  WbDbusStream *stream = g_hash_table_lookup (frontend->streams, stream_id);
  int r;

  if (stream == NULL)
    return;
  r = sd_bus_emit_interfaces_removed (frontend->bus, stream->path, WB_DBUS_STREAM_INTERFACE, NULL);
  wb_dbus_frontend_note_emit (frontend, r, "InterfacesRemoved");
  g_hash_table_remove (frontend->streams, stream_id);
}

static void
stream_event_cb (WbEvent *event, gpointer user_data)
{
  WbDbusFrontend *frontend = user_data;
  const char *stream_id = wb_event_get_stream_id (event);
  WbDbusStream *stream;

  if (stream_id == NULL)
    return;
  stream = g_hash_table_lookup (frontend->streams, stream_id);
  if (stream != NULL)
    wb_dbus_stream_emit_event (stream, event);
}

static void
stream_changed_cb (const char *stream_id, WbStreamFields changed, gpointer user_data)
{
  WbDbusFrontend *frontend = user_data;
  WbDbusStream *stream = g_hash_table_lookup (frontend->streams, stream_id);

  if (stream != NULL)
    wb_dbus_stream_emit_changed (stream, changed);
}

static void
state_changed_cb (WbLinkState state, gpointer user_data)
{
  wb_dbus_manager_status_changed (user_data, TRUE);
}

static void
status_changed_cb (gpointer user_data)
{
  wb_dbus_manager_status_changed (user_data, FALSE);
}

static const WbHubObserver frontend_observer = {
  .stream_added = stream_added_cb,
  .stream_removed = stream_removed_cb,
  .stream_event = stream_event_cb,
  .stream_changed = stream_changed_cb,
  .state_changed = state_changed_cb,
  .status_changed = status_changed_cb,
};

/* ---- the frontend ------------------------------------------------------- */

static void
bus_lost_cb (int error, gpointer user_data)
{
  WbDbusFrontend *frontend = user_data;

  g_warning ("Lost the connection to the %s bus: %s", wb_bus_type_to_string (frontend->config->bus),
             g_strerror (-error));
  if (frontend->callbacks.lost != NULL)
    frontend->callbacks.lost (frontend->callback_data);
}

static gboolean
frontend_export (WbDbusFrontend *frontend, GError **error)
{
  g_auto (GStrv) stream_ids = NULL;
  int r;

  r = sd_bus_add_object_vtable (frontend->bus, &frontend->manager_slot, WB_DBUS_MANAGER_PATH,
                                WB_DBUS_MANAGER_INTERFACE, wb_dbus_manager_vtable, frontend);
  if (r < 0)
    return wb_set_error_from_errno (error, -r, "Cannot export " WB_DBUS_MANAGER_PATH);
  r = sd_bus_add_object_manager (frontend->bus, &frontend->object_manager_slot,
                                 WB_DBUS_MANAGER_PATH);
  if (r < 0)
    return wb_set_error_from_errno (error, -r, "Cannot add the object manager");
  r = sd_bus_add_fallback_vtable (frontend->bus, &frontend->stream_slot, WB_DBUS_STREAM_PREFIX,
                                  WB_DBUS_STREAM_INTERFACE, wb_dbus_stream_vtable,
                                  wb_dbus_stream_find_cb, frontend);
  if (r < 0)
    return wb_set_error_from_errno (error, -r, "Cannot export the stream objects");
  r = sd_bus_add_node_enumerator (frontend->bus, &frontend->enumerator_slot, WB_DBUS_STREAM_PREFIX,
                                  wb_dbus_stream_enumerate_cb, frontend);
  if (r < 0)
    return wb_set_error_from_errno (error, -r, "Cannot add the stream enumerator");

  /* Streams subscribed to before the frontend existed (socket clients). */
  stream_ids = wb_hub_list_streams (frontend->hub);
  for (gsize i = 0; stream_ids != NULL && stream_ids[i] != NULL; i++)
    {
      WbDbusStream *stream = wb_dbus_stream_new (frontend, stream_ids[i]);

      g_hash_table_insert (frontend->streams, stream->stream_id, stream);
    }
  return TRUE;
}

WbDbusFrontend *
wb_dbus_frontend_new (WbHub *hub, const WbConfig *config, const WbDbusFrontendCallbacks *callbacks,
                      gpointer user_data, GError **error)
{
  g_autoptr (WbDbusFrontend) frontend = NULL;
  const char *bus_name;
  int r;

  g_return_val_if_fail (hub != NULL, NULL);
  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (callbacks != NULL, NULL);
  g_return_val_if_fail (config->bus != WB_BUS_NONE, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  frontend = g_new0 (WbDbusFrontend, 1);
  frontend->hub = hub;
  frontend->config = config;
  frontend->callbacks = *callbacks;
  frontend->callback_data = user_data;
  frontend->pending_reloads = g_ptr_array_new_with_free_func (bus_message_unref);
  frontend->clients
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)wb_dbus_client_free);
  frontend->streams
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)wb_dbus_stream_free);
  frontend->privileged_calls
      = g_hash_table_new_full (g_direct_hash, g_direct_equal, wb_dbus_privileged_call_free, NULL);

  bus_name = wb_bus_type_to_string (config->bus);
  if (config->bus == WB_BUS_SYSTEM)
    r = sd_bus_open_system_with_description (&frontend->bus, "wave-bridge");
  else
    r = sd_bus_open_user_with_description (&frontend->bus, "wave-bridge");
  if (r < 0)
    {
      wb_set_error_from_errno (error, -r, "Cannot connect to the %s bus", bus_name);
      return NULL;
    }

  if (!frontend_export (frontend, error) || !wb_dbus_clients_watch (frontend, error))
    return NULL;
  frontend->observer_id = wb_hub_add_observer (hub, &frontend_observer, frontend);
  wb_dbus_manager_status_changed (frontend, TRUE);

  /* Only once everything is exported, so activated callers find it all. */
  r = sd_bus_request_name (frontend->bus, WB_DBUS_NAME, 0);
  if (r == -EEXIST)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                   "The name %s is already owned on the %s bus (is wave-bridged running?)",
                   WB_DBUS_NAME, bus_name);
      return NULL;
    }
  if (r < 0)
    {
      wb_set_error_from_errno (error, -r, "Cannot own the name %s on the %s bus", WB_DBUS_NAME,
                               bus_name);
      return NULL;
    }

  frontend->source = wb_bus_source_new (frontend->bus);
  g_source_set_callback (frontend->source, G_SOURCE_FUNC (bus_lost_cb), frontend, NULL);
  g_source_attach (frontend->source, NULL);
  g_message ("Owning %s on the %s bus", WB_DBUS_NAME, bus_name);
  return g_steal_pointer (&frontend);
}

void
wb_dbus_frontend_free (WbDbusFrontend *frontend)
{
  if (frontend == NULL)
    return;
  if (frontend->observer_id != 0)
    wb_hub_remove_observer (frontend->hub, frontend->observer_id);
  wb_dbus_manager_clear (frontend);
  /* Unanswered Reload() calls: the bus is going, and so is their answer. */
  g_clear_pointer (&frontend->privileged_calls, g_hash_table_unref);
  g_clear_pointer (&frontend->pending_reloads, g_ptr_array_unref);
  /* Ends the D-Bus peers' subscriptions; the observer is gone, so no
   * InterfacesRemoved on a bus we are leaving. */
  g_clear_pointer (&frontend->clients, g_hash_table_unref);
  g_warn_if_fail (frontend->n_resolving == 0 && frontend->waiting_bytes == 0);
  frontend->caller_left_slot = sd_bus_slot_unref (frontend->caller_left_slot);
  g_clear_pointer (&frontend->streams, g_hash_table_unref);
  frontend->enumerator_slot = sd_bus_slot_unref (frontend->enumerator_slot);
  frontend->stream_slot = sd_bus_slot_unref (frontend->stream_slot);
  frontend->object_manager_slot = sd_bus_slot_unref (frontend->object_manager_slot);
  frontend->manager_slot = sd_bus_slot_unref (frontend->manager_slot);
  if (frontend->source != NULL)
    {
      g_source_destroy (frontend->source);
      g_clear_pointer (&frontend->source, g_source_unref);
    }
  frontend->bus = sd_bus_flush_close_unref (frontend->bus);
  g_free (frontend);
}

void
wb_dbus_frontend_set_config (WbDbusFrontend *frontend, const WbConfig *config)
{
  g_return_if_fail (frontend != NULL);
  g_return_if_fail (config != NULL);

  frontend->config = config;
  /* The upstream URL may have changed. */
  wb_dbus_manager_status_changed (frontend, FALSE);
}

void
wb_dbus_frontend_reload_finished (WbDbusFrontend *frontend, const GError *error)
{
  g_autoptr (GPtrArray) calls = NULL;

  g_return_if_fail (frontend != NULL);

  calls = g_steal_pointer (&frontend->pending_reloads);
  frontend->pending_reloads = g_ptr_array_new_with_free_func (bus_message_unref);
  for (guint i = 0; i < calls->len; i++)
    {
      sd_bus_message *call = g_ptr_array_index (calls, i);
      int r;

      if (error != NULL)
        {
          /* The message may quote the file, in whatever encoding it has:
           * a reply sd-bus refuses to build would leave the caller hanging. */
          g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);

          r = sd_bus_reply_method_errorf (call, WB_DBUS_ERROR_FAILED, "%s",
                                          wb_dbus_text_carryable (error->message, keep));
        }
      else
        r = sd_bus_reply_method_return (call, NULL);
      if (r < 0)
        g_debug ("Cannot answer Reload() of %s: %s", sd_bus_message_get_sender (call),
                 g_strerror (-r));
    }
}
