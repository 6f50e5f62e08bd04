/* SPDX-License-Identifier: MIT */
/*
 * The per-stream cache (daemon/stream-cache.c) alone: the state it keeps
 * from stream.started/ended, stream.health and analytics.update, which
 * fields each update reports as changed, the live-without-started rule,
 * and the cached events a new subscriber is replayed.
 */
#define G_LOG_DOMAIN "wave-test-stream-cache"

#include <string.h>

#include "stream-cache.h"

#define STREAM "stream_abc123"
#define T0_US ((gint64)1000 * G_USEC_PER_SEC)
#define ALL_TYPES G_MAXUINT32
#define TYPE_BIT(type) (1u << (type))

/* An upstream event as upstream.c hands it over: parsed, then wrapped. */
static WbEvent *
event_of (const char *type, const char *payload_json)
{
  g_autofree char *text = g_strdup_printf ("{\"type\":\"%s\",\"payload\":%s}", type, payload_json);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message
      = wb_message_parse (text, strlen (text), WB_DIRECTION_TO_CLIENT, &error);

  g_assert_no_error (error);
  return wb_event_new_from_message (message);
}

static WbEvent *
started_event (const char *started_at, const char *protocol)
{
  g_autofree char *payload
      = g_strdup_printf ("{\"stream_id\":\"" STREAM "\",\"started_at\":\"%s\",\"protocol\":\"%s\","
                         "\"ingest_endpoint\":\"rtmp://ingest.example/live\"}",
                         started_at, protocol);

  return event_of ("stream.started", payload);
}

static WbEvent *
ended_event (const char *recording_id_json)
{
  g_autofree char *payload
      = g_strdup_printf ("{\"stream_id\":\"" STREAM "\",\"ended_at\":\"2024-05-01T21:00:00Z\","
                         "\"duration\":3600.5,\"recording_id\":%s}",
                         recording_id_json);

  return event_of ("stream.ended", payload);
}

static WbEvent *
health_event (double bitrate)
{
  g_autofree char *payload
      = g_strdup_printf ("{\"stream_id\":\"" STREAM "\",\"bitrate\":%g,\"fps\":59.94,"
                         "\"packet_loss\":0.25,\"latency\":42}",
                         bitrate);

  return event_of ("stream.health", payload);
}

static WbEvent *
analytics_event (const char *concurrent, const char *total, const char *peak)
{
  g_autofree char *payload = g_strdup_printf ("{\"stream_id\":\"" STREAM
                                              "\",\"concurrent_viewers\":%s,\"total_views\":%s,"
                                              "\"peak_viewers\":%s,\"average_watch_time\":93.5}",
                                              concurrent, total, peak);

  return event_of ("analytics.update", payload);
}

static WbStreamFields
update (WbStreamCache *cache, WbEvent *event, gint64 now_us)
{
  g_autoptr (WbEvent) owned = event;

  return wb_stream_cache_update (cache, owned, now_us);
}

static JsonObject *
line_object (WbEvent *event)
{
  GBytes *line = wb_event_get_line (event);
  gsize length = 0;
  const char *data = g_bytes_get_data (line, &length);
  g_autofree char *text = g_strndup (data, length);
  g_autoptr (JsonNode) node = json_from_string (text, NULL);

  g_assert_nonnull (node);
  return json_node_dup_object (node);
}

/* ---- state ----------------------------------------------------------------- */

static void
test_new_cache (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  WbStreamState *state = wb_stream_cache_get_state (cache);
  g_autoptr (GPtrArray) replay = wb_stream_cache_build_replay (cache, ALL_TYPES, T0_US);

  g_assert_cmpstr (state->stream_id, ==, STREAM);
  g_assert_false (state->live);
  g_assert_cmpstr (state->started_at, ==, "");
  g_assert_cmpstr (state->ended_at, ==, "");
  g_assert_cmpstr (state->recording_id, ==, "");
  g_assert_cmpuint (replay->len, ==, 0);
}

