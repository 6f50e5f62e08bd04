/* SPDX-License-Identifier: MIT */
/*
 * D-Bus callers as hub clients, one per unique bus name, without ever
 * waiting for the bus daemon: a new caller's credentials are asked with an
 * asynchronous GetConnectionCredentials and its calls wait, in order, until
 * the answer; one match on NameOwnerChanged, installed at start, says when
 * any caller leaves. A stalled bus daemon therefore delays only the D-Bus
 * callers that wait for it, never socket clients, upstream or the loop.
 */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-private.h"

#include <errno.h>
#include <string.h>

#include "dbus-errors.h"
#include "errno-util.h"

/* Privileged calls (Reload) waiting for the bus to say who their callers are:
 * the bus policy lets only root send them, so a handful is plenty. */
#define WB_DBUS_MAX_PRIVILEGED_WAITING 32
/* Calls one new caller may queue while its credentials are asked; more are
 * refused rather than held without bound. */
#define WB_DBUS_MAX_WAITING_CALLS 32
/* And the bytes they may hold (paths and string arguments): a bus message may
 * be 32 MiB (system bus) or more, so 32 calls alone bound nothing. 32 of the
 * largest calls the bridge accepts (4096 bytes of text, a 256-byte stream id,
 * its object path) fit. */
#define WB_DBUS_MAX_WAITING_BYTES (256 * 1024)
/* All new callers' waiting calls together: MaxClients (1024) times the bound
 * above would be 256 MiB; ordinary calls are a few hundred bytes. */
#define WB_DBUS_MAX_WAITING_BYTES_TOTAL (16 * 1024 * 1024)

#define BUS_DRIVER "org.freedesktop.DBus"
#define BUS_DRIVER_PATH "/org/freedesktop/DBus"
/* A unique name's owner becomes "" exactly once: when it leaves the bus. */
#define MATCH_CALLER_LEFT                                                                          \
  "type='signal',sender='" BUS_DRIVER "',path='" BUS_DRIVER_PATH "',interface='" BUS_DRIVER        \
  "',member='NameOwnerChanged',arg2=''"

typedef struct
{
  WbDbusClientFunc func;
  sd_bus_message *call;
  gsize bytes; /* see call_weight */
} WbDbusWaitingCall;

/* A privileged call waiting for its caller's credentials. */
typedef struct
{
  WbDbusFrontend *frontend;
  WbDbusPrivilegedFunc func;
  sd_bus_message *call;
  sd_bus_slot *credentials_slot;
} WbDbusPrivilegedCall;

struct _WbDbusClient
{
  WbDbusFrontend *frontend;
  char *name;                    /* unique bus name */
  WbHubClient *hub_client;       /* NULL while its credentials are asked */
  sd_bus_slot *credentials_slot; /* the GetConnectionCredentials in flight */
  GQueue waiting;                /* WbDbusWaitingCall, oldest first */
  gsize waiting_bytes;           /* the sum of their bytes */
};

static void
waiting_call_free (gpointer data)
{
  WbDbusWaitingCall *waiting = data;

  sd_bus_message_unref (waiting->call);
  g_free (waiting);
}

void
wb_dbus_client_free (WbDbusClient *client)
{
  if (client == NULL)
    return;
  if (client->hub_client == NULL)
    client->frontend->n_resolving--;
  client->frontend->waiting_bytes -= client->waiting_bytes;
  /* Its calls are owed no reply: the caller left, or the bus is going. */
  g_queue_clear_full (&client->waiting, waiting_call_free);
  /* Cancels the credentials callback if it has not run. */
  client->credentials_slot = sd_bus_slot_unref (client->credentials_slot);
  /* The hub then forgets our pending sends and will not call back into them. */
  g_clear_pointer (&client->hub_client, wb_hub_client_free);
  g_free (client->name);
  g_free (client);
}

/* What sd-bus does with a method handler's result: a negative one, or a
 * set error, is the reply. */
static void
reply_if_failed (sd_bus_message *call, int r, sd_bus_error *error)
{
  if (r >= 0 && !sd_bus_error_is_set (error))
    return;
  if (!sd_bus_error_is_set (error))
    sd_bus_error_set_errno (error, r);
  r = sd_bus_reply_method_error (call, error);
  if (r < 0)
    g_debug ("Cannot answer %s of %s: %s", sd_bus_message_get_member (call),
             sd_bus_message_get_sender (call), g_strerror (-r));
}

