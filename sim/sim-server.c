/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-sim-server"

#include "sim-server.h"

#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "sim-event-log.h"

/* WAVE close codes (see the doc's closure table). */
#define SIM_CLOSE_GOING_AWAY 1001
#define SIM_CLOSE_ABNORMAL 1006
#define SIM_CLOSE_INVALID_AUTH 4401
#define SIM_CLOSE_RATE_LIMITED 4429

#define SIM_SERVER_MAX_SUBSCRIPTIONS 1024 /* per connection */
#define SIM_SERVER_MAX_CLOSES_KEPT 256    /* history in /sim/stats */
#define SIM_SERVER_RATE_WINDOW_US G_USEC_PER_SEC
/* Streams whose events are numbered (sim_stream_seq); events of streams
 * beyond this, which only floods and chat to made-up ids can create, go out
 * unnumbered rather than let a client grow the table without bound. */
#define SIM_SERVER_MAX_NUMBERED_STREAMS 4096
#define SIM_SERVER_SEQ_MEMBER "sim_stream_seq"

typedef struct
{
  SimServer *server;
  guint64 id;
  SoupWebsocketConnection *ws;
  GSocket *socket;
  gboolean accepted;         /* past the key check: takes part in the protocol */
  gushort close_sent;        /* the code we closed with, 0 if none */
  gboolean dropped;          /* TCP cut by /sim/drop */
  gushort error_code;        /* libsoup's reason when it gave up (e.g. 1009 too big) */
  gboolean closed;           /* freed by the next purge, never inside a send loop */
  GHashTable *subscriptions; /* stream_id → event type bit mask */
  gint64 *recent_us;         /* ring of the last rate_limit message times */
  guint recent_next;
  guint recent_count;
} SimConnection;

struct _SimServer
{
  SoupServer *soup;
  char *url;
  char *api_key;
  guint rate_limit;
  guint max_connections;
  SimStreams *streams;

  GPtrArray *connections; /* SimConnection, in accept order */
  guint n_closed;         /* closed ones waiting for the purge */
  guint purge_id;
  guint64 next_id;
  guint64 connections_total;
  guint64 handshakes_rejected;
  guint64 received[WB_MESSAGE_N_TYPES];
  guint64 received_invalid;
  guint64 sent[WB_MESSAGE_N_TYPES];
  guint64 sent_raw;
  guint64 local_chat_seq;
  GQueue closes;           /* JsonObject, oldest first */
  GHashTable *stream_seqs; /* stream_id → guint64 *: the last sim_stream_seq given */
  SimEventLog *event_log;  /* NULL without --event-log */

  gboolean answer_pings;
  guint reject_count;
  guint reject_http_status;
  char *reject_reason; /* HTTP reason phrase, raw bytes; NULL: the status's own */
  gushort reject_close_code;
};

static guint32
type_bit (WbMessageType type)
{
  return 1u << (guint)type;
}

static void
connection_free (gpointer data)
{
  SimConnection *conn = data;

  g_signal_handlers_disconnect_by_data (conn->ws, conn);
  g_clear_object (&conn->ws);
  g_clear_object (&conn->socket);
  g_hash_table_unref (conn->subscriptions);
  g_free (conn->recent_us);
  g_free (conn);
}

static gboolean
connection_is_open (SimConnection *conn)
{
  return conn->accepted && !conn->dropped
         && soup_websocket_connection_get_state (conn->ws) == SOUP_WEBSOCKET_STATE_OPEN;
}

static void
connection_close (SimConnection *conn, gushort code, const char *reason)
{
  if (soup_websocket_connection_get_state (conn->ws) != SOUP_WEBSOCKET_STATE_OPEN || conn->dropped)
    return;
  g_message ("connection %" G_GUINT64_FORMAT ": closing with %u (%s)", conn->id, code, reason);
  conn->close_sent = code;
  soup_websocket_connection_close (conn->ws, code, reason);
}

static void
connection_send (SimConnection *conn, WbMessageType type, const char *text)
{
  soup_websocket_connection_send_text (conn->ws, text);
  conn->server->sent[type]++;
}

