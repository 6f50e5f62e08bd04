/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-socket"

#include "socket-frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "errno-util.h"
#include "peer-credentials.h"
#include "socket-client.h"
#include "wb-build-config.h"

#define SOCKET_MODE 0660
#define SOCKET_DIR_MODE 0755
/* Clears the bits SOCKET_MODE does not grant while bind() creates the node. */
#define SOCKET_UMASK 0117
/* Connections accepted per wake-up, so a connect storm cannot starve the loop. */
#define ACCEPT_BATCH 64
/* Out of file descriptors: stop accepting for a moment instead of spinning. */
#define ACCEPT_RETRY_MS 250
/* Replies may use this multiple of ClientQueueBytes before the client is cut. */
#define HARD_QUEUE_FACTOR 2
/* Request lines taken from one user's connections per loop iteration: the
 * time of an iteration, and so everyone's latency, does not grow with the
 * number of connections one user keeps busy. */
#define USER_LINES_PER_DISPATCH 64
/* Reads of a refused connection's first input before closing it. */
#define REFUSAL_DRAIN_READS 4
/* At most one "refusing connections" message per interval. */
#define REFUSAL_LOG_INTERVAL_US (10 * G_USEC_PER_SEC)

typedef struct _FrontendClient FrontendClient;

/* The queued output of all connections of one uid (MaxQueuedBytesPerUser). */
typedef struct
{
  WbSocketAccount total;
  guint clients;
  guint32 uid;
} UserAccount;

typedef struct
{
  FrontendClient *client;
  JsonNode *request_id; /* owned copy, or NULL */
  char *stream_id;
  WbMessageType type;
} PendingSend;

struct _FrontendClient
{
  WbSocketFrontend *frontend;
  WbSocketClient *connection;
  WbHubClient *hub_client;
  WbPeerCredentials *credentials;
  UserAccount *account; /* its user's queued output, NULL if exempt */
  char *name;
};

struct _WbSocketFrontend
{
  WbHub *hub;
  int listen_fd;
  guint listen_source_id;
  guint accept_retry_id;
  gboolean accept_starved; /* out of descriptors, retrying */
  char *path;
  gboolean bound; /* we created the node, so we remove it */
  dev_t bound_dev;
  ino_t bound_ino;

  WbSocketClientLimits limits;

  GHashTable *clients;  /* FrontendClient set */
  GHashTable *accounts; /* uid → UserAccount, while the uid has connections */
  gsize max_queued_bytes_per_user;
  WbSocketClientGroup *connections;
  gint64 last_refusal_log_us;
  guint refusals_unlogged;
};

static void pending_send_free (gpointer data);

/* ---- replies ----------------------------------------------------------- */

static void
node_set_request_id (JsonNode *node, JsonNode *request_id)
{
  if (request_id != NULL)
    json_object_set_member (json_node_get_object (node), "id", json_node_copy (request_id));
}

static void
client_queue_node (FrontendClient *client, JsonNode *node)
{
  g_autoptr (GBytes) line = wb_json_to_line (node);

  wb_socket_client_queue_control (client->connection, line);
}

static void
client_reply (FrontendClient *client, const char *type, JsonObject *payload, JsonNode *request_id)
{
  g_autoptr (JsonNode) node = wb_message_new_enveloped (type, payload);

  node_set_request_id (node, request_id);
  client_queue_node (client, node);
}

static void
client_reply_error (FrontendClient *client, const char *code, const char *message,
                    JsonNode *request_id, const char *stream_id)
{
  JsonObject *details = json_object_new ();
  g_autoptr (JsonNode) node = NULL;

  if (stream_id != NULL)
    json_object_set_string_member (details, "stream_id", stream_id);
  node = wb_message_new_error (code, message, details);
  node_set_request_id (node, request_id);
  client_queue_node (client, node);
}

static JsonArray *
strv_to_json_array (const char *const *strv)
{
  JsonArray *array = json_array_new ();

  for (; strv != NULL && *strv != NULL; strv++)
    json_array_add_string_element (array, *strv);
  return array;
}