static void
test_started_and_ended (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  WbStreamState *state;

  g_assert_cmpint (update (cache, started_event ("2024-05-01T20:00:00Z", "rtmp"), T0_US), ==,
                   WB_STREAM_FIELD_LIVE | WB_STREAM_FIELD_STARTED);
  state = wb_stream_cache_get_state (cache);
  g_assert_true (state->live);
  g_assert_cmpstr (state->started_at, ==, "2024-05-01T20:00:00Z");
  g_assert_cmpstr (state->protocol, ==, "rtmp");
  g_assert_cmpstr (state->ingest_endpoint, ==, "rtmp://ingest.example/live");

  /* The same again changes nothing; a new protocol changes only that group. */
  g_assert_cmpint (update (cache, started_event ("2024-05-01T20:00:00Z", "rtmp"), T0_US), ==, 0);
  g_assert_cmpint (update (cache, started_event ("2024-05-01T20:00:00Z", "srt"), T0_US), ==,
                   WB_STREAM_FIELD_STARTED);

  g_assert_cmpint (update (cache, ended_event ("\"rec_1\""), T0_US), ==,
                   WB_STREAM_FIELD_LIVE | WB_STREAM_FIELD_ENDED);
  state = wb_stream_cache_get_state (cache);
  g_assert_false (state->live);
  g_assert_cmpstr (state->ended_at, ==, "2024-05-01T21:00:00Z");
  g_assert_cmpfloat (state->duration, ==, 3600.5);
  g_assert_cmpstr (state->recording_id, ==, "rec_1");
  /* What the last session said about its start stays until the next one. */
  g_assert_cmpstr (state->started_at, ==, "2024-05-01T20:00:00Z");

  /* A null recording_id reads as "". */
  g_assert_cmpint (update (cache, ended_event ("null"), T0_US), ==, WB_STREAM_FIELD_ENDED);
  g_assert_cmpstr (wb_stream_cache_get_state (cache)->recording_id, ==, "");

  /* A new session forgets the last one's end. */
  g_assert_cmpint (update (cache, started_event ("2024-05-02T08:00:00Z", "srt"), T0_US), ==,
                   WB_STREAM_FIELD_LIVE | WB_STREAM_FIELD_STARTED | WB_STREAM_FIELD_ENDED);
  state = wb_stream_cache_get_state (cache);
  g_assert_true (state->live);
  g_assert_cmpstr (state->ended_at, ==, "");
  g_assert_cmpfloat (state->duration, ==, 0.0);
}

static void
test_health (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  WbStreamState *state;

  update (cache, started_event ("2024-05-01T20:00:00Z", "rtmp"), T0_US);
  g_assert_cmpint (update (cache, health_event (4500), T0_US), ==, WB_STREAM_FIELD_HEALTH);
  state = wb_stream_cache_get_state (cache);
  g_assert_cmpfloat (state->bitrate, ==, 4500);
  g_assert_cmpfloat (state->fps, ==, 59.94);
  g_assert_cmpfloat (state->packet_loss, ==, 0.25);
  g_assert_cmpfloat (state->latency, ==, 42);
  g_assert_cmpint (update (cache, health_event (4500), T0_US), ==, 0);
  g_assert_cmpint (update (cache, health_event (3000), T0_US), ==, WB_STREAM_FIELD_HEALTH);
}

/* Subscribing to a stream already on air, the bridge never sees its start:
 * health (only sent for live streams) marks it live, unless an end was
 * seen since. */
static void
test_live_without_started (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);

  g_assert_cmpint (update (cache, health_event (4500), T0_US), ==,
                   WB_STREAM_FIELD_LIVE | WB_STREAM_FIELD_HEALTH);
  g_assert_true (wb_stream_cache_get_state (cache)->live);

  update (cache, ended_event ("\"rec_1\""), T0_US);
  /* A late health report after the end does not bring it back. */
  g_assert_cmpint (update (cache, health_event (1000), T0_US), ==, WB_STREAM_FIELD_HEALTH);
  g_assert_false (wb_stream_cache_get_state (cache)->live);

  /* A new start does. */
  g_assert_cmpint (update (cache, started_event ("2024-05-02T08:00:00Z", "rtmp"), T0_US)
                       & WB_STREAM_FIELD_LIVE,
                   ==, WB_STREAM_FIELD_LIVE);
  g_assert_true (wb_stream_cache_get_state (cache)->live);
}

