/* SPDX-License-Identifier: MIT */
/*
 * WbEvent (daemon/event.c): one message as local clients get it. Its line
 * is made once and shared; a one-line server frame is forwarded byte for
 * byte; the bridge's own events; cached copies sharing the payload; and
 * which stream an upstream error belongs to.
 */
#define G_LOG_DOMAIN "wave-test-event"

#include <string.h>

#include "event.h"

static WbMessage *
parse_from_server (const char *text)
{
  g_autoptr (GError) error = NULL;
  WbMessage *message = wb_message_parse (text, strlen (text), WB_DIRECTION_TO_CLIENT, &error);

  g_assert_no_error (error);
  return message;
}

static WbEvent *
event_from_server (const char *text)
{
  g_autoptr (WbMessage) message = parse_from_server (text);

  /* The event keeps what it needs: the message goes away here. */
  return wb_event_new_from_message (message);
}

static char *
line_text (WbEvent *event)
{
  gsize length = 0;
  const char *data = g_bytes_get_data (wb_event_get_line (event), &length);

  return g_strndup (data, length);
}

static JsonObject *
line_object (WbEvent *event)
{
  g_autofree char *text = line_text (event);
  g_autoptr (JsonNode) node = NULL;

  /* One line: its only newline is the terminator. */
  g_assert_true (strchr (text, '\n') == text + strlen (text) - 1);
  node = json_from_string (text, NULL);
  g_assert_nonnull (node);
  return json_node_dup_object (node);
}

/* ---- lines ------------------------------------------------------------------ */

static void
test_one_line_frame_verbatim (void)
{
  /* The server's own spacing, member order and number spelling. */
  const char *frame = "{ \"payload\" : {\"latency\":42.0, \"stream_id\":\"s1\",\"bitrate\":4.5e3,"
                      "\"fps\":60,\"packet_loss\":0.250}, \"type\":\"stream.health\" }";
  g_autoptr (WbMessage) message = parse_from_server (frame);
  g_autoptr (WbEvent) event = wb_event_new_from_message (message);
  g_autofree char *expected = g_strconcat (frame, "\n", NULL);
  g_autofree char *text = line_text (event);

  g_assert_cmpstr (text, ==, expected);
  /* Not a copy either: the parser's bytes are the event's. */
  g_assert_true (wb_event_get_line (event) == message->line);
  g_assert_cmpstr (wb_event_get_type_name (event), ==, "stream.health");
  g_assert_cmpint (wb_event_get_message_type (event), ==, WB_MESSAGE_STREAM_HEALTH);
  g_assert_cmpstr (wb_event_get_stream_id (event), ==, "s1");
}

static void
test_multi_line_frame_reserialized (void)
{
  /* A frame spread over lines would break the socket's framing. */
  g_autoptr (WbEvent) event
      = event_from_server ("{\"type\":\"stream.health\",\n\"payload\":{\"stream_id\":\"s1\","
                           "\"bitrate\":4500,\"fps\":60,\"packet_loss\":0.25,\"latency\":42}}");
  g_autofree char *text = line_text (event);

  g_assert_cmpstr (text, ==,
                   "{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"s1\",\"bitrate\":4500,"
                   "\"fps\":60,\"packet_loss\":0.25,\"latency\":42}}\n");
  g_assert_cmpstr (wb_event_get_stream_id (event), ==, "s1");
}

static void
test_line_made_once_and_shared (void)
{
  JsonObject *payload = json_object_new ();
  g_autoptr (WbEvent) event = NULL;
  g_autoptr (GBytes) first = NULL;
  g_autofree char *text = NULL;

  /* A newline in a value must not end the line early. */
  json_object_set_string_member (payload, "reason", "two\nlines");
  event = wb_event_new ("bridge.state", NULL, payload);
  /* Held, so a second serialization could not reuse its address. */
  first = g_bytes_ref (wb_event_get_line (event));
  g_assert_true (wb_event_get_line (event) == first);
  text = line_text (event);
  g_assert_cmpstr (text, ==,
                   "{\"type\":\"bridge.state\",\"payload\":{\"reason\":\"two\\nlines\"}}\n");
}

/* ---- the bridge's own events ------------------------------------------------- */

static void
test_bridge_event (void)
{
  g_autofree char *stream_id = g_strdup ("s1");
  JsonObject *payload = json_object_new ();
  g_autoptr (WbEvent) event = NULL;
  g_autoptr (JsonObject) object = NULL;

  json_object_set_int_member (payload, "gap_ms", 1500);
  event = wb_event_new ("bridge.resync", stream_id, payload);
  /* The event keeps its own copy of the id. */
  memset (stream_id, 'X', strlen (stream_id));
  g_clear_pointer (&stream_id, g_free);

  g_assert_cmpstr (wb_event_get_type_name (event), ==, "bridge.resync");
  /* Not a WAVE type: no message type, so no client filter matches it. */
  g_assert_cmpint (wb_event_get_message_type (event), ==, WB_MESSAGE_TYPE_INVALID);
  g_assert_cmpstr (wb_event_get_stream_id (event), ==, "s1");
  g_assert_true (wb_event_get_payload (event) == payload);
  object = line_object (event);
  g_assert_cmpstr (json_object_get_string_member (object, "type"), ==, "bridge.resync");
  g_assert_cmpint (
      json_object_get_int_member (json_object_get_object_member (object, "payload"), "gap_ms"), ==,
      1500);

  {
    g_autoptr (WbEvent) no_stream = wb_event_new ("bridge.status", NULL, json_object_new ());

    g_assert_null (wb_event_get_stream_id (no_stream));
  }
}

