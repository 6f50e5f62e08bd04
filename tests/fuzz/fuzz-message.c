/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the WAVE message model. Every input goes through
 * wb_message_parse() in both directions, and whatever is accepted must
 * serialize to one line that parses back to the same message, and its tree
 * (json-tree.c) must be exactly the one json-glib's parser builds.
 *
 * Built as a corpus replayer (unit suite, tests/corpus/message) or with
 * libFuzzer (-Dfuzzing=true, suite fuzz): see tests/fuzz/fuzz.h.
 */
#define G_LOG_DOMAIN "wave-fuzz-message"

#include "fuzz.h"
#include "message.h"

#include <string.h>

static void
check_rejection (const GError *error)
{
  FUZZ_CHECK (error != NULL);
  FUZZ_CHECK (error->domain == WB_MESSAGE_ERROR_DOMAIN);
  FUZZ_CHECK (error->code >= WB_MESSAGE_ERROR_INVALID_UTF8
              && error->code <= WB_MESSAGE_ERROR_NUL_CHARACTER);
  /* Error texts are sent back to clients inside JSON. */
  FUZZ_CHECK (g_utf8_validate (error->message, -1, NULL));
}

/* Reads every member through the typed accessors: none may misbehave on
 * values of another type. */
static void
touch_members (const WbMessage *message)
{
  JsonObjectIter iter;
  const char *name;
  JsonNode *member;

  json_object_iter_init (&iter, message->body);
  while (json_object_iter_next (&iter, &name, &member))
    {
      const char *text = wb_message_get_string (message, name);

      FUZZ_CHECK (text == NULL || g_utf8_validate (text, -1, NULL));
      (void)wb_message_get_int (message, name);
      (void)wb_message_get_double (message, name);
    }
}

static void
check_events (const WbMessage *message)
{
  g_auto (GStrv) events = wb_message_dup_events (message);
  guint n = 0;

  FUZZ_CHECK (events != NULL);
  for (; events[n] != NULL; n++)
    {
      FUZZ_CHECK (wb_message_is_stream_event_name (events[n]));
      FUZZ_CHECK (n == 0 || strcmp (events[n - 1], events[n]) < 0);
    }
  FUZZ_CHECK (n >= 1 && n <= g_strv_length ((char **)wb_message_stream_event_names ()));
}

static void
check_round_trip (const WbMessage *message, WbDirection direction)
{
  g_autoptr (GBytes) line = wb_json_to_line (message->root);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) again = NULL;
  gsize length = 0;
  const char *text = g_bytes_get_data (line, &length);

  /* Exactly one line, whatever the strings held, in strict JSON. */
  FUZZ_CHECK (length >= 1 && text[length - 1] == '\n');
  FUZZ_CHECK (memchr (text, '\n', length - 1) == NULL);
  FUZZ_CHECK (g_utf8_validate_len (text, length, NULL));
  wb_fuzz_check_serialized (text, length - 1, "serialized line");

  again = wb_message_parse (text, length - 1, direction, &error);
  if (again == NULL)
    wb_fuzz_fail (__FILE__, __LINE__, "accepted input serialized to a rejected line (%s): %.*s",
                  error->message, (int)MIN (length, 400), text);
  FUZZ_CHECK (again->type == message->type);
  FUZZ_CHECK (g_strcmp0 (again->stream_id, message->stream_id) == 0);
  FUZZ_CHECK (json_node_equal (again->root, message->root));
}

/* Server messages are forwarded to local clients as received, when they
 * were one line: that text must be what the strictest client accepts. */
static void
check_forwarded_line (const WbMessage *message)
{
  gsize length = 0;
  const char *text = g_bytes_get_data (message->line, &length);

  FUZZ_CHECK (length >= 1 && text[length - 1] == '\n');
  FUZZ_CHECK (memchr (text, '\n', length - 1) == NULL && memchr (text, '\r', length) == NULL);
  wb_fuzz_check_serialized (text, length - 1, "forwarded line");
}

/* Exactly the same tree: types (an integer is not a double), member order,
 * doubles bit for bit (-0.0 is not 0.0). json_node_equal() is looser. */
