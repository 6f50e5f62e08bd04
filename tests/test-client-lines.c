/* SPDX-License-Identifier: MIT */
/*
 * Nothing the bridge writes to a local client can be invalid JSON or
 * invalid UTF-8, whatever upstream sent (issue 12).
 *
 * A property test over the path every upstream event takes to a socket
 * client: frames made from valid WAVE events by substituting hostile values
 * and by random byte mutations go through wb_message_parse (as upstream.c
 * calls it), and every one accepted becomes a WbEvent whose line (shared
 * by all subscribers) and cached copy (replayed on subscribe) are checked:
 * one line ending in '\n', valid UTF-8, RFC 8259 by json-strict.c (whose
 * own table of cases is tests/test-json-strict.c), and readable by the
 * bridge's own parser with the same meaning. The bridge's own messages
 * (bridge.status and friends) are checked with every control character and
 * with text made from random bytes by text.c.
 */
#define G_LOG_DOMAIN "wave-test-client-lines"

#include "event.h"
#include "json-strict.h"
#include "message.h"
#include "text.h"

#include <string.h>

#define MUTATION_ROUNDS 20000
#define RANDOM_TEXT_ROUNDS 2000
#define RANDOM_TEXT_MAX_BYTES 64

/* One valid frame per server → client type; "%s" marks nothing: values
 * are substituted by name below. */
static const char *const templates[] = {
  "{\"type\":\"stream.started\",\"payload\":{\"stream_id\":\"stream_abc123\","
  "\"started_at\":\"2024-01-01T00:00:00Z\",\"protocol\":\"rtmp\",\"ingest_endpoint\":\"rtmp://i/"
  "x\"}}",
  "{\"type\":\"stream.ended\",\"payload\":{\"stream_id\":\"stream_abc123\","
  "\"ended_at\":\"2024-01-01T01:00:00Z\",\"duration\":3600.5,\"recording_id\":null}}",
  "{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"stream_abc123\",\"bitrate\":4500.0,"
  "\"fps\":30,\"packet_loss\":0.001,\"latency\":38.5}}",
  "{\"type\":\"viewer.joined\",\"payload\":{\"stream_id\":\"stream_abc123\",\"viewer_id\":\"v1\","
  "\"country\":\"NL\",\"device\":\"tv\",\"joined_at\":\"2024-01-01T00:00:01Z\"}}",
  "{\"type\":\"viewer.left\",\"payload\":{\"stream_id\":\"stream_abc123\",\"viewer_id\":\"v1\","
  "\"watch_time\":12,\"left_at\":\"2024-01-01T00:00:13Z\"}}",
  "{\"type\":\"analytics.update\",\"payload\":{\"stream_id\":\"stream_abc123\","
  "\"concurrent_viewers\":5,\"total_views\":10,\"peak_viewers\":7,\"average_watch_time\":12.5}}",
  "{\"type\":\"chat.message\",\"payload\":{\"stream_id\":\"stream_abc123\",\"message_id\":\"m1\","
  "\"user_id\":\"u1\",\"username\":\"ana\",\"message\":\"hello\",\"timestamp\":\"2024-01-01T00:00:"
  "02Z\"}}",
  "{\"type\":\"reaction.received\",\"payload\":{\"stream_id\":\"stream_abc123\",\"reaction\":\"x\","
  "\"count\":3,\"timestamp\":\"2024-01-01T00:00:03Z\"}}",
  "{\"type\":\"error\",\"payload\":{\"code\":\"c\",\"message\":\"m\",\"details\":{\"stream_id\":"
  "\"stream_abc123\"}}}",
};

/* Values put in place of a member's value: lenient numbers and strings
 * json-glib reads, and odd but valid ones the bridge must pass on intact. */
