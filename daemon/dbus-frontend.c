/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-frontend.h"

#include <errno.h>
#include <stdio.h>

#include "dbus-errors.h"
#include "dbus-text.h"
#include "errno-util.h"
#include "dbus-private.h"

/* ---- clients: one WbHubClient per unique bus name ------------------------ */

/* A method call waiting for the hub to report the outcome of its send. */
typedef struct
{
  WbDbusClient *client;
  sd_bus_message *call;
} WbDbusPendingSend;

struct _WbDbusClient
{
  WbDbusFrontend *frontend;
  char *name; /* unique bus name */
  WbHubClient *hub_client;
};

/* A caller the bridge does not know yet: its credentials are asked of the
 * bus without waiting (a synchronous call would stop the main loop for a
 * bus round trip per new caller, and one user's stream of new bus names
 * would take that time from everyone); its calls wait for the answer. */
typedef struct
{
  WbDbusFrontend *frontend;
  char *name;
  sd_bus_slot *slot; /* GetConnectionCredentials */
  GPtrArray *calls;  /* WbDbusDeferredCall, in arrival order */
} WbDbusNewcomer;

typedef struct
{
  sd_bus_message *call;
  sd_bus_message_handler_t handler;
  void *user_data;
} WbDbusDeferredCall;

static void
pending_send_free (gpointer data)
{
  WbDbusPendingSend *pending = data;

  sd_bus_message_unref (pending->call);
  g_free (pending);
}

static void
bus_message_unref (gpointer message)
{
  sd_bus_message_unref (message);
}

static void
dbus_client_free (gpointer data)
{
  WbDbusClient *client = data;

  if (client == NULL)
    return;
  /* First the hub client: the hub then forgets our pending sends and will
   * not call back into them. The caller is gone, so no replies are owed. */
  g_clear_pointer (&client->hub_client, wb_hub_client_free);
  g_free (client->name);
  g_free (client);
}

static void dbus_client_create (WbDbusFrontend *frontend, const char *name,
                                const WbPeerCredentials *credentials);

static void
deferred_call_free (gpointer data)
{
  WbDbusDeferredCall *deferred = data;

  sd_bus_message_unref (deferred->call);
  g_free (deferred);
}

static void
newcomer_free (gpointer data)
{
  WbDbusNewcomer *newcomer = data;

  newcomer->slot = sd_bus_slot_unref (newcomer->slot);
  g_ptr_array_unref (newcomer->calls);
  g_free (newcomer->name);
  g_free (newcomer);
}

/* Every unique name that leaves the bus (NameOwnerChanged with an empty new
 * owner, one match for all): a client's subscriptions end with it. Messages
 * from the bus arrive in order, so a caller that leaves after the bus
 * answered for its credentials is always seen leaving here. */
static int
name_lost_cb (sd_bus_message *message, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  const char *name = NULL;
  const char *old_owner = NULL;
  const char *new_owner = NULL;

  if (sd_bus_message_read (message, "sss", &name, &old_owner, &new_owner) < 0
      || new_owner[0] != '\0')
    return 0;
  if (g_hash_table_remove (frontend->clients, name))
    g_debug ("%s left the bus, its subscriptions ended", name);
  return 0;
}

/* The effective gid of @pid, (gid_t)-1 if it cannot be read (the process
 * is gone): the bus reports supplementary groups but no primary one. */
static gid_t
process_egid (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", (int)pid);
  g_autofree char *text = NULL;
  const char *line;
  unsigned long real_gid;
  unsigned long effective_gid;

  if (pid <= 0 || !g_file_get_contents (path, &text, NULL, NULL))
    return (gid_t)-1;
  line = strstr (text, "\nGid:");
  if (line == NULL || sscanf (line + 5, "%lu %lu", &real_gid, &effective_gid) != 2)
    return (gid_t)-1;
  return (gid_t)effective_gid;
}

