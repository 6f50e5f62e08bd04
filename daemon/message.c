/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-message"

#include "message.h"

#include "json-strict.h"
#include "json-tree.h"
#include "text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum
{
  FIELD_STRING,
  FIELD_STRING_OR_NULL,
  FIELD_NUMBER,
  FIELD_OBJECT,
  FIELD_STRING_ARRAY,
} FieldKind;

typedef struct
{
  const char *name;
  FieldKind kind;
  gboolean required;
} FieldSpec;

#define MAX_FIELDS 7
/* How much of an unknown type name an error message repeats. */
#define UNKNOWN_TYPE_SHOWN_CHARS 64

typedef struct
{
  const char *name;
  gboolean stream_event;  /* may be subscribed to */
  gboolean to_client;     /* valid server → client */
  gboolean to_server;     /* valid client → server */
  gboolean lenient_shape; /* keepalives: accepted flat or enveloped */
  FieldSpec to_client_fields[MAX_FIELDS];
  FieldSpec to_server_fields[MAX_FIELDS];
} TypeSpec;

#define REQ(n, k)                                                                                  \
  {                                                                                                \
    .name = (n), .kind = (k), .required = TRUE                                                     \
  }
#define OPT(n, k)                                                                                  \
  {                                                                                                \
    .name = (n), .kind = (k), .required = FALSE                                                    \
  }
#define STREAM_ID REQ ("stream_id", FIELD_STRING)

/* The WAVE schema, one row per message type: the doc's payload tables made
 * data. Flags not named are FALSE. */
static const TypeSpec type_specs[WB_MESSAGE_N_TYPES] = {
  [WB_MESSAGE_STREAM_STARTED] = {
    .name = "stream.started",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("started_at", FIELD_STRING),
                          REQ ("protocol", FIELD_STRING), REQ ("ingest_endpoint", FIELD_STRING) },
  },
  [WB_MESSAGE_STREAM_ENDED] = {
    .name = "stream.ended",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("ended_at", FIELD_STRING),
                          REQ ("duration", FIELD_NUMBER),
                          OPT ("recording_id", FIELD_STRING_OR_NULL) },
  },
  [WB_MESSAGE_STREAM_HEALTH] = {
    .name = "stream.health",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("bitrate", FIELD_NUMBER), REQ ("fps", FIELD_NUMBER),
                          REQ ("packet_loss", FIELD_NUMBER), REQ ("latency", FIELD_NUMBER) },
  },
  [WB_MESSAGE_VIEWER_JOINED] = {
    .name = "viewer.joined",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("viewer_id", FIELD_STRING),
                          REQ ("country", FIELD_STRING), REQ ("device", FIELD_STRING),
                          REQ ("joined_at", FIELD_STRING) },
  },
  [WB_MESSAGE_VIEWER_LEFT] = {
    .name = "viewer.left",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("viewer_id", FIELD_STRING),
                          REQ ("watch_time", FIELD_NUMBER), REQ ("left_at", FIELD_STRING) },
  },
  [WB_MESSAGE_ANALYTICS_UPDATE] = {
    .name = "analytics.update",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("concurrent_viewers", FIELD_NUMBER),
                          REQ ("total_views", FIELD_NUMBER), REQ ("peak_viewers", FIELD_NUMBER),
                          REQ ("average_watch_time", FIELD_NUMBER) },
  },
  [WB_MESSAGE_CHAT_MESSAGE] = {
    .name = "chat.message",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_server = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("message_id", FIELD_STRING),
                          REQ ("user_id", FIELD_STRING), REQ ("username", FIELD_STRING),
                          REQ ("message", FIELD_STRING), REQ ("timestamp", FIELD_STRING) },
    .to_server_fields = { STREAM_ID, REQ ("message", FIELD_STRING) },
  },
  [WB_MESSAGE_REACTION_SENT] = {
    .name = "reaction.sent",
    .to_server = TRUE,
    .to_server_fields = { STREAM_ID, REQ ("reaction", FIELD_STRING),
                          OPT ("user_id", FIELD_STRING) },
  },
  [WB_MESSAGE_REACTION_RECEIVED] = {
    .name = "reaction.received",
    .stream_event = TRUE,
    .to_client = TRUE,
    .to_client_fields = { STREAM_ID, REQ ("reaction", FIELD_STRING), REQ ("count", FIELD_NUMBER),
                          REQ ("timestamp", FIELD_STRING) },
  },
  [WB_MESSAGE_PING] = {
    .name = "ping",
    .to_client = TRUE,
    .to_server = TRUE,
    .lenient_shape = TRUE,
    .to_client_fields = { OPT ("timestamp", FIELD_NUMBER) },
    .to_server_fields = { OPT ("timestamp", FIELD_NUMBER) },
  },
  /* Both ways: WAVE's ping is bidirectional, so is its answer. */
  [WB_MESSAGE_PONG] = {
    .name = "pong",
    .to_client = TRUE,
    .to_server = TRUE,
    .lenient_shape = TRUE,
    .to_client_fields = { OPT ("timestamp", FIELD_NUMBER) },
    .to_server_fields = { OPT ("timestamp", FIELD_NUMBER) },
  },
  [WB_MESSAGE_ERROR] = {
    .name = "error",
    .to_client = TRUE,
    .to_client_fields = { REQ ("code", FIELD_STRING), REQ ("message", FIELD_STRING),
                          OPT ("details", FIELD_OBJECT) },
  },
  [WB_MESSAGE_SUBSCRIBE] = {
    .name = "subscribe",
    .to_server = TRUE,
    /* "history" is the bridge's own (docs/protocol.md); WAVE's clients
     * never send it, and it is not forwarded. */
    .to_server_fields = { STREAM_ID, OPT ("events", FIELD_STRING_ARRAY),
                          OPT ("history", FIELD_NUMBER) },
  },
  [WB_MESSAGE_UNSUBSCRIBE] = {
    .name = "unsubscribe",
    .to_server = TRUE,
    .to_server_fields = { STREAM_ID },
  },
  [WB_MESSAGE_STATUS] = {
    .name = "status",
    .to_server = TRUE,
    /* A page of the stream list: the streams sorted after streams_after. */
    .to_server_fields = { OPT ("streams_after", FIELD_STRING), OPT ("streams_limit", FIELD_NUMBER) },
  },
};

