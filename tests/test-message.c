/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the WAVE message model (daemon/message.c).
 *
 * The schema below is written from the WAVE doc
 * (shared/upstream/wave-websocket-api.txt), not copied from message.c, so
 * a drift between the two shows up here as a failing case.
 */
#define G_LOG_DOMAIN "wave-test-message"

#include "message.h"

#include <string.h>

#include "json-strict.h"

#define N_STREAM_EVENTS 8
#define MAX_TEST_FIELDS 8
/* Nesting far past any stack json-glib can recurse through. */
#define HOSTILE_DEPTH 100000
#define HUGE_TEXT_BYTES (1024 * 1024)
#define HUGE_EXTRA_MEMBERS 5000

typedef enum
{
  KIND_STRING,
  KIND_STRING_OR_NULL,
  KIND_NUMBER,
  KIND_OBJECT,
  KIND_STRING_ARRAY,
} Kind;

typedef struct
{
  const char *name;
  Kind kind;
  gboolean required;
  const char *valid_json; /* a valid value, as JSON text */
} Field;

typedef struct
{
  const char *type;
  WbDirection direction;
  Field fields[MAX_TEST_FIELDS];
} Schema;

#define TS "\"2024-01-15T10:30:00Z\""
#define SID                                                                                        \
  {                                                                                                \
    "stream_id", KIND_STRING, TRUE, "\"stream_abc123\""                                            \
  }

static const Schema schemas[] = {
  { "stream.started",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "started_at", KIND_STRING, TRUE, TS },
      { "protocol", KIND_STRING, TRUE, "\"rtmp\"" },
      { "ingest_endpoint", KIND_STRING, TRUE, "\"rtmp://ingest.wave.inc/live\"" } } },
  { "stream.ended",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "ended_at", KIND_STRING, TRUE, TS },
      { "duration", KIND_NUMBER, TRUE, "3600" },
      { "recording_id", KIND_STRING_OR_NULL, FALSE, "\"rec_42\"" } } },
  { "stream.health",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "bitrate", KIND_NUMBER, TRUE, "4500" },
      { "fps", KIND_NUMBER, TRUE, "29.97" },
      { "packet_loss", KIND_NUMBER, TRUE, "0.01" },
      { "latency", KIND_NUMBER, TRUE, "42" } } },
  { "viewer.joined",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "viewer_id", KIND_STRING, TRUE, "\"viewer_1\"" },
      { "country", KIND_STRING, TRUE, "\"DE\"" },
      { "device", KIND_STRING, TRUE, "\"tv\"" },
      { "joined_at", KIND_STRING, TRUE, TS } } },
  { "viewer.left",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "viewer_id", KIND_STRING, TRUE, "\"viewer_1\"" },
      { "watch_time", KIND_NUMBER, TRUE, "125.5" },
      { "left_at", KIND_STRING, TRUE, TS } } },
  { "analytics.update",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "concurrent_viewers", KIND_NUMBER, TRUE, "1200" },
      { "total_views", KIND_NUMBER, TRUE, "50000" },
      { "peak_viewers", KIND_NUMBER, TRUE, "1800" },
      { "average_watch_time", KIND_NUMBER, TRUE, "312.25" } } },
  { "chat.message",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "message_id", KIND_STRING, TRUE, "\"msg_1\"" },
      { "user_id", KIND_STRING, TRUE, "\"user_1\"" },
      { "username", KIND_STRING, TRUE, "\"ada\"" },
      { "message", KIND_STRING, TRUE, "\"hello \\u00e9\"" },
      { "timestamp", KIND_STRING, TRUE, TS } } },
  { "reaction.received",
    WB_DIRECTION_TO_CLIENT,
    { SID,
      { "reaction", KIND_STRING, TRUE, "\"\xf0\x9f\x94\xa5\"" },
      { "count", KIND_NUMBER, TRUE, "17" },
      { "timestamp", KIND_STRING, TRUE, TS } } },
  { "ping", WB_DIRECTION_TO_CLIENT, { { "timestamp", KIND_NUMBER, FALSE, "1705314600000" } } },
  { "pong", WB_DIRECTION_TO_CLIENT, { { "timestamp", KIND_NUMBER, FALSE, "1705314600000" } } },
  { "pong", WB_DIRECTION_TO_SERVER, { { "timestamp", KIND_NUMBER, FALSE, "1705314600000" } } },
  { "error",
    WB_DIRECTION_TO_CLIENT,
    { { "code", KIND_STRING, TRUE, "\"rate_limited\"" },
      { "message", KIND_STRING, TRUE, "\"slow down\"" },
      { "details", KIND_OBJECT, FALSE, "{\"stream_id\":\"stream_abc123\"}" } } },
  { "chat.message",
    WB_DIRECTION_TO_SERVER,
    { SID, { "message", KIND_STRING, TRUE, "\"hello\"" } } },
  { "reaction.sent",
    WB_DIRECTION_TO_SERVER,
    { SID,
      { "reaction", KIND_STRING, TRUE, "\"\xf0\x9f\x91\x8f\"" },
      { "user_id", KIND_STRING, FALSE, "\"user_1\"" } } },
  { "ping", WB_DIRECTION_TO_SERVER, { { "timestamp", KIND_NUMBER, FALSE, "1705314600000" } } },
  { "subscribe",
    WB_DIRECTION_TO_SERVER,
    { SID,
      { "events", KIND_STRING_ARRAY, FALSE,
        "[\"stream.started\",\"analytics.update\",\"chat.message\"]" } } },
  { "unsubscribe", WB_DIRECTION_TO_SERVER, { SID } },
  { "status", WB_DIRECTION_TO_SERVER, { { NULL } } },
};

#undef SID
#undef TS

/* Values of the wrong type for each kind, as JSON text, NULL-terminated. */
static const char *const *
wrong_values (Kind kind)
{
  static const char *const for_string[] = { "42", "null", "true", "{}", "[\"a\"]", NULL };
  static const char *const for_string_or_null[] = { "42", "false", "{}", "[]", NULL };
  static const char *const for_number[] = { "\"42\"", "null", "true", "[]", "{}", NULL };
  static const char *const for_object[] = { "\"x\"", "1", "null", "[]", NULL };
  static const char *const for_string_array[]
      = { "\"stream.started\"", "[1]", "[\"chat.message\",null]", "{}", "null", NULL };

  switch (kind)
    {
    case KIND_STRING:
      return for_string;
    case KIND_STRING_OR_NULL:
      return for_string_or_null;
    case KIND_NUMBER:
      return for_number;
    case KIND_OBJECT:
      return for_object;
    case KIND_STRING_ARRAY:
      return for_string_array;
    }
  g_assert_not_reached ();
}

static const char *
direction_name (WbDirection direction)
{
  return direction == WB_DIRECTION_TO_SERVER ? "to-server" : "to-client";
}

static WbDirection
other_direction (WbDirection direction)
{
  return direction == WB_DIRECTION_TO_SERVER ? WB_DIRECTION_TO_CLIENT : WB_DIRECTION_TO_SERVER;
}

static gboolean
schema_exists (const char *type, WbDirection direction)
{
  for (gsize i = 0; i < G_N_ELEMENTS (schemas); i++)
    if (schemas[i].direction == direction && strcmp (schemas[i].type, type) == 0)
      return TRUE;
  return FALSE;
}

/* Builds a sample of @schema in its wire shape. @skip: index of a field to
 * leave out, or -1. @replace/@replacement: a field whose value is swapped. */
static char *
build_sample (const Schema *schema, int skip, int replace, const char *replacement)
{
  GString *json = g_string_new (NULL);
  gboolean enveloped = schema->direction == WB_DIRECTION_TO_CLIENT;
  gboolean first = TRUE;

  g_string_append_printf (json, "{\"type\":\"%s\"", schema->type);
  if (enveloped)
    g_string_append (json, ",\"payload\":{");
  for (int i = 0; i < MAX_TEST_FIELDS && schema->fields[i].name != NULL; i++)
    {
      if (i == skip)
        continue;
      if (!first || !enveloped)
        g_string_append_c (json, ',');
      first = FALSE;
      g_string_append_printf (json, "\"%s\":%s", schema->fields[i].name,
                              i == replace ? replacement : schema->fields[i].valid_json);
    }
  if (enveloped)
    g_string_append_c (json, '}');
  g_string_append_c (json, '}');
  return g_string_free (json, FALSE);
}

static WbMessage *
parse_ok_len (const char *data, gsize length, WbDirection direction)
{
  g_autoptr (GError) error = NULL;
  WbMessage *message = wb_message_parse (data, length, direction, &error);

  if (message == NULL)
    g_test_message ("rejected %s input: %.*s", direction_name (direction), (int)MIN (length, 300),
                    data);
  g_assert_no_error (error);
  g_assert_nonnull (message);
  g_assert_nonnull (message->root);
  g_assert_nonnull (message->body);
  return message;
}