/* The oldest waiting call, no longer counted as waiting; NULL if none. */
static WbDbusWaitingCall *
client_pop_waiting (WbDbusClient *client)
{
  WbDbusWaitingCall *waiting = g_queue_pop_head (&client->waiting);

  if (waiting != NULL)
    {
      client->waiting_bytes -= waiting->bytes;
      client->frontend->waiting_bytes -= waiting->bytes;
    }
  return waiting;
}

/* Refuses every waiting call with @error and forgets the caller: its next
 * call starts again. */
static void
client_refuse (WbDbusClient *client, const sd_bus_error *error)
{
  WbDbusFrontend *frontend = client->frontend;
  WbDbusWaitingCall *waiting;

  while ((waiting = client_pop_waiting (client)) != NULL)
    {
      g_auto (sd_bus_error) copy = SD_BUS_ERROR_NULL;

      sd_bus_error_copy (&copy, error);
      reply_if_failed (waiting->call, -EACCES, &copy);
      waiting_call_free (waiting);
    }
  g_hash_table_remove (frontend->clients, client->name);
}

/* Runs the waiting calls in the order they came. They cannot free @client:
 * the hub calls nothing back while it runs them. */
static void
client_run_waiting (WbDbusClient *client)
{
  WbDbusWaitingCall *waiting;

  while ((waiting = client_pop_waiting (client)) != NULL)
    {
      g_auto (sd_bus_error) error = SD_BUS_ERROR_NULL;
      int r;

      r = waiting->func (client->frontend, client->hub_client, waiting->call, &error);
      reply_if_failed (waiting->call, r, &error);
      waiting_call_free (waiting);
    }
}

/* The uid the bus recorded when the caller connected is the user it counts
 * against (quotas and send allowances, shared with its socket connections);
 * its groups (primary and supplementary, as the bus took them at connect
 * time) decide SendGroup. FALSE if the bus did not say who it is. */
static gboolean
read_credentials (sd_bus_message *reply, WbPeerCredentials **out_credentials)
{
  g_autoptr (GArray) groups = g_array_new (FALSE, FALSE, sizeof (gid_t));
  gboolean have_uid = FALSE;
  uint32_t uid = 0, pid = 0;
  int r;

  r = sd_bus_message_enter_container (reply, 'a', "{sv}");
  if (r < 0)
    return FALSE;
  while ((r = sd_bus_message_enter_container (reply, 'e', "sv")) > 0)
    {
      const char *key = NULL;

      r = sd_bus_message_read (reply, "s", &key);
      if (r < 0)
        return FALSE;
      if (strcmp (key, "UnixUserID") == 0)
        {
          r = sd_bus_message_read (reply, "v", "u", &uid);
          have_uid = r >= 0;
        }
      else if (strcmp (key, "ProcessID") == 0)
        r = sd_bus_message_read (reply, "v", "u", &pid);
      else if (strcmp (key, "UnixGroupIDs") == 0)
        {
          const uint32_t *ids = NULL;
          size_t size = 0;

          r = sd_bus_message_enter_container (reply, 'v', "au");
          if (r >= 0)
            r = sd_bus_message_read_array (reply, 'u', (const void **)&ids, &size);
          for (size_t i = 0; r >= 0 && i < size / sizeof (uint32_t); i++)
            {
              gid_t gid = ids[i];
              g_array_append_val (groups, gid);
            }
          if (r >= 0)
            r = sd_bus_message_exit_container (reply);
        }
      else
        r = sd_bus_message_skip (reply, "v");
      if (r < 0)
        return FALSE;
      r = sd_bus_message_exit_container (reply);
      if (r < 0)
        return FALSE;
    }
  if (r < 0 || !have_uid)
    return FALSE;
  /* The primary group is among the groups; the bus does not say which. */
  *out_credentials = wb_peer_credentials_new ((pid_t)pid, (uid_t)uid, (gid_t)-1,
                                              (const gid_t *)(void *)groups->data, groups->len);
  return TRUE;
}

