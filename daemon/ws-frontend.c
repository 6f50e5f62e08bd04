/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-websocket"

#include "ws-frontend.h"

#include <grp.h>
#include <libsoup/soup.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "local-key.h"
#include "peer-credentials.h"
#include "ratelimit.h"
#include "wb-build-config.h"
#include "ws-client.h"
#include "ws-listener.h"

/* The WAVE doc's close codes, and RFC 6455's going away. */
#define CLOSE_GOING_AWAY 1001
#define CLOSE_INVALID_AUTH 4401
#define CLOSE_RATE_LIMITED 4429
/* Replies may use this multiple of ClientQueueBytes before the client is cut. */
#define HARD_QUEUE_FACTOR 2
/* WebSocket pings (opcode 9, answered by every WebSocket stack) at this
 * interval keep idle connections honest; the WAVE-level ping is the app's. */
#define KEEPALIVE_SECONDS 30
/* At most one log line per interval for refused connections. */
#define REFUSAL_LOG_INTERVAL_US (10 * G_USEC_PER_SEC)
/* Groups looked up for a client's uid (SendGroup). */
#define MAX_GROUPS 256
/* The query parameter that adds the bridge's own notices (bridge.*). */
#define BRIDGE_NOTICES_PARAM "bridge_notices"

typedef struct _FrontendClient FrontendClient;

/* The queued output of all connections of one uid (MaxQueuedBytesPerUser). */
typedef struct
{
  WbWsAccount total;
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
  WbWsFrontend *frontend;
  WbWsClient *connection;
  WbHubClient *hub_client; /* NULL for a connection being refused */
  UserAccount *account;    /* its user's queued output, NULL if exempt */
  char *name;
  gboolean bridge_notices;
  WbRateLimit allowance; /* messages from the client ([WebSocket] MessagesPerSecond) */
};

struct _WbWsFrontend
{
  WbHub *hub;
  SoupServer *server;
  WbWsListener *listener;
  char *url;
  WbLocalKey *key;
  char **origins;
  gboolean send_group_set; /* look up a client's groups only when they matter */
  guint messages_per_second;
  gsize max_queued_bytes_per_user;
  WbWsClientLimits limits;
  GHashTable *clients;  /* FrontendClient set */
  GHashTable *accounts; /* uid → UserAccount */
  gint64 last_refusal_log_us;
  guint refusals_unlogged;
};

static void pending_send_free (gpointer data);
static void frontend_client_free (FrontendClient *client);

/* Refused requests are logged, but a flood of them is one line per interval. */
static void frontend_log_refusal (WbWsFrontend *frontend, const char *format, ...)
    G_GNUC_PRINTF (2, 3);

static void
frontend_log_refusal (WbWsFrontend *frontend, const char *format, ...)
{
  gint64 now = g_get_monotonic_time ();
  g_autofree char *text = NULL;
  va_list args;

  frontend->refusals_unlogged++;
  if (frontend->last_refusal_log_us != 0
      && now - frontend->last_refusal_log_us < REFUSAL_LOG_INTERVAL_US)
    return;
  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);
  if (frontend->refusals_unlogged > 1)
    g_message ("%s (and %u more refusals)", text, frontend->refusals_unlogged - 1);
  else
    g_message ("%s", text);
  frontend->refusals_unlogged = 0;
  frontend->last_refusal_log_us = now;
}

/* ---- replies ----------------------------------------------------------- */

static void
client_queue_node (FrontendClient *client, JsonNode *node, JsonNode *request_id)
{
  g_autoptr (GBytes) line = NULL;

  if (request_id != NULL)
    json_object_set_member (json_node_get_object (node), "id", json_node_copy (request_id));
  line = wb_json_to_line (node);
  wb_ws_client_queue_control (client->connection, line);
}

/* WAVE's error: {"code","message","details"}, details naming the request's
 * type and stream when they are known (as WAVE and wave-sim do). */
static void
client_reply_error (FrontendClient *client, const char *code, const char *message,
                    JsonNode *request_id, const char *type, const char *stream_id)
{
  JsonObject *details = json_object_new ();
  g_autoptr (JsonNode) node = NULL;

  if (type != NULL)
    json_object_set_string_member (details, "type", type);
  if (stream_id != NULL)
    json_object_set_string_member (details, "stream_id", stream_id);
  node = wb_message_new_error (code, message, details);
  client_queue_node (client, node, request_id);
}