static WbMessage *
parse_ok (const char *json, WbDirection direction)
{
  return parse_ok_len (json, strlen (json), direction);
}

static void
expect_error_len (const char *data, gsize length, WbDirection direction, WbMessageError code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message = wb_message_parse (data, length, direction, &error);

  if (!g_error_matches (error, WB_MESSAGE_ERROR_DOMAIN, (int)code))
    g_test_message ("unexpected result for %s input: %.*s", direction_name (direction),
                    (int)MIN (length, 300), data);
  g_assert_null (message);
  g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, (int)code);
  /* Error texts are sent back to clients inside JSON. */
  g_assert_true (g_utf8_validate (error->message, -1, NULL));
}

static void
expect_error (const char *json, WbDirection direction, WbMessageError code)
{
  expect_error_len (json, strlen (json), direction, code);
}

/* Schema-driven cases ---------------------------------------------------- */

typedef struct
{
  const Schema *schema;
  int field;
} FieldCase;

static void
assert_field_value (const WbMessage *message, const Field *field)
{
  g_autoptr (JsonNode) expected = json_from_string (field->valid_json, NULL);
  JsonNode *actual = json_object_get_member (message->body, field->name);

  g_assert_nonnull (expected);
  g_assert_nonnull (actual);
  g_assert_true (json_node_equal (expected, actual));
  switch (field->kind)
    {
    case KIND_STRING:
    case KIND_STRING_OR_NULL:
      g_assert_cmpstr (wb_message_get_string (message, field->name), ==,
                       json_node_get_string (expected));
      break;
    case KIND_NUMBER:
      g_assert_cmpfloat_with_epsilon (wb_message_get_double (message, field->name),
                                      json_node_get_double (expected), 1e-9);
      break;
    case KIND_OBJECT:
    case KIND_STRING_ARRAY:
      break;
    }
}

static void
test_valid_cb (gconstpointer data)
{
  const Schema *schema = data;
  g_autofree char *json = build_sample (schema, -1, -1, NULL);
  g_autoptr (WbMessage) message = parse_ok (json, schema->direction);
  JsonObject *root = json_node_get_object (message->root);

  g_assert_cmpint (message->type, ==, wb_message_type_from_string (schema->type));
  g_assert_cmpstr (wb_message_type_to_string (message->type), ==, schema->type);
  if (schema->direction == WB_DIRECTION_TO_CLIENT)
    g_assert_true (message->body == json_object_get_object_member (root, "payload"));
  else
    g_assert_true (message->body == root);
  g_assert_null (message->request_id);

  if (schema->fields[0].name != NULL && strcmp (schema->fields[0].name, "stream_id") == 0)
    g_assert_cmpstr (message->stream_id, ==, "stream_abc123");
  else
    g_assert_null (message->stream_id);
  for (int i = 0; i < MAX_TEST_FIELDS && schema->fields[i].name != NULL; i++)
    assert_field_value (message, &schema->fields[i]);
}

static void
test_wrong_direction_cb (gconstpointer data)
{
  const Schema *schema = data;
  g_autofree char *json = build_sample (schema, -1, -1, NULL);

  expect_error (json, other_direction (schema->direction), WB_MESSAGE_ERROR_WRONG_DIRECTION);
}

static void
test_missing_cb (gconstpointer data)
{
  const FieldCase *test_case = data;
  g_autofree char *json = build_sample (test_case->schema, test_case->field, -1, NULL);

  expect_error (json, test_case->schema->direction, WB_MESSAGE_ERROR_MISSING_FIELD);
}

static void
test_optional_absent_cb (gconstpointer data)
{
  const FieldCase *test_case = data;
  const char *name = test_case->schema->fields[test_case->field].name;
  g_autofree char *json = build_sample (test_case->schema, test_case->field, -1, NULL);
  g_autoptr (WbMessage) message = parse_ok (json, test_case->schema->direction);

  g_assert_false (json_object_has_member (message->body, name));
  g_assert_null (wb_message_get_string (message, name));
  g_assert_cmpint (wb_message_get_int (message, name), ==, 0);
}

static void
test_ill_typed_cb (gconstpointer data)
{
  const FieldCase *test_case = data;
  const Field *field = &test_case->schema->fields[test_case->field];

  for (const char *const *wrong = wrong_values (field->kind); *wrong != NULL; wrong++)
    {
      g_autofree char *json = build_sample (test_case->schema, -1, test_case->field, *wrong);
      g_autoptr (GError) error = NULL;
      g_autoptr (WbMessage) message
          = wb_message_parse (json, strlen (json), test_case->schema->direction, &error);

      g_assert_null (message);
      g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD);
      /* The error names the field, so a client can tell what to fix. */
      g_assert_nonnull (strstr (error->message, field->name));
    }
}

/* One per test: GTest frees each case after its test has run. */
static FieldCase *
field_case_new (const Schema *schema, int field)
{
  FieldCase *test_case = g_new0 (FieldCase, 1);

  test_case->schema = schema;
  test_case->field = field;
  return test_case;
}

static void
add_schema_tests (void)
{
  for (gsize s = 0; s < G_N_ELEMENTS (schemas); s++)
    {
      const Schema *schema = &schemas[s];
      const char *dir = direction_name (schema->direction);
      g_autofree char *valid = g_strdup_printf ("/message/valid/%s/%s", dir, schema->type);

      g_test_add_data_func (valid, schema, test_valid_cb);
      /* chat.message and ping exist both ways; the other shape is tested there. */
      if (!schema_exists (schema->type, other_direction (schema->direction)))
        {
          g_autofree char *wrong
              = g_strdup_printf ("/message/wrong-direction/%s/%s", dir, schema->type);

          g_test_add_data_func (wrong, schema, test_wrong_direction_cb);
        }

      for (int f = 0; f < MAX_TEST_FIELDS && schema->fields[f].name != NULL; f++)
        {
          const char *name = schema->fields[f].name;
          gboolean required = schema->fields[f].required;
          g_autofree char *absent
              = g_strdup_printf ("/message/%s/%s/%s/%s", required ? "missing" : "optional-absent",
                                 dir, schema->type, name);
          g_autofree char *typed
              = g_strdup_printf ("/message/ill-typed/%s/%s/%s", dir, schema->type, name);

          g_test_add_data_func_full (absent, field_case_new (schema, f),
                                     required ? test_missing_cb : test_optional_absent_cb, g_free);
          g_test_add_data_func_full (typed, field_case_new (schema, f), test_ill_typed_cb, g_free);
        }
    }
}

/* Envelope and type ------------------------------------------------------- */