static void
client_send_hello (FrontendClient *client)
{
  const WbBridgeStatus *status = wb_hub_get_status (client->frontend->hub);
  JsonObject *payload = json_object_new ();

  json_object_set_string_member (payload, "version", status->version);
  json_object_set_string_member (payload, "state", wb_link_state_to_string (status->link.state));
  json_object_set_array_member (payload, "events",
                                strv_to_json_array (wb_message_stream_event_names ()));
  client_reply (client, "bridge.hello", payload, NULL);
}

/* ---- requests ---------------------------------------------------------- */

static const char *
parse_error_code (const GError *error)
{
  if (error->domain != WB_MESSAGE_ERROR_DOMAIN)
    return "invalid_message";
  switch ((WbMessageError)error->code)
    {
    case WB_MESSAGE_ERROR_INVALID_UTF8:
    case WB_MESSAGE_ERROR_INVALID_JSON:
    case WB_MESSAGE_ERROR_TOO_DEEP:
    case WB_MESSAGE_ERROR_NOT_OBJECT:
      return "invalid_json";
    case WB_MESSAGE_ERROR_UNKNOWN_TYPE:
      return "unknown_type";
    case WB_MESSAGE_ERROR_WRONG_DIRECTION:
    case WB_MESSAGE_ERROR_MISSING_FIELD:
    case WB_MESSAGE_ERROR_INVALID_FIELD:
    case WB_MESSAGE_ERROR_NUL_CHARACTER:
      return "invalid_message";
    }
  return "invalid_message";
}

/* The line was JSON but not a valid request: find "id" and "stream_id" so
 * the error can still be matched to the request. Only runs on bad input. */
static void
client_reply_parse_error (FrontendClient *client, const char *line, gsize length,
                          const GError *error)
{
  const char *code = parse_error_code (error);
  g_autoptr (JsonParser) parser = NULL;
  JsonNode *request_id = NULL;
  const char *stream_id = NULL;

  /* json-glib would cut a "\u0000" id or stream id short: echo neither. */
  if (g_str_equal (code, "invalid_json")
      || g_error_matches (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_NUL_CHARACTER))
    {
      client_reply_error (client, code, error->message, NULL, NULL);
      return;
    }

  parser = json_parser_new_immutable ();
  if (json_parser_load_from_data (parser, line, (gssize)length, NULL)
      && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      JsonObject *root = json_node_get_object (json_parser_get_root (parser));
      JsonNode *id = json_object_get_member (root, "id");
      JsonNode *stream = json_object_get_member (root, "stream_id");

      if (id != NULL && (JSON_NODE_HOLDS_VALUE (id) || JSON_NODE_HOLDS_NULL (id)))
        request_id = id;
      if (stream != NULL && JSON_NODE_HOLDS_VALUE (stream)
          && json_node_get_value_type (stream) == G_TYPE_STRING
          && strlen (json_node_get_string (stream)) <= WB_MESSAGE_MAX_STREAM_ID_BYTES)
        stream_id = json_node_get_string (stream);
    }
  client_reply_error (client, code, error->message, request_id, stream_id);
}

/* The socket protocol's error code for a hub's refusal. */
static const char *
hub_error_code (const GError *error)
{
  if (error->domain == WB_HUB_ERROR)
    switch ((WbHubError)error->code)
      {
      case WB_HUB_ERROR_RATE_LIMITED:
        return "rate_limited";
      case WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS:
        return "too_many_subscriptions";
      case WB_HUB_ERROR_SHUTTING_DOWN:
        return "shutting_down";
      case WB_HUB_ERROR_TOO_MANY_CLIENTS:
        return "too_many_clients";
      case WB_HUB_ERROR_FORBIDDEN:
        return "forbidden";
      case WB_HUB_ERROR_INVALID_ARGUMENT:
      case WB_HUB_ERROR_NOT_SUBSCRIBED:
        break;
      }
  return "invalid_message";
}