/* An error that explains the close that follows it. */
static void
client_close_with_error (FrontendClient *client, gushort code, const char *error_code,
                         const char *text)
{
  client_reply_error (client, error_code, text, NULL, NULL, NULL);
  wb_ws_client_close (client->connection, code, text);
}

static void
client_send_hello (FrontendClient *client)
{
  const WbBridgeStatus *status = wb_hub_get_status (client->frontend->hub);
  JsonObject *payload = json_object_new ();
  JsonArray *events = json_array_new ();
  g_autoptr (JsonNode) node = NULL;

  for (const char *const *name = wb_message_stream_event_names (); *name != NULL; name++)
    json_array_add_string_element (events, *name);
  json_object_set_string_member (payload, "version", status->version);
  json_object_set_string_member (payload, "state", wb_link_state_to_string (status->link.state));
  json_object_set_array_member (payload, "events", events);
  node = wb_message_new_enveloped ("bridge.hello", payload);
  client_queue_node (client, node, NULL);
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

/* The text was not a valid request: name its id, type and stream when the
 * JSON itself was readable. Only runs on bad input. */
static void
client_reply_parse_error (FrontendClient *client, const char *text, gsize length,
                          const GError *error)
{
  const char *code = parse_error_code (error);
  g_autoptr (JsonParser) parser = NULL;
  JsonObject *root = NULL;
  JsonNode *request_id = NULL;
  const char *stream_id;
  const char *type;

  /* json-glib would cut a "\u0000" string short: echo nothing of it. */
  if (g_str_equal (code, "invalid_json")
      || g_error_matches (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_NUL_CHARACTER))
    {
      client_reply_error (client, code, error->message, NULL, NULL, NULL);
      return;
    }
  parser = json_parser_new_immutable ();
  if (json_parser_load_from_data (parser, text, (gssize)length, NULL)
      && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    root = json_node_get_object (json_parser_get_root (parser));
  if (root != NULL)
    {
      JsonNode *id = json_object_get_member (root, "id");

      if (id != NULL && (JSON_NODE_HOLDS_VALUE (id) || JSON_NODE_HOLDS_NULL (id)))
        request_id = id;
    }
  stream_id = wb_json_get_string (root, "stream_id", NULL);
  if (stream_id != NULL && strlen (stream_id) > WB_MESSAGE_MAX_STREAM_ID_BYTES)
    stream_id = NULL;
  type = wb_json_get_string (root, "type", NULL);
  if (type != NULL && wb_message_type_from_string (type) == WB_MESSAGE_TYPE_INVALID)
    type = NULL;
  client_reply_error (client, code, error->message, request_id, type, stream_id);
}

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
client_reply_hub_error (FrontendClient *client, const GError *error, const WbMessage *message)
{
  client_reply_error (client, hub_error_code (error), error->message, message->request_id,
                      wb_message_type_to_string (message->type), message->stream_id);
}

/* WAVE answers a subscribe with nothing but the events: so does this
 * endpoint, after the cached state of the stream and, if the request asked
 * for "history": N (the bridge's own member, docs/websocket.md), the last N
 * chat messages and reactions, all marked "cached". */
static void
client_handle_subscribe (FrontendClient *client, const WbMessage *message)
{
  g_auto (GStrv) events = wb_message_dup_events (message);
  g_autoptr (GError) error = NULL;
  guint history = 0;

  /* Checked first: a refused request subscribes nothing. */
  if ((wb_json_has_number (message->body, "history")
       && !wb_hub_check_history (client->frontend->hub, wb_message_get_double (message, "history"),
                                 &history, &error))
      || !wb_hub_client_subscribe (client->hub_client, message->stream_id,
                                   (const char *const *)events, NULL, &error))
    {
      client_reply_hub_error (client, error, message);
      return;
    }
  wb_hub_client_replay (client->hub_client, message->stream_id, history);
}

/* Unsubscribing from a stream not subscribed is no error in WAVE. */
static void
client_handle_unsubscribe (FrontendClient *client, const WbMessage *message)
{
  g_autoptr (GError) error = NULL;

  if (!wb_hub_client_unsubscribe (client->hub_client, message->stream_id, &error)
      && !g_error_matches (error, WB_HUB_ERROR, WB_HUB_ERROR_NOT_SUBSCRIBED))
    client_reply_hub_error (client, error, message);
}

/* WAVE acknowledges nothing: a chat message comes back as the chat.message
 * event to its stream's subscribers. Only a failure is reported. */
static void
send_done_cb (WbHubClient *hub_client, const GError *error, gpointer user_data)
{
  PendingSend *pending = user_data;

  if (error == NULL)
    return;
  client_reply_error (pending->client,
                      g_error_matches (error, WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED)
                          ? "not_connected"
                          : "send_failed",
                      error->message, pending->request_id,
                      wb_message_type_to_string (pending->type), pending->stream_id);
}

static void
client_handle_send (FrontendClient *client, const WbMessage *message)
{
  const char *field = message->type == WB_MESSAGE_CHAT_MESSAGE ? "message" : "reaction";
  g_autoptr (GError) error = NULL;
  PendingSend *pending = g_new0 (PendingSend, 1);

  pending->client = client;
  pending->request_id = message->request_id != NULL ? json_node_copy (message->request_id) : NULL;
  pending->stream_id = g_strdup (message->stream_id);
  pending->type = message->type;
  if (!wb_hub_client_send (client->hub_client, message->type, message->stream_id,
                           wb_message_get_string (message, field), send_done_cb, pending,
                           pending_send_free, &error))
    client_reply_hub_error (client, error, message);
}

static void
client_handle_ping (FrontendClient *client, const WbMessage *message)
{
  JsonNode *timestamp = json_object_get_member (message->body, "timestamp");
  JsonObject *payload = json_object_new ();
  g_autoptr (JsonNode) node = NULL;

  if (timestamp != NULL)
    json_object_set_member (payload, "timestamp", json_node_copy (timestamp));
  else
    json_object_set_int_member (payload, "timestamp", g_get_real_time () / 1000);
  node = wb_message_new_enveloped ("pong", payload);
  client_queue_node (client, node, message->request_id);
}

static void
client_message_cb (WbWsClient *connection, gboolean is_text, const char *text, gsize length,
                   gpointer user_data)
{
  FrontendClient *client = user_data;
  g_autoptr (WbMessage) message = NULL;
  g_autoptr (GError) error = NULL;

  if (client->hub_client == NULL)
    return;
  /* WAVE's own answer to a client over its allowance: 4429, retry later. */
  if (!wb_rate_limit_take (&client->allowance, g_get_monotonic_time ()))
    {
      g_autofree char *text_limit = g_strdup_printf ("more than %u messages per second",
                                                     client->frontend->messages_per_second);

      frontend_log_refusal (client->frontend, "Closing %s: rate limited (%s)", client->name,
                            text_limit);
      client_close_with_error (client, CLOSE_RATE_LIMITED, "rate_limited", text_limit);
      return;
    }
  if (!is_text)
    {
      client_reply_error (client, "invalid_json", "binary messages are not accepted", NULL, NULL,
                          NULL);
      return;
    }
  message = wb_message_parse (text, length, WB_DIRECTION_TO_SERVER, &error);
  if (message == NULL)
    {
      client_reply_parse_error (client, text, length, error);
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
    case WB_MESSAGE_PONG:
      /* An answer to a ping: nothing to do. */
      break;
    default:
      /* `status` is the Unix socket's; WAVE has no such request. */
      {
        g_autofree char *reply = g_strdup_printf ("unknown message type '%s'",
                                                  wb_message_type_to_string (message->type));

        client_reply_error (client, "unknown_type", reply, message->request_id, NULL,
                            message->stream_id);
      }
      break;
    }
}

/* ---- what the hub delivers --------------------------------------------- */

/* A local WAVE client gets what WAVE itself sends: stream events, cache
 * replays, errors. The bridge's notices (bridge.*) only with
 * ?bridge_notices=1; otherwise bridge.dropped becomes a WAVE error (the
 * one notice a client must not miss: it lost events) and the rest are left
 * out (docs/websocket.md, "Bridge notices"). */
static gboolean
client_deliver_cb (WbHubClient *hub_client, WbEvent *event, gpointer user_data)
{
  FrontendClient *client = user_data;

  if (wb_event_get_message_type (event) == WB_MESSAGE_TYPE_INVALID && !client->bridge_notices)
    {
      /* Upstream lost frames before reading them: said to every client. */
      if (g_str_equal (wb_event_get_type_name (event), "bridge.dropped"))
        {
          JsonObject *payload = wb_event_get_payload (event);
          g_autofree char *text = g_strdup_printf (
              "the bridge could not take in everything WAVE sent: %" G_GUINT64_FORMAT
              " messages were lost",
              wb_json_get_count (payload, "count", G_MAXUINT64));

          client_reply_error (client, "events_dropped", text, NULL, NULL, NULL);
        }
      return TRUE;
    }
  return wb_ws_client_queue_event (client->connection, wb_event_get_line (event));
}

static const WbHubClientSink client_sink = {
  .deliver = client_deliver_cb,
};

static GBytes *
client_dropped_notice (guint count, gpointer user_data)
{
  FrontendClient *client = user_data;
  JsonObject *payload = json_object_new ();
  g_autoptr (JsonNode) node = NULL;

  json_object_set_int_member (payload, "count", count);
  if (client->bridge_notices)
    node = wb_message_new_enveloped ("bridge.dropped", payload);
  else
    {
      g_autofree char *text
          = g_strdup_printf ("%u events were dropped: this client did not read fast enough", count);

      node = wb_message_new_error ("events_dropped", text, payload);
    }
  return wb_json_to_line (node);
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
frontend_account_ref (WbWsFrontend *frontend, uid_t uid)
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
      g_hash_table_insert (frontend->accounts, GUINT_TO_POINTER (key), account);
    }
  account->clients++;
  return account;
}

static void
frontend_account_unref (WbWsFrontend *frontend, UserAccount *account)
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
  g_clear_pointer (&client->connection, wb_ws_client_free);
  if (client->account != NULL)
    frontend_account_unref (client->frontend, g_steal_pointer (&client->account));
  g_free (client->name);
  g_free (client);
}

