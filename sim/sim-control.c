/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-sim-control"

#include "sim-control.h"

#include <string.h>

#include "message.h"

#define SIM_FLOOD_TICK_MS 2
/* Keeps the simulator responsive while a fast flood catches up. */
#define SIM_FLOOD_MAX_PER_TICK 2000
#define SIM_FLOODS_KEPT 16
#define SIM_FLOOD_DEFAULT_RATE 1000
#define SIM_CLOSE_MIN_APP_CODE 3000
#define SIM_CLOSE_MAX_APP_CODE 4999
/* A close frame payload is at most 125 bytes, 2 of them the code. */
#define SIM_CLOSE_MAX_REASON_BYTES 123
/* An HTTP reason phrase from /sim/reject. */
#define SIM_REJECT_MAX_REASON_BYTES 1024
/* /sim/raw "pad_to": frames up to this size. */
#define SIM_RAW_MAX_PAD_BYTES (16 * 1024 * 1024)
/* A text frame sent this many times in a row at most: a burst that arrives
 * at once, however large each frame (see "repeat" in route_raw). */
#define SIM_RAW_MAX_REPEAT 1000
#define SIM_HTTP_MIN_ERROR 400
#define SIM_HTTP_MAX_ERROR 599

#define SIM_CONTROL_ERROR (sim_control_error_quark ())
/* clang-format off */
static G_DEFINE_QUARK (sim-control-error-quark, sim_control_error)
/* clang-format on */

typedef struct
{
  SimControl *owner;
  guint64 id;
  char *stream_id;
  char *type;
  guint rate;
  guint size;
  guint count;
  gboolean stamp_id; /* the event's message_id carries sim_sent_us (D-Bus benchmarks) */
  guint sent;
  guint64 delivered;
  gint64 started_us;
  guint timer_id;
} Flood;

struct _SimControl
{
  SimServer *server;
  SimStreams *streams;
  GQueue floods; /* Flood, oldest first; active ones have a timer */
  guint64 next_flood_id;
};

typedef gboolean (*RouteFunc) (SimControl *self, JsonObject *body, JsonObject *answer,
                               GError **error);

static void
flood_free (gpointer data)
{
  Flood *flood = data;

  g_clear_handle_id (&flood->timer_id, g_source_remove);
  g_free (flood->stream_id);
  g_free (flood->type);
  g_free (flood);
}

/* ---- request body fields ---- */

static gboolean fail (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
fail (GError **error, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  g_propagate_error (error, g_error_new_valist (SIM_CONTROL_ERROR, 0, format, args));
  va_end (args);
  return FALSE;
}

static gboolean
get_int (JsonObject *body, const char *name, gboolean required, gint64 fallback, gint64 min,
         gint64 max, gint64 *out_value, GError **error)
{
  JsonNode *node = json_object_get_member (body, name);

  if (node == NULL && !required)
    {
      *out_value = fallback;
      return TRUE;
    }
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_INT64 || json_node_get_int (node) < min
      || json_node_get_int (node) > max)
    return fail (error,
                 "field '%s' must be an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT,
                 name, min, max);
  *out_value = json_node_get_int (node);
  return TRUE;
}

static gboolean
get_string (JsonObject *body, const char *name, gboolean required, const char **out_value,
            GError **error)
{
  JsonNode *node = json_object_get_member (body, name);

  *out_value = NULL;
  if (node == NULL && !required)
    return TRUE;
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_STRING)
    return fail (error, "field '%s' must be a string", name);
  *out_value = json_node_get_string (node);
  return TRUE;
}