static void
client_handle_subscribe (FrontendClient *client, const WbMessage *message)
{
  g_auto (GStrv) events = wb_message_dup_events (message);
  g_auto (GStrv) now_held = NULL;
  g_autoptr (GError) error = NULL;
  gboolean wants_history = wb_json_has_number (message->body, "history");
  guint history = 0;
  JsonObject *payload;

  /* Checked first: a refused request subscribes nothing. */
  if ((wants_history
       && !wb_hub_check_history (client->frontend->hub, wb_message_get_double (message, "history"),
                                 &history, &error))
      || !wb_hub_client_subscribe (client->hub_client, message->stream_id,
                                   (const char *const *)events, &now_held, &error))
    {
      client_reply_error (client, hub_error_code (error), error->message, message->request_id,
                          message->stream_id);
      return;
    }
  payload = json_object_new ();
  json_object_set_string_member (payload, "stream_id", message->stream_id);
  json_object_set_array_member (payload, "events",
                                strv_to_json_array ((const char *const *)now_held));
  if (wants_history)
    json_object_set_int_member (payload, "history", history);
  client_reply (client, "subscribed", payload, message->request_id);
  /* The cached state, then the history, then live events. */
  wb_hub_client_replay (client->hub_client, message->stream_id, history);
}

static void
client_handle_unsubscribe (FrontendClient *client, const WbMessage *message)
{
  g_autoptr (GError) error = NULL;
  JsonObject *payload;

  if (!wb_hub_client_unsubscribe (client->hub_client, message->stream_id, &error))
    {
      client_reply_error (client, hub_error_code (error), error->message, message->request_id,
                          message->stream_id);
      return;
    }
  payload = json_object_new ();
  json_object_set_string_member (payload, "stream_id", message->stream_id);
  json_object_set_array_member (payload, "events", json_array_new ());
  client_reply (client, "unsubscribed", payload, message->request_id);
}

static void
send_done_cb (WbHubClient *hub_client, const GError *error, gpointer user_data)
{
  PendingSend *pending = user_data;
  FrontendClient *client = pending->client;

  if (error == NULL)
    {
      JsonObject *payload = json_object_new ();

      json_object_set_string_member (payload, "stream_id", pending->stream_id);
      json_object_set_string_member (payload, "type", wb_message_type_to_string (pending->type));
      client_reply (client, "sent", payload, pending->request_id);
    }
  else
    {
      gboolean not_connected = g_error_matches (error, WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED);

      client_reply_error (client, not_connected ? "not_connected" : "send_failed", error->message,
                          pending->request_id, pending->stream_id);
    }
}

static void
client_handle_send (FrontendClient *client, const WbMessage *message)
{
  const char *field = message->type == WB_MESSAGE_CHAT_MESSAGE ? "message" : "reaction";
  g_autoptr (GError) error = NULL;
  PendingSend *pending;

  pending = g_new0 (PendingSend, 1);
  pending->client = client;
  pending->request_id = message->request_id != NULL ? json_node_copy (message->request_id) : NULL;
  pending->stream_id = g_strdup (message->stream_id);
  pending->type = message->type;
  if (!wb_hub_client_send (client->hub_client, message->type, message->stream_id,
                           wb_message_get_string (message, field), send_done_cb, pending,
                           pending_send_free, &error))
    client_reply_error (client, hub_error_code (error), error->message, message->request_id,
                        message->stream_id);
}

static void
client_handle_ping (FrontendClient *client, const WbMessage *message)
{
  JsonNode *timestamp = json_object_get_member (message->body, "timestamp");
  JsonObject *payload = json_object_new ();

  if (timestamp != NULL)
    json_object_set_member (payload, "timestamp", json_node_copy (timestamp));
  else
    json_object_set_int_member (payload, "timestamp", g_get_real_time () / 1000);
  client_reply (client, "pong", payload, message->request_id);
}