static void
test_analytics (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  WbStreamState *state;

  g_assert_cmpint (update (cache, analytics_event ("120", "4500", "180"), T0_US), ==,
                   WB_STREAM_FIELD_ANALYTICS);
  state = wb_stream_cache_get_state (cache);
  g_assert_cmpuint (state->concurrent_viewers, ==, 120);
  g_assert_cmpuint (state->total_views, ==, 4500);
  g_assert_cmpuint (state->peak_viewers, ==, 180);
  g_assert_cmpfloat (state->average_watch_time, ==, 93.5);
  g_assert_false (state->live); /* analytics says nothing about being on air */
  g_assert_cmpint (update (cache, analytics_event ("120", "4500", "180"), T0_US), ==, 0);

  /* Published as D-Bus u and t: clamped, never wrapped. */
  g_assert_cmpint (update (cache, analytics_event ("-5", "1e30", "5e9"), T0_US), ==,
                   WB_STREAM_FIELD_ANALYTICS);
  state = wb_stream_cache_get_state (cache);
  g_assert_cmpuint (state->concurrent_viewers, ==, 0);
  g_assert_cmpuint (state->total_views, ==, G_MAXUINT64);
  g_assert_cmpuint (state->peak_viewers, ==, G_MAXUINT);
}

static void
test_stateless_events (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  g_autoptr (GPtrArray) replay = NULL;

  g_assert_cmpint (update (cache,
                           event_of ("chat.message",
                                     "{\"stream_id\":\"" STREAM "\",\"message_id\":\"m1\","
                                     "\"user_id\":\"u1\",\"username\":\"ann\",\"message\":\"hi\","
                                     "\"timestamp\":\"2024-05-01T20:01:00Z\"}"),
                           T0_US),
                   ==, 0);
  g_assert_cmpint (
      update (cache,
              event_of ("viewer.joined", "{\"stream_id\":\"" STREAM "\",\"viewer_id\":\"v1\","
                                         "\"country\":\"NO\",\"device\":\"tv\","
                                         "\"joined_at\":\"2024-05-01T20:01:00Z\"}"),
              T0_US),
      ==, 0);
  replay = wb_stream_cache_build_replay (cache, ALL_TYPES, T0_US);
  g_assert_cmpuint (replay->len, ==, 0);
  g_assert_false (wb_stream_cache_get_state (cache)->live);
}

/* ---- replay ----------------------------------------------------------------- */

static void
test_replay_order_and_age (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  g_autoptr (WbEvent) analytics = analytics_event ("120", "4500", "180");
  g_autoptr (WbEvent) health = health_event (4500);
  g_autoptr (WbEvent) started = started_event ("2024-05-01T20:00:00Z", "rtmp");
  g_autoptr (GPtrArray) replay = NULL;
  WbEvent *const originals[] = { started, health, analytics };
  const gint64 ages_ms[] = { 500, 1500, 2500 };

  /* Received in the opposite order of the replay. */
  wb_stream_cache_update (cache, analytics, T0_US);
  wb_stream_cache_update (cache, health, T0_US + 1000 * 1000);
  wb_stream_cache_update (cache, started, T0_US + 2000 * 1000);
  replay = wb_stream_cache_build_replay (cache, ALL_TYPES, T0_US + 2500 * 1000);

  /* What the stream is, how it is doing, who watches. */
  g_assert_cmpuint (replay->len, ==, 3);
  for (guint i = 0; i < replay->len; i++)
    {
      WbEvent *cached = g_ptr_array_index (replay, i);
      g_autoptr (JsonObject) object = line_object (cached);

      g_assert_cmpstr (wb_event_get_type_name (cached), ==, wb_event_get_type_name (originals[i]));
      g_assert_cmpstr (wb_event_get_stream_id (cached), ==, STREAM);
      /* The payload is shared with the event that was received, not copied. */
      g_assert_true (wb_event_get_payload (cached) == wb_event_get_payload (originals[i]));
      g_assert_true (json_object_get_boolean_member (object, "cached"));
      g_assert_cmpint (json_object_get_int_member (object, "age_ms"), ==, ages_ms[i]);
    }
}