static gboolean
get_boolean (JsonObject *body, const char *name, gboolean *out_value, GError **error)
{
  JsonNode *node = json_object_get_member (body, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
    return fail (error, "field '%s' must be true or false", name);
  *out_value = json_node_get_boolean (node);
  return TRUE;
}

/* Codes a server may put in a close frame (RFC 6455 7.4), as libsoup accepts them. */
static gboolean
get_close_code (JsonObject *body, const char *name, gboolean required, gushort *out_code,
                GError **error)
{
  gint64 code = 0;

  if (!get_int (body, name, required, SOUP_WEBSOCKET_CLOSE_NORMAL, 0, SIM_CLOSE_MAX_APP_CODE, &code,
                error))
    return FALSE;
  switch (code)
    {
    case SOUP_WEBSOCKET_CLOSE_NORMAL:
    case SOUP_WEBSOCKET_CLOSE_GOING_AWAY:
    case SOUP_WEBSOCKET_CLOSE_PROTOCOL_ERROR:
    case SOUP_WEBSOCKET_CLOSE_UNSUPPORTED_DATA:
    case SOUP_WEBSOCKET_CLOSE_BAD_DATA:
    case SOUP_WEBSOCKET_CLOSE_POLICY_VIOLATION:
    case SOUP_WEBSOCKET_CLOSE_TOO_BIG:
    case SOUP_WEBSOCKET_CLOSE_SERVER_ERROR:
      break;
    default:
      if (code < SIM_CLOSE_MIN_APP_CODE)
        return fail (error, "field '%s': %" G_GINT64_FORMAT " cannot be sent in a close frame",
                     name, code);
    }
  *out_code = (gushort)code;
  return TRUE;
}

/* ---- routes ---- */

static gboolean
route_close (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  gushort code = 0;
  const char *reason = NULL;

  if (!get_close_code (body, "code", FALSE, &code, error)
      || !get_string (body, "reason", FALSE, &reason, error))
    return FALSE;
  if (reason != NULL && strlen (reason) > SIM_CLOSE_MAX_REASON_BYTES)
    return fail (error, "field 'reason' is longer than %d bytes", SIM_CLOSE_MAX_REASON_BYTES);
  json_object_set_int_member (answer, "closed", sim_server_close_all (self->server, code, reason));
  return TRUE;
}

static gboolean
route_drop (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  json_object_set_int_member (answer, "dropped", sim_server_drop_all (self->server));
  return TRUE;
}

static gboolean
route_pings (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  gboolean answer_pings = TRUE;

  if (!get_boolean (body, "answer", &answer_pings, error))
    return FALSE;
  sim_server_set_answer_pings (self->server, answer_pings);
  return TRUE;
}

static gboolean
route_reject (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  gint64 count = 0;
  gint64 http_status = 0;
  gushort close_code = 0;
  gboolean has_http = json_object_has_member (body, "http_status");
  gboolean has_close = json_object_has_member (body, "close_code");
  const char *reason_base64 = NULL;
  g_autofree char *reason = NULL;

  if (!get_int (body, "count", TRUE, 0, 0, SIM_REJECT_MAX_COUNT, &count, error)
      || !get_string (body, "reason_base64", FALSE, &reason_base64, error))
    return FALSE;
  if (has_http == has_close)
    return fail (error, "give exactly one of 'http_status' and 'close_code'");
  if (has_http
      && !get_int (body, "http_status", TRUE, 0, SIM_HTTP_MIN_ERROR, SIM_HTTP_MAX_ERROR,
                   &http_status, error))
    return FALSE;
  if (has_close && !get_close_code (body, "close_code", TRUE, &close_code, error))
    return FALSE;
  if (reason_base64 != NULL)
    {
      /* Any bytes (a proxy's Latin-1, say), as long as they stay one
       * status line: no CR, LF or NUL. */
      gsize length = 0;
      g_autofree guchar *bytes = g_base64_decode (reason_base64, &length);

      if (!has_http)
        return fail (error, "'reason_base64' goes with 'http_status'");
      if (length == 0 || length > SIM_REJECT_MAX_REASON_BYTES
          || memchr (bytes, '\r', length) != NULL || memchr (bytes, '\n', length) != NULL
          || memchr (bytes, '\0', length) != NULL)
        return fail (error, "'reason_base64' must decode to 1 to %d bytes without CR, LF or NUL",
                     SIM_REJECT_MAX_REASON_BYTES);
      reason = g_strndup ((const char *)bytes, length);
    }
  sim_server_reject_next (self->server, (guint)count, (guint)http_status, reason, close_code);
  return TRUE;
}

static gboolean
route_raw (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  const char *text = NULL;
  const char *base64 = NULL;
  gint64 pad_to = 0;
  gint64 repeat = 1;
  guint sent = 0;

  if (!get_string (body, "text", FALSE, &text, error)
      || !get_string (body, "binary_base64", FALSE, &base64, error)
      || !get_int (body, "pad_to", FALSE, 0, 0, SIM_RAW_MAX_PAD_BYTES, &pad_to, error)
      || !get_int (body, "repeat", FALSE, 1, 1, SIM_RAW_MAX_REPEAT, &repeat, error))
    return FALSE;
  if ((text == NULL) == (base64 == NULL))
    return fail (error, "give exactly one of 'text' and 'binary_base64'");
  if (pad_to > 0 && text == NULL)
    return fail (error, "'pad_to' goes with 'text'");
  if (repeat > 1 && (text == NULL || pad_to > 0))
    return fail (error, "'repeat' goes with 'text' alone");
  if (text != NULL && (gsize)pad_to > strlen (text))
    {
      /* Trailing spaces: still the same JSON, only bigger than a control
       * body may be (frames over the bridge's 1 MiB limit). */
      g_autoptr (GString) padded = g_string_new (text);

      while (padded->len < (gsize)pad_to)
        g_string_append_c (padded, ' ');
      sent = sim_server_send_raw_text (self->server, padded->str);
    }
  else if (text != NULL)
    /* All queued before the loop runs again: they leave in one burst. */
    for (gint64 i = 0; i < repeat; i++)
      sent = sim_server_send_raw_text (self->server, text);
  else
    {
      gsize length = 0;
      guchar *data = g_base64_decode (base64, &length);
      g_autoptr (GBytes) bytes = g_bytes_new_take (data, length);

      sent = sim_server_send_raw_binary (self->server, bytes);
    }
  json_object_set_int_member (answer, "sent", sent);
  return TRUE;
}

static gboolean
route_emit (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  const char *type = NULL;
  JsonNode *payload = json_object_get_member (body, "payload");
  guint delivered;

  if (!get_string (body, "type", TRUE, &type, error))
    return FALSE;
  if (payload == NULL || !JSON_NODE_HOLDS_OBJECT (payload))
    return fail (error, "field 'payload' must be an object");
  if (wb_message_is_stream_event_name (type))
    {
      const char *stream_id = NULL;

      if (!get_string (json_node_get_object (payload), "stream_id", TRUE, &stream_id, error))
        return FALSE;
      delivered = sim_server_publish_verbatim (self->server, type, json_node_get_object (payload));
    }
  else
    {
      /* error, pong or anything else a test wants the client to face: everyone gets it. */
      g_autoptr (JsonNode) message
          = wb_message_new_enveloped (type, json_object_ref (json_node_get_object (payload)));

      delivered = sim_server_send_all (self->server, message);
    }
  json_object_set_int_member (answer, "delivered", delivered);
  return TRUE;
}

static void
flood_finish (Flood *flood)
{
  g_clear_handle_id (&flood->timer_id, g_source_remove);
  g_message ("flood %" G_GUINT64_FORMAT " done: %u %s events, %" G_GUINT64_FORMAT " deliveries",
             flood->id, flood->sent, flood->type, flood->delivered);
}

static gsize
enveloped_length (const char *type, JsonObject *payload)
{
  g_autoptr (JsonNode) node = wb_message_new_enveloped (type, json_object_ref (payload));
  g_autofree char *text = NULL;
  gsize length = 0;

  text = wb_json_to_string (node, &length);
  return length;
}

/* "t" and sim_sent_us in a fixed width, so the event keeps its size. */
static void
flood_stamp (Flood *flood, JsonObject *payload, gint64 sent_us)
{
  g_autofree char *stamp = NULL;

  json_object_set_int_member (payload, "sim_sent_us", sent_us);
  if (!flood->stamp_id || !json_object_has_member (payload, "message_id"))
    return;
  stamp = g_strdup_printf ("t%016" G_GINT64_FORMAT, sent_us);
  json_object_set_string_member (payload, "message_id", stamp);
}

static void
flood_send_one (Flood *flood)
{
  SimControl *self = flood->owner;
  g_autoptr (JsonObject) payload
      = sim_streams_sample_payload (self->streams, flood->type, flood->stream_id);

  json_object_set_int_member (payload, "sim_seq", flood->sent);
  sim_server_number_event (self->server, payload);
  flood_stamp (flood, payload, g_get_monotonic_time ());
  if (flood->size > 0)
    {
      gsize length;

      /* Sized per event: sample payloads differ in length. */
      json_object_set_string_member (payload, "sim_padding", "");
      length = enveloped_length (flood->type, payload);
      if (flood->size > length)
        {
          g_autofree char *padding = g_strnfill (flood->size - length, 'x');

          json_object_set_string_member (payload, "sim_padding", padding);
        }
    }
  /* Again, as close to the write as it gets (same width: same size). */
  flood_stamp (flood, payload, g_get_monotonic_time ());
  flood->delivered += sim_server_publish (self->server, flood->type, payload);
  flood->sent++;
}

static gboolean
flood_tick_cb (gpointer user_data)
{
  Flood *flood = user_data;
  double elapsed_s = (double)(g_get_monotonic_time () - flood->started_us) / G_USEC_PER_SEC;
  guint due = (guint)MIN ((double)flood->count, elapsed_s * flood->rate + 1.0);

  for (guint n = 0; flood->sent < due && n < SIM_FLOOD_MAX_PER_TICK; n++)
    flood_send_one (flood);
  if (flood->sent < flood->count)
    return G_SOURCE_CONTINUE;
  flood->timer_id = 0;
  flood_finish (flood);
  return G_SOURCE_REMOVE;
}

static guint
active_floods (SimControl *self)
{
  guint active = 0;

  for (GList *l = self->floods.head; l != NULL; l = l->next)
    if (((Flood *)l->data)->timer_id != 0)
      active++;
  return active;
}

static gboolean
route_flood (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  const char *stream_id = NULL;
  const char *type = NULL;
  gint64 rate, size, count;
  gboolean stamp_id = FALSE;
  Flood *flood;

  if (!get_string (body, "stream_id", TRUE, &stream_id, error)
      || !get_string (body, "type", FALSE, &type, error)
      || !get_int (body, "rate", FALSE, SIM_FLOOD_DEFAULT_RATE, 1, SIM_FLOOD_MAX_RATE, &rate, error)
      || !get_int (body, "size", FALSE, 0, 0, SIM_FLOOD_MAX_SIZE, &size, error)
      || !get_int (body, "count", TRUE, 0, 1, SIM_FLOOD_MAX_COUNT, &count, error))
    return FALSE;
  if (json_object_has_member (body, "stamp_message_id")
      && !get_boolean (body, "stamp_message_id", &stamp_id, error))
    return FALSE;
  if (type == NULL)
    type = "chat.message";
  if (!wb_message_is_stream_event_name (type))
    return fail (error, "field 'type': '%s' is not a stream event type", type);
  if (stream_id[0] == '\0' || strlen (stream_id) > WB_MESSAGE_MAX_STREAM_ID_BYTES)
    return fail (error, "field 'stream_id' must be 1 to %d bytes", WB_MESSAGE_MAX_STREAM_ID_BYTES);
  if (active_floods (self) >= SIM_FLOOD_MAX_ACTIVE)
    return fail (error, "%d floods are already running", SIM_FLOOD_MAX_ACTIVE);

  flood = g_new0 (Flood, 1);
  flood->owner = self;
  flood->id = ++self->next_flood_id;
  flood->stream_id = g_strdup (stream_id);
  flood->type = g_strdup (type);
  flood->rate = (guint)rate;
  flood->size = (guint)size;
  flood->count = (guint)count;
  flood->stamp_id = stamp_id;
  flood->started_us = g_get_monotonic_time ();
  flood->timer_id = g_timeout_add (SIM_FLOOD_TICK_MS, flood_tick_cb, flood);
  g_queue_push_tail (&self->floods, flood);
  /* Finished floods stay visible in /sim/stats, a bounded few. */
  while (self->floods.length > SIM_FLOODS_KEPT
         && ((Flood *)g_queue_peek_head (&self->floods))->timer_id == 0)
    flood_free (g_queue_pop_head (&self->floods));
  g_message ("flood %" G_GUINT64_FORMAT ": %u %s events to %s at %u/s, ~%u bytes", flood->id,
             flood->count, flood->type, flood->stream_id, flood->rate, flood->size);
  json_object_set_int_member (answer, "flood", (gint64)flood->id);
  return TRUE;
}

static gboolean
route_stream (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  const char *stream_id = NULL;
  gboolean live = FALSE;
  gboolean changed = FALSE;

  if (!get_string (body, "stream_id", TRUE, &stream_id, error)
      || !get_boolean (body, "live", &live, error))
    return FALSE;
  if (!sim_streams_set_live (self->streams, stream_id, live, &changed, error))
    return FALSE;
  json_object_set_boolean_member (answer, "changed", changed);
  return TRUE;
}

static JsonArray *
floods_to_json (SimControl *self)
{
  JsonArray *array = json_array_new ();

  for (GList *l = self->floods.head; l != NULL; l = l->next)
    {
      Flood *flood = l->data;
      JsonObject *object = json_object_new ();

      json_object_set_int_member (object, "flood", (gint64)flood->id);
      json_object_set_string_member (object, "stream_id", flood->stream_id);
      json_object_set_string_member (object, "type", flood->type);
      json_object_set_int_member (object, "count", flood->count);
      json_object_set_int_member (object, "sent", flood->sent);
      json_object_set_int_member (object, "delivered", (gint64)flood->delivered);
      json_object_set_boolean_member (object, "done", flood->timer_id == 0);
      json_array_add_object_element (array, object);
    }
  return array;
}

static gboolean
route_stats (SimControl *self, JsonObject *body, JsonObject *answer, GError **error)
{
  json_object_set_array_member (answer, "streams", sim_streams_to_json (self->streams));
  sim_server_add_stats (self->server, answer);
  json_object_set_array_member (answer, "floods", floods_to_json (self));
  return TRUE;
}

static const struct
{
  const char *method;
  const char *path;
  RouteFunc func;
} routes[] = {
  { "POST", "/sim/close", route_close }, { "POST", "/sim/drop", route_drop },
  { "POST", "/sim/pings", route_pings }, { "POST", "/sim/reject", route_reject },
  { "POST", "/sim/raw", route_raw },     { "POST", "/sim/emit", route_emit },
  { "POST", "/sim/flood", route_flood }, { "POST", "/sim/stream", route_stream },
  { "GET", "/sim/stats", route_stats },
};

/* ---- HTTP ---- */

/* Refuses oversized bodies before libsoup reads them into memory. */
static void
early_cb (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
          gpointer user_data)
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);

  if (soup_message_headers_get_encoding (headers) == SOUP_ENCODING_CHUNKED)
    sim_server_respond_error (msg, SOUP_STATUS_LENGTH_REQUIRED, "chunked bodies are not accepted");
  else if (soup_message_headers_get_content_length (headers) > SIM_CONTROL_MAX_BODY_BYTES)
    sim_server_respond_error (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "body too large");
}