static void
test_wrong_direction_shapes (void)
{
  /* A flat client message sent as if from the server, and vice versa. */
  expect_error ("{\"type\":\"subscribe\",\"stream_id\":\"s\"}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_WRONG_DIRECTION);
  expect_error ("{\"type\":\"status\"}", WB_DIRECTION_TO_CLIENT, WB_MESSAGE_ERROR_WRONG_DIRECTION);
  expect_error ("{\"type\":\"error\",\"code\":\"x\",\"message\":\"y\"}", WB_DIRECTION_TO_SERVER,
                WB_MESSAGE_ERROR_WRONG_DIRECTION);
}

static void
test_envelope (void)
{
  /* Server messages need a payload object, except the keepalives. */
  expect_error ("{\"type\":\"stream.started\",\"stream_id\":\"s\"}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_MISSING_FIELD);
  expect_error ("{\"type\":\"stream.started\",\"payload\":\"s\"}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_INVALID_FIELD);
  expect_error ("{\"type\":\"stream.started\",\"payload\":[]}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_INVALID_FIELD);
  expect_error ("{\"type\":\"stream.started\",\"payload\":null}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_INVALID_FIELD);
  /* A flat chat message is what a client sends, not what the server sends. */
  expect_error ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"m\"}",
                WB_DIRECTION_TO_CLIENT, WB_MESSAGE_ERROR_MISSING_FIELD);
}

static void
test_type_field (void)
{
  for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
    {
      expect_error ("{}", d, WB_MESSAGE_ERROR_MISSING_FIELD);
      expect_error ("{\"stream_id\":\"s\"}", d, WB_MESSAGE_ERROR_MISSING_FIELD);
      expect_error ("{\"type\":42}", d, WB_MESSAGE_ERROR_INVALID_FIELD);
      expect_error ("{\"type\":null}", d, WB_MESSAGE_ERROR_INVALID_FIELD);
      expect_error ("{\"type\":[\"status\"]}", d, WB_MESSAGE_ERROR_INVALID_FIELD);
      expect_error ("{\"type\":{\"a\":1}}", d, WB_MESSAGE_ERROR_INVALID_FIELD);
    }
}

static void
test_unknown_type (void)
{
  static const char *const names[]
      = { "stream.paused", "", "STATUS", "Subscribe", "ping ", "bridge.hello", NULL };

  for (const char *const *name = names; *name != NULL; name++)
    for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
      {
        g_autofree char *json = g_strdup_printf ("{\"type\":\"%s\",\"payload\":{}}", *name);
        g_autoptr (GError) error = NULL;
        g_autoptr (WbMessage) message = wb_message_parse (json, strlen (json), d, &error);
        g_autofree char *quoted = g_strdup_printf ("'%s'", *name);

        g_assert_null (message);
        g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_UNKNOWN_TYPE);
        g_assert_nonnull (strstr (error->message, quoted));
      }
}

static void
test_unknown_type_long_name (void)
{
  /* A huge multi-byte name: the error repeats a bounded, still valid,
   * UTF-8 prefix of it, whatever byte the cut falls on. */
  for (int offset = 0; offset < 4; offset++)
    {
      g_autoptr (GString) json = g_string_new ("{\"type\":\"");
      g_autoptr (GError) error = NULL;
      g_autoptr (WbMessage) message = NULL;

      for (int i = 0; i < offset; i++)
        g_string_append_c (json, 'a');
      for (int i = 0; i < 10000; i++)
        g_string_append (json, "\xe2\x82\xac"); /* U+20AC, 3 bytes */
      g_string_append (json, "\"}");
      message = wb_message_parse (json->str, json->len, WB_DIRECTION_TO_SERVER, &error);
      g_assert_null (message);
      g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_UNKNOWN_TYPE);
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      g_assert_cmpuint (strlen (error->message), <, 1024);
      g_assert_nonnull (strstr (error->message, "\xe2\x82\xac"));
    }
}

static void
test_type_names (void)
{
  guint n_events = 0;

  for (int t = WB_MESSAGE_TYPE_INVALID + 1; t < WB_MESSAGE_N_TYPES; t++)
    {
      const char *name = wb_message_type_to_string ((WbMessageType)t);

      g_assert_nonnull (name);
      g_assert_cmpint (wb_message_type_from_string (name), ==, t);
      g_assert_cmpint (wb_message_is_stream_event_name (name), ==,
                       wb_message_type_is_stream_event ((WbMessageType)t));
      if (wb_message_type_is_stream_event ((WbMessageType)t))
        {
          n_events++;
          g_assert_true (g_strv_contains (wb_message_stream_event_names (), name));
        }
    }
  g_assert_cmpuint (n_events, ==, N_STREAM_EVENTS);
  g_assert_cmpuint (g_strv_length ((char **)wb_message_stream_event_names ()), ==, N_STREAM_EVENTS);
  /* Sorted: the order subscriptions are expanded and bridge.hello lists them. */
  for (const char *const *name = wb_message_stream_event_names (); name[1] != NULL; name++)
    g_assert_cmpstr (name[0], <, name[1]);
  g_assert_cmpint (wb_message_type_from_string (NULL), ==, WB_MESSAGE_TYPE_INVALID);
  g_assert_cmpint (wb_message_type_from_string ("nope"), ==, WB_MESSAGE_TYPE_INVALID);
  g_assert_false (wb_message_type_is_stream_event (WB_MESSAGE_TYPE_INVALID));
  g_assert_false (wb_message_type_is_stream_event (WB_MESSAGE_N_TYPES));
  g_assert_false (wb_message_is_stream_event_name ("ping"));
  g_assert_false (wb_message_is_stream_event_name ("reaction.sent"));
  g_assert_false (wb_message_is_stream_event_name ("subscribe"));
}

static void
test_recording_id_null (void)
{
  static const char json[]
      = "{\"type\":\"stream.ended\",\"payload\":{\"stream_id\":\"s1\",\"ended_at\":\"t\","
        "\"duration\":12.5,\"recording_id\":null}}";
  g_autoptr (WbMessage) message = parse_ok (json, WB_DIRECTION_TO_CLIENT);

  g_assert_cmpint (message->type, ==, WB_MESSAGE_STREAM_ENDED);
  g_assert_true (JSON_NODE_HOLDS_NULL (json_object_get_member (message->body, "recording_id")));
  g_assert_null (wb_message_get_string (message, "recording_id"));
  g_assert_cmpfloat_with_epsilon (wb_message_get_double (message, "duration"), 12.5, 1e-9);
}

static void
test_keepalive_shapes (void)
{
  static const char *const accepted[] = {
    "{\"type\":\"pong\",\"payload\":{\"timestamp\":1705314600000}}",
    "{\"type\":\"pong\",\"timestamp\":1705314600000}",
    "{\"type\":\"ping\",\"payload\":{\"timestamp\":1705314600000}}",
    "{\"type\":\"ping\",\"timestamp\":1705314600000}",
    NULL,
  };

  for (const char *const *json = accepted; *json != NULL; json++)
    {
      g_autoptr (WbMessage) message = parse_ok (*json, WB_DIRECTION_TO_CLIENT);

      g_assert_cmpint (wb_message_get_int (message, "timestamp"), ==,
                       G_GINT64_CONSTANT (1705314600000));
      g_assert_null (message->stream_id);
    }

  {
    g_autoptr (WbMessage) bare = parse_ok ("{\"type\":\"pong\"}", WB_DIRECTION_TO_CLIENT);

    g_assert_cmpint (bare->type, ==, WB_MESSAGE_PONG);
    g_assert_cmpint (wb_message_get_int (bare, "timestamp"), ==, 0);
  }
  expect_error ("{\"type\":\"pong\",\"timestamp\":\"now\"}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_INVALID_FIELD);
  expect_error ("{\"type\":\"pong\",\"payload\":{\"timestamp\":\"now\"}}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_INVALID_FIELD);
  expect_error ("{\"type\":\"pong\",\"payload\":7}", WB_DIRECTION_TO_CLIENT,
                WB_MESSAGE_ERROR_INVALID_FIELD);
}

/* Not JSON, not an object, not UTF-8 --------------------------------------- */

static void
test_invalid_json (void)
{
  static const char *const inputs[] = {
    "{",
    "}",
    "not json",
    "{\"type\":}",
    "{\"type\":\"status\",}",
    "{\"type\" \"status\"}",
    "{type:\"status\"}",
    "{\"type\":\"status\"} trailing",
    "{\"type\":\"status\",\"x\":NaN}",
    "{\"type\":\"status\",\"x\":\"unterminated}",
    /* Not JSON, although json-glib reads both. */
    "{'type':'status'}",
    "/* c */ {\"type\":\"status\"}",
    NULL,
  };

  for (const char *const *input = inputs; *input != NULL; input++)
    for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
      expect_error (*input, d, WB_MESSAGE_ERROR_INVALID_JSON);
}

static void
test_not_object (void)
{
  static const char *const inputs[] = {
    "[]", "[{\"type\":\"status\"}]", "\"status\"", "42", "-1.5", "null", "true", NULL,
  };
  /* No value at all is not JSON (RFC 8259: ws value ws). */
  static const char *const empty[] = { "", "   ", "\r\n\t", NULL };

  for (const char *const *input = inputs; *input != NULL; input++)
    for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
      expect_error (*input, d, WB_MESSAGE_ERROR_NOT_OBJECT);
  for (const char *const *input = empty; *input != NULL; input++)
    for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
      expect_error (*input, d, WB_MESSAGE_ERROR_INVALID_JSON);

  /* The contract allows NULL for an empty buffer. */
  for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (WbMessage) message = wb_message_parse (NULL, 0, d, &error);

      g_assert_null (message);
      g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_JSON);
    }
}

typedef struct
{
  const char *name;
  const char *bytes;
  gsize length;
} BadBytes;

#define BAD(name, literal)                                                                         \
  {                                                                                                \
    name, literal, sizeof (literal) - 1                                                            \
  }

static const BadBytes bad_utf8[] = {
  BAD ("lone continuation", "\x80"),
  BAD ("continuation run", "a\xbf\xbf"),
  BAD ("overlong slash", "\xc0\xaf"),
  BAD ("overlong nul", "\xc0\x80"),
  BAD ("overlong 3-byte", "\xe0\x80\xaf"),
  BAD ("overlong 4-byte", "\xf0\x80\x80\xaf"),
  BAD ("surrogate high", "\xed\xa0\x80"),
  BAD ("surrogate low", "\xed\xbf\xbf"),
  BAD ("surrogate pair as cesu-8", "\xed\xa0\xbd\xed\xb8\x80"),
  BAD ("truncated 2-byte", "\xc3"),
  BAD ("truncated 3-byte", "\xe2\x82"),
  BAD ("truncated 4-byte", "\xf0\x9f\x94"),
  BAD ("beyond U+10FFFF", "\xf4\x90\x80\x80"),
  BAD ("byte fe", "\xfe"),
  BAD ("byte ff", "\xff"),
  BAD ("embedded nul", "a\0b"),
};

#undef BAD

static void
test_invalid_utf8 (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (bad_utf8); i++)
    {
      const BadBytes *bad = &bad_utf8[i];
      static const char *const templates[][2] = {
        { "{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"", "\"}" },
        { "{\"type\":\"chat.message\",\"stream_id\":\"", "\",\"message\":\"m\"}" },
        { "{\"type\":\"", "\"}" },
        { "{\"", "\":1,\"type\":\"status\"}" },
        /* Outside any string, and cut off at the very end of the input. */
        { "{\"type\":\"status\"}", "" },
      };

      g_test_message ("case: %s", bad->name);
      for (gsize t = 0; t < G_N_ELEMENTS (templates); t++)
        {
          g_autoptr (GString) json = g_string_new (templates[t][0]);

          g_string_append_len (json, bad->bytes, (gssize)bad->length);
          g_string_append (json, templates[t][1]);
          for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
            expect_error_len (json->str, json->len, d, WB_MESSAGE_ERROR_INVALID_UTF8);
        }
    }
}

static void
test_escaped_surrogates (void)
{
  /* An escaped lone low surrogate decodes to bytes that are not UTF-8. */
  expect_error ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"\\udc00x\"}",
                WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_UTF8);
  expect_error ("{\"type\":\"status\",\"\\udfffkey\":1}", WB_DIRECTION_TO_SERVER,
                WB_MESSAGE_ERROR_INVALID_UTF8);
  expect_error (
      "{\"type\":\"stream.started\",\"payload\":{\"stream_id\":\"s\",\"started_at\":\"t\","
      "\"protocol\":\"p\",\"ingest_endpoint\":\"\\udc00e\"}}",
      WB_DIRECTION_TO_CLIENT, WB_MESSAGE_ERROR_INVALID_UTF8);
  /* Cut short: the surrogate is the first problem, and json-glib (which
   * quotes the decoded string in its error text) never sees it. */
  expect_error ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"\\udc00x\"",
                WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_UTF8);
  /* A lone high surrogate, followed by another escape or by nothing. */
  expect_error ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"\\ud800\\u0041\"}",
                WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_UTF8);
  expect_error ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"\\ud800\"}",
                WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_UTF8);

  {
    /* A proper pair is fine and decodes to U+1F525. */
    g_autoptr (WbMessage) message = parse_ok (
        "{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"\\ud83d\\udd25\"}",
        WB_DIRECTION_TO_SERVER);

    g_assert_cmpstr (wb_message_get_string (message, "message"), ==, "\xf0\x9f\x94\xa5");
  }
}