#undef REQ
#undef OPT
#undef STREAM_ID

/* clang-format off */
G_DEFINE_QUARK (wb-message-error-quark, wb_message_error)
/* clang-format on */

/* g_ptr_array_sort and qsort pass pointers to the elements (sort_values is 2.76+). */
static int
compare_string_pointers (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(char *const *)a, *(char *const *)b);
}

const char *const *
wb_message_stream_event_names (void)
{
  /* Derived from the table once: every type but INVALID could be a stream
   * event, which leaves room for the terminating NULL. */
  static const char *names[WB_MESSAGE_N_TYPES];
  static gsize derived;

  if (g_once_init_enter (&derived))
    {
      gsize n = 0;

      for (int t = WB_MESSAGE_TYPE_INVALID + 1; t < WB_MESSAGE_N_TYPES; t++)
        if (type_specs[t].stream_event)
          names[n++] = type_specs[t].name;
      names[n] = NULL;
      /* Sorted: the order subscriptions are expanded, acknowledged and
       * announced in (bridge.hello), whatever the table's order. */
      qsort (names, n, sizeof names[0], compare_string_pointers);
      g_once_init_leave (&derived, 1);
    }
  return names;
}

gboolean
wb_message_is_stream_event_name (const char *name)
{
  return wb_message_type_is_stream_event (wb_message_type_from_string (name));
}

const char *
wb_message_type_to_string (WbMessageType type)
{
  g_return_val_if_fail (type > WB_MESSAGE_TYPE_INVALID && type < WB_MESSAGE_N_TYPES, NULL);
  return type_specs[type].name;
}

WbMessageType
wb_message_type_from_string (const char *name)
{
  if (name == NULL)
    return WB_MESSAGE_TYPE_INVALID;
  for (int t = WB_MESSAGE_TYPE_INVALID + 1; t < WB_MESSAGE_N_TYPES; t++)
    if (strcmp (type_specs[t].name, name) == 0)
      return (WbMessageType)t;
  return WB_MESSAGE_TYPE_INVALID;
}

gboolean
wb_message_type_is_stream_event (WbMessageType type)
{
  return type > WB_MESSAGE_TYPE_INVALID && type < WB_MESSAGE_N_TYPES
         && type_specs[type].stream_event;
}