static const char *const hostile_values[] = {
  "0x10",
  "$ff",
  "0b101",
  "017",
  "-0",
  "01.5",
  ".5",
  "1.",
  "+1",
  "1e400",
  "-1e400",
  "99999999999999999999",
  "9223372036854775808",
  "1E5",
  "0.1e-5",
  "-0.0",
  "NaN",
  "Infinity",
  "\"\\u0000\"",
  "\"s\\u0000x\"",
  "\"\\ud800\"",
  "\"\\udc00x\"",
  "\"\\ud83d\\ude00\"",
  "\"\\u001f\\u0001\\u007f\"",
  "\"\x01\"",
  "\"\x1f\"",
  "\"a\tb\"",
  "\"\\x41\"",
  "\"\\'\"",
  "\"\xef\xbf\xbe\"",
  "\"\\ufffe\"",
  "\"\\uFDD0\"",
  "\"\xe2\x80\xa8\\u2029\"",
  "\"\xc0\xaf\"",
  "\"\xed\xa0\x80\"",
  "\"\xff\"",
  "'single'",
  "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
  "\"é€😀\"",
  "null",
  "true",
  "[]",
  "{}",
  "{\"a\":1,\"a\":2}",
  "[1,]",
  "\"unterminated",
};

/* Bytes the random mutations insert or overwrite with. */
static const char mutation_bytes[] = "{}[],:\"\\ 0123456789.eE+-xabuU$'/\t\n\r\x01\x1f\x7f"
                                     "\x80\xbf\xc0\xc3\xa9\xe2\x82\xac\xed\xa0\xef\xbf\xbe\xf0\xff";

typedef struct
{
  guint accepted;
  guint refused;
  guint lines;
} Counts;

static void
check_line (GBytes *line, const char *what)
{
  gsize length = 0;
  const char *data = g_bytes_get_data (line, &length);
  g_autoptr (GError) error = NULL;

  g_assert_cmpuint (length, >=, 3);
  g_assert_cmpint (data[length - 1], ==, '\n');
  g_assert_null (memchr (data, '\n', length - 1));
  g_assert_null (memchr (data, '\r', length - 1));
  if (!g_utf8_validate_len (data, length, NULL))
    g_error ("%s: line is not UTF-8", what);
  if (!wb_json_strict_check (data, length - 1, WB_MESSAGE_MAX_DEPTH, &error))
    {
      g_autofree char *shown = g_strescape (data, NULL);

      g_error ("%s: line is not strict JSON (%s): %s", what, error->message, shown);
    }
}

/* Every line a client can get for @message, checked; the forwarded line
 * must mean what the bridge understood. */
static void
check_message_lines (const WbMessage *message, Counts *counts)
{
  g_autoptr (WbEvent) event = wb_event_new_from_message (message);
  g_autoptr (WbEvent) cached = wb_event_new_cached (event, 42);
  GBytes *line = wb_event_get_line (event);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) again = NULL;

  check_line (line, "forwarded event");
  check_line (wb_event_get_line (cached), "cached event");
  counts->lines += 2;
  again = wb_message_parse (g_bytes_get_data (line, NULL), g_bytes_get_size (line) - 1,
                            WB_DIRECTION_TO_CLIENT, &error);
  g_assert_no_error (error);
  g_assert_true (json_node_equal (again->root, message->root));
  g_assert_cmpstr (again->stream_id, ==, message->stream_id);
}

static void
try_frame (const char *data, gsize length, Counts *counts)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message = wb_message_parse (data, length, WB_DIRECTION_TO_CLIENT, &error);

  if (message == NULL)
    {
      /* The reason is logged and counted by upstream.c. */
      g_assert_nonnull (error);
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      counts->refused++;
      return;
    }
  counts->accepted++;
  check_message_lines (message, counts);
}

/* Each member value of each template replaced by each hostile value. */
static void
test_hostile_values (void)
{
  Counts counts = { 0 };

  for (gsize t = 0; t < G_N_ELEMENTS (templates); t++)
    {
      const char *template = templates[t];

      /* A value starts after every ':' outside strings in these templates. */
      for (const char *colon = strchr (template, ':'); colon != NULL;
           colon = strchr (colon + 1, ':'))
        {
          const char *value = colon + 1;
          const char *end = value;

          if (*value == '{' || colon[-1] != '"')
            continue; /* the payload object itself, or a ':' inside a string */
          if (*end == '"')
            end = strchr (end + 1, '"') + 1;
          else
            end += strcspn (end, ",}");
          for (gsize v = 0; v < G_N_ELEMENTS (hostile_values); v++)
            {
              g_autoptr (GString) frame = g_string_new_len (template, value - template);

              g_string_append (frame, hostile_values[v]);
              g_string_append (frame, end);
              try_frame (frame->str, frame->len, &counts);
            }
        }
    }
  g_test_message ("%u frames accepted, %u refused, %u lines checked", counts.accepted,
                  counts.refused, counts.lines);
  g_assert_cmpuint (counts.accepted, >, 100);
  g_assert_cmpuint (counts.refused, >, 1000);
}