static void
test_non_finite_numbers (void)
{
  /* json-glib reads 1e999 as inf, which cannot be written back as JSON. */
  expect_error ("{\"type\":\"stream.ended\",\"payload\":{\"stream_id\":\"s\",\"ended_at\":\"t\","
                "\"duration\":1e999}}",
                WB_DIRECTION_TO_CLIENT, WB_MESSAGE_ERROR_INVALID_JSON);
  expect_error ("{\"type\":\"status\",\"extra\":[{\"x\":-1e999}]}", WB_DIRECTION_TO_SERVER,
                WB_MESSAGE_ERROR_INVALID_JSON);

  {
    g_autoptr (WbMessage) message = parse_ok (
        "{\"type\":\"stream.ended\",\"payload\":{\"stream_id\":\"s\",\"ended_at\":\"t\","
        "\"duration\":1e300,\"recording_id\":null,\"a\":-1e300,\"b\":2.9,\"c\":-2.9,"
        "\"d\":9007199254740993,\"e\":\"7\"}}",
        WB_DIRECTION_TO_CLIENT);

    /* Out-of-range doubles saturate instead of overflowing the cast. */
    g_assert_cmpint (wb_message_get_int (message, "duration"), ==, G_MAXINT64);
    g_assert_cmpint (wb_message_get_int (message, "a"), ==, G_MININT64);
    g_assert_cmpint (wb_message_get_int (message, "b"), ==, 2);
    g_assert_cmpint (wb_message_get_int (message, "c"), ==, -2);
    g_assert_cmpint (wb_message_get_int (message, "d"), ==, G_GINT64_CONSTANT (9007199254740993));
    /* Typed access never converts between strings and numbers. */
    g_assert_cmpint (wb_message_get_int (message, "e"), ==, 0);
    g_assert_cmpfloat (wb_message_get_double (message, "e"), ==, 0.0);
    g_assert_null (wb_message_get_string (message, "b"));
    g_assert_null (wb_message_get_string (message, "absent"));
  }
}

/* Nesting ------------------------------------------------------------------ */

/* {"type":"status","x":[[…]]} with @depth levels in all, the root included. */
static char *
nested_status (int depth, char open, char close)
{
  GString *json = g_string_new ("{\"type\":\"status\",\"x\":");

  for (int i = 1; i < depth; i++)
    g_string_append (json, open == '{' ? "{\"a\":" : "[");
  g_string_append (json, "0");
  for (int i = 1; i < depth; i++)
    g_string_append_c (json, close);
  g_string_append_c (json, '}');
  return g_string_free (json, FALSE);
}

static void
test_depth_limit (void)
{
  for (int kind = 0; kind < 2; kind++)
    {
      char open = kind == 0 ? '[' : '{';
      char close = kind == 0 ? ']' : '}';
      g_autofree char *at_limit = nested_status (WB_MESSAGE_MAX_DEPTH, open, close);
      g_autofree char *over = nested_status (WB_MESSAGE_MAX_DEPTH + 1, open, close);
      g_autofree char *hostile = nested_status (HOSTILE_DEPTH, open, close);
      g_autoptr (WbMessage) message = parse_ok (at_limit, WB_DIRECTION_TO_SERVER);

      g_assert_cmpint (message->type, ==, WB_MESSAGE_STATUS);
      expect_error (over, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_TOO_DEEP);
      expect_error (hostile, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_TOO_DEEP);
    }

  {
    /* The payload object counts as a level too. */
    GString *json = g_string_new ("{\"type\":\"pong\",\"payload\":{\"x\":");
    g_autofree char *text = NULL;
    g_autoptr (WbMessage) message = NULL;

    for (int i = 2; i < WB_MESSAGE_MAX_DEPTH; i++)
      g_string_append_c (json, '[');
    for (int i = 2; i < WB_MESSAGE_MAX_DEPTH; i++)
      g_string_append_c (json, ']');
    g_string_append (json, "}}");
    text = g_string_free (json, FALSE);
    message = parse_ok (text, WB_DIRECTION_TO_CLIENT);
    g_assert_cmpint (message->type, ==, WB_MESSAGE_PONG);
  }
}

static void
test_depth_strings (void)
{
  g_autoptr (GString) brackets = g_string_new (NULL);
  g_autofree char *in_string = NULL;
  g_autofree char *after_escaped_quote = NULL;
  g_autofree char *in_key = NULL;

  for (int i = 0; i < HOSTILE_DEPTH / 10; i++)
    g_string_append (brackets, "{[");

  in_string = g_strdup_printf ("{\"type\":\"status\",\"x\":\"%s\"}", brackets->str);
  after_escaped_quote
      = g_strdup_printf ("{\"type\":\"status\",\"x\":\"\\\"%s\\\\\"}", brackets->str);
  in_key = g_strdup_printf ("{\"type\":\"status\",\"%s\":1}", brackets->str);

  {
    g_autoptr (WbMessage) a = parse_ok (in_string, WB_DIRECTION_TO_SERVER);
    g_autoptr (WbMessage) b = parse_ok (after_escaped_quote, WB_DIRECTION_TO_SERVER);
    g_autoptr (WbMessage) c = parse_ok (in_key, WB_DIRECTION_TO_SERVER);

    g_assert_cmpuint (strlen (wb_message_get_string (a, "x")), ==, brackets->len);
    g_assert_cmpuint (strlen (wb_message_get_string (b, "x")), ==, brackets->len + 2);
    g_assert_true (json_object_has_member (c->body, brackets->str));
  }
}