static const char *
field_kind_to_string (FieldKind kind)
{
  switch (kind)
    {
    case FIELD_STRING:
      return "a string";
    case FIELD_STRING_OR_NULL:
      return "a string or null";
    case FIELD_NUMBER:
      return "a number";
    case FIELD_OBJECT:
      return "an object";
    case FIELD_STRING_ARRAY:
      return "an array of strings";
    }
  g_assert_not_reached ();
}

static gboolean
node_is_number (JsonNode *node)
{
  GType value_type;

  if (!JSON_NODE_HOLDS_VALUE (node))
    return FALSE;
  value_type = json_node_get_value_type (node);
  return value_type == G_TYPE_INT64 || value_type == G_TYPE_DOUBLE;
}

static gboolean
node_is_string (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING;
}

static gboolean
node_matches_kind (JsonNode *node, FieldKind kind)
{
  switch (kind)
    {
    case FIELD_STRING:
      return node_is_string (node);
    case FIELD_STRING_OR_NULL:
      return JSON_NODE_HOLDS_NULL (node) || node_is_string (node);
    case FIELD_NUMBER:
      return node_is_number (node);
    case FIELD_OBJECT:
      return JSON_NODE_HOLDS_OBJECT (node);
    case FIELD_STRING_ARRAY:
      {
        JsonArray *array;

        if (!JSON_NODE_HOLDS_ARRAY (node))
          return FALSE;
        array = json_node_get_array (node);
        for (guint i = 0; i < json_array_get_length (array); i++)
          if (!node_is_string (json_array_get_element (array, i)))
            return FALSE;
        return TRUE;
      }
    }
  g_assert_not_reached ();
}

static gboolean
validate_fields (const char *type_name, JsonObject *body, const FieldSpec *fields, GError **error)
{
  for (guint i = 0; i < MAX_FIELDS && fields[i].name != NULL; i++)
    {
      JsonNode *node = json_object_get_member (body, fields[i].name);

      if (node == NULL)
        {
          if (!fields[i].required)
            continue;
          g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_MISSING_FIELD,
                       "%s: missing field '%s'", type_name, fields[i].name);
          return FALSE;
        }
      if (!node_matches_kind (node, fields[i].kind))
        {
          g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD,
                       "%s: field '%s' must be %s", type_name, fields[i].name,
                       field_kind_to_string (fields[i].kind));
          return FALSE;
        }
    }
  return TRUE;
}

/* Stream ids become hash keys, D-Bus strings and object paths, log words:
 * held to text.h's identifier rule in both directions. */
static gboolean
validate_stream_id (const char *type_name, const char *stream_id, GError **error)
{
  const char *problem = NULL;

  if (!wb_text_check_identifier (stream_id, WB_MESSAGE_MAX_STREAM_ID_BYTES, &problem))
    {
      g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD,
                   "%s: field 'stream_id' %s (1 to %d bytes of UTF-8 without control "
                   "characters, line separators, noncharacters or format characters)",
                   type_name, problem, WB_MESSAGE_MAX_STREAM_ID_BYTES);
      return FALSE;
    }
  return TRUE;
}

/* What a local client or the bridge may put into the upstream connection. */
static gboolean
validate_outbound_text (const WbMessage *message, const char *field, GError **error)
{
  const char *text = wb_message_get_string (message, field);

  if (text == NULL || text[0] == '\0' || strlen (text) > WB_MESSAGE_MAX_TEXT_BYTES)
    {
      g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD,
                   "%s: field '%s' must be 1 to %d bytes",
                   wb_message_type_to_string (message->type), field, WB_MESSAGE_MAX_TEXT_BYTES);
      return FALSE;
    }
  return TRUE;
}

static gboolean
validate_events (JsonObject *body, GError **error)
{
  JsonNode *node = json_object_get_member (body, "events");
  JsonArray *array;

  if (node == NULL)
    return TRUE;
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      const char *name = json_array_get_string_element (array, i);

      if (!wb_message_is_stream_event_name (name))
        {
          g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD,
                       "subscribe: '%s' is not a stream event type", name);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
validate_request_id (JsonObject *root, GError **error)
{
  JsonNode *id = json_object_get_member (root, "id");

  if (id != NULL && !JSON_NODE_HOLDS_VALUE (id) && !JSON_NODE_HOLDS_NULL (id))
    {
      g_set_error_literal (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD,
                           "field 'id' must be a string, number or boolean");
      return FALSE;
    }
  return TRUE;
}

static JsonObject *
select_body (JsonObject *root, const TypeSpec *spec, const char *type_name, WbDirection direction,
             GError **error)
{
  JsonNode *payload;

  if (direction == WB_DIRECTION_TO_SERVER)
    return root;
  payload = json_object_get_member (root, "payload");
  if (payload == NULL && spec->lenient_shape)
    return root;
  if (payload == NULL)
    {
      g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_MISSING_FIELD,
                   "%s: missing field 'payload'", type_name);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_OBJECT (payload))
    {
      g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD,
                   "%s: field 'payload' must be an object", type_name);
      return NULL;
    }
  return json_node_get_object (payload);
}