/* Who the caller is, as the bus vouches for it (GetConnectionCredentials:
 * what the bus recorded when the caller connected): its uid is the user it
 * counts against (quotas and send allowances, shared with its socket
 * connections), its groups decide SendGroup. NULL if the bus says no uid. */
static WbPeerCredentials *
credentials_from_reply (sd_bus_message *reply)
{
  g_autoptr (GArray) groups = g_array_new (FALSE, FALSE, sizeof (gid_t));
  gboolean have_uid = FALSE;
  uint32_t uid = 0;
  uint32_t pid = 0;
  int r;

  if (sd_bus_message_enter_container (reply, 'a', "{sv}") < 0)
    return NULL;
  while ((r = sd_bus_message_enter_container (reply, 'e', "sv")) > 0)
    {
      const char *key = NULL;

      if (sd_bus_message_read (reply, "s", &key) < 0)
        return NULL;
      if (g_str_equal (key, "UnixUserID"))
        {
          if (sd_bus_message_read (reply, "v", "u", &uid) < 0)
            return NULL;
          have_uid = TRUE;
        }
      else if (g_str_equal (key, "ProcessID"))
        {
          if (sd_bus_message_read (reply, "v", "u", &pid) < 0)
            return NULL;
        }
      else if (g_str_equal (key, "UnixGroupIDs"))
        {
          uint32_t gid;

          if (sd_bus_message_enter_container (reply, 'v', "au") < 0
              || sd_bus_message_enter_container (reply, 'a', "u") < 0)
            return NULL;
          while ((r = sd_bus_message_read (reply, "u", &gid)) > 0)
            {
              gid_t value = gid;

              g_array_append_val (groups, value);
            }
          if (r < 0 || sd_bus_message_exit_container (reply) < 0
              || sd_bus_message_exit_container (reply) < 0)
            return NULL;
        }
      else if (sd_bus_message_skip (reply, "v") < 0)
        return NULL;
      if (sd_bus_message_exit_container (reply) < 0)
        return NULL;
    }
  if (r < 0 || !have_uid)
    return NULL;
  return wb_peer_credentials_new ((pid_t)pid, (uid_t)uid, process_egid ((pid_t)pid),
                                  (const gid_t *)(gpointer)groups->data, groups->len);
}

/* Runs @deferred's handler again, now that its caller is known (or known
 * to be unknowable), and answers for it if the handler failed. */
static void
deferred_call_run (WbDbusDeferredCall *deferred)
{
  g_auto (sd_bus_error) error = SD_BUS_ERROR_NULL;
  int r;

  r = sd_bus_message_rewind (deferred->call, TRUE);
  if (r >= 0)
    r = deferred->handler (deferred->call, deferred->user_data, &error);
  if (r >= 0)
    return;
  if (sd_bus_error_is_set (&error))
    r = sd_bus_reply_method_error (deferred->call, &error);
  else
    r = sd_bus_reply_method_errno (deferred->call, r, NULL);
  if (r < 0)
    g_debug ("Cannot answer %s: %s", sd_bus_message_get_sender (deferred->call), g_strerror (-r));
}