static void
test_random_mutations (void)
{
  Counts counts = { 0 };
  g_autoptr (GString) frame = g_string_new (NULL);

  for (guint round = 0; round < MUTATION_ROUNDS; round++)
    {
      guint n = (guint)g_test_rand_int_range (1, 4);

      g_string_assign (frame, templates[g_test_rand_int_range (0, G_N_ELEMENTS (templates))]);
      for (guint i = 0; i < n; i++)
        {
          gsize at = (gsize)g_test_rand_int_range (0, (gint32)frame->len);
          char byte = mutation_bytes[g_test_rand_int_range (0, sizeof mutation_bytes - 1)];

          switch (g_test_rand_int_range (0, 4))
            {
            case 0:
              g_string_insert_c (frame, (gssize)at, byte);
              break;
            case 1:
              frame->str[at] = byte;
              break;
            case 2:
              g_string_erase (frame, (gssize)at, 1);
              break;
            default:
              g_string_insert (
                  frame, (gssize)at,
                  hostile_values[g_test_rand_int_range (0, G_N_ELEMENTS (hostile_values))]);
              break;
            }
        }
      try_frame (frame->str, frame->len, &counts);
    }
  g_test_message ("%u frames accepted, %u refused, %u lines checked", counts.accepted,
                  counts.refused, counts.lines);
  g_assert_cmpuint (counts.accepted, >, MUTATION_ROUNDS / 50);
  g_assert_cmpuint (counts.refused, >, MUTATION_ROUNDS / 2);
}

/* The bridge's own messages: every string json-glib may be handed. */
static void
check_own_message (const char *text, const char *stream_id)
{
  JsonObject *payload = json_object_new ();
  g_autoptr (WbEvent) event = NULL;

  json_object_set_string_member (payload, "last_error", text);
  json_object_set_string_member (payload, "state", "waiting");
  json_object_set_double_member (payload, "bitrate", 2601.8);
  event = wb_event_new ("bridge.status", stream_id, payload);
  check_line (wb_event_get_line (event), "bridge message");
}

static void
test_own_messages (void)
{
  g_autoptr (GString) random = g_string_new (NULL);

  /* Every control character (json-glib 1.6 writes U+001F raw) and a few
   * characters that are valid JSON but odd. */
  for (gunichar c = 1; c < 0x20; c++)
    {
      char text[8] = { 'a', (char)c, 'z', 0 };

      check_own_message (text, NULL);
    }
  check_own_message ("\x7f\xc2\x80\xc2\x9f\xe2\x80\xa8\xef\xbf\xbe\xef\xb7\x90", "s");

  /* Text from outside, as upstream.c keeps it: random bytes through text.c. */
  for (guint round = 0; round < RANDOM_TEXT_ROUNDS; round++)
    {
      g_autofree char *safe = NULL;
      guint n = (guint)g_test_rand_int_range (0, RANDOM_TEXT_MAX_BYTES);

      g_string_truncate (random, 0);
      for (guint i = 0; i < n; i++)
        g_string_append_c (random, (char)g_test_rand_int_range (0, 256));
      safe = wb_text_sanitize (random->str, (gssize)random->len, WB_TEXT_MAX_BYTES);
      check_own_message (safe, NULL);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/client-lines/hostile-values", test_hostile_values);
  g_test_add_func ("/client-lines/random-mutations", test_random_mutations);
  g_test_add_func ("/client-lines/own-messages", test_own_messages);
  return g_test_run ();
}