static gboolean
validate_message (WbMessage *message, WbDirection direction, GError **error)
{
  JsonObject *root = json_node_get_object (message->root);
  JsonNode *type_node = json_object_get_member (root, "type");
  const char *type_name;
  const TypeSpec *spec;
  const FieldSpec *fields;

  if (type_node == NULL)
    {
      g_set_error_literal (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_MISSING_FIELD,
                           "missing field 'type'");
      return FALSE;
    }
  if (!node_is_string (type_node))
    {
      g_set_error_literal (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD,
                           "field 'type' must be a string");
      return FALSE;
    }
  type_name = json_node_get_string (type_node);
  message->type = wb_message_type_from_string (type_name);
  if (message->type == WB_MESSAGE_TYPE_INVALID)
    {
      /* Cut by characters: the error text goes back to the client as JSON. */
      char shown[UNKNOWN_TYPE_SHOWN_CHARS * 4 + 1];

      g_utf8_strncpy (shown, type_name, UNKNOWN_TYPE_SHOWN_CHARS);
      g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_UNKNOWN_TYPE,
                   "unknown message type '%s'", shown);
      return FALSE;
    }
  spec = &type_specs[message->type];
  if (direction == WB_DIRECTION_TO_SERVER ? !spec->to_server : !spec->to_client)
    {
      g_set_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_WRONG_DIRECTION,
                   "'%s' is not sent %s", type_name,
                   direction == WB_DIRECTION_TO_SERVER ? "by clients" : "by the server");
      return FALSE;
    }
  if (!validate_request_id (root, error))
    return FALSE;

  message->body = select_body (root, spec, type_name, direction, error);
  if (message->body == NULL)
    return FALSE;
  fields = direction == WB_DIRECTION_TO_SERVER ? spec->to_server_fields : spec->to_client_fields;
  if (!validate_fields (type_name, message->body, fields, error))
    return FALSE;

  message->stream_id = wb_message_get_string (message, "stream_id");
  if (message->stream_id != NULL && !validate_stream_id (type_name, message->stream_id, error))
    return FALSE;
  message->request_id = json_object_get_member (root, "id");

  if (direction == WB_DIRECTION_TO_SERVER)
    {
      switch (message->type)
        {
        case WB_MESSAGE_SUBSCRIBE:
          return validate_events (message->body, error);
        case WB_MESSAGE_CHAT_MESSAGE:
          return validate_outbound_text (message, "message", error);
        case WB_MESSAGE_REACTION_SENT:
          return validate_outbound_text (message, "reaction", error);
        default:
          break;
        }
    }
  return TRUE;
}

static WbMessageError
message_error_from_strict (const GError *strict_error)
{
  switch ((WbJsonStrictError)strict_error->code)
    {
    case WB_JSON_STRICT_ERROR_ENCODING:
      return WB_MESSAGE_ERROR_INVALID_UTF8;
    case WB_JSON_STRICT_ERROR_TOO_DEEP:
      return WB_MESSAGE_ERROR_TOO_DEEP;
    case WB_JSON_STRICT_ERROR_NUL:
      return WB_MESSAGE_ERROR_NUL_CHARACTER;
    case WB_JSON_STRICT_ERROR_SYNTAX:
    case WB_JSON_STRICT_ERROR_RANGE:
    case WB_JSON_STRICT_ERROR_DUPLICATE:
      break;
    }
  return WB_MESSAGE_ERROR_INVALID_JSON;
}

/* Forwarding the validated text saves a serialization per event and keeps
 * the server's exact number formatting. It passed wb_json_strict_check, so
 * it is RFC 8259 JSON in valid UTF-8 that every parser reads as the bridge
 * did; only a frame spread over several lines would break the socket's
 * framing and must be re-serialized. */