static int
newcomer_credentials_cb (sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  WbDbusNewcomer *newcomer = user_data;
  WbDbusFrontend *frontend = newcomer->frontend;
  g_autoptr (WbPeerCredentials) credentials = NULL;
  g_autoptr (GPtrArray) calls = g_steal_pointer (&newcomer->calls);
  g_autofree char *name = g_strdup (newcomer->name);

  newcomer->calls = g_ptr_array_new ();
  /* Frees @newcomer: its slot is the one being answered, which sd-bus keeps
   * alive until we return. */
  g_hash_table_remove (frontend->newcomers, name);

  if (!sd_bus_message_is_method_error (reply, NULL))
    credentials = credentials_from_reply (reply);
  if (credentials == NULL)
    {
      /* Gone already (the bus knows no such name), or the bus would not
       * say: counting it as a user of its own would give every such name
       * a fresh set of per-user quotas. */
      g_debug ("No credentials for %s: %s", name,
               sd_bus_message_is_method_error (reply, NULL)
                   ? sd_bus_message_get_error (reply)->message
                   : "no uid");
      for (guint i = 0; i < calls->len; i++)
        {
          WbDbusDeferredCall *deferred = g_ptr_array_index (calls, i);

          (void)sd_bus_reply_method_errorf (deferred->call, SD_BUS_ERROR_ACCESS_DENIED,
                                            "The bus cannot say which user %s is", name);
        }
      return 0;
    }
  dbus_client_create (frontend, name, credentials);
  /* In arrival order; a refused client (LimitsExceeded) gets its error
   * from each handler's own lookup. */
  for (guint i = 0; i < calls->len; i++)
    deferred_call_run (g_ptr_array_index (calls, i));
  /* Its next call tries again, as a call from an unknown caller does. */
  g_hash_table_remove (frontend->refused, name);
  return 0;
}

/* Makes @name a client. A refusal (MaxClients, the user's quota) is not
 * remembered: the handlers' own lookups report it. */
static void
dbus_client_create (WbDbusFrontend *frontend, const char *name,
                    const WbPeerCredentials *credentials)
{
  static const WbHubClientSink sink = { .deliver = NULL }; /* signals are broadcast */
  g_autofree char *hub_name = g_strdup_printf ("dbus %s", name);
  g_autoptr (GError) error = NULL;
  WbDbusClient *client = g_new0 (WbDbusClient, 1);

  client->frontend = frontend;
  client->name = g_strdup (name);
  client->hub_client
      = wb_hub_client_new (frontend->hub, hub_name, credentials, &sink, client, &error);
  if (client->hub_client == NULL)
    {
      g_hash_table_insert (frontend->refused, g_strdup (name), g_steal_pointer (&error));
      dbus_client_free (client);
      return;
    }
  g_hash_table_insert (frontend->clients, client->name, client);
  g_debug ("New D-Bus client %s", name);
}

static WbDbusClient *
dbus_client_lookup (WbDbusFrontend *frontend, sd_bus_message *call, gboolean create,
                    sd_bus_message_handler_t handler, void *user_data, gboolean *out_deferred,
                    sd_bus_error *ret_error)
{
  const char *sender = sd_bus_message_get_sender (call);
  WbDbusNewcomer *newcomer;
  WbDbusDeferredCall *deferred;
  WbDbusClient *client;
  GError *refusal;
  int r;

  *out_deferred = FALSE;
  if (sender == NULL)
    {
      sd_bus_error_set (ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                        "Calls must come through a bus (no sender)");
      return NULL;
    }
  client = g_hash_table_lookup (frontend->clients, sender);
  if (client != NULL)
    return client;
  /* Refused while its calls waited: each of them is told why. */
  refusal = g_hash_table_lookup (frontend->refused, sender);
  if (refusal != NULL)
    {
      wb_dbus_error_set_from_gerror (ret_error, refusal);
      return NULL;
    }
  newcomer = g_hash_table_lookup (frontend->newcomers, sender);
  if (newcomer == NULL && !create)
    {
      sd_bus_error_setf (ret_error, WB_DBUS_ERROR_NOT_SUBSCRIBED, "%s has no subscriptions",
                         sender);
      return NULL;
    }
  if (newcomer == NULL)
    {
      newcomer = g_new0 (WbDbusNewcomer, 1);
      newcomer->frontend = frontend;
      newcomer->name = g_strdup (sender);
      newcomer->calls = g_ptr_array_new_with_free_func (deferred_call_free);
      r = sd_bus_call_method_async (frontend->bus, &newcomer->slot, "org.freedesktop.DBus",
                                    "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                    "GetConnectionCredentials", newcomer_credentials_cb, newcomer,
                                    "s", sender);
      if (r < 0)
        {
          sd_bus_error_set_errnof (ret_error, -r, "Cannot ask who %s is: %s", sender,
                                   g_strerror (-r));
          newcomer_free (newcomer);
          return NULL;
        }
      g_hash_table_insert (frontend->newcomers, newcomer->name, newcomer);
    }
  /* Answered once the bus has said who the caller is, in arrival order. */
  deferred = g_new0 (WbDbusDeferredCall, 1);
  deferred->call = sd_bus_message_ref (call);
  deferred->handler = handler;
  deferred->user_data = user_data;
  g_ptr_array_add (newcomer->calls, deferred);
  *out_deferred = TRUE;
  return NULL;
}