static gboolean
same_tree (JsonNode *a, JsonNode *b)
{
  if (json_node_get_node_type (a) != json_node_get_node_type (b))
    return FALSE;
  switch (json_node_get_node_type (a))
    {
    case JSON_NODE_OBJECT:
      {
        JsonObjectIter x_iter;
        JsonObjectIter y_iter;
        const char *x_name;
        const char *y_name;
        JsonNode *x_member;
        JsonNode *y_member;

        if (json_object_get_size (json_node_get_object (a))
            != json_object_get_size (json_node_get_object (b)))
          return FALSE;
        json_object_iter_init_ordered (&x_iter, json_node_get_object (a));
        json_object_iter_init_ordered (&y_iter, json_node_get_object (b));
        while (json_object_iter_next_ordered (&x_iter, &x_name, &x_member))
          if (!json_object_iter_next_ordered (&y_iter, &y_name, &y_member)
              || strcmp (x_name, y_name) != 0 || !same_tree (x_member, y_member))
            return FALSE;
        return TRUE;
      }
    case JSON_NODE_ARRAY:
      {
        JsonArray *x = json_node_get_array (a);
        JsonArray *y = json_node_get_array (b);

        if (json_array_get_length (x) != json_array_get_length (y))
          return FALSE;
        for (guint i = 0; i < json_array_get_length (x); i++)
          if (!same_tree (json_array_get_element (x, i), json_array_get_element (y, i)))
            return FALSE;
        return TRUE;
      }
    case JSON_NODE_VALUE:
      if (json_node_get_value_type (a) != json_node_get_value_type (b))
        return FALSE;
      if (json_node_get_value_type (a) == G_TYPE_INT64)
        return json_node_get_int (a) == json_node_get_int (b);
      if (json_node_get_value_type (a) == G_TYPE_DOUBLE)
        {
          double x = json_node_get_double (a);
          double y = json_node_get_double (b);

          return memcmp (&x, &y, sizeof x) == 0;
        }
      if (json_node_get_value_type (a) == G_TYPE_BOOLEAN)
        return json_node_get_boolean (a) == json_node_get_boolean (b);
      return g_strcmp0 (json_node_get_string (a), json_node_get_string (b)) == 0;
    case JSON_NODE_NULL:
    default:
      return TRUE;
    }
}

/* message.c builds its tree itself (json-tree.c) from text the strict
 * checker accepted, for upstream frames a hostile server's: it must be the
 * tree json-glib's parser builds from the same text. */
static void
check_tree_is_json_glib_s (const uint8_t *data, size_t size, const WbMessage *message)
{
  g_autoptr (JsonParser) parser = json_parser_new ();

  if (!json_parser_load_from_data (parser, (const char *)data, (gssize)size, NULL))
    wb_fuzz_fail (__FILE__, __LINE__, "json-glib refuses accepted input: %.*s",
                  (int)MIN (size, 400), (const char *)data);
  if (!same_tree (message->root, json_parser_get_root (parser)))
    wb_fuzz_fail (__FILE__, __LINE__, "json-tree.c and json-glib read differently: %.*s",
                  (int)MIN (size, 400), (const char *)data);
}

static void
check_one (const uint8_t *data, size_t size, WbDirection direction)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message = wb_message_parse ((const char *)data, size, direction, &error);

  if (message == NULL)
    {
      check_rejection (error);
      return;
    }
  FUZZ_CHECK (error == NULL);
  FUZZ_CHECK (message->type > WB_MESSAGE_TYPE_INVALID && message->type < WB_MESSAGE_N_TYPES);
  FUZZ_CHECK (wb_message_type_to_string (message->type) != NULL);
  FUZZ_CHECK (message->root != NULL && JSON_NODE_HOLDS_OBJECT (message->root));
  FUZZ_CHECK (message->body != NULL);
  FUZZ_CHECK (message->stream_id == NULL
              || (message->stream_id[0] != '\0'
                  && strlen (message->stream_id) <= WB_MESSAGE_MAX_STREAM_ID_BYTES));
  FUZZ_CHECK (message->request_id == NULL || JSON_NODE_HOLDS_VALUE (message->request_id)
              || JSON_NODE_HOLDS_NULL (message->request_id));
  if (direction == WB_DIRECTION_TO_SERVER && message->type == WB_MESSAGE_CHAT_MESSAGE)
    {
      const char *text = wb_message_get_string (message, "message");

      FUZZ_CHECK (text != NULL && text[0] != '\0' && strlen (text) <= WB_MESSAGE_MAX_TEXT_BYTES);
    }
  if (message->line != NULL)
    check_forwarded_line (message);
  check_tree_is_json_glib_s (data, size, message);
  touch_members (message);
  if (message->type == WB_MESSAGE_SUBSCRIBE)
    check_events (message);
  check_round_trip (message, direction);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  wb_fuzz_init_logging ();
  check_one (data, size, WB_DIRECTION_TO_SERVER);
  check_one (data, size, WB_DIRECTION_TO_CLIENT);
  return 0;
}