static GBytes *
line_from_text (const char *data, gsize length)
{
  char *line;

  if (memchr (data, '\n', length) != NULL || memchr (data, '\r', length) != NULL)
    return NULL;
  line = g_malloc (length + 1);
  memcpy (line, data, length);
  line[length] = '\n';
  return g_bytes_new_take (line, length + 1);
}

WbMessage *
wb_message_parse (const char *data, gsize length, WbDirection direction, GError **error)
{
  g_autoptr (WbMessage) message = NULL;
  g_autoptr (GError) strict_error = NULL;
  g_autoptr (JsonNode) root = NULL;

  g_return_val_if_fail (data != NULL || length == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  /* json-glib refuses NULL even for an empty buffer, without an error. */
  if (data == NULL)
    data = "";
  /* json-glib reads much that is not JSON; only RFC 8259 gets that far. */
  if (!wb_json_strict_check (data, length, WB_MESSAGE_MAX_DEPTH, &strict_error))
    {
      g_set_error_literal (error, WB_MESSAGE_ERROR_DOMAIN, message_error_from_strict (strict_error),
                           strict_error->message);
      return NULL;
    }

  /* The tree json-glib's parser would build, without its GScanner. */
  root = wb_json_tree_new (data, length);
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error_literal (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_NOT_OBJECT,
                           "message must be a JSON object");
      return NULL;
    }

  message = g_new0 (WbMessage, 1);
  message->root = g_steal_pointer (&root);
  if (!validate_message (message, direction, error))
    return NULL;
  if (direction == WB_DIRECTION_TO_CLIENT)
    message->line = line_from_text (data, length);
  return g_steal_pointer (&message);
}

void
wb_message_free (WbMessage *message)
{
  if (message == NULL)
    return;
  g_clear_pointer (&message->root, json_node_unref);
  g_clear_pointer (&message->line, g_bytes_unref);
  g_free (message);
}

/* ---- reading members ------------------------------------------------------ */

const char *
wb_json_get_string (JsonObject *object, const char *member, const char *fallback)
{
  JsonNode *node = object != NULL ? json_object_get_member (object, member) : NULL;

  return node != NULL && node_is_string (node) ? json_node_get_string (node) : fallback;
}

gboolean
wb_json_has_number (JsonObject *object, const char *member)
{
  JsonNode *node = object != NULL ? json_object_get_member (object, member) : NULL;

  return node != NULL && node_is_number (node);
}

double
wb_json_get_double (JsonObject *object, const char *member, double fallback)
{
  if (!wb_json_has_number (object, member))
    return fallback;
  /* json-glib converts an integer member. */
  return json_node_get_double (json_object_get_member (object, member));
}

gint64
wb_json_get_int (JsonObject *object, const char *member, gint64 fallback)
{
  JsonNode *node;
  double value;

  if (!wb_json_has_number (object, member))
    return fallback;
  node = json_object_get_member (object, member);
  if (json_node_get_value_type (node) != G_TYPE_DOUBLE)
    return json_node_get_int (node);
  value = json_node_get_double (node);
  /* Casting a double outside the gint64 range is undefined behaviour. */
  if (value >= (double)G_MAXINT64)
    return G_MAXINT64;
  if (value <= (double)G_MININT64)
    return G_MININT64;
  return (gint64)value;
}

guint64
wb_json_get_count (JsonObject *object, const char *member, guint64 max)
{
  double value = wb_json_get_double (object, member, 0.0);

  if (!(value > 0.0))
    return 0;
  if (value >= (double)max)
    return max;
  return (guint64)value;
}

const char *
wb_message_get_string (const WbMessage *message, const char *field)
{
  g_return_val_if_fail (message != NULL && message->body != NULL, NULL);
  return wb_json_get_string (message->body, field, NULL);
}

double
wb_message_get_double (const WbMessage *message, const char *field)
{
  g_return_val_if_fail (message != NULL && message->body != NULL, 0.0);
  return wb_json_get_double (message->body, field, 0.0);
}

gint64
wb_message_get_int (const WbMessage *message, const char *field)
{
  g_return_val_if_fail (message != NULL && message->body != NULL, 0);
  return wb_json_get_int (message->body, field, 0);
}