static void
client_handle_status (FrontendClient *client, const WbMessage *message)
{
  double limit = wb_message_get_double (message, "streams_limit");

  client_reply (client, "bridge.status",
                wb_hub_build_status (client->frontend->hub,
                                     wb_message_get_string (message, "streams_after"),
                                     (guint)CLAMP (limit, 0, WB_HUB_STATUS_STREAMS_PAGE_MAX)),
                message->request_id);
}

static void
client_line_cb (WbSocketClient *connection, const char *line, gsize length, gpointer user_data)
{
  FrontendClient *client = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message = wb_message_parse (line, length, WB_DIRECTION_TO_SERVER, &error);

  if (message == NULL)
    {
      client_reply_parse_error (client, line, length, error);
      return;
    }

  switch (message->type)
    {
    case WB_MESSAGE_SUBSCRIBE:
      client_handle_subscribe (client, message);
      break;
    case WB_MESSAGE_UNSUBSCRIBE:
      client_handle_unsubscribe (client, message);
      break;
    case WB_MESSAGE_CHAT_MESSAGE:
    case WB_MESSAGE_REACTION_SENT:
      client_handle_send (client, message);
      break;
    case WB_MESSAGE_PING:
      client_handle_ping (client, message);
      break;
    case WB_MESSAGE_STATUS:
      client_handle_status (client, message);
      break;
    default:
      /* The parser accepts only the above for WB_DIRECTION_TO_SERVER. */
      client_reply_error (client, "invalid_message", "not a request", message->request_id,
                          message->stream_id);
      break;
    }
}

static void
client_line_too_long_cb (WbSocketClient *connection, gpointer user_data)
{
  FrontendClient *client = user_data;
  g_autofree char *text = g_strdup_printf ("line longer than %" G_GSIZE_FORMAT " bytes",
                                           client->frontend->limits.max_line_bytes);

  g_debug ("%s: %s, closing", client->name, text);
  client_reply_error (client, "line_too_long", text, NULL, NULL);
  wb_socket_client_close_after_flush (connection);
}

/* ---- client lifetime --------------------------------------------------- */

static void
pending_send_free (gpointer data)
{
  PendingSend *pending = data;

  g_clear_pointer (&pending->request_id, json_node_unref);
  g_free (pending->stream_id);
  g_free (pending);
}

static UserAccount *
frontend_account_ref (WbSocketFrontend *frontend, uid_t uid)
{
  guint32 key = uid;
  UserAccount *account;

  if (wb_hub_uid_is_exempt (uid))
    return NULL;
  account = g_hash_table_lookup (frontend->accounts, GUINT_TO_POINTER (key));
  if (account == NULL)
    {
      account = g_new0 (UserAccount, 1);
      account->uid = key;
      account->total.limit = frontend->max_queued_bytes_per_user;
      account->total.hard_limit = frontend->max_queued_bytes_per_user * HARD_QUEUE_FACTOR;
      account->total.lines_per_dispatch = USER_LINES_PER_DISPATCH;
      g_hash_table_insert (frontend->accounts, GUINT_TO_POINTER (key), account);
    }
  account->clients++;
  return account;
}

static void
frontend_account_unref (WbSocketFrontend *frontend, UserAccount *account)
{
  if (--account->clients > 0)
    return;
  g_warn_if_fail (account->total.queued == 0);
  g_hash_table_remove (frontend->accounts, GUINT_TO_POINTER (account->uid));
}

static void
frontend_client_free (FrontendClient *client)
{
  if (client == NULL)
    return;
  /* Hub first: it drops our pending sends, so no callback can follow. */
  g_clear_pointer (&client->hub_client, wb_hub_client_free);
  g_clear_pointer (&client->connection, wb_socket_client_free);
  if (client->account != NULL)
    frontend_account_unref (client->frontend, g_steal_pointer (&client->account));
  g_clear_pointer (&client->credentials, wb_peer_credentials_free);
  g_free (client->name);
  g_free (client);
}