static void
test_depth_not_fooled (void)
{
  g_autoptr (GString) deep = g_string_new (NULL);
  g_autofree char *escaped_backslash = NULL;
  g_autofree char *comment = NULL;
  g_autofree char *single_quote = NULL;
  g_autoptr (GString) closers = g_string_new ("{\"type\":\"status\"}");

  for (int i = 0; i < HOSTILE_DEPTH; i++)
    g_string_append_c (deep, '[');
  for (int i = 0; i < HOSTILE_DEPTH; i++)
    g_string_append_c (deep, ']');

  /* "\\" ends the string: what follows is structure and is counted. */
  escaped_backslash = g_strdup_printf ("{\"type\":\"status\",\"a\":\"\\\\\",\"x\":%s}", deep->str);
  expect_error (escaped_backslash, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_TOO_DEEP);

  /* json-glib skips C comments and reads 'strings': a quote hidden in one
   * must not switch the count off while the parser recurses. */
  comment = g_strdup_printf ("/*\"*/{\"type\":\"status\",\"x\":%s}/*\"*/", deep->str);
  single_quote = g_strdup_printf ("{\"type\":\"status\",'\"':%s,\"y\":'\"'}", deep->str);
  expect_error (comment, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_JSON);
  expect_error (single_quote, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_JSON);

  /* Stray closers must not buy credit for later openers. */
  for (int i = 0; i < WB_MESSAGE_MAX_DEPTH * 2; i++)
    g_string_append_c (closers, ']');
  g_string_append (closers, deep->str);
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (WbMessage) message
        = wb_message_parse (closers->str, closers->len, WB_DIRECTION_TO_SERVER, &error);

    g_assert_null (message);
    g_assert_true (g_error_matches (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_JSON)
                   || g_error_matches (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_TOO_DEEP));
  }
}

/* Field limits -------------------------------------------------------------- */

/* JSON text around a value, kept apart so no format string is built at run time. */
typedef struct
{
  const char *before;
  const char *after;
} Wrapper;

static char *
wrap (const Wrapper *wrapper, const char *value)
{
  return g_strconcat (wrapper->before, value, wrapper->after, NULL);
}

static void
test_stream_id_limits (void)
{
  static const Wrapper unsubscribe = { "{\"type\":\"unsubscribe\",\"stream_id\":\"", "\"}" };
  static const Wrapper started
      = { "{\"type\":\"stream.started\",\"payload\":{\"stream_id\":\"",
          "\",\"started_at\":\"t\",\"protocol\":\"p\",\"ingest_endpoint\":\"e\"}}" };
  g_autofree char *max = g_strnfill (WB_MESSAGE_MAX_STREAM_ID_BYTES, 's');
  g_autofree char *too_long = g_strnfill (WB_MESSAGE_MAX_STREAM_ID_BYTES + 1, 's');
  /* 2-byte characters: the limit is in bytes. */
  g_autoptr (GString) wide = g_string_new (NULL);

  while (wide->len < WB_MESSAGE_MAX_STREAM_ID_BYTES + 1)
    g_string_append (wide, "\xc3\xa9");

  for (WbDirection d = WB_DIRECTION_TO_SERVER; d <= WB_DIRECTION_TO_CLIENT; d++)
    {
      const Wrapper *wrapper = d == WB_DIRECTION_TO_SERVER ? &unsubscribe : &started;
      g_autofree char *empty_json = wrap (wrapper, "");
      g_autofree char *max_json = wrap (wrapper, max);
      g_autofree char *long_json = wrap (wrapper, too_long);
      g_autofree char *wide_json = wrap (wrapper, wide->str);
      g_autoptr (WbMessage) message = parse_ok (max_json, d);

      g_assert_cmpstr (message->stream_id, ==, max);
      expect_error (empty_json, d, WB_MESSAGE_ERROR_INVALID_FIELD);
      expect_error (long_json, d, WB_MESSAGE_ERROR_INVALID_FIELD);
      expect_error (wide_json, d, WB_MESSAGE_ERROR_INVALID_FIELD);
    }
}

static void
test_outbound_text_limits (void)
{
  static const Wrapper wrappers[] = {
    { "{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"", "\"}" },
    { "{\"type\":\"reaction.sent\",\"stream_id\":\"s\",\"reaction\":\"", "\"}" },
  };
  g_autofree char *max = g_strnfill (WB_MESSAGE_MAX_TEXT_BYTES, 'm');
  g_autofree char *too_long = g_strnfill (WB_MESSAGE_MAX_TEXT_BYTES + 1, 'm');
  g_autoptr (GString) wide = g_string_new (NULL);

  while (wide->len <= WB_MESSAGE_MAX_TEXT_BYTES)
    g_string_append (wide, "\xe2\x82\xac");

  for (gsize i = 0; i < G_N_ELEMENTS (wrappers); i++)
    {
      g_autofree char *empty_json = wrap (&wrappers[i], "");
      g_autofree char *max_json = wrap (&wrappers[i], max);
      g_autofree char *long_json = wrap (&wrappers[i], too_long);
      g_autofree char *wide_json = wrap (&wrappers[i], wide->str);
      g_autoptr (WbMessage) message = parse_ok (max_json, WB_DIRECTION_TO_SERVER);

      g_assert_cmpuint (strlen (wb_message_get_string (message, i == 0 ? "message" : "reaction")),
                        ==, WB_MESSAGE_MAX_TEXT_BYTES);
      expect_error (empty_json, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_FIELD);
      expect_error (long_json, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_FIELD);
      expect_error (wide_json, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_FIELD);
    }

  {
    /* Escapes count as what they decode to: 4096 × "\n" is 4096 bytes. */
    g_autoptr (GString) escaped = g_string_new (NULL);
    g_autofree char *json = NULL;
    g_autoptr (WbMessage) message = NULL;

    for (int i = 0; i < WB_MESSAGE_MAX_TEXT_BYTES; i++)
      g_string_append (escaped, "\\n");
    json = wrap (&wrappers[0], escaped->str);
    message = parse_ok (json, WB_DIRECTION_TO_SERVER);
    g_assert_cmpuint (strlen (wb_message_get_string (message, "message")), ==,
                      WB_MESSAGE_MAX_TEXT_BYTES);
  }
}

/* Subscribe ------------------------------------------------------------------ */

static void
test_subscribe_unknown_event (void)
{
  static const char *const bad_events[]
      = { "stream.paused", "ping",   "pong", "subscribe",      "reaction.sent",
          "error",         "status", "",     "STREAM.STARTED", NULL };

  for (const char *const *name = bad_events; *name != NULL; name++)
    {
      g_autofree char *json = g_strdup_printf (
          "{\"type\":\"subscribe\",\"stream_id\":\"s\",\"events\":[\"stream.started\",\"%s\"]}",
          *name);
      g_autoptr (GError) error = NULL;
      g_autoptr (WbMessage) message
          = wb_message_parse (json, strlen (json), WB_DIRECTION_TO_SERVER, &error);
      g_autofree char *quoted = g_strdup_printf ("'%s'", *name);

      g_assert_null (message);
      g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD);
      g_assert_nonnull (strstr (error->message, quoted));
    }
}

static char **
events_of (const char *json)
{
  g_autoptr (WbMessage) message = parse_ok (json, WB_DIRECTION_TO_SERVER);

  g_assert_cmpint (message->type, ==, WB_MESSAGE_SUBSCRIBE);
  return wb_message_dup_events (message);
}

static void
assert_all_events_sorted (char **events)
{
  g_assert_cmpuint (g_strv_length (events), ==, N_STREAM_EVENTS);
  for (guint i = 0; events[i] != NULL; i++)
    {
      g_assert_true (wb_message_is_stream_event_name (events[i]));
      if (i > 0)
        g_assert_cmpint (strcmp (events[i - 1], events[i]), <, 0);
    }
}

static void
test_dup_events (void)
{
  g_auto (GStrv) absent = events_of ("{\"type\":\"subscribe\",\"stream_id\":\"s\"}");
  g_auto (GStrv) empty = events_of ("{\"type\":\"subscribe\",\"stream_id\":\"s\",\"events\":[]}");
  g_auto (GStrv) some = events_of ("{\"type\":\"subscribe\",\"stream_id\":\"s\",\"events\":"
                                   "[\"viewer.left\",\"chat.message\",\"viewer.left\","
                                   "\"analytics.update\",\"chat.message\"]}");
  g_autoptr (GString) many
      = g_string_new ("{\"type\":\"subscribe\",\"stream_id\":\"s\",\"events\":[");
  g_auto (GStrv) all = NULL;
  const char *const expected_some[] = { "analytics.update", "chat.message", "viewer.left", NULL };

  assert_all_events_sorted (absent);
  assert_all_events_sorted (empty);
  g_assert_true (g_strv_equal ((const char *const *)absent, (const char *const *)empty));
  g_assert_true (g_strv_equal ((const char *const *)some, expected_some));

  /* Every name, many times over, reversed: still the 8 sorted names. */
  for (int round = 0; round < 100; round++)
    for (int i = N_STREAM_EVENTS - 1; i >= 0; i--)
      g_string_append_printf (many, "%s\"%s\"", round == 0 && i == N_STREAM_EVENTS - 1 ? "" : ",",
                              wb_message_stream_event_names ()[i]);
  g_string_append (many, "]}");
  all = events_of (many->str);
  assert_all_events_sorted (all);
  g_assert_true (g_strv_equal ((const char *const *)all, (const char *const *)absent));
}

/* Member readers ---------------------------------------------------------------- */