static void
client_closed_cb (WbWsClient *connection, WbWsClientCloseReason reason, gpointer user_data)
{
  FrontendClient *client = user_data;

  if (reason == WB_WS_CLIENT_CLOSED_SLOW || reason == WB_WS_CLIENT_CLOSED_OVERFLOW)
    g_message ("Disconnecting %s: %s (%" G_GUINT64_FORMAT " events dropped)", client->name,
               wb_ws_client_close_reason_to_string (reason),
               wb_ws_client_get_dropped_total (connection));
  else
    g_debug ("%s disconnected: %s", client->name, wb_ws_client_close_reason_to_string (reason));
  g_hash_table_remove (client->frontend->clients, client);
}

static const WbWsClientCallbacks client_callbacks = {
  .message = client_message_cb,
  .closed = client_closed_cb,
};

/* Over TCP there is no SO_PEERCRED: the listener asked the kernel who owns
 * the peer's socket when it accepted the connection (tcp-peer.c). A uid it
 * could not name counts as one shared user (WB_WS_UID_UNKNOWN), so a flood
 * of such clients is bounded by MaxClientsPerUser like any user's. The
 * groups are the uid's in the group database, looked up only when
 * SendGroup makes them matter. */
static WbPeerCredentials *
frontend_lookup_credentials (WbWsFrontend *frontend, SoupServerMessage *msg, WbWsMeter **out_meter)
{
  uid_t uid = wb_ws_listener_claim (frontend->listener,
                                    soup_server_message_get_remote_address (msg), out_meter);
  gid_t groups[MAX_GROUPS];
  int n_groups = MAX_GROUPS;
  struct passwd pwd;
  struct passwd *found = NULL;
  char buffer[4096];

  if (uid == WB_WS_UID_UNKNOWN)
    return wb_peer_credentials_new (0, WB_WS_UID_UNKNOWN, (gid_t)-1, NULL, 0);
  if (!frontend->send_group_set || getpwuid_r (uid, &pwd, buffer, sizeof buffer, &found) != 0
      || found == NULL)
    return wb_peer_credentials_new (0, uid, (gid_t)-1, NULL, 0); /* no group (peer-credentials.h) */
  if (getgrouplist (pwd.pw_name, pwd.pw_gid, groups, &n_groups) < 0)
    n_groups = MAX_GROUPS;
  return wb_peer_credentials_new (0, uid, pwd.pw_gid, groups, (guint)MAX (n_groups, 0));
}