static void
client_closed_cb (WbSocketClient *connection, WbSocketClientCloseReason reason, gpointer user_data)
{
  FrontendClient *client = user_data;
  const char *text = wb_socket_client_close_reason_to_string (reason);

  if (reason == WB_SOCKET_CLIENT_CLOSED_SLOW || reason == WB_SOCKET_CLIENT_CLOSED_OVERFLOW)
    g_message ("Disconnecting %s: %s (%" G_GUINT64_FORMAT " events dropped)", client->name, text,
               wb_socket_client_get_dropped_total (connection));
  else
    g_debug ("%s disconnected: %s", client->name, text);
  g_hash_table_remove (client->frontend->clients, client);
}

static gboolean
client_deliver_cb (WbHubClient *hub_client, WbEvent *event, gpointer user_data)
{
  FrontendClient *client = user_data;

  return wb_socket_client_queue_event (client->connection, wb_event_get_line (event));
}

static const WbSocketClientCallbacks client_callbacks = {
  .line = client_line_cb,
  .line_too_long = client_line_too_long_cb,
  .closed = client_closed_cb,
};

static const WbHubClientSink client_sink = {
  .deliver = client_deliver_cb,
};

/* Over MaxClients or the user's MaxClientsPerUser: a best-effort error
 * line, then close. The socket is new and empty, so one small non-blocking
 * send fits. */
static void
frontend_refuse (WbSocketFrontend *frontend, int fd, const char *name, const char *text)
{
  g_autoptr (JsonNode) node = NULL;
  g_autoptr (GBytes) line = NULL;
  gint64 now = g_get_monotonic_time ();
  gsize size = 0;
  const void *data;

  node = wb_message_new_error ("too_many_clients", text, NULL);
  line = wb_json_to_line (node);
  data = g_bytes_get_data (line, &size);
  if (send (fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
    g_debug ("%s: could not send too_many_clients: %s", name, g_strerror (errno));
  /* Closing with unread input makes the kernel reset the connection, and
   * the peer may lose the error line: take what it sent already. */
  shutdown (fd, SHUT_WR);
  for (guint i = 0; i < REFUSAL_DRAIN_READS; i++)
    {
      char discard[4096];

      if (recv (fd, discard, sizeof discard, MSG_DONTWAIT) <= 0)
        break;
    }
  close (fd);

  frontend->refusals_unlogged++;
  if (frontend->last_refusal_log_us == 0
      || now - frontend->last_refusal_log_us >= REFUSAL_LOG_INTERVAL_US)
    {
      g_message ("Refusing %s and %u more: %s", name, frontend->refusals_unlogged - 1, text);
      frontend->refusals_unlogged = 0;
      frontend->last_refusal_log_us = now;
    }
}

static void
frontend_add_client (WbSocketFrontend *frontend, int fd)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbPeerCredentials) credentials = wb_peer_credentials_new_from_fd (fd, &error);
  g_autofree char *name = NULL;
  FrontendClient *client;

  if (credentials == NULL)
    {
      g_warning ("Dropping a local connection: %s", error->message);
      close (fd);
      return;
    }
  name
      = g_strdup_printf ("socket pid=%d uid=%u", (int)credentials->pid, (unsigned)credentials->uid);
  client = g_new0 (FrontendClient, 1);
  client->frontend = frontend;
  client->hub_client
      = wb_hub_client_new (frontend->hub, name, credentials, &client_sink, client, &error);
  if (client->hub_client == NULL)
    {
      frontend_refuse (frontend, fd, name, error->message);
      frontend_client_free (client);
      return;
    }
  client->credentials = g_steal_pointer (&credentials);
  client->name = g_steal_pointer (&name);
  client->connection = wb_socket_client_new (frontend->connections, fd, &frontend->limits,
                                             &client_callbacks, client);
  if (client->connection == NULL)
    {
      frontend_client_free (client);
      return;
    }
  client->account = frontend_account_ref (frontend, client->credentials->uid);
  wb_socket_client_set_account (client->connection,
                                client->account != NULL ? &client->account->total : NULL);
  g_hash_table_add (frontend->clients, client);
  /* The greeting goes first, before anything the hub may deliver. */
  client_send_hello (client);
  g_debug ("%s connected", client->name);
}