static JsonObject *
object_of (const char *json)
{
  g_autoptr (JsonNode) node = json_from_string (json, NULL);

  g_assert_nonnull (node);
  return json_node_dup_object (node);
}

static void
test_json_readers (void)
{
  g_autoptr (JsonObject) object
      = object_of ("{\"s\":\"text\",\"n\":null,\"i\":42,\"d\":2.75,\"neg\":-3.5,"
                   "\"big\":1e300,\"o\":{},\"numeric_text\":\"7\"}");

  /* Strings: only a string member; anything else gives the fallback. */
  g_assert_cmpstr (wb_json_get_string (object, "s", NULL), ==, "text");
  g_assert_null (wb_json_get_string (object, "absent", NULL));
  g_assert_cmpstr (wb_json_get_string (object, "absent", ""), ==, "");
  g_assert_cmpstr (wb_json_get_string (object, "n", "none"), ==, "none");
  g_assert_cmpstr (wb_json_get_string (object, "i", "none"), ==, "none");
  g_assert_cmpstr (wb_json_get_string (object, "o", "none"), ==, "none");
  g_assert_cmpstr (wb_json_get_string (NULL, "s", "none"), ==, "none");

  /* Numbers, whether written as integers or not; never from strings. */
  g_assert_true (wb_json_has_number (object, "i"));
  g_assert_true (wb_json_has_number (object, "d"));
  g_assert_false (wb_json_has_number (object, "numeric_text"));
  g_assert_false (wb_json_has_number (object, "n"));
  g_assert_false (wb_json_has_number (NULL, "i"));
  g_assert_cmpfloat (wb_json_get_double (object, "i", -1), ==, 42.0);
  g_assert_cmpfloat (wb_json_get_double (object, "d", -1), ==, 2.75);
  g_assert_cmpfloat (wb_json_get_double (object, "numeric_text", -1), ==, -1.0);
  g_assert_cmpfloat (wb_json_get_double (object, "absent", -1), ==, -1.0);
  g_assert_cmpint (wb_json_get_int (object, "i", -1), ==, 42);
  g_assert_cmpint (wb_json_get_int (object, "d", -1), ==, 2);
  g_assert_cmpint (wb_json_get_int (object, "neg", 0), ==, -3);
  g_assert_cmpint (wb_json_get_int (object, "big", 0), ==, G_MAXINT64);
  g_assert_cmpint (wb_json_get_int (object, "s", -1), ==, -1);
  g_assert_cmpint (wb_json_get_int (NULL, "i", -1), ==, -1);

  /* Counts for unsigned D-Bus types: clamped, never wrapped. */
  g_assert_cmpuint (wb_json_get_count (object, "i", G_MAXUINT32), ==, 42);
  g_assert_cmpuint (wb_json_get_count (object, "d", G_MAXUINT32), ==, 2);
  g_assert_cmpuint (wb_json_get_count (object, "neg", G_MAXUINT32), ==, 0);
  g_assert_cmpuint (wb_json_get_count (object, "big", G_MAXUINT32), ==, G_MAXUINT32);
  g_assert_cmpuint (wb_json_get_count (object, "big", G_MAXUINT64), ==, G_MAXUINT64);
  g_assert_cmpuint (wb_json_get_count (object, "i", 10), ==, 10);
  g_assert_cmpuint (wb_json_get_count (object, "s", G_MAXUINT32), ==, 0);
  g_assert_cmpuint (wb_json_get_count (NULL, "i", G_MAXUINT32), ==, 0);
}

/* Request id -------------------------------------------------------------------- */

static void
test_request_id (void)
{
  {
    g_autoptr (WbMessage) message
        = parse_ok ("{\"type\":\"status\",\"id\":\"req-1\"}", WB_DIRECTION_TO_SERVER);

    g_assert_nonnull (message->request_id);
    g_assert_cmpstr (json_node_get_string (message->request_id), ==, "req-1");
  }
  {
    g_autoptr (WbMessage) message = parse_ok (
        "{\"type\":\"subscribe\",\"stream_id\":\"s\",\"id\":42}", WB_DIRECTION_TO_SERVER);

    g_assert_nonnull (message->request_id);
    g_assert_cmpint (json_node_get_int (message->request_id), ==, 42);
  }
  {
    g_autoptr (WbMessage) message
        = parse_ok ("{\"type\":\"ping\",\"id\":1.5,\"timestamp\":3}", WB_DIRECTION_TO_SERVER);

    g_assert_cmpfloat_with_epsilon (json_node_get_double (message->request_id), 1.5, 1e-9);
  }
  {
    g_autoptr (WbMessage) message = parse_ok ("{\"type\":\"status\"}", WB_DIRECTION_TO_SERVER);

    g_assert_null (message->request_id);
  }
  expect_error ("{\"type\":\"status\",\"id\":{\"a\":1}}", WB_DIRECTION_TO_SERVER,
                WB_MESSAGE_ERROR_INVALID_FIELD);
  expect_error ("{\"type\":\"status\",\"id\":[1]}", WB_DIRECTION_TO_SERVER,
                WB_MESSAGE_ERROR_INVALID_FIELD);
  expect_error ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"m\",\"id\":{}}",
                WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_INVALID_FIELD);
}

/* Builders, serialization, round trips --------------------------------------- */

static WbMessage *
reparse (JsonNode *node, WbDirection direction)
{
  gsize length = 0;
  g_autofree char *text = wb_json_to_string (node, &length);

  g_assert_nonnull (text);
  g_assert_cmpuint (length, ==, strlen (text));
  g_assert_null (memchr (text, '\n', length));
  return parse_ok_len (text, length, direction);
}

static void
test_round_trip_builders (void)
{
  const char *const events[] = { "viewer.joined", "chat.message", NULL };

  {
    g_autoptr (JsonNode) node = wb_message_new_subscribe ("stream_abc123", events);
    g_autoptr (WbMessage) message = reparse (node, WB_DIRECTION_TO_SERVER);
    g_auto (GStrv) parsed = wb_message_dup_events (message);
    const char *const sorted[] = { "chat.message", "viewer.joined", NULL };

    g_assert_cmpint (message->type, ==, WB_MESSAGE_SUBSCRIBE);
    g_assert_cmpstr (message->stream_id, ==, "stream_abc123");
    g_assert_true (g_strv_equal ((const char *const *)parsed, sorted));
  }
  {
    g_autoptr (JsonNode) node = wb_message_new_subscribe ("s", NULL);
    g_autoptr (WbMessage) message = reparse (node, WB_DIRECTION_TO_SERVER);
    g_auto (GStrv) parsed = wb_message_dup_events (message);

    assert_all_events_sorted (parsed);
  }
  {
    g_autoptr (JsonNode) node = wb_message_new_unsubscribe ("stream_abc123");
    g_autoptr (WbMessage) message = reparse (node, WB_DIRECTION_TO_SERVER);

    g_assert_cmpint (message->type, ==, WB_MESSAGE_UNSUBSCRIBE);
    g_assert_cmpstr (message->stream_id, ==, "stream_abc123");
  }
  {
    g_autoptr (JsonNode) node = wb_message_new_chat ("stream_abc123", "hello \xc3\xa9 \"quoted\"");
    g_autoptr (WbMessage) message = reparse (node, WB_DIRECTION_TO_SERVER);

    g_assert_cmpint (message->type, ==, WB_MESSAGE_CHAT_MESSAGE);
    g_assert_cmpstr (message->stream_id, ==, "stream_abc123");
    g_assert_cmpstr (wb_message_get_string (message, "message"), ==, "hello \xc3\xa9 \"quoted\"");
  }
  {
    g_autoptr (JsonNode) node = wb_message_new_reaction ("stream_abc123", "\xf0\x9f\x94\xa5");
    g_autoptr (WbMessage) message = reparse (node, WB_DIRECTION_TO_SERVER);

    g_assert_cmpint (message->type, ==, WB_MESSAGE_REACTION_SENT);
    g_assert_cmpstr (wb_message_get_string (message, "reaction"), ==, "\xf0\x9f\x94\xa5");
  }
  {
    const gint64 timestamp = G_GINT64_CONSTANT (1705314600123);
    g_autoptr (JsonNode) node = wb_message_new_ping (timestamp);
    g_autoptr (WbMessage) to_server = reparse (node, WB_DIRECTION_TO_SERVER);
    g_autoptr (WbMessage) to_client = reparse (node, WB_DIRECTION_TO_CLIENT);

    g_assert_cmpint (to_server->type, ==, WB_MESSAGE_PING);
    g_assert_cmpint (wb_message_get_int (to_server, "timestamp"), ==, timestamp);
    g_assert_cmpint (wb_message_get_int (to_client, "timestamp"), ==, timestamp);
  }
  {
    JsonObject *payload = json_object_new ();
    g_autoptr (JsonNode) node = NULL;
    g_autoptr (WbMessage) message = NULL;

    json_object_set_string_member (payload, "stream_id", "stream_abc123");
    json_object_set_int_member (payload, "bitrate", 4500);
    json_object_set_double_member (payload, "fps", 29.97);
    json_object_set_double_member (payload, "packet_loss", 0.25);
    json_object_set_int_member (payload, "latency", 42);
    node = wb_message_new_enveloped ("stream.health", payload);
    message = reparse (node, WB_DIRECTION_TO_CLIENT);
    g_assert_cmpint (message->type, ==, WB_MESSAGE_STREAM_HEALTH);
    g_assert_cmpstr (message->stream_id, ==, "stream_abc123");
    g_assert_cmpint (wb_message_get_int (message, "bitrate"), ==, 4500);
    g_assert_cmpfloat_with_epsilon (wb_message_get_double (message, "fps"), 29.97, 1e-9);
    g_assert_cmpfloat_with_epsilon (wb_message_get_double (message, "packet_loss"), 0.25, 1e-9);
    g_assert_cmpint (wb_message_get_int (message, "latency"), ==, 42);
  }
  {
    JsonObject *details = json_object_new ();
    g_autoptr (JsonNode) node = NULL;
    g_autoptr (WbMessage) message = NULL;
    JsonObject *parsed_details;

    json_object_set_string_member (details, "stream_id", "stream_abc123");
    node = wb_message_new_error ("rate_limited", "slow down", details);
    message = reparse (node, WB_DIRECTION_TO_CLIENT);
    g_assert_cmpint (message->type, ==, WB_MESSAGE_ERROR);
    g_assert_null (message->stream_id);
    g_assert_cmpstr (wb_message_get_string (message, "code"), ==, "rate_limited");
    g_assert_cmpstr (wb_message_get_string (message, "message"), ==, "slow down");
    parsed_details = json_object_get_object_member (message->body, "details");
    g_assert_nonnull (parsed_details);
    g_assert_cmpstr (json_object_get_string_member (parsed_details, "stream_id"), ==,
                     "stream_abc123");
  }
  {
    g_autoptr (JsonNode) node = wb_message_new_error ("invalid_json", "bad", NULL);
    g_autoptr (WbMessage) message = reparse (node, WB_DIRECTION_TO_CLIENT);
    JsonNode *details = json_object_get_member (message->body, "details");

    /* Clients can rely on "details" being an object. */
    g_assert_nonnull (details);
    g_assert_true (JSON_NODE_HOLDS_OBJECT (details));
    g_assert_cmpuint (json_object_get_size (json_node_get_object (details)), ==, 0);
  }
}