WbHubClient *
wb_dbus_frontend_lookup_client (WbDbusFrontend *frontend, sd_bus_message *call, gboolean create,
                                sd_bus_message_handler_t handler, void *user_data,
                                gboolean *out_deferred, sd_bus_error *ret_error)
{
  WbDbusClient *client
      = dbus_client_lookup (frontend, call, create, handler, user_data, out_deferred, ret_error);

  return client != NULL ? client->hub_client : NULL;
}

static void
send_done_cb (WbHubClient *hub_client, const GError *error, gpointer user_data)
{
  WbDbusPendingSend *pending = user_data;
  WbDbusClient *client = pending->client;
  int r;

  if (error != NULL)
    {
      g_auto (sd_bus_error) bus_error = SD_BUS_ERROR_NULL;

      wb_dbus_error_set_from_gerror (&bus_error, error);
      r = sd_bus_reply_method_error (pending->call, &bus_error);
    }
  else
    {
      r = sd_bus_reply_method_return (pending->call, NULL);
    }
  if (r < 0)
    g_debug ("Cannot reply to %s: %s", client->name, g_strerror (-r));
}

int
wb_dbus_frontend_handle_send (WbDbusFrontend *frontend, sd_bus_message *call, WbMessageType type,
                              const char *stream_id, const char *text,
                              sd_bus_message_handler_t handler, void *user_data,
                              sd_bus_error *ret_error)
{
  g_autoptr (GError) error = NULL;
  WbDbusPendingSend *pending;
  WbDbusClient *client;
  gboolean deferred;

  client = dbus_client_lookup (frontend, call, TRUE, handler, user_data, &deferred, ret_error);
  if (deferred)
    return 1; /* run again once the caller is known */
  if (client == NULL)
    return -sd_bus_error_get_errno (ret_error);

  pending = g_new0 (WbDbusPendingSend, 1);
  pending->client = client;
  pending->call = sd_bus_message_ref (call);
  if (!wb_hub_client_send (client->hub_client, type, stream_id, text, send_done_cb, pending,
                           pending_send_free, &error))
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
  /* Before any client exists (synchronous, once): see name_lost_cb. */
  r = sd_bus_add_match (frontend->bus, &frontend->name_lost_slot,
                        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                        "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg2=''",
                        name_lost_cb, frontend);
  if (r < 0)
    return wb_set_error_from_errno (error, -r, "Cannot watch callers leaving the bus");

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
  frontend->clients = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, dbus_client_free);
  frontend->newcomers = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, newcomer_free);
  frontend->refused
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_error_free);
  frontend->streams
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)wb_dbus_stream_free);

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

  if (!frontend_export (frontend, error))
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
  g_clear_pointer (&frontend->pending_reloads, g_ptr_array_unref);
  /* Ends the D-Bus peers' subscriptions; the observer is gone, so no
   * InterfacesRemoved on a bus we are leaving. */
  g_clear_pointer (&frontend->clients, g_hash_table_unref);
  /* Callers still being asked about: the bus is going, and so is their answer. */
  g_clear_pointer (&frontend->newcomers, g_hash_table_unref);
  g_clear_pointer (&frontend->refused, g_hash_table_unref);
  frontend->name_lost_slot = sd_bus_slot_unref (frontend->name_lost_slot);
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