static FrontendClient *
frontend_client_new (WbWsFrontend *frontend, SoupWebsocketConnection *connection, WbWsMeter *meter,
                     char *name)
{
  FrontendClient *client = g_new0 (FrontendClient, 1);

  client->frontend = frontend;
  client->name = name;
  client->connection = wb_ws_client_new (connection, meter, &frontend->limits,
                                         client_dropped_notice, &client_callbacks, client);
  g_hash_table_add (frontend->clients, client);
  return client;
}

/* A refused connection is not waited for: its close frame is written
 * (the socket is new and empty), then the connection goes at once. libsoup
 * would otherwise keep reading for up to 5 s, waiting for the peer's close,
 * and before 3.8 it gathers a fragmented message without bound: that
 * would let anyone without a key fill the daemon's memory. */
static void
frontend_drop_refused (WbWsFrontend *frontend, FrontendClient *client)
{
  g_hash_table_remove (frontend->clients, client);
}

static gboolean
query_flag_is_set (GHashTable *query, const char *name)
{
  const char *value = query != NULL ? g_hash_table_lookup (query, name) : NULL;

  return value != NULL
         && (g_str_equal (value, "1") || g_str_equal (value, "true") || g_str_equal (value, ""));
}

static void
frontend_websocket_cb (SoupServer *server, SoupServerMessage *msg, const char *path,
                       SoupWebsocketConnection *connection, gpointer user_data)
{
  WbWsFrontend *frontend = user_data;
  GUri *uri = soup_server_message_get_uri (msg);
  g_autoptr (GHashTable) query = NULL;
  g_autoptr (WbPeerCredentials) credentials = NULL;
  g_autoptr (WbWsMeter) meter = NULL;
  g_autoptr (GError) error = NULL;
  FrontendClient *client;
  char *name;

  if (g_uri_get_query (uri) != NULL)
    query = soup_form_decode (g_uri_get_query (uri));
  credentials = frontend_lookup_credentials (frontend, msg, &meter);
  if (credentials->uid == WB_WS_UID_UNKNOWN)
    name = g_strdup_printf ("websocket port=%u uid=unknown",
                            g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (
                                soup_server_message_get_remote_address (msg))));
  else
    name = g_strdup_printf ("websocket port=%u uid=%u",
                            g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (
                                soup_server_message_get_remote_address (msg))),
                            (unsigned)credentials->uid);
  client = frontend_client_new (frontend, connection, meter, name);

  /* The key comes first: nothing, not even a count, for a wrong one. */
  if (!wb_local_key_check (frontend->key,
                           query != NULL ? g_hash_table_lookup (query, "api_key") : NULL))
    {
      frontend_log_refusal (frontend, "Refusing %s: not the local key", client->name);
      wb_ws_client_close (client->connection, CLOSE_INVALID_AUTH, "Invalid API key");
      frontend_drop_refused (frontend, client);
      return;
    }
  client->hub_client
      = wb_hub_client_new (frontend->hub, client->name, credentials, &client_sink, client, &error);
  if (client->hub_client == NULL)
    {
      gboolean shutting_down = g_error_matches (error, WB_HUB_ERROR, WB_HUB_ERROR_SHUTTING_DOWN);

      frontend_log_refusal (frontend, "Refusing %s: %s", client->name, error->message);
      client_close_with_error (client, shutting_down ? CLOSE_GOING_AWAY : CLOSE_RATE_LIMITED,
                               hub_error_code (error), error->message);
      frontend_drop_refused (frontend, client);
      return;
    }
  client->bridge_notices = query_flag_is_set (query, BRIDGE_NOTICES_PARAM);
  wb_rate_limit_init_per_second (&client->allowance, frontend->messages_per_second,
                                 g_get_monotonic_time ());
  client->account = frontend_account_ref (frontend, credentials->uid);
  wb_ws_client_set_account (client->connection,
                            client->account != NULL ? &client->account->total : NULL);
  soup_websocket_connection_set_keepalive_interval (connection, KEEPALIVE_SECONDS);
  if (client->bridge_notices)
    client_send_hello (client);
  g_debug ("%s connected", client->name);
}