static void
test_round_trip_samples (void)
{
  /* Every schema sample survives parse → serialize → parse unchanged. */
  for (gsize s = 0; s < G_N_ELEMENTS (schemas); s++)
    {
      g_autofree char *json = build_sample (&schemas[s], -1, -1, NULL);
      g_autoptr (WbMessage) first = parse_ok (json, schemas[s].direction);
      g_autoptr (WbMessage) second = reparse (first->root, schemas[s].direction);

      g_assert_cmpint (first->type, ==, second->type);
      g_assert_cmpstr (first->stream_id, ==, second->stream_id);
      g_assert_true (json_node_equal (first->root, second->root));
    }
}

static void
test_framing (void)
{
  /* Everything that could end or split a line in some reader. */
  static const char text[] = "one\ntwo\rthree\r\nfour\xe2\x80\xa8"
                             "five\xe2\x80\xa9six \\u0000 seven\\n\t\"q\"\\ \x01\x1f\x7f end";
  g_autoptr (JsonNode) node = wb_message_new_chat ("stream\nid", text);
  g_autoptr (GBytes) line = wb_json_to_line (node);
  gsize length = 0;
  const char *data = g_bytes_get_data (line, &length);
  g_autoptr (WbMessage) message = NULL;

  g_assert_cmpuint (length, >, 1);
  g_assert_cmpint (data[length - 1], ==, '\n');
  g_assert_null (memchr (data, '\n', length - 1));
  g_assert_null (memchr (data, '\r', length - 1));
  g_assert_null (memchr (data, '\0', length));
  g_assert_true (g_utf8_validate_len (data, length, NULL));

  /* Strict JSON, U+001F included (json-glib 1.6 writes it raw). */
  g_assert_null (memchr (data, '\x1f', length));
  g_assert_nonnull (strstr (data, "\\u001f"));

  /* Both as the socket reader sees it (no terminator) and whole. A newline
   * is no part of an identifier, so the message is refused for that, but
   * only after the JSON was read. */
  for (gsize cut = 1; cut <= 2; cut++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (JsonParser) parser = json_parser_new ();
      JsonObject *root;

      g_assert_true (wb_json_strict_check (data, length + 1 - cut, WB_MESSAGE_MAX_DEPTH, NULL));
      g_assert_true (json_parser_load_from_data (parser, data, (gssize)(length + 1 - cut), NULL));
      root = json_node_get_object (json_parser_get_root (parser));
      g_assert_cmpstr (json_object_get_string_member (root, "message"), ==, text);
      g_assert_cmpstr (json_object_get_string_member (root, "stream_id"), ==, "stream\nid");
      message = wb_message_parse (data, length + 1 - cut, WB_DIRECTION_TO_SERVER, &error);
      g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_FIELD);
      g_assert_null (message);
    }
  {
    g_autoptr (JsonNode) valid = wb_message_new_chat ("stream_id", text);
    g_autoptr (GBytes) valid_line = wb_json_to_line (valid);

    message = parse_ok_len (g_bytes_get_data (valid_line, NULL), g_bytes_get_size (valid_line),
                            WB_DIRECTION_TO_SERVER);
    g_assert_cmpstr (wb_message_get_string (message, "message"), ==, text);
  }
}

static void
test_escaped_nul (void)
{
  /* A C string cannot hold U+0000 and json-glib cuts the string there: "s\u0000x"
   * would be routed as "s". Valid JSON, refused as a message, anywhere. */
  static const char *const inputs[] = {
    "{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"ab\\u0000cd\"}",
    "{\"type\":\"subscribe\",\"stream_id\":\"s\\u0000x\"}",
    "{\"type\":\"status\",\"id\":\"\\u0000\"}",
    "{\"type\":\"status\",\"\\u0000\":1}",
    NULL,
  };

  for (const char *const *input = inputs; *input != NULL; input++)
    expect_error (*input, WB_DIRECTION_TO_SERVER, WB_MESSAGE_ERROR_NUL_CHARACTER);
  expect_error ("{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"s\\u0000x\","
                "\"bitrate\":1,\"fps\":1,\"packet_loss\":0,\"latency\":1}}",
                WB_DIRECTION_TO_CLIENT, WB_MESSAGE_ERROR_NUL_CHARACTER);
  /* A syntax error anywhere wins: that is invalid JSON, whatever else. */
  expect_error ("{\"type\":\"status\",\"x\":\"\\u0000\",\"y\":0x10}", WB_DIRECTION_TO_SERVER,
                WB_MESSAGE_ERROR_INVALID_JSON);
  /* "\\u0000" is a backslash and "u0000", not U+0000. */
  {
    g_autoptr (WbMessage) message
        = parse_ok ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"a\\\\u0000\"}",
                    WB_DIRECTION_TO_SERVER);

    g_assert_cmpstr (wb_message_get_string (message, "message"), ==, "a\\u0000");
  }
}

static void
test_huge_message (void)
{
  g_autoptr (GString) json = g_string_new (
      "{\"type\":\"chat.message\",\"payload\":{\"stream_id\":\"s\",\"message_id\":\"m\","
      "\"user_id\":\"u\",\"username\":\"n\",\"timestamp\":\"t\",\"message\":\"");
  g_autoptr (WbMessage) message = NULL;
  g_autoptr (GBytes) line = NULL;

  for (gsize i = 0; i < HUGE_TEXT_BYTES / 8; i++)
    g_string_append (json, i % 2 ? "abcdefgh" : "\xe2\x82\xac\xc3\xa9xyz");
  g_string_append_c (json, '"');
  for (int i = 0; i < HUGE_EXTRA_MEMBERS; i++)
    g_string_append_printf (json, ",\"extra_%d\":[%d,\"v\",{\"k\":null}]", i, i);
  g_string_append (json, "},\"extra\":true}");

  message = parse_ok_len (json->str, json->len, WB_DIRECTION_TO_CLIENT);
  g_assert_cmpint (message->type, ==, WB_MESSAGE_CHAT_MESSAGE);
  g_assert_cmpuint (strlen (wb_message_get_string (message, "message")), ==, HUGE_TEXT_BYTES);
  g_assert_cmpuint (json_object_get_size (message->body), ==, 6 + HUGE_EXTRA_MEMBERS);

  line = wb_json_to_line (message->root);
  {
    gsize length = 0;
    const char *data = g_bytes_get_data (line, &length);

    g_assert_null (memchr (data, '\n', length - 1));
    g_assert_cmpint (data[length - 1], ==, '\n');
  }
}