/* ---- listening --------------------------------------------------------- */

static gboolean frontend_accept_cb (gint fd, GIOCondition condition, gpointer user_data);

static void
frontend_watch_listener (WbSocketFrontend *frontend)
{
  frontend->listen_source_id
      = g_unix_fd_add (frontend->listen_fd, G_IO_IN, frontend_accept_cb, frontend);
}

static gboolean
frontend_accept_retry_cb (gpointer user_data)
{
  WbSocketFrontend *frontend = user_data;

  frontend->accept_retry_id = 0;
  frontend_watch_listener (frontend);
  return G_SOURCE_REMOVE;
}

static gboolean
frontend_accept_cb (gint listen_fd, GIOCondition condition, gpointer user_data)
{
  WbSocketFrontend *frontend = user_data;

  for (guint i = 0; i < ACCEPT_BATCH; i++)
    {
      int fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

      if (fd >= 0)
        {
          if (frontend->accept_starved)
            g_message ("Accepting local connections again");
          frontend->accept_starved = FALSE;
          frontend_add_client (frontend, fd);
          continue;
        }
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        {
          /* The pending connection stays queued; polling again now would spin.
           * Warn once per episode, not at every retry. */
          if (!frontend->accept_starved)
            g_warning ("Cannot accept local connections: %s; retrying every %d ms",
                       g_strerror (errno), ACCEPT_RETRY_MS);
          frontend->accept_starved = TRUE;
          frontend->listen_source_id = 0;
          frontend->accept_retry_id
              = g_timeout_add (ACCEPT_RETRY_MS, frontend_accept_retry_cb, frontend);
          return G_SOURCE_REMOVE;
        }
      g_warning ("accept() on the local socket failed: %s", g_strerror (errno));
      break;
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
fill_address (struct sockaddr_un *address, const char *path, GError **error)
{
  memset (address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  if (strlen (path) >= sizeof address->sun_path)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Socket path %s is longer than %zu bytes", path, sizeof address->sun_path - 1);
      return FALSE;
    }
  strcpy (address->sun_path, path);
  return TRUE;
}

/* An existing socket node is either a leftover of a dead daemon (connect is
 * refused: remove it) or a live daemon's (refuse to start). */
static gboolean
remove_stale_socket (const char *path, const struct sockaddr_un *address, GError **error)
{
  struct stat st;
  int fd;
  int r;

  if (lstat (path, &st) < 0)
    {
      if (errno == ENOENT)
        return TRUE;
      return wb_set_error_from_errno (error, errno, "Cannot inspect %s", path);
    }
  if (!S_ISSOCK (st.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                   "%s exists and is not a socket; not replacing it", path);
      return FALSE;
    }

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return wb_set_error_from_errno (error, errno, "Cannot create a socket to probe %s", path);
  r = connect (fd, (const struct sockaddr *)address, sizeof *address);
  if (r < 0 && errno == ECONNREFUSED)
    {
      close (fd);
      g_message ("Removing stale socket %s", path);
      if (unlink (path) < 0 && errno != ENOENT)
        return wb_set_error_from_errno (error, errno, "Cannot remove stale socket %s", path);
      return TRUE;
    }
  close (fd);
  /* Accepted, or a full backlog (EAGAIN): someone is listening. */
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
               "Another wave-bridged is already listening on %s", path);
  return FALSE;
}

static gboolean
frontend_bind_fail (const char *temp_path, GError **error, const char *what, const char *path)
{
  int saved_errno = errno;

  if (temp_path != NULL)
    unlink (temp_path);
  return wb_set_error_from_errno (error, saved_errno, "%s %s", what, path);
}

/* The node appears at @path only once it is listening (bound under a
 * temporary name, then hard-linked into place), so whoever waits for the
 * path can connect at once; link() also fails if another daemon won a race. */
static gboolean
frontend_bind (WbSocketFrontend *frontend, const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *temp_path = g_strdup_printf ("%s.%d.new", path, (int)getpid ());
  struct sockaddr_un address;
  struct sockaddr_un bind_address;
  struct stat st;
  mode_t old_umask;
  int r;

  if (!fill_address (&address, path, error))
    return FALSE;
  /* A path too long for the temporary name is bound directly. */
  if (strlen (temp_path) >= sizeof bind_address.sun_path)
    g_clear_pointer (&temp_path, g_free);
  if (!fill_address (&bind_address, temp_path != NULL ? temp_path : path, error))
    return FALSE;
  /* Exactly SOCKET_DIR_MODE whatever the umask: under UMask=0077 the group
   * could not reach the socket in a 0700 directory. An existing directory
   * is the administrator's and left as it is. */
  old_umask = umask (0);
  r = g_mkdir_with_parents (dir, SOCKET_DIR_MODE);
  umask (old_umask);
  if (r < 0)
    return wb_set_error_from_errno (error, errno, "Cannot create directory %s", dir);
  if (!remove_stale_socket (path, &address, error))
    return FALSE;
  if (temp_path != NULL && unlink (temp_path) < 0 && errno != ENOENT)
    return wb_set_error_from_errno (error, errno, "Cannot remove %s", temp_path);

  frontend->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (frontend->listen_fd < 0)
    return wb_set_error_from_errno (error, errno, "Cannot create socket for %s", path);
  /* The node must never exist with wider permissions than SOCKET_MODE. */
  old_umask = umask (SOCKET_UMASK);
  r = bind (frontend->listen_fd, (const struct sockaddr *)&bind_address, sizeof bind_address);
  umask (old_umask);
  if (r < 0)
    {
      if (errno == EADDRINUSE && temp_path == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                       "Another wave-bridged is already listening on %s", path);
          return FALSE;
        }
      return wb_set_error_from_errno (error, errno, "Cannot bind %s", bind_address.sun_path);
    }
  if (temp_path == NULL)
    {
      frontend->bound = TRUE;
      frontend->path = g_strdup (path);
    }
  if (chmod (bind_address.sun_path, SOCKET_MODE) < 0)
    return frontend_bind_fail (temp_path, error, "Cannot chmod", bind_address.sun_path);
  if (listen (frontend->listen_fd, SOMAXCONN) < 0)
    return frontend_bind_fail (temp_path, error, "Cannot listen on", path);
  if (temp_path != NULL)
    {
      r = link (temp_path, path);
      if (r < 0 && errno == EEXIST)
        {
          unlink (temp_path);
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                       "Another wave-bridged is already listening on %s", path);
          return FALSE;
        }
      if (r < 0)
        return frontend_bind_fail (temp_path, error, "Cannot link the socket to", path);
      unlink (temp_path);
      frontend->bound = TRUE;
      frontend->path = g_strdup (path);
    }
  if (stat (path, &st) == 0)
    {
      frontend->bound_dev = st.st_dev;
      frontend->bound_ino = st.st_ino;
    }
  g_message ("Listening on %s", path);
  return TRUE;
}