static void
connection_send_node (SimConnection *conn, WbMessageType type, JsonNode *node)
{
  g_autofree char *text = wb_json_to_string (node, NULL);

  connection_send (conn, type, text);
}

static const char *
object_get_string (JsonObject *object, const char *member)
{
  JsonNode *node = object != NULL ? json_object_get_member (object, member) : NULL;

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

static void
send_error (SimConnection *conn, const char *code, const char *message, const char *type,
            const char *stream_id)
{
  JsonObject *details = json_object_new ();
  g_autoptr (JsonNode) node = NULL;

  if (type != NULL)
    json_object_set_string_member (details, "type", type);
  if (stream_id != NULL)
    json_object_set_string_member (details, "stream_id", stream_id);
  node = wb_message_new_error (code, message, details);
  g_debug ("connection %" G_GUINT64_FORMAT ": error %s: %s", conn->id, code, message);
  connection_send_node (conn, WB_MESSAGE_ERROR, node);
}

/* Answers a message the model rejected, naming its type and stream when
 * the JSON itself was readable. */
static void
send_parse_error (SimConnection *conn, const GError *error, const char *data, gsize length)
{
  g_autoptr (JsonParser) parser = NULL;
  JsonObject *root = NULL;
  const char *code = "invalid_message";

  if (error->domain == WB_MESSAGE_ERROR_DOMAIN)
    switch ((WbMessageError)error->code)
      {
      case WB_MESSAGE_ERROR_INVALID_UTF8:
      case WB_MESSAGE_ERROR_INVALID_JSON:
      case WB_MESSAGE_ERROR_TOO_DEEP:
        send_error (conn, "invalid_json", error->message, NULL, NULL);
        return;
      case WB_MESSAGE_ERROR_UNKNOWN_TYPE:
      case WB_MESSAGE_ERROR_WRONG_DIRECTION:
        code = "unknown_type";
        break;
      case WB_MESSAGE_ERROR_NUL_CHARACTER:
        /* json-glib would cut the strings it could name. */
        send_error (conn, code, error->message, NULL, NULL);
        return;
      case WB_MESSAGE_ERROR_NOT_OBJECT:
      case WB_MESSAGE_ERROR_MISSING_FIELD:
      case WB_MESSAGE_ERROR_INVALID_FIELD:
        break;
      }
  parser = json_parser_new_immutable ();
  if (json_parser_load_from_data (parser, data, (gssize)length, NULL)
      && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    root = json_node_get_object (json_parser_get_root (parser));
  send_error (conn, code, error->message, object_get_string (root, "type"),
              object_get_string (root, "stream_id"));
}

/* FALSE when this message is one more than rate_limit within the window. */
static gboolean
rate_check (SimConnection *conn)
{
  guint limit = conn->server->rate_limit;
  gint64 now = g_get_monotonic_time ();

  if (limit == 0)
    return TRUE;
  /* recent_next is the oldest entry once the ring is full. */
  if (conn->recent_count == limit
      && now - conn->recent_us[conn->recent_next] < SIM_SERVER_RATE_WINDOW_US)
    return FALSE;
  conn->recent_us[conn->recent_next] = now;
  conn->recent_next = (conn->recent_next + 1) % limit;
  conn->recent_count = MIN (conn->recent_count + 1, limit);
  return TRUE;
}

static void
handle_ping (SimConnection *conn, WbMessage *message)
{
  JsonNode *timestamp = json_object_get_member (message->body, "timestamp");
  g_autoptr (JsonNode) pong = NULL;
  JsonObject *payload;

  if (!conn->server->answer_pings)
    return;
  payload = json_object_new ();
  if (timestamp != NULL)
    json_object_set_member (payload, "timestamp", json_node_copy (timestamp));
  pong = wb_message_new_enveloped ("pong", payload);
  connection_send_node (conn, WB_MESSAGE_PONG, pong);
}

static void
handle_subscribe (SimConnection *conn, WbMessage *message)
{
  g_auto (GStrv) events = wb_message_dup_events (message);
  guint32 mask = 0;

  if (!g_hash_table_contains (conn->subscriptions, message->stream_id)
      && g_hash_table_size (conn->subscriptions) >= SIM_SERVER_MAX_SUBSCRIPTIONS)
    {
      send_error (conn, "invalid_message", "too many subscriptions on this connection", "subscribe",
                  message->stream_id);
      return;
    }
  for (char **event = events; *event != NULL; event++)
    mask |= type_bit (wb_message_type_from_string (*event));
  g_hash_table_insert (conn->subscriptions, g_strdup (message->stream_id), GUINT_TO_POINTER (mask));
  /* wb_message_dup_events () gives them sorted, without duplicates. */
  sim_event_log_subscribe (conn->server->event_log, conn->id, message->stream_id,
                           (const char *const *)events);
  g_debug ("connection %" G_GUINT64_FORMAT ": subscribed to %s", conn->id, message->stream_id);
}

static void
handle_chat (SimConnection *conn, WbMessage *message)
{
  SimServer *self = conn->server;
  JsonObject *payload = json_object_new ();
  g_autofree char *message_id
      = g_strdup_printf ("msg_local_%" G_GUINT64_FORMAT, ++self->local_chat_seq);
  g_autofree char *timestamp = sim_streams_dup_timestamp (self->streams);

  json_object_set_string_member (payload, "stream_id", message->stream_id);
  json_object_set_string_member (payload, "message_id", message_id);
  json_object_set_string_member (payload, "user_id", "local");
  json_object_set_string_member (payload, "username", "you");
  json_object_set_string_member (payload, "message", wb_message_get_string (message, "message"));
  json_object_set_string_member (payload, "timestamp", timestamp);
  sim_server_publish (self, "chat.message", payload);
  json_object_unref (payload);
}

static void
message_cb (SoupWebsocketConnection *ws, gint frame_type, GBytes *data, gpointer user_data)
{
  SimConnection *conn = user_data;
  SimServer *self = conn->server;
  g_autoptr (WbMessage) message = NULL;
  g_autoptr (GError) error = NULL;
  gsize length = 0;
  const char *text = g_bytes_get_data (data, &length);

  if (!connection_is_open (conn))
    return;
  if (!rate_check (conn))
    {
      connection_close (conn, SIM_CLOSE_RATE_LIMITED, "rate limited");
      return;
    }
  if (frame_type != SOUP_WEBSOCKET_DATA_TEXT)
    {
      self->received_invalid++;
      send_error (conn, "invalid_message", "binary frames are not supported", NULL, NULL);
      return;
    }
  message = wb_message_parse (text != NULL ? text : "", length, WB_DIRECTION_TO_SERVER, &error);
  if (message == NULL)
    {
      self->received_invalid++;
      send_parse_error (conn, error, text != NULL ? text : "", length);
      return;
    }
  /* A bridge request, not part of the WAVE protocol. */
  if (message->type == WB_MESSAGE_STATUS)
    {
      self->received_invalid++;
      send_error (conn, "unknown_type", "unknown message type 'status'", "status", NULL);
      return;
    }

  self->received[message->type]++;
  switch (message->type)
    {
    case WB_MESSAGE_PING:
      handle_ping (conn, message);
      break;
    case WB_MESSAGE_PONG:
      /* The answer to our ping (/sim/emit); counted above. */
      break;
    case WB_MESSAGE_SUBSCRIBE:
      handle_subscribe (conn, message);
      break;
    case WB_MESSAGE_UNSUBSCRIBE:
      g_hash_table_remove (conn->subscriptions, message->stream_id);
      sim_event_log_unsubscribe (self->event_log, conn->id, message->stream_id);
      break;
    case WB_MESSAGE_CHAT_MESSAGE:
      handle_chat (conn, message);
      break;
    case WB_MESSAGE_REACTION_SENT:
      sim_streams_add_reaction (self->streams, message->stream_id,
                                wb_message_get_string (message, "reaction"));
      break;
    default:
      /* The model only lets client message types through. */
      g_assert_not_reached ();
    }
}

static void
record_close (SimServer *self, SimConnection *conn)
{
  JsonObject *close = json_object_new ();
  gushort received = soup_websocket_connection_get_close_code (conn->ws);
  const char *initiator;
  gushort code;

  if (conn->dropped)
    {
      initiator = "drop";
      code = SIM_CLOSE_ABNORMAL;
    }
  else if (conn->close_sent != 0)
    {
      initiator = "server";
      code = conn->close_sent;
    }
  else if (conn->error_code != 0)
    {
      initiator = "error";
      code = conn->error_code;
    }
  else
    {
      initiator = received != 0 ? "client" : "abnormal";
      code = received != 0 ? received : SIM_CLOSE_ABNORMAL;
    }
  json_object_set_int_member (close, "connection", (gint64)conn->id);
  json_object_set_int_member (close, "code", code);
  json_object_set_string_member (close, "initiator", initiator);
  g_queue_push_tail (&self->closes, close);
  while (self->closes.length > SIM_SERVER_MAX_CLOSES_KEPT)
    json_object_unref (g_queue_pop_head (&self->closes));
  sim_event_log_close (self->event_log, conn->id, code, initiator);
  g_message ("connection %" G_GUINT64_FORMAT ": closed (%s, %u)", conn->id, initiator, code);
}

/* libsoup tears a connection down itself on protocol errors and oversized
 * frames; keep its reason for the close record. */
static void
error_cb (SoupWebsocketConnection *ws, GError *error, gpointer user_data)
{
  SimConnection *conn = user_data;

  g_message ("connection %" G_GUINT64_FORMAT ": %s", conn->id, error->message);
  if (error->domain == SOUP_WEBSOCKET_ERROR && conn->error_code == 0)
    conn->error_code = (gushort)error->code;
}

static gboolean
purge_cb (gpointer user_data)
{
  SimServer *self = user_data;

  self->purge_id = 0;
  for (guint i = self->connections->len; i-- > 0;)
    if (((SimConnection *)g_ptr_array_index (self->connections, i))->closed)
      g_ptr_array_remove_index (self->connections, i);
  self->n_closed = 0;
  return G_SOURCE_REMOVE;
}

static guint
n_connections (SimServer *self)
{
  return self->connections->len - self->n_closed;
}

static void
closed_cb (SoupWebsocketConnection *ws, gpointer user_data)
{
  SimConnection *conn = user_data;
  SimServer *self = conn->server;

  record_close (self, conn);
  conn->closed = TRUE;
  self->n_closed++;
  if (self->purge_id == 0)
    self->purge_id = g_idle_add (purge_cb, self);
}

/* Runs before libsoup's WebSocket handshake: a status set here refuses it. */
static void
handshake_cb (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
              gpointer user_data)
{
  SimServer *self = user_data;

  if (self->reject_count > 0 && self->reject_http_status != 0)
    {
      self->reject_count--;
      self->handshakes_rejected++;
      g_message ("handshake rejected with HTTP %u (injected)", self->reject_http_status);
      sim_server_respond_error (msg, self->reject_http_status, "rejected by /sim/reject");
      if (self->reject_reason != NULL)
        soup_server_message_set_status (msg, self->reject_http_status, self->reject_reason);
      return;
    }
  if (n_connections (self) >= self->max_connections)
    {
      self->handshakes_rejected++;
      g_warning ("handshake rejected: %u connections open", n_connections (self));
      sim_server_respond_error (msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "too many connections");
    }
}

static char *
dup_query_param (SoupServerMessage *msg, const char *name)
{
  const char *query = g_uri_get_query (soup_server_message_get_uri (msg));
  g_autoptr (GHashTable) params = NULL;

  if (query == NULL)
    return NULL;
  params = g_uri_parse_params (query, -1, "&", G_URI_PARAMS_NONE, NULL);
  return params != NULL ? g_strdup (g_hash_table_lookup (params, name)) : NULL;
}

static void
websocket_cb (SoupServer *soup, SoupServerMessage *msg, const char *path,
              SoupWebsocketConnection *ws, gpointer user_data)
{
  SimServer *self = user_data;
  SimConnection *conn = g_new0 (SimConnection, 1);
  g_autofree char *key = dup_query_param (msg, "api_key");
  GSocket *socket = soup_server_message_get_socket (msg);

  conn->server = self;
  conn->id = ++self->next_id;
  conn->ws = g_object_ref (ws);
  conn->socket = socket != NULL ? g_object_ref (socket) : NULL;
  conn->subscriptions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  conn->recent_us = g_new0 (gint64, MAX (self->rate_limit, 1));
  g_ptr_array_add (self->connections, conn);
  self->connections_total++;
  sim_event_log_open (self->event_log, conn->id);

  soup_websocket_connection_set_max_incoming_payload_size (ws, SIM_SERVER_MAX_INCOMING_PAYLOAD);
  soup_websocket_connection_set_keepalive_interval (ws, 0);
  g_signal_connect (ws, "message", G_CALLBACK (message_cb), conn);
  g_signal_connect (ws, "error", G_CALLBACK (error_cb), conn);
  g_signal_connect (ws, "closed", G_CALLBACK (closed_cb), conn);
  g_message ("connection %" G_GUINT64_FORMAT ": open from %s", conn->id,
             soup_server_message_get_remote_host (msg));

  if (self->reject_count > 0 && self->reject_http_status == 0)
    {
      self->reject_count--;
      self->handshakes_rejected++;
      connection_close (conn, self->reject_close_code, "rejected by /sim/reject");
      return;
    }
  if (self->api_key != NULL && g_strcmp0 (key, self->api_key) != 0)
    {
      connection_close (conn, SIM_CLOSE_INVALID_AUTH, "invalid api key");
      return;
    }
  conn->accepted = TRUE;
}

SimServer *
sim_server_new (const SimServerOptions *options, SimStreams *streams, GError **error)
{
  g_autoptr (SimServer) self = NULL;
  GSList *uris;
  SoupServerListenOptions listen = SOUP_SERVER_LISTEN_IPV4_ONLY;
  guint port = 0;

  g_return_val_if_fail (options != NULL && streams != NULL, NULL);
  g_return_val_if_fail (options->rate_limit <= SIM_SERVER_MAX_RATE_LIMIT, NULL);
  g_return_val_if_fail (options->max_connections <= SIM_SERVER_MAX_CONNECTIONS, NULL);

  self = g_new0 (SimServer, 1);
  self->streams = streams;
  self->api_key = g_strdup (options->api_key);
  self->rate_limit = options->rate_limit;
  self->max_connections = options->max_connections;
  self->answer_pings = TRUE;
  self->connections = g_ptr_array_new_with_free_func (connection_free);
  g_queue_init (&self->closes);
  self->stream_seqs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  if (options->event_log != NULL)
    {
      self->event_log = sim_event_log_new (options->event_log, error);
      if (self->event_log == NULL)
        return NULL;
    }

  if (options->tls_certificate != NULL)
    {
      self->soup = soup_server_new ("server-header", "wave-sim", "tls-certificate",
                                    options->tls_certificate, NULL);
      listen |= SOUP_SERVER_LISTEN_HTTPS;
    }
  else
    self->soup = soup_server_new ("server-header", "wave-sim", NULL);

  soup_server_add_handler (self->soup, SIM_SERVER_PATH, handshake_cb, self, NULL);
  soup_server_add_websocket_handler (self->soup, SIM_SERVER_PATH, NULL, NULL, websocket_cb, self,
                                     NULL);
  if (!soup_server_listen_local (self->soup, options->port, listen, error))
    {
      g_prefix_error (error, "cannot listen on 127.0.0.1:%u: ", options->port);
      return NULL;
    }
  uris = soup_server_get_uris (self->soup);
  if (uris != NULL)
    port = (guint)g_uri_get_port (uris->data);
  g_slist_free_full (uris, (GDestroyNotify)g_uri_unref);
  self->url
      = g_strdup_printf ("%s://127.0.0.1:%u%s", options->tls_certificate != NULL ? "wss" : "ws",
                         port, SIM_SERVER_PATH);
  return g_steal_pointer (&self);
}

void
sim_server_free (SimServer *self)
{
  if (self == NULL)
    return;
  if (self->soup != NULL)
    soup_server_disconnect (self->soup);
  g_clear_handle_id (&self->purge_id, g_source_remove);
  g_clear_pointer (&self->connections, g_ptr_array_unref);
  g_clear_object (&self->soup);
  g_queue_clear_full (&self->closes, (GDestroyNotify)json_object_unref);
  g_clear_pointer (&self->stream_seqs, g_hash_table_unref);
  g_clear_pointer (&self->event_log, sim_event_log_free);
  g_free (self->api_key);
  g_free (self->url);
  g_free (self->reject_reason);
  g_free (self);
}

SoupServer *
sim_server_get_soup_server (SimServer *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->soup;
}

const char *
sim_server_get_url (SimServer *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return self->url;
}

/* The next sim_stream_seq of @stream_id (1, 2, …), or 0 past the table's bound. */
static guint64
next_stream_seq (SimServer *self, const char *stream_id)
{
  guint64 *seq = g_hash_table_lookup (self->stream_seqs, stream_id);

  if (seq == NULL)
    {
      if (g_hash_table_size (self->stream_seqs) >= SIM_SERVER_MAX_NUMBERED_STREAMS)
        return 0;
      seq = g_new0 (guint64, 1);
      g_hash_table_insert (self->stream_seqs, g_strdup (stream_id), seq);
    }
  return ++*seq;
}

void
sim_server_number_event (SimServer *self, JsonObject *payload)
{
  const char *stream_id;
  guint64 seq;

  g_return_if_fail (self != NULL && payload != NULL);
  stream_id = object_get_string (payload, "stream_id");
  if (stream_id == NULL)
    return;
  seq = next_stream_seq (self, stream_id);
  if (seq != 0)
    json_object_set_int_member (payload, SIM_SERVER_SEQ_MEMBER, (gint64)seq);
}

static guint
publish (SimServer *self, const char *type, JsonObject *payload, gboolean numbered)
{
  WbMessageType message_type = wb_message_type_from_string (type);
  const char *stream_id = object_get_string (payload, "stream_id");
  g_autofree char *text = NULL;
  g_autofree guint64 *conns = NULL;
  guint delivered = 0;
  /* Before any write: a reader must never see the event before its time. */
  gint64 at_us = g_get_monotonic_time ();

  if (!wb_message_type_is_stream_event (message_type) || stream_id == NULL)
    return 0;
  if (numbered && !json_object_has_member (payload, SIM_SERVER_SEQ_MEMBER))
    sim_server_number_event (self, payload);
  /* Serialized once, only if anyone (or the event log) wants it. */
  if (self->event_log != NULL)
    {
      g_autoptr (JsonNode) node = wb_message_new_enveloped (type, json_object_ref (payload));

      text = wb_json_to_string (node, NULL);
      conns = g_new (guint64, MAX (self->connections->len, 1));
    }
  for (guint i = 0; i < self->connections->len; i++)
    {
      SimConnection *conn = g_ptr_array_index (self->connections, i);
      guint32 mask = GPOINTER_TO_UINT (g_hash_table_lookup (conn->subscriptions, stream_id));

      if ((mask & type_bit (message_type)) == 0 || !connection_is_open (conn))
        continue;
      if (text == NULL)
        {
          g_autoptr (JsonNode) node = wb_message_new_enveloped (type, json_object_ref (payload));

          text = wb_json_to_string (node, NULL);
        }
      connection_send (conn, message_type, text);
      if (conns != NULL)
        conns[delivered] = conn->id;
      delivered++;
    }
  if (numbered)
    sim_event_log_event (self->event_log, at_us, text, conns, delivered);
  return delivered;
}

guint
sim_server_publish (SimServer *self, const char *type, JsonObject *payload)
{
  g_return_val_if_fail (self != NULL && type != NULL && payload != NULL, 0);
  return publish (self, type, payload, TRUE);
}

guint
sim_server_publish_verbatim (SimServer *self, const char *type, JsonObject *payload)
{
  g_return_val_if_fail (self != NULL && type != NULL && payload != NULL, 0);
  return publish (self, type, payload, FALSE);
}

void
sim_server_publish_cb (const char *type, JsonObject *payload, gpointer user_data)
{
  sim_server_publish (user_data, type, payload);
}

guint
sim_server_send_all (SimServer *self, JsonNode *message)
{
  g_autofree char *text = NULL;
  WbMessageType type;
  guint delivered = 0;

  g_return_val_if_fail (self != NULL && message != NULL && JSON_NODE_HOLDS_OBJECT (message), 0);

  type = wb_message_type_from_string (object_get_string (json_node_get_object (message), "type"));
  text = wb_json_to_string (message, NULL);
  for (guint i = 0; i < self->connections->len; i++)
    {
      SimConnection *conn = g_ptr_array_index (self->connections, i);

      if (!connection_is_open (conn))
        continue;
      soup_websocket_connection_send_text (conn->ws, text);
      if (type != WB_MESSAGE_TYPE_INVALID)
        self->sent[type]++;
      else
        self->sent_raw++;
      delivered++;
    }
  return delivered;
}

guint
sim_server_close_all (SimServer *self, gushort code, const char *reason)
{
  guint closed = 0;

  g_return_val_if_fail (self != NULL, 0);
  for (guint i = 0; i < self->connections->len; i++)
    {
      SimConnection *conn = g_ptr_array_index (self->connections, i);

      if (connection_is_open (conn))
        {
          connection_close (conn, code, reason != NULL ? reason : "");
          closed++;
        }
    }
  return closed;
}

guint
sim_server_drop_all (SimServer *self)
{
  guint dropped = 0;

  g_return_val_if_fail (self != NULL, 0);
  for (guint i = 0; i < self->connections->len; i++)
    {
      SimConnection *conn = g_ptr_array_index (self->connections, i);
      g_autoptr (GError) error = NULL;

      if (conn->dropped || conn->closed || conn->socket == NULL)
        continue;
      conn->dropped = TRUE;
      /* No close frame, no TLS close_notify: the peer sees the TCP stream end. */
      if (!g_socket_shutdown (conn->socket, TRUE, TRUE, &error))
        g_warning ("connection %" G_GUINT64_FORMAT ": shutdown: %s", conn->id, error->message);
      dropped++;
    }
  g_message ("dropped %u connections", dropped);
  return dropped;
}

void
sim_server_set_answer_pings (SimServer *self, gboolean answer)
{
  g_return_if_fail (self != NULL);
  self->answer_pings = answer;
  g_message ("pings are %s", answer ? "answered" : "ignored");
}

void
sim_server_reject_next (SimServer *self, guint count, guint http_status, const char *reason,
                        gushort close_code)
{
  g_return_if_fail (self != NULL);
  self->reject_count = count;
  self->reject_http_status = http_status;
  g_free (self->reject_reason);
  self->reject_reason = g_strdup (reason);
  self->reject_close_code = close_code;
  g_message ("the next %u handshakes will be rejected (%s %u)", count,
             http_status != 0 ? "HTTP" : "close", http_status != 0 ? http_status : close_code);
}

static guint
send_raw (SimServer *self, const char *text, GBytes *binary)
{
  guint delivered = 0;

  for (guint i = 0; i < self->connections->len; i++)
    {
      SimConnection *conn = g_ptr_array_index (self->connections, i);

      if (!connection_is_open (conn))
        continue;
      if (text != NULL)
        soup_websocket_connection_send_text (conn->ws, text);
      else
        soup_websocket_connection_send_message (conn->ws, SOUP_WEBSOCKET_DATA_BINARY, binary);
      self->sent_raw++;
      delivered++;
    }
  return delivered;
}

guint
sim_server_send_raw_text (SimServer *self, const char *text)
{
  g_return_val_if_fail (self != NULL && text != NULL, 0);
  return send_raw (self, text, NULL);
}

guint
sim_server_send_raw_binary (SimServer *self, GBytes *data)
{
  g_return_val_if_fail (self != NULL && data != NULL, 0);
  return send_raw (self, NULL, data);
}

static void
add_counts (JsonObject *object, const guint64 *counts, gboolean client_types)
{
  for (int type = WB_MESSAGE_TYPE_INVALID + 1; type < WB_MESSAGE_N_TYPES; type++)
    if (counts[type] != 0
        || (client_types
            && (type == WB_MESSAGE_PING || type == WB_MESSAGE_SUBSCRIBE
                || type == WB_MESSAGE_UNSUBSCRIBE || type == WB_MESSAGE_CHAT_MESSAGE
                || type == WB_MESSAGE_REACTION_SENT)))
      json_object_set_int_member (object, wb_message_type_to_string ((WbMessageType)type),
                                  (gint64)counts[type]);
}

static int
compare_key_cb (const void *a, const void *b)
{
  return g_strcmp0 (*(const char *const *)a, *(const char *const *)b);
}

static JsonArray *
subscriptions_to_json (SimServer *self)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < self->connections->len; i++)
    {
      SimConnection *conn = g_ptr_array_index (self->connections, i);
      g_autofree gpointer *keys = NULL;
      guint n_keys = 0;

      if (conn->closed)
        continue;
      keys = g_hash_table_get_keys_as_array (conn->subscriptions, &n_keys);
      qsort (keys, n_keys, sizeof (gpointer), compare_key_cb);
      for (guint k = 0; k < n_keys; k++)
        {
          JsonObject *sub = json_object_new ();
          JsonArray *events = json_array_new ();
          guint32 mask = GPOINTER_TO_UINT (g_hash_table_lookup (conn->subscriptions, keys[k]));

          for (const char *const *name = wb_message_stream_event_names (); *name != NULL; name++)
            if (mask & type_bit (wb_message_type_from_string (*name)))
              json_array_add_string_element (events, *name);
          json_object_set_int_member (sub, "connection", (gint64)conn->id);
          json_object_set_string_member (sub, "stream_id", keys[k]);
          json_object_set_array_member (sub, "events", events);
          json_array_add_object_element (array, sub);
        }
    }
  return array;
}