static gboolean
frontend_origin_allowed (WbWsFrontend *frontend, const char *origin)
{
  for (char **allowed = frontend->origins; allowed != NULL && *allowed != NULL; allowed++)
    if (g_ascii_strcasecmp (*allowed, origin) == 0)
      return TRUE;
  return FALSE;
}

/* Runs before the WebSocket handshake: what is refused here never becomes
 * a connection. Any web page can make a browser open ws://127.0.0.1:PORT;
 * the browser then says which page asked, in Origin, which the page cannot
 * change. Programs other than browsers send no Origin. */
static void
frontend_request_cb (SoupServer *server, SoupServerMessage *msg, const char *path,
                     GHashTable *query, gpointer user_data)
{
  WbWsFrontend *frontend = user_data;
  const char *origin
      = soup_message_headers_get_one (soup_server_message_get_request_headers (msg), "Origin");

  if (!g_str_equal (path, WB_WS_PATH))
    {
      soup_server_message_set_status (msg, SOUP_STATUS_NOT_FOUND, NULL);
      return;
    }
  if (origin != NULL && !frontend_origin_allowed (frontend, origin))
    {
      g_autofree char *safe = g_utf8_make_valid (origin, MIN (strlen (origin), 200));

      g_strcanon (safe, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:/.-_[]",
                  '?');
      frontend_log_refusal (frontend,
                            "Refusing a WebSocket request from origin %s (not in "
                            "[WebSocket] AllowedOrigins)",
                            safe);
      soup_server_message_set_status (msg, SOUP_STATUS_FORBIDDEN, NULL);
      return;
    }
}