static void
test_extra_members (void)
{
  /* Unknown members are kept, for forward compatibility with WAVE. */
  g_autoptr (WbMessage) message = parse_ok (
      "{\"type\":\"unsubscribe\",\"stream_id\":\"s\",\"future\":{\"a\":[1,2]},\"id\":\"x\"}",
      WB_DIRECTION_TO_SERVER);

  g_assert_true (json_object_has_member (message->body, "future"));
}

/* Server frames on one line are kept byte for byte, so the bridge forwards
 * "exactly as received"; a frame spread over lines must not be. */
static void
test_verbatim_line (void)
{
  static const char one_line[] = "{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"s1\","
                                 "\"bitrate\":2634.6,\"fps\":30,\"packet_loss\":1e-3,"
                                 "\"latency\":12,\"extra\":\"kept\"}}";
  static const char two_lines[] = "{\"type\":\"pong\",\n\"payload\":{\"timestamp\":1}}";
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) kept
      = wb_message_parse (one_line, strlen (one_line), WB_DIRECTION_TO_CLIENT, &error);
  g_autoptr (WbMessage) spread = NULL;
  g_autoptr (WbMessage) request = NULL;
  gsize size = 0;
  const char *bytes;

  g_assert_no_error (error);
  g_assert_nonnull (kept->line);
  bytes = g_bytes_get_data (kept->line, &size);
  g_assert_cmpuint (size, ==, strlen (one_line) + 1);
  g_assert_cmpmem (bytes, size - 1, one_line, strlen (one_line));
  g_assert_cmpint (bytes[size - 1], ==, '\n');

  spread = wb_message_parse (two_lines, strlen (two_lines), WB_DIRECTION_TO_CLIENT, &error);
  g_assert_no_error (error);
  g_assert_null (spread->line);

  request = wb_message_parse ("{\"type\":\"status\"}", 17, WB_DIRECTION_TO_SERVER, &error);
  g_assert_no_error (error);
  g_assert_null (request->line);
}

/* json-glib parses the first value and ignores the rest: a second request on
 * the same line must be an error, not silently lost. */
static void
test_trailing_data (void)
{
  static const char *const inputs[] = {
    "{\"type\":\"status\"}{\"type\":\"ping\"}",
    "{\"type\":\"status\"} {\"type\":\"ping\"}",
    "{\"type\":\"status\"}x",
    "{\"type\":\"status\"}]",
  };

  for (guint i = 0; i < G_N_ELEMENTS (inputs); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (WbMessage) message
          = wb_message_parse (inputs[i], strlen (inputs[i]), WB_DIRECTION_TO_SERVER, &error);

      g_assert_null (message);
      g_assert_error (error, WB_MESSAGE_ERROR_DOMAIN, WB_MESSAGE_ERROR_INVALID_JSON);
    }
  {
    static const char spaced[] = " {\"type\":\"status\",\"x\":{\"a\":[1]}} \t ";
    g_autoptr (GError) error = NULL;
    g_autoptr (WbMessage) message
        = wb_message_parse (spaced, strlen (spaced), WB_DIRECTION_TO_SERVER, &error);

    g_assert_no_error (error);
    g_assert_cmpint (message->type, ==, WB_MESSAGE_STATUS);
  }
}

/* Thousands of duplicates de-duplicate in one pass, to the same result. */
static void
test_dup_events_many_duplicates (void)
{
  GString *json = g_string_new ("{\"type\":\"subscribe\",\"stream_id\":\"s\",\"events\":[");
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message = NULL;
  g_auto (GStrv) events = NULL;

  for (guint i = 0; i < 5000; i++)
    g_string_append_printf (json, "%s\"%s\"", i == 0 ? "" : ",",
                            i % 2 ? "viewer.left" : "chat.message");
  g_string_append (json, "]}");
  message = wb_message_parse (json->str, json->len, WB_DIRECTION_TO_SERVER, &error);
  g_assert_no_error (error);
  events = wb_message_dup_events (message);
  g_assert_cmpuint (g_strv_length (events), ==, 2);
  g_assert_cmpstr (events[0], ==, "chat.message");
  g_assert_cmpstr (events[1], ==, "viewer.left");
  g_string_free (json, TRUE);
}

/* Doubles come out as the shortest text that reads back the same; integers,
 * strings that look like numbers and integral doubles keep their kind. */
static void
test_shortest_doubles (void)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonNode) node = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autofree char *text = NULL;
  JsonObject *object;
  static const double values[] = { 2601.8, 0.0064, -0.5, 1e300, 5e-324, 0.1 + 0.2, 123456789.125 };
  static const char *const names[] = { "a", "b", "c", "d", "e", "f", "g" };

  json_builder_begin_object (builder);
  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    {
      json_builder_set_member_name (builder, names[i]);
      json_builder_add_double_value (builder, values[i]);
    }
  json_builder_set_member_name (builder, "fps");
  json_builder_add_double_value (builder, 60.0);
  json_builder_set_member_name (builder, "views");
  json_builder_add_int_value (builder, 5000000000);
  json_builder_set_member_name (builder, "text");
  json_builder_add_string_value (builder, "2601.8000000000002 \"1e5\" -3");
  json_builder_end_object (builder);
  node = json_builder_get_root (builder);

  text = wb_json_to_string (node, NULL);
  g_assert_nonnull (strstr (text, "\"a\":2601.8,"));
  g_assert_nonnull (strstr (text, "\"b\":0.0064,"));
  g_assert_nonnull (strstr (text, "\"c\":-0.5,"));
  g_assert_nonnull (strstr (text, "\"fps\":60.0,"));
  g_assert_nonnull (strstr (text, "\"views\":5000000000,"));
  g_assert_nonnull (strstr (text, "2601.8000000000002 \\\"1e5\\\" -3"));

  /* Every value reads back exactly, with its kind. */
  g_assert_true (json_parser_load_from_data (parser, text, -1, NULL));
  object = json_node_get_object (json_parser_get_root (parser));
  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    g_assert_cmpfloat (json_object_get_double_member (object, names[i]), ==, values[i]);
  g_assert_cmpint (json_node_get_value_type (json_object_get_member (object, "fps")), ==,
                   G_TYPE_DOUBLE);
  g_assert_cmpint (json_object_get_int_member (object, "views"), ==, 5000000000);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  add_schema_tests ();
  g_test_add_func ("/message/wrong-direction/shapes", test_wrong_direction_shapes);
  g_test_add_func ("/message/envelope", test_envelope);
  g_test_add_func ("/message/type-field", test_type_field);
  g_test_add_func ("/message/unknown-type", test_unknown_type);
  g_test_add_func ("/message/unknown-type-long-name", test_unknown_type_long_name);
  g_test_add_func ("/message/type-names", test_type_names);
  g_test_add_func ("/message/recording-id-null", test_recording_id_null);
  g_test_add_func ("/message/keepalive-shapes", test_keepalive_shapes);
  g_test_add_func ("/message/invalid-json", test_invalid_json);
  g_test_add_func ("/message/not-object", test_not_object);
  g_test_add_func ("/message/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/message/escaped-surrogates", test_escaped_surrogates);
  g_test_add_func ("/message/non-finite-numbers", test_non_finite_numbers);
  g_test_add_func ("/message/depth/limit", test_depth_limit);
  g_test_add_func ("/message/depth/strings", test_depth_strings);
  g_test_add_func ("/message/depth/not-fooled", test_depth_not_fooled);
  g_test_add_func ("/message/limits/stream-id", test_stream_id_limits);
  g_test_add_func ("/message/limits/outbound-text", test_outbound_text_limits);
  g_test_add_func ("/message/subscribe/unknown-event", test_subscribe_unknown_event);
  g_test_add_func ("/message/subscribe/dup-events", test_dup_events);
  g_test_add_func ("/message/request-id", test_request_id);
  g_test_add_func ("/message/json-readers", test_json_readers);
  g_test_add_func ("/message/round-trip/builders", test_round_trip_builders);
  g_test_add_func ("/message/round-trip/samples", test_round_trip_samples);
  g_test_add_func ("/message/framing", test_framing);
  g_test_add_func ("/message/escaped-nul", test_escaped_nul);
  g_test_add_func ("/message/huge", test_huge_message);
  g_test_add_func ("/message/extra-members", test_extra_members);
  g_test_add_func ("/message/verbatim-line", test_verbatim_line);
  g_test_add_func ("/message/trailing-data", test_trailing_data);
  g_test_add_func ("/message/shortest-doubles", test_shortest_doubles);
  g_test_add_func ("/message/subscribe/dup-events-many", test_dup_events_many_duplicates);

  return g_test_run ();
}