/* A socket-activated AF_UNIX stream socket, if systemd passed one. */
static gboolean
frontend_take_activated (WbSocketFrontend *frontend)
{
  struct sockaddr_un address = { 0 };
  socklen_t length = sizeof address;
  int n = sd_listen_fds (TRUE);
  int fd = SD_LISTEN_FDS_START;
  int flags;

  if (n <= 0)
    return FALSE;
  if (n > 1)
    g_warning ("systemd passed %d sockets; using the first", n);
  if (sd_is_socket_unix (fd, SOCK_STREAM, 1, NULL, 0) <= 0)
    {
      g_warning ("The socket systemd passed is not a listening AF_UNIX stream socket; ignoring it");
      return FALSE;
    }
  flags = fcntl (fd, F_GETFL);
  if (flags >= 0)
    fcntl (fd, F_SETFL, flags | O_NONBLOCK);
  fcntl (fd, F_SETFD, FD_CLOEXEC);
  frontend->listen_fd = fd;
  if (getsockname (fd, (struct sockaddr *)&address, &length) == 0
      && length > offsetof (struct sockaddr_un, sun_path) && address.sun_path[0] != '\0')
    frontend->path = g_strndup (address.sun_path, sizeof address.sun_path);
  g_message ("Listening on %s (socket activation)", frontend->path ? frontend->path : "?");
  return TRUE;
}