static int
credentials_cb (sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  static const WbHubClientSink sink = { .deliver = NULL }; /* signals are broadcast */
  WbDbusClient *client = user_data;
  WbDbusFrontend *frontend = client->frontend;
  g_auto (sd_bus_error) refusal = SD_BUS_ERROR_NULL;
  g_autoptr (WbPeerCredentials) credentials = NULL;
  g_autofree char *hub_name = NULL;
  g_autoptr (GError) error = NULL;

  client->credentials_slot = sd_bus_slot_unref (client->credentials_slot);
  if (sd_bus_message_is_method_error (reply, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
    {
      /* It left before the bus answered: nobody to reply to. */
      g_debug ("%s left before its credentials came", client->name);
      g_hash_table_remove (frontend->clients, client->name);
      return 0;
    }
  if (sd_bus_message_is_method_error (reply, SD_BUS_ERROR_NO_REPLY)
      || sd_bus_message_is_method_error (reply, SD_BUS_ERROR_TIMEOUT))
    {
      /* sd-bus gave up waiting (its method call timeout): the bus is slow,
       * which refuses nobody. Its next call asks again. */
      g_debug ("No credentials for %s in time", client->name);
      sd_bus_error_setf (&refusal, SD_BUS_ERROR_TIMEOUT,
                         "The bus did not say who %s is in time; try again", client->name);
      client_refuse (client, &refusal);
      return 0;
    }
  if (sd_bus_message_is_method_error (reply, NULL) || !read_credentials (reply, &credentials))
    {
      /* Counting it as a user of its own would give every such bus name a
       * fresh set of per-user quotas. */
      const sd_bus_error *bus_error = sd_bus_message_get_error (reply);

      g_debug ("No credentials for %s: %s", client->name,
               bus_error != NULL && bus_error->name != NULL ? bus_error->name : "unreadable");
      sd_bus_error_setf (&refusal, SD_BUS_ERROR_ACCESS_DENIED,
                         "The bus cannot say which user %s is", client->name);
      client_refuse (client, &refusal);
      return 0;
    }

  hub_name = g_strdup_printf ("dbus %s", client->name);
  client->hub_client
      = wb_hub_client_new (frontend->hub, hub_name, credentials, &sink, client, &error);
  if (client->hub_client == NULL)
    {
      wb_dbus_error_set_from_gerror (&refusal, error);
      client_refuse (client, &refusal);
      return 0;
    }
  frontend->n_resolving--;
  g_debug ("New D-Bus client %s (uid %u)", client->name, (guint)credentials->uid);
  client_run_waiting (client);
  return 0;
}

static int
caller_left_cb (sd_bus_message *signal, void *user_data, sd_bus_error *ret_error)
{
  WbDbusFrontend *frontend = user_data;
  const char *name = NULL, *old_owner = NULL, *new_owner = NULL;

  if (sd_bus_message_read (signal, "sss", &name, &old_owner, &new_owner) < 0)
    return 0;
  /* Most of the bus's departures are not ours: one lookup each. */
  if (name[0] == ':' && new_owner[0] == '\0' && g_hash_table_remove (frontend->clients, name))
    g_debug ("%s left the bus, ending its subscriptions", name);
  return 0;
}

gboolean
wb_dbus_clients_watch (WbDbusFrontend *frontend, GError **error)
{
  int r;

  /* Synchronous, once, before the name is requested: nobody can call yet. */
  r = sd_bus_add_match (frontend->bus, &frontend->caller_left_slot, MATCH_CALLER_LEFT,
                        caller_left_cb, frontend);
  if (r < 0)
    return wb_set_error_from_errno (error, -r, "Cannot watch callers leaving the bus");
  return TRUE;
}

/* Adds the wire size of the strings (at any depth) from the read position on. */
static int
add_string_bytes (sd_bus_message *call, gsize *bytes)
{
  const char *contents = NULL;
  char type;
  int r;

  while ((r = sd_bus_message_peek_type (call, &type, &contents)) > 0)
    {
      if (type == SD_BUS_TYPE_STRING || type == SD_BUS_TYPE_OBJECT_PATH
          || type == SD_BUS_TYPE_SIGNATURE)
        {
          const char *text = NULL;

          r = sd_bus_message_read_basic (call, type, &text);
          if (r < 0)
            return r;
          *bytes += strlen (text) + sizeof (uint32_t) + 1; /* length, text, NUL */
        }
      else if (contents != NULL)
        {
          /* A container: D-Bus bounds their nesting (64). */
          r = sd_bus_message_enter_container (call, type, contents);
          if (r >= 0)
            r = add_string_bytes (call, bytes);
          if (r >= 0)
            r = sd_bus_message_exit_container (call);
          if (r < 0)
            return r;
        }
      else
        {
          const char signature[] = { type, '\0' };

          r = sd_bus_message_skip (call, signature);
          if (r < 0)
            return r;
        }
    }
  return r;
}

/* What holding @call costs beyond its fixed size: its path and its string
 * arguments, which are all the bridge's client methods take. Reads them
 * and rewinds, so the call's function reads them again; a negative errno
 * if they cannot be read (the function would fail the same way). */
static int
call_weight (sd_bus_message *call, gsize *out_bytes)
{
  const char *path = sd_bus_message_get_path (call);
  gsize bytes = path != NULL ? strlen (path) : 0;
  int r;

  r = add_string_bytes (call, &bytes);
  if (r >= 0)
    r = sd_bus_message_rewind (call, 1);
  if (r < 0)
    return r;
  *out_bytes = bytes;
  return 0;
}

int
wb_dbus_frontend_call_with_client (WbDbusFrontend *frontend, sd_bus_message *call, gboolean create,
                                   WbDbusClientFunc func, sd_bus_error *ret_error)
{
  const char *sender = sd_bus_message_get_sender (call);
  WbDbusWaitingCall *waiting;
  WbDbusClient *client;
  gsize bytes = 0;
  int r;

  g_return_val_if_fail (frontend != NULL, -EINVAL);
  g_return_val_if_fail (func != NULL, -EINVAL);

  if (sender == NULL)
    return sd_bus_error_set (ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                             "Calls must come through a bus (no sender)");
  client = g_hash_table_lookup (frontend->clients, sender);
  if (client != NULL && client->hub_client != NULL)
    return func (frontend, client->hub_client, call, ret_error);

  if (client == NULL && !create)
    return sd_bus_error_setf (ret_error, WB_DBUS_ERROR_NOT_SUBSCRIBED, "%s has no subscriptions",
                              sender);
  /* Callers of unknown users are not counted per user yet: bound them all
   * by the bridge's own limit. */
  if (client == NULL && frontend->n_resolving >= frontend->config->max_clients)
    return sd_bus_error_set (ret_error, WB_DBUS_ERROR_LIMITS_EXCEEDED,
                             "Too many new D-Bus callers at once, try again");
  if (client != NULL && client->waiting.length >= WB_DBUS_MAX_WAITING_CALLS)
    return sd_bus_error_setf (ret_error, WB_DBUS_ERROR_LIMITS_EXCEEDED,
                              "%s has %u calls waiting for the bus already", sender,
                              WB_DBUS_MAX_WAITING_CALLS);

  /* What would it hold while it waits? Unreadable arguments are refused
   * now, as the call's function would refuse them. */
  r = call_weight (call, &bytes);
  if (r < 0)
    return wb_dbus_frontend_bad_arguments (ret_error, r);
  if ((client != NULL ? client->waiting_bytes : 0) + bytes > WB_DBUS_MAX_WAITING_BYTES)
    return sd_bus_error_setf (ret_error, WB_DBUS_ERROR_LIMITS_EXCEEDED,
                              "Calls of %s waiting for the bus may hold at most %u bytes", sender,
                              WB_DBUS_MAX_WAITING_BYTES);
  if (frontend->waiting_bytes + bytes > WB_DBUS_MAX_WAITING_BYTES_TOTAL)
    return sd_bus_error_set (ret_error, WB_DBUS_ERROR_LIMITS_EXCEEDED,
                             "Too many calls of new D-Bus callers at once, try again");

  if (client == NULL)
    {
      client = g_new0 (WbDbusClient, 1);
      client->frontend = frontend;
      client->name = g_strdup (sender);
      g_queue_init (&client->waiting);
      r = sd_bus_call_method_async (frontend->bus, &client->credentials_slot, BUS_DRIVER,
                                    BUS_DRIVER_PATH, BUS_DRIVER, "GetConnectionCredentials",
                                    credentials_cb, client, "s", sender);
      frontend->n_resolving++;
      if (r < 0)
        {
          wb_dbus_client_free (client);
          return sd_bus_error_set_errnof (ret_error, -r, "Cannot ask who %s is: %s", sender,
                                          g_strerror (-r));
        }
      g_hash_table_insert (frontend->clients, client->name, client);
    }

  waiting = g_new0 (WbDbusWaitingCall, 1);
  waiting->func = func;
  waiting->call = sd_bus_message_ref (call);
  waiting->bytes = bytes;
  g_queue_push_tail (&client->waiting, waiting);
  client->waiting_bytes += bytes;
  frontend->waiting_bytes += bytes;
  return 1; /* answered once the bus says who the caller is */
}

/* ---- privileged calls: root and the daemon's own user -------------------- */

void
wb_dbus_privileged_call_free (gpointer data)
{
  WbDbusPrivilegedCall *privileged = data;

  /* Cancels the credentials callback if it has not run; unanswered, as the
   * bus is going. */
  privileged->credentials_slot = sd_bus_slot_unref (privileged->credentials_slot);
  sd_bus_message_unref (privileged->call);
  g_free (privileged);
}

static int
privileged_credentials_cb (sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  WbDbusPrivilegedCall *privileged = user_data;
  g_autoptr (WbPeerCredentials) credentials = NULL;
  g_auto (sd_bus_error) error = SD_BUS_ERROR_NULL;
  int r;

  if (!sd_bus_message_is_method_error (reply, NULL) && read_credentials (reply, &credentials)
      && wb_hub_uid_is_exempt (credentials->uid))
    r = privileged->func (privileged->frontend, privileged->call, &error);
  else if (sd_bus_message_is_method_error (reply, SD_BUS_ERROR_NO_REPLY)
           || sd_bus_message_is_method_error (reply, SD_BUS_ERROR_TIMEOUT))
    r = sd_bus_error_set (&error, SD_BUS_ERROR_TIMEOUT,
                          "The bus did not say who the caller is in time; try again");
  else
    r = sd_bus_error_setf (&error, SD_BUS_ERROR_ACCESS_DENIED,
                           "Only root and the daemon's own user may call %s",
                           sd_bus_message_get_member (privileged->call));
  reply_if_failed (privileged->call, r, &error);
  /* sd-bus keeps the slot alive until we return. */
  g_hash_table_remove (privileged->frontend->privileged_calls, privileged);
  return 0;
}

int
wb_dbus_frontend_call_if_privileged (WbDbusFrontend *frontend, sd_bus_message *call,
                                     WbDbusPrivilegedFunc func, sd_bus_error *ret_error)
{
  const char *sender = sd_bus_message_get_sender (call);
  WbDbusPrivilegedCall *privileged;
  int r;

  g_return_val_if_fail (frontend != NULL, -EINVAL);
  g_return_val_if_fail (func != NULL, -EINVAL);

  /* A user bus is the user's own: sd-bus checks nobody there either. */
  if (sd_bus_is_trusted (frontend->bus) > 0)
    return func (frontend, call, ret_error);
  if (sender == NULL)
    return sd_bus_error_set (ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                             "Calls must come through a bus (no sender)");
  if (g_hash_table_size (frontend->privileged_calls) >= WB_DBUS_MAX_PRIVILEGED_WAITING)
    return sd_bus_error_set (ret_error, WB_DBUS_ERROR_LIMITS_EXCEEDED,
                             "Too many privileged calls waiting for the bus, try again");

  privileged = g_new0 (WbDbusPrivilegedCall, 1);
  privileged->frontend = frontend;
  privileged->func = func;
  privileged->call = sd_bus_message_ref (call);
  r = sd_bus_call_method_async (frontend->bus, &privileged->credentials_slot, BUS_DRIVER,
                                BUS_DRIVER_PATH, BUS_DRIVER, "GetConnectionCredentials",
                                privileged_credentials_cb, privileged, "s", sender);
  if (r < 0)
    {
      wb_dbus_privileged_call_free (privileged);
      return sd_bus_error_set_errnof (ret_error, -r, "Cannot ask who %s is: %s", sender,
                                      g_strerror (-r));
    }
  g_hash_table_add (frontend->privileged_calls, privileged);
  return 1; /* answered once the bus says who the caller is */
}