char **
wb_message_dup_events (const WbMessage *message)
{
  g_autoptr (GPtrArray) events = g_ptr_array_new_with_free_func (g_free);
  JsonNode *node;

  g_return_val_if_fail (message != NULL && message->type == WB_MESSAGE_SUBSCRIBE, NULL);

  node = json_object_get_member (message->body, "events");
  if (node != NULL && JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *array = json_node_get_array (node);

      for (guint i = 0; i < json_array_get_length (array); i++)
        g_ptr_array_add (events, g_strdup (json_array_get_string_element (array, i)));
    }
  if (events->len == 0)
    for (const char *const *name = wb_message_stream_event_names (); *name != NULL; name++)
      g_ptr_array_add (events, g_strdup (*name));

  g_ptr_array_sort (events, compare_string_pointers);
  /* Sorted: one pass keeps the first of each run (linear; a hostile list
   * of thousands of duplicates must not stall the loop). */
  if (events->len > 1)
    {
      guint kept = 1;

      for (guint i = 1; i < events->len; i++)
        if (g_strcmp0 (events->pdata[kept - 1], events->pdata[i]) != 0)
          events->pdata[kept++] = events->pdata[i];
        else
          g_free (events->pdata[i]);
      /* The tail holds moved or freed pointers: nothing left to free there. */
      for (guint i = kept; i < events->len; i++)
        events->pdata[i] = NULL;
      g_ptr_array_set_size (events, kept);
    }
  g_ptr_array_add (events, NULL);
  return (char **)g_ptr_array_free (g_steal_pointer (&events), FALSE);
}

/* Longest number token rewritten; longer ones (never json-glib's) are kept. */
#define MAX_NUMBER_TOKEN 64

static void
append_shortest_double (GString *out, const char *token, gsize length)
{
  char buffer[MAX_NUMBER_TOKEN + 1];
  char shortest[G_ASCII_DTOSTR_BUF_SIZE];
  double value;
  int integer_digits;

  if (length > MAX_NUMBER_TOKEN)
    {
      g_string_append_len (out, token, (gssize)length);
      return;
    }
  memcpy (buffer, token, length);
  buffer[length] = '\0';
  value = g_ascii_strtod (buffer, NULL);
  /* %g switches to exponent notation below the integer digits' precision
   * (60 would be "6e+01"): start there, unless the number is huge anyway. */
  integer_digits = fabs (value) >= 1.0 ? (int)floor (log10 (fabs (value))) + 1 : 1;
  for (int precision = integer_digits <= 17 ? integer_digits : 1; precision <= 17; precision++)
    {
      char format[8];

      g_snprintf (format, sizeof format, "%%.%dg", precision);
      g_ascii_formatd (shortest, sizeof shortest, format, value);
      if (g_ascii_strtod (shortest, NULL) == value)
        break;
    }
  g_string_append (out, shortest);
  /* Still a double when read back: 60.0, not 60. */
  if (strpbrk (shortest, ".eE") == NULL)
    g_string_append (out, ".0");
}

/* json-glib writes every double with 17 significant digits
 * ("2601.8000000000002"); people expect the shortest text that reads back as
 * the same double ("2601.8"). Strings are copied, except that a raw control
 * character is escaped: json-glib 1.6 escapes U+0001…U+001E but writes
 * U+001F as it is, which is not JSON. */
static char *
shorten_doubles (const char *json, gsize length, gsize *out_length)
{
  GString *out = g_string_sized_new (length);
  gboolean in_string = FALSE;
  gboolean escaped = FALSE;
  gsize i = 0;

  while (i < length)
    {
      char c = json[i];

      if (in_string || c == '"')
        {
          if (!in_string)
            in_string = TRUE;
          else if (escaped)
            escaped = FALSE;
          else if (c == '\\')
            escaped = TRUE;
          else if (c == '"')
            in_string = FALSE;
          if ((guchar)c < 0x20)
            g_string_append_printf (out, "\\u%04x", (guint)(guchar)c);
          else
            g_string_append_c (out, c);
          i++;
          continue;
        }
      if (c == '-' || g_ascii_isdigit (c))
        {
          gsize start = i;
          gboolean is_double = FALSE;

          while (i < length && json[i] != '\0'
                 && (g_ascii_isdigit (json[i]) || strchr ("+-.eE", json[i]) != NULL))
            {
              if (strchr (".eE", json[i]) != NULL)
                is_double = TRUE;
              i++;
            }
          if (is_double)
            append_shortest_double (out, json + start, i - start);
          else
            g_string_append_len (out, json + start, (gssize)(i - start));
          continue;
        }
      g_string_append_c (out, c);
      i++;
    }
  if (out_length != NULL)
    *out_length = out->len;
  return g_string_free (out, FALSE);
}