static JsonObject *
parse_body (SoupServerMessage *msg, GError **error)
{
  SoupMessageBody *body = soup_server_message_get_request_body (msg);
  g_autoptr (GBytes) bytes = soup_message_body_flatten (body);
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonNode *root;

  if (g_bytes_get_size (bytes) == 0)
    return json_object_new ();
  if (!json_parser_load_from_data (parser, g_bytes_get_data (bytes, NULL),
                                   (gssize)g_bytes_get_size (bytes), error))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      fail (error, "the body must be a JSON object");
      return NULL;
    }
  return json_object_ref (json_node_get_object (root));
}

static void
control_cb (SoupServer *soup, SoupServerMessage *msg, const char *path, GHashTable *query,
            gpointer user_data)
{
  SimControl *self = user_data;
  const char *method = soup_server_message_get_method (msg);
  gboolean path_known = FALSE;

  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    {
      g_autoptr (JsonObject) body = NULL;
      g_autoptr (JsonObject) answer = NULL;
      g_autoptr (GError) error = NULL;

      if (strcmp (routes[i].path, path) != 0)
        continue;
      path_known = TRUE;
      if (strcmp (routes[i].method, method) != 0)
        continue;

      body = parse_body (msg, &error);
      if (body == NULL)
        {
          sim_server_respond_error (msg, SOUP_STATUS_BAD_REQUEST, error->message);
          return;
        }
      answer = json_object_new ();
      json_object_set_boolean_member (answer, "ok", TRUE);
      if (!routes[i].func (self, body, answer, &error))
        {
          g_message ("%s %s: %s", method, path, error->message);
          sim_server_respond_error (msg, SOUP_STATUS_BAD_REQUEST, error->message);
          return;
        }
      g_debug ("%s %s: ok", method, path);
      sim_server_respond_json (msg, SOUP_STATUS_OK, answer);
      return;
    }
  if (path_known)
    sim_server_respond_error (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
  else
    sim_server_respond_error (msg, SOUP_STATUS_NOT_FOUND, "no such control endpoint");
}

SimControl *
sim_control_new (SimServer *server, SimStreams *streams)
{
  SimControl *self;
  SoupServer *soup;

  g_return_val_if_fail (server != NULL && streams != NULL, NULL);

  self = g_new0 (SimControl, 1);
  self->server = server;
  self->streams = streams;
  g_queue_init (&self->floods);
  soup = sim_server_get_soup_server (server);
  soup_server_add_early_handler (soup, SIM_CONTROL_PREFIX, early_cb, self, NULL);
  soup_server_add_handler (soup, SIM_CONTROL_PREFIX, control_cb, self, NULL);
  return self;
}

void
sim_control_free (SimControl *self)
{
  if (self == NULL)
    return;
  soup_server_remove_handler (sim_server_get_soup_server (self->server), SIM_CONTROL_PREFIX);
  g_queue_clear_full (&self->floods, flood_free);
  g_free (self);
}