static void
test_refcount (void)
{
  WbEvent *event = event_from_server ("{\"type\":\"stream.health\",\"payload\":{\"stream_id\":"
                                      "\"s1\",\"bitrate\":1,\"fps\":2,\"packet_loss\":0,"
                                      "\"latency\":3}}");
  WbEvent *again = wb_event_ref (event);

  g_assert_true (again == event);
  wb_event_unref (event);
  /* Still alive through the second reference. */
  g_assert_cmpstr (wb_event_get_stream_id (again), ==, "s1");
  wb_event_unref (again);
  wb_event_unref (NULL);
}

/* ---- cached copies ----------------------------------------------------------- */

static void
test_cached (void)
{
  g_autoptr (WbEvent) event
      = event_from_server ("{\"type\":\"analytics.update\",\"payload\":{\"stream_id\":\"s1\","
                           "\"concurrent_viewers\":10,\"total_views\":20,\"peak_viewers\":15,"
                           "\"average_watch_time\":61.5}}");
  g_autofree char *original_line = line_text (event);
  g_autoptr (WbEvent) cached = wb_event_new_cached (event, 1234);
  g_autoptr (WbEvent) from_the_future = wb_event_new_cached (event, -5);
  g_autoptr (JsonObject) object = line_object (cached);
  g_autoptr (JsonObject) future_object = line_object (from_the_future);
  g_autofree char *original_after = line_text (event);

  g_assert_cmpstr (wb_event_get_type_name (cached), ==, "analytics.update");
  g_assert_cmpint (wb_event_get_message_type (cached), ==, WB_MESSAGE_ANALYTICS_UPDATE);
  g_assert_cmpstr (wb_event_get_stream_id (cached), ==, "s1");
  /* Events are immutable: the payload is shared, not copied. */
  g_assert_true (wb_event_get_payload (cached) == wb_event_get_payload (event));
  g_assert_true (json_object_get_boolean_member (object, "cached"));
  g_assert_cmpint (json_object_get_int_member (object, "age_ms"), ==, 1234);
  g_assert_cmpint (wb_event_get_age_ms (cached), ==, 1234);
  g_assert_cmpint (wb_event_get_age_ms (from_the_future), ==, 0);
  g_assert_cmpint (wb_event_get_age_ms (event), ==, -1);
  g_assert_cmpint (
      json_object_get_int_member (json_object_get_object_member (object, "payload"), "total_views"),
      ==, 20);
  g_assert_cmpint (json_object_get_int_member (future_object, "age_ms"), ==, 0);
  g_assert_cmpstr (original_after, ==, original_line);
}

static void
test_cached_leaves_original_alone (void)
{
  JsonObject *payload = json_object_new ();
  g_autoptr (WbEvent) event = NULL;
  g_autoptr (WbEvent) cached = NULL;
  g_autofree char *original_line = NULL;

  json_object_set_int_member (payload, "count", 3);
  event = wb_event_new ("bridge.dropped", NULL, payload);
  /* Copied before the original was ever serialized... */
  cached = wb_event_new_cached (event, 10);
  g_assert_nonnull (wb_event_get_line (cached));
  /* ...the original still serializes as itself. */
  original_line = line_text (event);
  g_assert_cmpstr (original_line, ==, "{\"type\":\"bridge.dropped\",\"payload\":{\"count\":3}}\n");
}

/* ---- errors ------------------------------------------------------------------ */

static void
test_error_stream_id (void)
{
  g_autoptr (WbEvent) with_stream = event_from_server (
      "{\"type\":\"error\",\"payload\":{\"code\":\"rate_limited\",\"message\":\"slow down\","
      "\"details\":{\"stream_id\":\"s1\",\"retry_after\":5}}}");
  g_autoptr (WbEvent) without_details = event_from_server (
      "{\"type\":\"error\",\"payload\":{\"code\":\"internal\",\"message\":\"oops\"}}");
  g_autoptr (WbEvent) details_without_stream = event_from_server (
      "{\"type\":\"error\",\"payload\":{\"code\":\"internal\",\"message\":\"oops\","
      "\"details\":{\"retry_after\":5}}}");
  g_autoptr (WbEvent) numeric_stream = event_from_server (
      "{\"type\":\"error\",\"payload\":{\"code\":\"internal\",\"message\":\"oops\","
      "\"details\":{\"stream_id\":7}}}");

  /* An upstream error concerns the stream its details name, if any. */
  g_assert_cmpstr (wb_event_get_stream_id (with_stream), ==, "s1");
  g_assert_null (wb_event_get_stream_id (without_details));
  g_assert_null (wb_event_get_stream_id (details_without_stream));
  g_assert_null (wb_event_get_stream_id (numeric_stream));
  g_assert_cmpint (wb_event_get_message_type (with_stream), ==, WB_MESSAGE_ERROR);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/event/line/one-line-frame-verbatim", test_one_line_frame_verbatim);
  g_test_add_func ("/event/line/multi-line-frame-reserialized", test_multi_line_frame_reserialized);
  g_test_add_func ("/event/line/made-once-and-shared", test_line_made_once_and_shared);
  g_test_add_func ("/event/bridge-event", test_bridge_event);
  g_test_add_func ("/event/refcount", test_refcount);
  g_test_add_func ("/event/cached", test_cached);
  g_test_add_func ("/event/cached-leaves-original-alone", test_cached_leaves_original_alone);
  g_test_add_func ("/event/error-stream-id", test_error_stream_id);
  return g_test_run ();
}