char *
wb_json_to_string (JsonNode *node, gsize *out_length)
{
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autofree char *text = NULL;
  gsize length = 0;

  g_return_val_if_fail (node != NULL, NULL);
  json_generator_set_root (generator, node);
  text = json_generator_to_data (generator, &length);
  /* json-glib copies strings byte for byte. Everything the bridge puts into
   * a tree is valid UTF-8 (parsed JSON, text.c for text from outside); if
   * that ever failed, a client still gets UTF-8: the bad bytes (never JSON
   * syntax, which is ASCII) become U+FFFD. */
  if (!g_utf8_validate_len (text, length, NULL))
    {
      char *valid = g_utf8_make_valid (text, (gssize)length);

      g_warning ("Serializing text that is not UTF-8; replaced with U+FFFD");
      g_free (text);
      text = valid;
      length = strlen (valid);
    }
  return shorten_doubles (text, length, out_length);
}

GBytes *
wb_json_to_line (JsonNode *node)
{
  gsize length = 0;
  char *text = wb_json_to_string (node, &length);
  char *line = g_realloc (text, length + 1);

  line[length] = '\n';
  return g_bytes_new_take (line, length + 1);
}

static JsonNode *
object_node_take (JsonObject *object)
{
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);

  json_node_take_object (node, object);
  return node;
}

static JsonObject *
flat_new (const char *type, const char *stream_id)
{
  JsonObject *object = json_object_new ();

  json_object_set_string_member (object, "type", type);
  if (stream_id != NULL)
    json_object_set_string_member (object, "stream_id", stream_id);
  return object;
}

JsonNode *
wb_message_new_subscribe (const char *stream_id, const char *const *events)
{
  JsonObject *object;
  JsonArray *array = json_array_new ();

  g_return_val_if_fail (stream_id != NULL, NULL);
  object = flat_new ("subscribe", stream_id);
  for (; events != NULL && *events != NULL; events++)
    json_array_add_string_element (array, *events);
  json_object_set_array_member (object, "events", array);
  return object_node_take (object);
}

JsonNode *
wb_message_new_unsubscribe (const char *stream_id)
{
  g_return_val_if_fail (stream_id != NULL, NULL);
  return object_node_take (flat_new ("unsubscribe", stream_id));
}

JsonNode *
wb_message_new_chat (const char *stream_id, const char *text)
{
  JsonObject *object;

  g_return_val_if_fail (stream_id != NULL && text != NULL, NULL);
  object = flat_new ("chat.message", stream_id);
  json_object_set_string_member (object, "message", text);
  return object_node_take (object);
}

JsonNode *
wb_message_new_reaction (const char *stream_id, const char *reaction)
{
  JsonObject *object;

  g_return_val_if_fail (stream_id != NULL && reaction != NULL, NULL);
  object = flat_new ("reaction.sent", stream_id);
  json_object_set_string_member (object, "reaction", reaction);
  return object_node_take (object);
}

JsonNode *
wb_message_new_ping (gint64 timestamp_ms)
{
  JsonObject *object = flat_new ("ping", NULL);

  json_object_set_int_member (object, "timestamp", timestamp_ms);
  return object_node_take (object);
}

JsonNode *
wb_message_new_pong (gint64 timestamp_ms)
{
  JsonObject *object = flat_new ("pong", NULL);

  json_object_set_int_member (object, "timestamp", timestamp_ms);
  return object_node_take (object);
}

JsonNode *
wb_message_new_enveloped (const char *type, JsonObject *payload)
{
  JsonObject *object;

  g_return_val_if_fail (type != NULL && payload != NULL, NULL);
  object = flat_new (type, NULL);
  json_object_set_object_member (object, "payload", payload);
  return object_node_take (object);
}

JsonNode *
wb_message_new_error (const char *code, const char *message, JsonObject *details)
{
  JsonObject *payload = json_object_new ();

  g_return_val_if_fail (code != NULL && message != NULL, NULL);
  json_object_set_string_member (payload, "code", code);
  json_object_set_string_member (payload, "message", message);
  json_object_set_object_member (payload, "details",
                                 details != NULL ? details : json_object_new ());
  return wb_message_new_enveloped ("error", payload);
}