static void
frontend_apply_config (WbSocketFrontend *frontend, const WbConfig *config)
{
  frontend->max_queued_bytes_per_user = config->max_queued_bytes_per_user;
  frontend->limits.max_line_bytes = config->max_line_bytes;
  frontend->limits.queue_bytes = config->client_queue_bytes;
  frontend->limits.hard_queue_bytes = config->client_queue_bytes * HARD_QUEUE_FACTOR;
  frontend->limits.slow_timeout_ms = config->slow_client_timeout_ms;
}

WbSocketFrontend *
wb_socket_frontend_new (WbHub *hub, const WbConfig *config, GError **error)
{
  g_autoptr (WbSocketFrontend) frontend = NULL;

  g_return_val_if_fail (hub != NULL && config != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  frontend = g_new0 (WbSocketFrontend, 1);
  frontend->hub = hub;
  frontend->listen_fd = -1;
  frontend->clients = g_hash_table_new_full (g_direct_hash, g_direct_equal,
                                             (GDestroyNotify)frontend_client_free, NULL);
  frontend->accounts = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  frontend->connections = wb_socket_client_group_new (error);
  if (frontend->connections == NULL)
    return NULL;
  frontend_apply_config (frontend, config);

  if (!frontend_take_activated (frontend))
    {
      if (config->socket_path == NULL || config->socket_path[0] == '\0')
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "No socket path configured");
          return NULL;
        }
      if (!frontend_bind (frontend, config->socket_path, error))
        return NULL;
    }
  frontend_watch_listener (frontend);
  return g_steal_pointer (&frontend);
}

void
wb_socket_frontend_free (WbSocketFrontend *frontend)
{
  if (frontend == NULL)
    return;
  g_clear_handle_id (&frontend->listen_source_id, g_source_remove);
  g_clear_handle_id (&frontend->accept_retry_id, g_source_remove);
  g_clear_pointer (&frontend->clients, g_hash_table_unref);
  g_clear_pointer (&frontend->accounts, g_hash_table_unref);
  g_clear_pointer (&frontend->connections, wb_socket_client_group_free);
  if (frontend->listen_fd >= 0)
    close (frontend->listen_fd);
  /* Remove the node only if it is still the one we created. */
  if (frontend->bound && frontend->path != NULL)
    {
      struct stat st;

      if (lstat (frontend->path, &st) == 0 && st.st_dev == frontend->bound_dev
          && st.st_ino == frontend->bound_ino)
        unlink (frontend->path);
    }
  g_free (frontend->path);
  g_free (frontend);
}

void
wb_socket_frontend_set_config (WbSocketFrontend *frontend, const WbConfig *config)
{
  GHashTableIter iter;
  gpointer key;

  g_return_if_fail (frontend != NULL && config != NULL);

  frontend_apply_config (frontend, config);
  g_hash_table_iter_init (&iter, frontend->accounts);
  while (g_hash_table_iter_next (&iter, NULL, &key))
    {
      ((UserAccount *)key)->total.limit = frontend->max_queued_bytes_per_user;
      ((UserAccount *)key)->total.hard_limit
          = frontend->max_queued_bytes_per_user * HARD_QUEUE_FACTOR;
    }
  g_hash_table_iter_init (&iter, frontend->clients);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    wb_socket_client_set_limits (((FrontendClient *)key)->connection, &frontend->limits);
}

const char *
wb_socket_frontend_get_path (WbSocketFrontend *frontend)
{
  g_return_val_if_fail (frontend != NULL, NULL);
  return frontend->path;
}