/* ---- the frontend ------------------------------------------------------ */

static void
frontend_apply_config (WbWsFrontend *frontend, const WbConfig *config)
{
  g_strfreev (frontend->origins);
  frontend->origins = g_strdupv (config->ws_origins);
  frontend->send_group_set = config->send_group != NULL && config->send_group[0] != '\0';
  frontend->messages_per_second = config->ws_messages_per_second;
  frontend->max_queued_bytes_per_user = config->max_queued_bytes_per_user;
  frontend->limits.max_message_bytes = config->max_line_bytes;
  frontend->limits.queue_bytes = config->client_queue_bytes;
  frontend->limits.hard_queue_bytes = config->client_queue_bytes * HARD_QUEUE_FACTOR;
  frontend->limits.slow_timeout_ms = config->slow_client_timeout_ms;
}

WbWsFrontend *
wb_ws_frontend_new (WbHub *hub, const WbConfig *config, GError **error)
{
  g_autoptr (WbWsFrontend) frontend = NULL;
  g_autoptr (GSocketAddress) address = NULL;
  g_autofree char *host = NULL;
  guint16 port = 0;

  g_return_val_if_fail (hub != NULL && config != NULL && config->ws_listen != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  frontend = g_new0 (WbWsFrontend, 1);
  frontend->hub = hub;
  frontend->clients = g_hash_table_new_full (g_direct_hash, g_direct_equal,
                                             (GDestroyNotify)frontend_client_free, NULL);
  frontend->accounts = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  frontend_apply_config (frontend, config);
  if (!wb_config_parse_listen (config->ws_listen, &host, &port, error))
    return NULL;
  frontend->key = wb_local_key_load (config->ws_local_key_file, error);
  if (frontend->key == NULL)
    return NULL;

  frontend->server = soup_server_new ("server-header", "wave-bridge/" WB_VERSION, NULL);
  /* permessage-deflate lets a few bytes from a client expand into many:
   * nothing here is worth that risk. */
  soup_server_remove_websocket_extension (frontend->server, SOUP_TYPE_WEBSOCKET_EXTENSION_DEFLATE);
  soup_server_add_handler (frontend->server, WB_WS_PATH, frontend_request_cb, frontend, NULL);
  soup_server_add_websocket_handler (frontend->server, WB_WS_PATH, NULL, NULL,
                                     frontend_websocket_cb, frontend, NULL);
  address = g_inet_socket_address_new_from_string (host, port);
  if (address == NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not an address");
  else
    frontend->listener = wb_ws_listener_new (frontend->server, address, error);
  if (frontend->listener == NULL)
    {
      g_prefix_error (error, "[WebSocket] Listen=%s: ", config->ws_listen);
      return NULL;
    }
  frontend->url = g_inet_address_get_family (
                      g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address)))
                          == G_SOCKET_FAMILY_IPV6
                      ? g_strdup_printf ("ws://[%s]:%u%s", host, port, WB_WS_PATH)
                      : g_strdup_printf ("ws://%s:%u%s", host, port, WB_WS_PATH);
  g_message ("Local WAVE endpoint on %s (local key in %s)", frontend->url,
             wb_local_key_get_path (frontend->key));
  return g_steal_pointer (&frontend);
}