static JsonObject *
stream_seqs_to_json (SimServer *self)
{
  JsonObject *object = json_object_new ();
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, self->stream_seqs);
  while (g_hash_table_iter_next (&iter, &key, &value))
    json_object_set_int_member (object, key, (gint64) * (guint64 *)value);
  return object;
}

void
sim_server_add_stats (SimServer *self, JsonObject *stats)
{
  JsonObject *received = json_object_new ();
  JsonObject *sent = json_object_new ();
  JsonArray *closes = json_array_new ();

  g_return_if_fail (self != NULL && stats != NULL);

  add_counts (received, self->received, TRUE);
  json_object_set_int_member (received, "invalid", (gint64)self->received_invalid);
  add_counts (sent, self->sent, FALSE);
  json_object_set_int_member (sent, "raw", (gint64)self->sent_raw);
  for (GList *l = self->closes.head; l != NULL; l = l->next)
    json_array_add_object_element (closes, json_object_ref (l->data));

  json_object_set_int_member (stats, "connections", n_connections (self));
  json_object_set_int_member (stats, "connections_total", (gint64)self->connections_total);
  json_object_set_int_member (stats, "handshakes_rejected", (gint64)self->handshakes_rejected);
  json_object_set_int_member (stats, "rejects_pending", self->reject_count);
  json_object_set_boolean_member (stats, "answer_pings", self->answer_pings);
  json_object_set_object_member (stats, "received", received);
  json_object_set_object_member (stats, "sent", sent);
  json_object_set_array_member (stats, "subscriptions", subscriptions_to_json (self));
  json_object_set_array_member (stats, "closes", closes);
  json_object_set_object_member (stats, "stream_seqs", stream_seqs_to_json (self));
}

void
sim_server_shutdown (SimServer *self)
{
  g_return_if_fail (self != NULL);
  sim_server_close_all (self, SIM_CLOSE_GOING_AWAY, "simulator shutting down");
}

void
sim_server_respond_json (SoupServerMessage *msg, guint status, JsonObject *answer)
{
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  gsize length = 0;
  char *text;

  json_node_set_object (node, answer);
  text = wb_json_to_string (node, &length);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, text, length);
}

void
sim_server_respond_error (SoupServerMessage *msg, guint status, const char *text)
{
  g_autoptr (JsonObject) answer = json_object_new ();

  json_object_set_boolean_member (answer, "ok", FALSE);
  json_object_set_string_member (answer, "error", text);
  sim_server_respond_json (msg, status, answer);
}