static void
test_replay_lifecycle_is_the_newer (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  g_autoptr (GPtrArray) replay = NULL;

  update (cache, started_event ("2024-05-01T20:00:00Z", "rtmp"), T0_US);
  update (cache, ended_event ("\"rec_1\""), T0_US);
  replay = wb_stream_cache_build_replay (cache, ALL_TYPES, T0_US);
  g_assert_cmpuint (replay->len, ==, 1);
  g_assert_cmpstr (wb_event_get_type_name (g_ptr_array_index (replay, 0)), ==, "stream.ended");
}

static void
test_replay_type_filter (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  g_autoptr (GPtrArray) health_only = NULL;
  g_autoptr (GPtrArray) chat_only = NULL;
  g_autoptr (GPtrArray) lifecycle = NULL;

  update (cache, started_event ("2024-05-01T20:00:00Z", "rtmp"), T0_US);
  update (cache, health_event (4500), T0_US);
  update (cache, analytics_event ("1", "2", "3"), T0_US);

  health_only = wb_stream_cache_build_replay (cache, TYPE_BIT (WB_MESSAGE_STREAM_HEALTH), T0_US);
  g_assert_cmpuint (health_only->len, ==, 1);
  g_assert_cmpstr (wb_event_get_type_name (g_ptr_array_index (health_only, 0)), ==,
                   "stream.health");

  chat_only = wb_stream_cache_build_replay (cache, TYPE_BIT (WB_MESSAGE_CHAT_MESSAGE), T0_US);
  g_assert_cmpuint (chat_only->len, ==, 0);

  /* A client that asked for stream.ended only gets no stream.started. */
  lifecycle = wb_stream_cache_build_replay (cache, TYPE_BIT (WB_MESSAGE_STREAM_ENDED), T0_US);
  g_assert_cmpuint (lifecycle->len, ==, 0);
}

static void
test_replay_age_never_negative (void)
{
  g_autoptr (WbStreamCache) cache = wb_stream_cache_new (STREAM);
  g_autoptr (GPtrArray) replay = NULL;
  g_autoptr (JsonObject) object = NULL;

  update (cache, health_event (4500), T0_US);
  /* A replay timestamp before the receipt (callers' clocks differ). */
  replay = wb_stream_cache_build_replay (cache, ALL_TYPES, T0_US - 5000 * 1000);
  g_assert_cmpuint (replay->len, ==, 1);
  object = line_object (g_ptr_array_index (replay, 0));
  g_assert_cmpint (json_object_get_int_member (object, "age_ms"), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/stream-cache/new", test_new_cache);
  g_test_add_func ("/stream-cache/started-and-ended", test_started_and_ended);
  g_test_add_func ("/stream-cache/health", test_health);
  g_test_add_func ("/stream-cache/live-without-started", test_live_without_started);
  g_test_add_func ("/stream-cache/analytics", test_analytics);
  g_test_add_func ("/stream-cache/stateless-events", test_stateless_events);
  g_test_add_func ("/stream-cache/replay/order-and-age", test_replay_order_and_age);
  g_test_add_func ("/stream-cache/replay/lifecycle-is-the-newer",
                   test_replay_lifecycle_is_the_newer);
  g_test_add_func ("/stream-cache/replay/type-filter", test_replay_type_filter);
  g_test_add_func ("/stream-cache/replay/age-never-negative", test_replay_age_never_negative);
  return g_test_run ();
}