void
wb_ws_frontend_free (WbWsFrontend *frontend)
{
  GHashTableIter iter;
  gpointer key;

  if (frontend == NULL)
    return;
  g_clear_pointer (&frontend->listener, wb_ws_listener_free);
  if (frontend->server != NULL)
    soup_server_disconnect (frontend->server);
  /* WAVE's going away: the doc's clients come back after 5 s. */
  if (frontend->clients != NULL)
    {
      g_hash_table_iter_init (&iter, frontend->clients);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        {
          FrontendClient *client = key;

          g_clear_pointer (&client->hub_client, wb_hub_client_free);
          wb_ws_client_close (client->connection, CLOSE_GOING_AWAY, "Going away");
        }
    }
  g_clear_pointer (&frontend->clients, g_hash_table_unref);
  g_clear_pointer (&frontend->accounts, g_hash_table_unref);
  g_clear_object (&frontend->server);
  g_clear_pointer (&frontend->key, wb_local_key_free);
  g_strfreev (frontend->origins);
  g_free (frontend->url);
  g_free (frontend);
}

gboolean
wb_ws_frontend_set_config (WbWsFrontend *frontend, const WbConfig *config, GError **error)
{
  g_autoptr (WbLocalKey) key = NULL;
  GHashTableIter iter;
  gpointer value;
  gboolean rotated;

  g_return_val_if_fail (frontend != NULL && config != NULL, FALSE);

  key = wb_local_key_load (config->ws_local_key_file, error);
  if (key == NULL)
    return FALSE;
  frontend_apply_config (frontend, config);
  g_hash_table_iter_init (&iter, frontend->accounts);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      ((UserAccount *)value)->total.limit = frontend->max_queued_bytes_per_user;
      ((UserAccount *)value)->total.hard_limit
          = frontend->max_queued_bytes_per_user * HARD_QUEUE_FACTOR;
    }
  rotated = !wb_local_key_equal (key, frontend->key);
  if (rotated)
    {
      g_message ("The local key changed: closing %u local WebSocket clients",
                 g_hash_table_size (frontend->clients));
      g_clear_pointer (&frontend->key, wb_local_key_free);
      frontend->key = g_steal_pointer (&key);
    }
  g_hash_table_iter_init (&iter, frontend->clients);
  while (g_hash_table_iter_next (&iter, &value, NULL))
    {
      FrontendClient *client = value;

      wb_ws_client_set_limits (client->connection, &frontend->limits);
      if (client->hub_client != NULL)
        wb_rate_limit_set_rate (&client->allowance, frontend->messages_per_second,
                                g_get_monotonic_time ());
      /* A rotated key revokes the old one, also for those already in. */
      if (rotated && client->hub_client != NULL)
        {
          g_clear_pointer (&client->hub_client, wb_hub_client_free);
          wb_ws_client_close (client->connection, CLOSE_INVALID_AUTH, "Local key rotated");
        }
    }
  return TRUE;
}

const char *
wb_ws_frontend_get_url (WbWsFrontend *frontend)
{
  g_return_val_if_fail (frontend != NULL, NULL);
  return frontend->url;
}

gboolean
wb_ws_frontend_key_is (WbWsFrontend *frontend, const char *secret)
{
  g_return_val_if_fail (frontend != NULL, FALSE);
  return wb_local_key_check (frontend->key, secret);
}
