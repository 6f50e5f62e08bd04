/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-test-hub"

#include <math.h>
#include <string.h>

#include "hub.h"
#include "test-util.h"
#include "wb-build-config.h"

/*
 * The hub alone: upstream is the small WbHubUpstreamOps interface, recorded
 * here, and local clients are recording sinks.
 */

/* ---- the recording upstream --------------------------------------------- */

typedef struct
{
  char *stream_id;
  char **events; /* NULL: nobody left */
  gint64 owner;
} SetCall;

typedef struct
{
  JsonNode *message;
  WbSendCallback callback;
  gpointer user_data;
  gint64 owner;
} SendCall;

typedef struct
{
  GPtrArray *set_calls;
  GPtrArray *send_calls;
  WbLinkStatus status;
  guint reconnects;
  gboolean refuse_reconnect;
  guint demands;
} Recorder;

static void
set_call_free (SetCall *call)
{
  g_free (call->stream_id);
  g_strfreev (call->events);
  g_free (call);
}

static void
send_call_free (SendCall *call)
{
  json_node_unref (call->message);
  g_free (call);
}

static void
recorder_set_stream_events (gpointer upstream, const char *stream_id, const char *const *events,
                            gint64 owner)
{
  Recorder *recorder = upstream;
  SetCall *call = g_new0 (SetCall, 1);

  call->owner = owner;
  call->stream_id = g_strdup (stream_id);
  call->events = events != NULL ? g_strdupv ((char **)events) : NULL;
  g_ptr_array_add (recorder->set_calls, call);
}

static void
recorder_send (gpointer upstream, JsonNode *message, gint64 owner, WbSendCallback callback,
               gpointer user_data)
{
  Recorder *recorder = upstream;
  SendCall *call = g_new0 (SendCall, 1);

  call->owner = owner;
  call->message = json_node_ref (message);
  call->callback = callback;
  call->user_data = user_data;
  g_ptr_array_add (recorder->send_calls, call);
}

static const WbLinkStatus *
recorder_get_status (gpointer upstream)
{
  return &((Recorder *)upstream)->status;
}

static gboolean
recorder_reconnect (gpointer upstream, GError **error)
{
  Recorder *recorder = upstream;

  recorder->reconnects++;
  if (recorder->refuse_reconnect)
    {
      g_set_error_literal (error, WB_LINK_ERROR, WB_LINK_ERROR_SERVER_WAIT, "wait 60 s");
      return FALSE;
    }
  return TRUE;
}

static void
recorder_demand (gpointer upstream)
{
  ((Recorder *)upstream)->demands++;
}

static const WbHubUpstreamOps recorder_ops = {
  .set_stream_events = recorder_set_stream_events,
  .send = recorder_send,
  .get_status = recorder_get_status,
  .reconnect = recorder_reconnect,
  .demand = recorder_demand,
};

/* Completes the @index-th recorded send with @error (NULL: written). */
static void
recorder_complete_send (Recorder *recorder, guint index, const GError *error)
{
  SendCall *call = g_ptr_array_index (recorder->send_calls, index);

  g_assert_nonnull (call->callback);
  call->callback (error, call->user_data);
  call->callback = NULL;
}

/* ---- fixture: hub, recorder, observer log ------------------------------- */

typedef struct _Sink Sink;

typedef struct
{
  WbConfig *config;
  Recorder recorder;
  WbHub *hub;
  guint observer_id;
  GPtrArray *log; /* observer calls as strings */
  GPtrArray *sinks;
} Fixture;

/* A local client that records what it is given. */
struct _Sink
{
  Fixture *fixture;
  WbHubClient *client;
  GPtrArray *events; /* WbEvent, one ref each */
  gboolean refuse;   /* deliver returns FALSE */
  /* On the next delivery, free this client (possibly itself). */
  Sink *free_on_deliver;
  /* Sends' outcomes. */
  guint sends_done;
  GError *send_error;
};

static void
log_add (Fixture *fixture, char *entry)
{
  g_ptr_array_add (fixture->log, entry);
}

static void
stream_added_cb (const char *stream_id, gpointer user_data)
{
  log_add (user_data, g_strdup_printf ("added %s", stream_id));
}

static void
stream_removed_cb (const char *stream_id, gpointer user_data)
{
  log_add (user_data, g_strdup_printf ("removed %s", stream_id));
}

static void
stream_event_cb (WbEvent *event, gpointer user_data)
{
  log_add (user_data, g_strdup_printf ("event %s %s", wb_event_get_type_name (event),
                                       wb_event_get_stream_id (event)));
}

static void
stream_changed_cb (const char *stream_id, WbStreamFields changed, gpointer user_data)
{
  log_add (user_data, g_strdup_printf ("changed %s 0x%x", stream_id, (guint)changed));
}

static void
state_changed_cb (WbLinkState state, gpointer user_data)
{
  log_add (user_data, g_strdup_printf ("state %s", wb_link_state_to_string (state)));
}

static void
status_changed_cb (gpointer user_data)
{
  log_add (user_data, g_strdup ("status"));
}

static const WbHubObserver log_observer = {
  .stream_added = stream_added_cb,
  .stream_removed = stream_removed_cb,
  .stream_event = stream_event_cb,
  .stream_changed = stream_changed_cb,
  .state_changed = state_changed_cb,
  .status_changed = status_changed_cb,
};

static gboolean
log_contains (Fixture *fixture, const char *entry)
{
  for (guint i = 0; i < fixture->log->len; i++)
    if (g_str_equal (g_ptr_array_index (fixture->log, i), entry))
      return TRUE;
  return FALSE;
}

static guint
log_count_prefix (Fixture *fixture, const char *prefix)
{
  guint n = 0;

  for (guint i = 0; i < fixture->log->len; i++)
    if (g_str_has_prefix (g_ptr_array_index (fixture->log, i), prefix))
      n++;
  return n;
}

static void
fixture_setup (Fixture *fixture, gconstpointer data)
{
  fixture->config = wb_config_new_defaults (TRUE);
  fixture->recorder.set_calls = g_ptr_array_new_with_free_func ((GDestroyNotify)set_call_free);
  fixture->recorder.send_calls = g_ptr_array_new_with_free_func ((GDestroyNotify)send_call_free);
  fixture->recorder.status = (WbLinkStatus){
    .state = WB_LINK_CONNECTED,
    .state_since_us = 1700000000000000,
    .connected_since_us = 1700000000000000,
    .reconnects = 3,
    .last_close_code = 1006,
    .last_close_reason = "going away",
    .last_error = "stream_not_found: no such stream",
    .rtt_us = 1234,
    .url = "wss://ws.example/v1/streams?api_key=REDACTED",
    .held_sends = 2,
    .invalid_messages = 7,
  };
  fixture->hub = wb_hub_new (fixture->config, &recorder_ops, &fixture->recorder);
  fixture->log = g_ptr_array_new_with_free_func (g_free);
  fixture->observer_id = wb_hub_add_observer (fixture->hub, &log_observer, fixture);
  fixture->sinks = g_ptr_array_new ();
}

static gboolean
sink_deliver_cb (WbHubClient *client, WbEvent *event, gpointer user_data)
{
  Sink *sink = user_data;

  g_assert_true (sink->client == client);
  g_ptr_array_add (sink->events, wb_event_ref (event));
  if (sink->free_on_deliver != NULL)
    {
      Sink *victim = g_steal_pointer (&sink->free_on_deliver);

      /* Refused by the hub (see test_free_in_deliver_refused): keep the pointer. */
      wb_hub_client_free (victim->client);
    }
  return !sink->refuse;
}

static const WbHubClientSink recording_sink = { .deliver = sink_deliver_cb };

/* A client of user @uid (WB_HUB_UID_UNKNOWN: no credentials); NULL client
 * with @error set if the hub refused it. */
static Sink *
sink_new_full (Fixture *fixture, const char *name, gint64 uid, GError **error)
{
  Sink *sink = g_new0 (Sink, 1);
  g_autoptr (WbPeerCredentials) credentials = NULL;

  if (uid != WB_HUB_UID_UNKNOWN)
    credentials = wb_peer_credentials_new (4242, (uid_t)uid, (gid_t)uid, NULL, 0);
  sink->fixture = fixture;
  sink->events = g_ptr_array_new_with_free_func ((GDestroyNotify)wb_event_unref);
  sink->client = wb_hub_client_new (fixture->hub, name, credentials, &recording_sink, sink, error);
  g_ptr_array_add (fixture->sinks, sink);
  return sink;
}

/* A client of a user of its own. */
static Sink *
sink_new (Fixture *fixture, const char *name)
{
  static guint next_uid = 20000;
  g_autoptr (GError) error = NULL;
  Sink *sink = sink_new_full (fixture, name, next_uid++, &error);

  g_assert_no_error (error);
  return sink;
}

static void
sink_free (Sink *sink)
{
  g_clear_pointer (&sink->client, wb_hub_client_free);
  g_ptr_array_unref (sink->events);
  g_clear_error (&sink->send_error);
  g_free (sink);
}

static void
fixture_teardown (Fixture *fixture, gconstpointer data)
{
  for (guint i = 0; i < fixture->sinks->len; i++)
    sink_free (g_ptr_array_index (fixture->sinks, i));
  g_ptr_array_unref (fixture->sinks);
  wb_hub_remove_observer (fixture->hub, fixture->observer_id);
  g_clear_pointer (&fixture->hub, wb_hub_free);
  /* Sends never completed by a test still own their records. */
  for (guint i = 0; i < fixture->recorder.send_calls->len; i++)
    {
      SendCall *call = g_ptr_array_index (fixture->recorder.send_calls, i);

      if (call->callback != NULL)
        call->callback (NULL, call->user_data);
    }
  g_ptr_array_unref (fixture->recorder.set_calls);
  g_ptr_array_unref (fixture->recorder.send_calls);
  g_ptr_array_unref (fixture->log);
  wb_config_free (fixture->config);
}

/* ---- helpers ------------------------------------------------------------- */

static void
feed (Fixture *fixture, const char *json)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message
      = wb_message_parse (json, strlen (json), WB_DIRECTION_TO_CLIENT, &error);

  g_assert_no_error (error);
  wb_hub_handle_upstream_message (fixture->hub, message);
}

static void
feed_chat (Fixture *fixture, const char *stream_id)
{
  g_autofree char *json = g_strdup_printf (
      "{\"type\":\"chat.message\",\"payload\":{\"stream_id\":\"%s\",\"message_id\":\"m1\","
      "\"user_id\":\"u1\",\"username\":\"ann\",\"message\":\"hi\","
      "\"timestamp\":\"2024-01-01T00:00:00Z\"}}",
      stream_id);

  feed (fixture, json);
}

static void
feed_health (Fixture *fixture, const char *stream_id, double bitrate)
{
  g_autofree char *json = g_strdup_printf (
      "{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"%s\",\"bitrate\":%g,"
      "\"fps\":30,\"packet_loss\":0.01,\"latency\":42}}",
      stream_id, bitrate);

  feed (fixture, json);
}

static void
feed_started (Fixture *fixture, const char *stream_id)
{
  g_autofree char *json
      = g_strdup_printf ("{\"type\":\"stream.started\",\"payload\":{\"stream_id\":\"%s\","
                         "\"started_at\":\"2024-01-01T10:00:00Z\",\"protocol\":\"srt\","
                         "\"ingest_endpoint\":\"srt://ingest.example:9000\"}}",
                         stream_id);

  feed (fixture, json);
}

static void
feed_ended (Fixture *fixture, const char *stream_id)
{
  g_autofree char *json = g_strdup_printf (
      "{\"type\":\"stream.ended\",\"payload\":{\"stream_id\":\"%s\","
      "\"ended_at\":\"2024-01-01T11:00:00Z\",\"duration\":3600,\"recording_id\":\"rec_1\"}}",
      stream_id);

  feed (fixture, json);
}

static void
feed_analytics (Fixture *fixture, const char *stream_id, guint viewers)
{
  g_autofree char *json = g_strdup_printf (
      "{\"type\":\"analytics.update\",\"payload\":{\"stream_id\":\"%s\","
      "\"concurrent_viewers\":%u,\"total_views\":5000000000,\"peak_viewers\":900,"
      "\"average_watch_time\":61.5}}",
      stream_id, viewers);

  feed (fixture, json);
}

static void
subscribe (Sink *sink, const char *stream_id, const char *events_csv)
{
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) events = events_csv != NULL ? g_strsplit (events_csv, ",", -1) : NULL;

  g_assert_true (
      wb_hub_client_subscribe (sink->client, stream_id, (const char *const *)events, NULL, &error));
  g_assert_no_error (error);
}

static void
unsubscribe (Sink *sink, const char *stream_id)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (wb_hub_client_unsubscribe (sink->client, stream_id, &error));
  g_assert_no_error (error);
}

/* The events of the @index-th set_stream_events call joined by ",", or "NULL". */
static char *
set_call_string (Fixture *fixture, guint index)
{
  SetCall *call;
  g_autofree char *events = NULL;

  g_assert_cmpuint (index, <, fixture->recorder.set_calls->len);
  call = g_ptr_array_index (fixture->recorder.set_calls, index);
  if (call->events == NULL)
    return g_strdup_printf ("%s NULL", call->stream_id);
  events = g_strjoinv (",", call->events);
  return g_strdup_printf ("%s %s", call->stream_id, events);
}

#define assert_set_call(fixture, index, expected)                                                  \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_autofree char *got_ = set_call_string (fixture, index);                                      \
    g_assert_cmpstr (got_, ==, expected);                                                          \
  }                                                                                                \
  G_STMT_END

static guint
n_set_calls (Fixture *fixture)
{
  return fixture->recorder.set_calls->len;
}

static WbEvent *
sink_event (Sink *sink, guint index)
{
  g_assert_cmpuint (index, <, sink->events->len);
  return g_ptr_array_index (sink->events, index);
}

static JsonObject *
event_root (WbEvent *event)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  GBytes *line = wb_event_get_line (event);
  g_autoptr (GError) error = NULL;

  g_assert_true (json_parser_load_from_data (parser, g_bytes_get_data (line, NULL),
                                             (gssize)g_bytes_get_size (line), &error));
  g_assert_no_error (error);
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

#define ALL_EVENTS                                                                                 \
  "analytics.update,chat.message,reaction.received,stream.ended,stream.health,"                    \
  "stream.started,viewer.joined,viewer.left"

/* ---- union and refcount -------------------------------------------------- */

static void
test_union_shared (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");

  subscribe (a, "s1", "chat.message,stream.health");
  g_assert_cmpuint (n_set_calls (fixture), ==, 1);
  assert_set_call (fixture, 0, "s1 chat.message,stream.health");
  g_assert_true (log_contains (fixture, "added s1"));

  /* Same events, other order and duplicated: already covered. */
  subscribe (b, "s1", "stream.health,chat.message,chat.message");
  g_assert_cmpuint (n_set_calls (fixture), ==, 1);
  g_assert_cmpuint (log_count_prefix (fixture, "added"), ==, 1);
  g_assert_cmpuint (wb_hub_get_stream (fixture->hub, "s1")->subscribers, ==, 2);

  /* One of two leaving changes nothing upstream. */
  unsubscribe (a, "s1");
  g_assert_cmpuint (n_set_calls (fixture), ==, 1);
  g_assert_false (log_contains (fixture, "removed s1"));
  g_assert_cmpuint (wb_hub_get_stream (fixture->hub, "s1")->subscribers, ==, 1);

  unsubscribe (b, "s1");
  g_assert_cmpuint (n_set_calls (fixture), ==, 2);
  assert_set_call (fixture, 1, "s1 NULL");
  g_assert_true (log_contains (fixture, "removed s1"));
  g_assert_null (wb_hub_get_stream (fixture->hub, "s1"));
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->streams, ==, 0);
}

static void
test_union_grow_shrink (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  Sink *c = sink_new (fixture, "c");

  subscribe (a, "s1", "chat.message");
  subscribe (b, "s1", "stream.health");
  subscribe (c, "s1", "stream.health,viewer.joined");
  g_assert_cmpuint (n_set_calls (fixture), ==, 3);
  assert_set_call (fixture, 0, "s1 chat.message");
  assert_set_call (fixture, 1, "s1 chat.message,stream.health");
  assert_set_call (fixture, 2, "s1 chat.message,stream.health,viewer.joined");

  /* stream.health is still wanted by c. */
  unsubscribe (b, "s1");
  g_assert_cmpuint (n_set_calls (fixture), ==, 3);

  unsubscribe (c, "s1");
  assert_set_call (fixture, 3, "s1 chat.message");
  unsubscribe (a, "s1");
  assert_set_call (fixture, 4, "s1 NULL");
  g_assert_cmpuint (n_set_calls (fixture), ==, 5);
  g_assert_true (log_contains (fixture, "removed s1"));
}

static void
test_union_replace (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) held = NULL;
  g_autofree char *joined = NULL;
  const char *const health[] = { "stream.health", NULL };

  subscribe (a, "s1", "chat.message");
  g_assert_true (wb_hub_client_subscribe (a->client, "s1", health, &held, &error));
  g_assert_no_error (error);
  joined = g_strjoinv (",", held);
  g_assert_cmpstr (joined, ==, "stream.health");
  assert_set_call (fixture, 1, "s1 stream.health");

  /* The same set again: nothing to tell. */
  subscribe (a, "s1", "stream.health");
  g_assert_cmpuint (n_set_calls (fixture), ==, 2);
  g_assert_cmpuint (log_count_prefix (fixture, "added"), ==, 1);
  g_assert_cmpuint (wb_hub_get_stream (fixture->hub, "s1")->subscribers, ==, 1);
}

static void
test_union_all_events (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  const char *const empty[] = { NULL };
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) held = NULL;
  g_autofree char *joined = NULL;

  g_assert_true (wb_hub_client_subscribe (a->client, "s1", NULL, &held, &error));
  g_assert_no_error (error);
  joined = g_strjoinv (",", held);
  g_assert_cmpstr (joined, ==, ALL_EVENTS);
  assert_set_call (fixture, 0, "s1 " ALL_EVENTS);

  /* Empty is the same as NULL. */
  g_assert_true (wb_hub_client_subscribe (b->client, "s1", empty, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n_set_calls (fixture), ==, 1);
}

static void
test_union_client_freed (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  g_auto (GStrv) streams = NULL;

  subscribe (a, "s1", "chat.message");
  subscribe (a, "s2", NULL);
  subscribe (b, "s1", "stream.health");
  streams = wb_hub_list_streams (fixture->hub);
  g_assert_cmpuint (g_strv_length (streams), ==, 2);
  g_assert_cmpstr (streams[0], ==, "s1");
  g_assert_cmpstr (streams[1], ==, "s2");
  g_assert_cmpuint (n_set_calls (fixture), ==, 3);
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->clients, ==, 2);

  /* Gone without unsubscribing. */
  g_clear_pointer (&a->client, wb_hub_client_free);
  g_assert_cmpuint (n_set_calls (fixture), ==, 5);
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->clients, ==, 1);
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->streams, ==, 1);
  g_assert_true (log_contains (fixture, "removed s2"));
  g_assert_false (log_contains (fixture, "removed s1"));
  for (guint i = 3; i < 5; i++)
    {
      g_autofree char *call = set_call_string (fixture, i);

      g_assert_true (g_str_equal (call, "s1 stream.health") || g_str_equal (call, "s2 NULL"));
    }
  g_assert_nonnull (wb_hub_get_stream (fixture->hub, "s1"));
  g_assert_null (wb_hub_get_stream (fixture->hub, "s2"));
}

/* ---- fan-out ------------------------------------------------------------- */

static void
test_fanout_filter (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  Sink *c = sink_new (fixture, "c");
  Sink *idle = sink_new (fixture, "idle");
  const WbBridgeStatus *counters = wb_hub_get_status (fixture->hub);

  subscribe (a, "s1", "chat.message");
  subscribe (b, "s1", NULL);
  subscribe (c, "s2", NULL);

  feed_chat (fixture, "s1");
  g_assert_cmpuint (a->events->len, ==, 1);
  g_assert_cmpuint (b->events->len, ==, 1);
  g_assert_cmpuint (c->events->len, ==, 0);

  feed_health (fixture, "s1", 2500);
  g_assert_cmpuint (a->events->len, ==, 1);
  g_assert_cmpuint (b->events->len, ==, 2);
  g_assert_cmpstr (wb_event_get_type_name (sink_event (b, 1)), ==, "stream.health");
  g_assert_cmpstr (wb_event_get_stream_id (sink_event (b, 1)), ==, "s1");

  feed_chat (fixture, "s2");
  g_assert_cmpuint (c->events->len, ==, 1);
  g_assert_cmpuint (b->events->len, ==, 2);

  /* Nobody's stream: received, delivered to no one, not even observers. */
  feed_chat (fixture, "s3");
  g_assert_cmpuint (idle->events->len, ==, 0);
  g_assert_false (log_contains (fixture, "event chat.message s3"));
  g_assert_true (log_contains (fixture, "event chat.message s1"));

  g_assert_cmpuint (counters->events_received, ==, 4);
  g_assert_cmpuint (counters->events_delivered, ==, 4);
  g_assert_cmpuint (counters->events_dropped, ==, 0);
}

static void
test_fanout_shared_line (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  GBytes *line_a;
  GBytes *line_b;
  g_autofree char *text = NULL;

  subscribe (a, "s1", NULL);
  subscribe (b, "s1", "stream.health");
  feed_health (fixture, "s1", 2500);

  g_assert_true (sink_event (a, 0) == sink_event (b, 0));
  line_a = wb_event_get_line (sink_event (a, 0));
  line_b = wb_event_get_line (sink_event (b, 0));
  g_assert_true (line_a == line_b);

  text = g_strndup (g_bytes_get_data (line_a, NULL), g_bytes_get_size (line_a));
  g_assert_cmpstr (text, ==,
                   "{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"s1\",\"bitrate\":2500,"
                   "\"fps\":30,\"packet_loss\":0.01,\"latency\":42}}\n");
  g_assert_cmpint (wb_event_get_message_type (sink_event (a, 0)), ==, WB_MESSAGE_STREAM_HEALTH);
  g_assert_cmpfloat (
      json_object_get_double_member (wb_event_get_payload (sink_event (a, 0)), "bitrate"), ==,
      2500);
}

static void
test_fanout_counters (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *slow = sink_new (fixture, "slow");
  const WbBridgeStatus *counters = wb_hub_get_status (fixture->hub);
  g_autoptr (JsonObject) status = NULL;

  slow->refuse = TRUE;
  subscribe (a, "s1", NULL);
  subscribe (slow, "s1", NULL);
  feed_chat (fixture, "s1");
  feed_chat (fixture, "s1");
  g_assert_cmpuint (counters->events_received, ==, 2);
  g_assert_cmpuint (counters->events_delivered, ==, 2);
  g_assert_cmpuint (counters->events_dropped, ==, 2);

  wb_hub_client_count_dropped (slow->client, 5);
  g_assert_cmpuint (counters->events_dropped, ==, 7);
  g_assert_cmpuint (log_count_prefix (fixture, "status"), >=, 2);
  /* A broadcast signal the bus refused belongs to no client. */
  wb_hub_count_dropped (fixture->hub, 3);
  g_assert_cmpuint (counters->events_dropped, ==, 10);

  status = wb_hub_build_status (fixture->hub, NULL, 0);
  g_assert_cmpint (json_object_get_int_member (status, "events_received"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (status, "events_delivered"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (status, "events_dropped"), ==, 10);
}

static void
test_fanout_observers (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  const WbStreamState *state;

  subscribe (a, "s1", "chat.message");
  g_ptr_array_set_size (fixture->log, 0);

  /* Observers see every event of the stream before per-client filtering,
   * after the cache was updated. */
  feed_started (fixture, "s1");
  g_assert_cmpuint (a->events->len, ==, 0);
  g_assert_cmpuint (fixture->log->len, >=, 2);
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 0), ==, "changed s1 0x3");
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 1), ==, "event stream.started s1");

  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_true (state->live);
  g_assert_cmpstr (state->started_at, ==, "2024-01-01T10:00:00Z");
  g_assert_cmpstr (state->protocol, ==, "srt");
  g_assert_cmpstr (state->ingest_endpoint, ==, "srt://ingest.example:9000");

  /* The same again: nothing changed, the event still is one. */
  g_ptr_array_set_size (fixture->log, 0);
  feed_started (fixture, "s1");
  g_assert_cmpuint (log_count_prefix (fixture, "changed"), ==, 0);
  g_assert_cmpuint (log_count_prefix (fixture, "event stream.started"), ==, 1);

  g_ptr_array_set_size (fixture->log, 0);
  feed_ended (fixture, "s1");
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 0), ==, "changed s1 0x5");
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_false (state->live);
  g_assert_cmpstr (state->ended_at, ==, "2024-01-01T11:00:00Z");
  g_assert_cmpfloat (state->duration, ==, 3600);
  g_assert_cmpstr (state->recording_id, ==, "rec_1");
  g_assert_cmpstr (state->started_at, ==, "2024-01-01T10:00:00Z");

  /* A new session clears the last one's end. */
  g_ptr_array_set_size (fixture->log, 0);
  feed_started (fixture, "s1");
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 0), ==, "changed s1 0x5");
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_cmpstr (state->ended_at, ==, "");
  g_assert_cmpstr (state->recording_id, ==, "");

  g_ptr_array_set_size (fixture->log, 0);
  feed_health (fixture, "s1", 1800);
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 0), ==, "changed s1 0x8");
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_cmpfloat (state->bitrate, ==, 1800);
  g_assert_cmpfloat (state->fps, ==, 30);
  g_assert_cmpfloat (state->packet_loss, ==, 0.01);
  g_assert_cmpfloat (state->latency, ==, 42);

  g_ptr_array_set_size (fixture->log, 0);
  feed_analytics (fixture, "s1", 77);
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 0), ==, "changed s1 0x10");
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_cmpuint (state->concurrent_viewers, ==, 77);
  g_assert_cmpuint (state->total_views, ==, G_GUINT64_CONSTANT (5000000000));
  g_assert_cmpuint (state->peak_viewers, ==, 900);
  g_assert_cmpfloat (state->average_watch_time, ==, 61.5);

  /* Events that carry no state change none. */
  g_ptr_array_set_size (fixture->log, 0);
  feed_chat (fixture, "s1");
  g_assert_cmpuint (log_count_prefix (fixture, "changed"), ==, 0);
  g_assert_true (log_contains (fixture, "event chat.message s1"));
  g_assert_cmpuint (a->events->len, ==, 1);
}

/* A bridge that subscribes mid-stream never sees stream.started: health is
 * its first sign of life. After a seen stream.ended it is not enough. */
static void
test_live_inferred_from_health (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  const WbStreamState *state;

  subscribe (a, "s1", NULL);
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_false (state->live);

  g_ptr_array_set_size (fixture->log, 0);
  feed_health (fixture, "s1", 1800);
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_true (state->live);
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 0), ==, "changed s1 0x9");

  feed_ended (fixture, "s1");
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_false (state->live);
  g_ptr_array_set_size (fixture->log, 0);
  feed_health (fixture, "s1", 1900);
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_false (state->live);
  g_assert_cmpstr (g_ptr_array_index (fixture->log, 0), ==, "changed s1 0x8");

  feed_started (fixture, "s1");
  state = wb_hub_get_stream (fixture->hub, "s1");
  g_assert_true (state->live);
}

/* Every subscribe is local demand, even one that leaves the union as it is:
 * it is what ends a server's 1000 ("closed"). */
static void
test_subscribe_is_demand (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  guint set_calls;

  subscribe (a, "s1", "stream.health");
  g_assert_cmpuint (fixture->recorder.demands, ==, 1);
  set_calls = fixture->recorder.set_calls->len;
  subscribe (b, "s1", "stream.health");
  g_assert_cmpuint (fixture->recorder.set_calls->len, ==, set_calls);
  g_assert_cmpuint (fixture->recorder.demands, ==, 2);
}

/* ---- history on subscribe ------------------------------------------------ */

static void
feed_chat_id (Fixture *fixture, const char *stream_id, guint n)
{
  g_autofree char *json = g_strdup_printf (
      "{\"type\":\"chat.message\",\"payload\":{\"stream_id\":\"%s\",\"message_id\":\"m%u\","
      "\"user_id\":\"u1\",\"username\":\"ann\",\"message\":\"hi %u\","
      "\"timestamp\":\"2024-01-01T00:00:00Z\"}}",
      stream_id, n, n);

  feed (fixture, json);
}

static void
feed_reaction (Fixture *fixture, const char *stream_id, guint count)
{
  g_autofree char *json = g_strdup_printf (
      "{\"type\":\"reaction.received\",\"payload\":{\"stream_id\":\"%s\",\"reaction\":\"🔥\","
      "\"count\":%u,\"timestamp\":\"2024-01-01T00:00:00Z\"}}",
      stream_id, count);

  feed (fixture, json);
}

/* The sink's events from @from on: "m3" for chat, "r7" for a reaction, the
 * type otherwise, a "*" after each one marked cached. */
static char *
sink_describe (Sink *sink, guint from)
{
  GString *out = g_string_new ("");

  for (guint i = from; i < sink->events->len; i++)
    {
      WbEvent *event = sink_event (sink, i);
      g_autoptr (JsonObject) root = event_root (event);
      JsonObject *payload = json_object_get_object_member (root, "payload");

      if (i > from)
        g_string_append_c (out, ',');
      if (wb_event_get_message_type (event) == WB_MESSAGE_CHAT_MESSAGE)
        g_string_append (out, json_object_get_string_member (payload, "message_id"));
      else if (wb_event_get_message_type (event) == WB_MESSAGE_REACTION_RECEIVED)
        g_string_append_printf (out, "r%" G_GINT64_FORMAT,
                                json_object_get_int_member (payload, "count"));
      else
        g_string_append (out, wb_event_get_type_name (event));
      if (json_object_get_boolean_member_with_default (root, "cached", FALSE))
        g_string_append_c (out, '*');
    }
  return g_string_free (out, FALSE);
}

#define assert_sink(sink, from, expected)                                                          \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_autofree char *got_ = sink_describe (sink, from);                                            \
    g_assert_cmpstr (got_, ==, expected);                                                          \
  }                                                                                                \
  G_STMT_END

static void
test_history_order (Fixture *fixture, gconstpointer data)
{
  Sink *feeder = sink_new (fixture, "feeder");
  Sink *late = sink_new (fixture, "late");
  guint64 delivered;

  subscribe (feeder, "s1", NULL);
  feed_health (fixture, "s1", 1000);
  feed_chat_id (fixture, "s1", 1);
  feed_reaction (fixture, "s1", 5);
  feed_chat_id (fixture, "s1", 2);
  feed_health (fixture, "s1", 2000);
  feed_chat_id (fixture, "s1", 3);

  subscribe (late, "s1", NULL);
  delivered = wb_hub_get_status (fixture->hub)->events_delivered;
  /* The cache replay first, then the newest 3 of the history, oldest first. */
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 3), ==, 3);
  assert_sink (late, 0, "stream.health*,r5*,m2*,m3*");
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->events_delivered, ==, delivered + 4);
  /* Then live ones, unmarked. */
  feed_chat_id (fixture, "s1", 4);
  assert_sink (late, 4, "m4");
  /* Asking again gives only what it has not had. */
  g_assert_true (wb_hub_client_subscribe (late->client, "s1", NULL, NULL, NULL));
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 50), ==, 1);
  assert_sink (late, 5, "stream.health*,m1*");
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 50), ==, 0);
  /* The feeder, subscribed all along, has everything already. */
  g_assert_cmpuint (wb_hub_client_replay (feeder->client, "s1", 50), ==, 0);

  /* replay_cache is replay with no history. */
  {
    Sink *plain = sink_new (fixture, "plain");

    subscribe (plain, "s1", NULL);
    wb_hub_client_replay_cache (plain->client, "s1");
    assert_sink (plain, 0, "stream.health*");
  }
}

static void
test_history_filter (Fixture *fixture, gconstpointer data)
{
  Sink *feeder = sink_new (fixture, "feeder");
  Sink *chat = sink_new (fixture, "chat");
  Sink *reactions = sink_new (fixture, "reactions");
  Sink *health = sink_new (fixture, "health");

  subscribe (feeder, "s1", NULL);
  feed_chat_id (fixture, "s1", 1);
  feed_reaction (fixture, "s1", 1);
  feed_chat_id (fixture, "s1", 2);
  feed_reaction (fixture, "s1", 2);

  subscribe (chat, "s1", "chat.message");
  g_assert_cmpuint (wb_hub_client_replay (chat->client, "s1", 50), ==, 2);
  assert_sink (chat, 0, "m1*,m2*");
  subscribe (reactions, "s1", "reaction.received,stream.health");
  g_assert_cmpuint (wb_hub_client_replay (reactions->client, "s1", 1), ==, 1);
  assert_sink (reactions, 0, "r2*");
  subscribe (health, "s1", "stream.health");
  g_assert_cmpuint (wb_hub_client_replay (health->client, "s1", 50), ==, 0);
  g_assert_cmpuint (health->events->len, ==, 0);

  /* The chat client adds reactions: it gets the reactions, not the chat again. */
  subscribe (chat, "s1", "chat.message,reaction.received");
  g_assert_cmpuint (wb_hub_client_replay (chat->client, "s1", 50), ==, 2);
  assert_sink (chat, 2, "r1*,r2*");
}

static void
test_history_bounds (Fixture *fixture, gconstpointer data)
{
  Sink *feeder = sink_new (fixture, "feeder");
  Sink *late = sink_new (fixture, "late");
  g_autoptr (GError) error = NULL;
  guint count = 99;

  /* Requests: negative refused, above HistoryPerStream cut to it. */
  g_assert_cmpuint (wb_hub_get_history_limit (fixture->hub), ==, 50);
  g_assert_false (wb_hub_check_history (fixture->hub, -1, &count, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_assert_cmpuint (count, ==, 99);
  g_assert_true (wb_hub_check_history (fixture->hub, 0, &count, NULL));
  g_assert_cmpuint (count, ==, 0);
  g_assert_true (wb_hub_check_history (fixture->hub, 1e300, &count, NULL));
  g_assert_cmpuint (count, ==, 50);
  g_assert_true (wb_hub_check_history (fixture->hub, 7.0, &count, NULL));
  g_assert_cmpuint (count, ==, 7);
  g_clear_error (&error);
  g_assert_false (wb_hub_check_history (fixture->hub, 2.5, &count, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (wb_hub_check_history (fixture->hub, NAN, &count, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_assert_cmpuint (count, ==, 7);

  fixture->config->history_per_stream = 5;
  wb_hub_set_config (fixture->hub, fixture->config);
  subscribe (feeder, "s1", NULL);
  for (guint i = 1; i <= 8; i++)
    feed_chat_id (fixture, "s1", i);
  subscribe (late, "s1", "chat.message");
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 1000), ==, 5);
  assert_sink (late, 0, "m4*,m5*,m6*,m7*,m8*");

  /* A reload to fewer trims what is held; to 0 turns history off. */
  fixture->config->history_per_stream = 2;
  wb_hub_set_config (fixture->hub, fixture->config);
  unsubscribe (late, "s1");
  subscribe (late, "s1", "chat.message");
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 1000), ==, 2);
  fixture->config->history_per_stream = 0;
  wb_hub_set_config (fixture->hub, fixture->config);
  unsubscribe (late, "s1");
  subscribe (late, "s1", "chat.message");
  feed_chat_id (fixture, "s1", 9);
  unsubscribe (late, "s1");
  subscribe (late, "s1", "chat.message");
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 1000), ==, 0);

  /* A stream that leaves the union forgets its history. */
  fixture->config->history_per_stream = 50;
  wb_hub_set_config (fixture->hub, fixture->config);
  feed_chat_id (fixture, "s1", 10);
  unsubscribe (late, "s1");
  unsubscribe (feeder, "s1");
  subscribe (late, "s1", "chat.message");
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 50), ==, 0);
}

static void
test_history_upstream_twice (Fixture *fixture, gconstpointer data)
{
  Sink *feeder = sink_new (fixture, "feeder");
  Sink *late;

  subscribe (feeder, "s1", "chat.message");
  feed_chat_id (fixture, "s1", 1);
  feed_chat_id (fixture, "s1", 2);
  /* Upstream reconnects and WAVE sends m2 again. */
  wb_hub_handle_upstream_state (fixture->hub, WB_LINK_CONNECTED, WB_LINK_WAITING);
  wb_hub_handle_upstream_state (fixture->hub, WB_LINK_WAITING, WB_LINK_CONNECTED);
  wb_hub_handle_upstream_resynced (fixture->hub, "s1", 100);
  feed_chat_id (fixture, "s1", 2);
  feed_chat_id (fixture, "s1", 3);

  late = sink_new (fixture, "late");
  subscribe (late, "s1", "chat.message");
  g_assert_cmpuint (wb_hub_client_replay (late->client, "s1", 50), ==, 3);
  assert_sink (late, 0, "m1*,m2*,m3*");
  /* The feeder kept its subscription across the reconnect: nothing is new to it. */
  g_assert_cmpuint (wb_hub_client_replay (feeder->client, "s1", 50), ==, 0);
}

static void
test_history_take (Fixture *fixture, gconstpointer data)
{
  Sink *feeder = sink_new (fixture, "feeder");
  Sink *caller = sink_new (fixture, "caller");
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) events = NULL;
  g_autoptr (GPtrArray) again = NULL;

  subscribe (feeder, "s1", NULL);
  feed_chat_id (fixture, "s1", 1);
  feed_reaction (fixture, "s1", 3);

  g_assert_null (wb_hub_client_take_history (caller->client, "s1", 10, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_NOT_SUBSCRIBED);
  g_clear_error (&error);
  g_assert_null (wb_hub_client_take_history (caller->client, "", 10, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  subscribe (caller, "s1", NULL);
  events = wb_hub_client_take_history (caller->client, "s1", 10, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (events->len, ==, 2);
  g_assert_cmpint (wb_event_get_message_type (g_ptr_array_index (events, 0)), ==,
                   WB_MESSAGE_CHAT_MESSAGE);
  g_assert_cmpint (wb_event_get_message_type (g_ptr_array_index (events, 1)), ==,
                   WB_MESSAGE_REACTION_RECEIVED);
  /* Returned, not delivered; and not twice. */
  g_assert_cmpuint (caller->events->len, ==, 0);
  again = wb_hub_client_take_history (caller->client, "s1", 10, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (again->len, ==, 0);
}

/* ---- cache replay -------------------------------------------------------- */

static void
assert_cached (WbEvent *event, const char *type)
{
  g_autoptr (JsonObject) root = event_root (event);

  g_assert_cmpstr (json_object_get_string_member (root, "type"), ==, type);
  g_assert_true (json_object_get_boolean_member (root, "cached"));
  g_assert_true (json_object_has_member (root, "age_ms"));
  g_assert_cmpint (json_object_get_int_member (root, "age_ms"), >=, 0);
  g_assert_true (json_object_has_member (root, "payload"));
  g_assert_cmpstr (wb_event_get_type_name (event), ==, type);
  g_assert_cmpstr (wb_event_get_stream_id (event), ==, "s1");
}

static void
test_cache_replay (Fixture *fixture, gconstpointer data)
{
  Sink *feeder = sink_new (fixture, "feeder");
  Sink *late = sink_new (fixture, "late");
  Sink *chat_only = sink_new (fixture, "chat-only");
  Sink *health_only = sink_new (fixture, "health-only");
  Sink *other = sink_new (fixture, "other");
  g_autoptr (JsonObject) root = NULL;
  JsonObject *payload;

  subscribe (feeder, "s1", NULL);
  feed_started (fixture, "s1");
  feed_health (fixture, "s1", 1000);
  feed_health (fixture, "s1", 2000);
  feed_analytics (fixture, "s1", 10);
  feed_chat (fixture, "s1");
  feed_ended (fixture, "s1");
  g_assert_cmpuint (feeder->events->len, ==, 6);

  subscribe (late, "s1", NULL);
  wb_hub_client_replay_cache (late->client, "s1");
  /* The newer of started/ended, the last health, the last analytics. */
  g_assert_cmpuint (late->events->len, ==, 3);
  assert_cached (sink_event (late, 0), "stream.ended");
  assert_cached (sink_event (late, 1), "stream.health");
  assert_cached (sink_event (late, 2), "analytics.update");

  root = event_root (sink_event (late, 1));
  payload = json_object_get_object_member (root, "payload");
  g_assert_cmpfloat (json_object_get_double_member (payload, "bitrate"), ==, 2000);
  g_assert_cmpstr (json_object_get_string_member (payload, "stream_id"), ==, "s1");
  /* The originals delivered live are untouched. */
  g_clear_pointer (&root, json_object_unref);
  root = event_root (sink_event (feeder, 2));
  g_assert_false (json_object_has_member (root, "cached"));

  /* Only the kinds a client asked for. */
  subscribe (chat_only, "s1", "chat.message");
  wb_hub_client_replay_cache (chat_only->client, "s1");
  g_assert_cmpuint (chat_only->events->len, ==, 0);
  subscribe (health_only, "s1", "stream.health");
  wb_hub_client_replay_cache (health_only->client, "s1");
  g_assert_cmpuint (health_only->events->len, ==, 1);

  /* Nothing for a stream the client is not subscribed to, or with no cache. */
  wb_hub_client_replay_cache (other->client, "s1");
  g_assert_cmpuint (other->events->len, ==, 0);
  subscribe (other, "s2", NULL);
  wb_hub_client_replay_cache (other->client, "s2");
  g_assert_cmpuint (other->events->len, ==, 0);

  /* A stream that leaves the union forgets its cache. */
  unsubscribe (feeder, "s1");
  unsubscribe (late, "s1");
  unsubscribe (chat_only, "s1");
  unsubscribe (health_only, "s1");
  subscribe (other, "s1", NULL);
  wb_hub_client_replay_cache (other->client, "s1");
  g_assert_cmpuint (other->events->len, ==, 0);
}

static void
test_cache_age (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  const guint wait_ms = 120;
  gint64 before_feed_us;
  gint64 replay_us;
  gint64 age_ms;
  g_autoptr (JsonObject) root = NULL;

  subscribe (a, "s1", NULL);
  before_feed_us = g_get_monotonic_time ();
  feed_started (fixture, "s1");
  wb_test_run_for_ms (wait_ms);
  wb_hub_client_replay_cache (a->client, "s1");
  replay_us = g_get_monotonic_time ();

  g_assert_cmpuint (a->events->len, ==, 2);
  root = event_root (sink_event (a, 1));
  age_ms = json_object_get_int_member (root, "age_ms");
  g_assert_cmpint (age_ms, >=, wait_ms);
  /* Received after before_feed_us, replayed before replay_us. */
  g_assert_cmpint (age_ms, <=, (replay_us - before_feed_us) / 1000);
}

/* ---- bridge.state, bridge.resync, errors --------------------------------- */

static void
test_state (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *unsubscribed = sink_new (fixture, "unsubscribed");
  g_autoptr (JsonObject) root = NULL;
  JsonObject *payload;

  subscribe (a, "s1", "chat.message");
  wb_hub_handle_upstream_state (fixture->hub, WB_LINK_WAITING, WB_LINK_CONNECTED);

  g_assert_cmpuint (a->events->len, ==, 1);
  g_assert_cmpuint (unsubscribed->events->len, ==, 1);
  g_assert_true (sink_event (a, 0) == sink_event (unsubscribed, 0));
  g_assert_cmpstr (wb_event_get_type_name (sink_event (a, 0)), ==, "bridge.state");
  g_assert_cmpint (wb_event_get_message_type (sink_event (a, 0)), ==, WB_MESSAGE_TYPE_INVALID);
  root = event_root (sink_event (a, 0));
  g_assert_cmpstr (json_object_get_string_member (root, "type"), ==, "bridge.state");
  payload = json_object_get_object_member (root, "payload");
  g_assert_cmpstr (json_object_get_string_member (payload, "state"), ==, "connected");
  g_assert_cmpstr (json_object_get_string_member (payload, "previous"), ==, "waiting");
  g_assert_true (log_contains (fixture, "state connected"));
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->events_delivered, ==, 2);
}

static void
test_resync (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  Sink *unsubscribed = sink_new (fixture, "unsubscribed");
  gboolean seen_s1 = FALSE;
  gboolean seen_s2 = FALSE;

  subscribe (a, "s1", "chat.message");
  subscribe (a, "s2", "stream.health");
  subscribe (b, "s2", NULL);
  /* Each stream when its subscription is back upstream, with its own gap. */
  wb_hub_handle_upstream_resynced (fixture->hub, "s1", 4200);
  g_assert_cmpuint (a->events->len, ==, 1);
  g_assert_cmpuint (b->events->len, ==, 0);
  wb_hub_handle_upstream_resynced (fixture->hub, "s2", 4200);
  /* A stream everyone left meanwhile: nothing to tell. */
  wb_hub_handle_upstream_resynced (fixture->hub, "gone", 4200);

  g_assert_cmpuint (unsubscribed->events->len, ==, 0);
  g_assert_cmpuint (b->events->len, ==, 1);
  g_assert_cmpuint (a->events->len, ==, 2);
  for (guint i = 0; i < a->events->len; i++)
    {
      g_autoptr (JsonObject) root = event_root (sink_event (a, i));
      JsonObject *payload = json_object_get_object_member (root, "payload");
      const char *stream_id = json_object_get_string_member (payload, "stream_id");

      g_assert_cmpstr (json_object_get_string_member (root, "type"), ==, "bridge.resync");
      g_assert_cmpint (json_object_get_int_member (payload, "gap_ms"), ==, 4200);
      g_assert_cmpstr (wb_event_get_stream_id (sink_event (a, i)), ==, stream_id);
      seen_s1 |= g_str_equal (stream_id, "s1");
      seen_s2 |= g_str_equal (stream_id, "s2");
    }
  g_assert_true (seen_s1 && seen_s2);
  g_assert_cmpstr (wb_event_get_stream_id (sink_event (b, 0)), ==, "s2");
}

static void
test_error_routing (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  Sink *idle = sink_new (fixture, "idle");

  subscribe (a, "s1", "chat.message");
  subscribe (b, "s2", NULL);

  /* To the stream's subscribers whatever their filter. */
  feed (fixture, "{\"type\":\"error\",\"payload\":{\"code\":\"stream_not_found\","
                 "\"message\":\"no such stream\",\"details\":{\"stream_id\":\"s1\"}}}");
  g_assert_cmpuint (a->events->len, ==, 1);
  g_assert_cmpuint (b->events->len, ==, 0);
  g_assert_cmpuint (idle->events->len, ==, 0);
  g_assert_cmpstr (wb_event_get_type_name (sink_event (a, 0)), ==, "error");
  g_assert_cmpint (wb_event_get_message_type (sink_event (a, 0)), ==, WB_MESSAGE_ERROR);
  g_assert_cmpstr (wb_event_get_stream_id (sink_event (a, 0)), ==, "s1");

  /* No stream named, or a stream nobody has: to no one. */
  feed (fixture, "{\"type\":\"error\",\"payload\":{\"code\":\"internal\",\"message\":\"oops\"}}");
  feed (fixture, "{\"type\":\"error\",\"payload\":{\"code\":\"x\",\"message\":\"y\","
                 "\"details\":{\"stream_id\":42}}}");
  feed (fixture, "{\"type\":\"error\",\"payload\":{\"code\":\"x\",\"message\":\"y\","
                 "\"details\":{\"stream_id\":\"s9\"}}}");
  g_assert_cmpuint (a->events->len, ==, 1);
  g_assert_cmpuint (b->events->len, ==, 0);
  g_assert_cmpuint (idle->events->len, ==, 0);
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->events_received, ==, 4);
}

/* ---- sends --------------------------------------------------------------- */

static void
send_done_cb (WbHubClient *client, const GError *error, gpointer user_data)
{
  Sink *sink = user_data;

  g_assert_true (sink->client == client);
  sink->sends_done++;
  g_clear_error (&sink->send_error);
  if (error != NULL)
    sink->send_error = g_error_copy (error);
}

static gboolean
try_send (Sink *sink, WbMessageType type, const char *stream_id, const char *text, GError **error)
{
  return wb_hub_client_send (sink->client, type, stream_id, text, send_done_cb, sink, NULL, error);
}

static void
test_send (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) failure = NULL;
  g_autofree char *chat = NULL;
  g_autofree char *reaction = NULL;

  g_assert_true (try_send (a, WB_MESSAGE_CHAT_MESSAGE, "s1", "hello \"there\"", &error));
  g_assert_no_error (error);
  g_assert_true (try_send (a, WB_MESSAGE_REACTION_SENT, "s1", "🔥", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 2);
  /* Not before upstream reports the outcome. */
  g_assert_cmpuint (a->sends_done, ==, 0);

  chat = wb_json_to_string (
      ((SendCall *)g_ptr_array_index (fixture->recorder.send_calls, 0))->message, NULL);
  g_assert_cmpstr (chat, ==,
                   "{\"type\":\"chat.message\",\"stream_id\":\"s1\","
                   "\"message\":\"hello \\\"there\\\"\"}");
  reaction = wb_json_to_string (
      ((SendCall *)g_ptr_array_index (fixture->recorder.send_calls, 1))->message, NULL);
  g_assert_cmpstr (reaction, ==,
                   "{\"type\":\"reaction.sent\",\"stream_id\":\"s1\",\"reaction\":\"🔥\"}");

  recorder_complete_send (&fixture->recorder, 0, NULL);
  g_assert_cmpuint (a->sends_done, ==, 1);
  g_assert_no_error (a->send_error);

  failure = g_error_new_literal (WB_SEND_ERROR, WB_SEND_ERROR_FAILED, "expired");
  recorder_complete_send (&fixture->recorder, 1, failure);
  g_assert_cmpuint (a->sends_done, ==, 2);
  g_assert_error (a->send_error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
}

static void
test_send_rate_limited (Fixture *fixture, gconstpointer data)
{
  Sink *a;
  Sink *b;
  g_autoptr (GError) error = NULL;

  fixture->config->chat_per_minute = 2;
  fixture->config->reactions_per_minute = 1;
  a = sink_new (fixture, "a");
  b = sink_new (fixture, "b");

  g_assert_true (try_send (a, WB_MESSAGE_CHAT_MESSAGE, "s1", "one", NULL));
  g_assert_true (try_send (a, WB_MESSAGE_CHAT_MESSAGE, "s2", "two", NULL));
  g_assert_false (try_send (a, WB_MESSAGE_CHAT_MESSAGE, "s1", "three", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_RATE_LIMITED);
  g_clear_error (&error);

  /* Reactions have their own bucket, and so has every client. */
  g_assert_true (try_send (a, WB_MESSAGE_REACTION_SENT, "s1", "👍", NULL));
  g_assert_false (try_send (a, WB_MESSAGE_REACTION_SENT, "s1", "👍", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_RATE_LIMITED);
  g_clear_error (&error);
  g_assert_true (try_send (b, WB_MESSAGE_CHAT_MESSAGE, "s1", "mine", NULL));

  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 4);

  /* A reload to 0 stops chat at once; refused sends never call back. */
  fixture->config->chat_per_minute = 0;
  wb_hub_set_config (fixture->hub, fixture->config);
  g_assert_false (try_send (b, WB_MESSAGE_CHAT_MESSAGE, "s1", "more", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_RATE_LIMITED);
  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 4);
  g_assert_cmpuint (a->sends_done + b->sends_done, ==, 0);
}

static void
test_send_invalid (Fixture *fixture, gconstpointer data)
{
  Sink *a;
  g_autofree char *long_id = g_strnfill (WB_MESSAGE_MAX_STREAM_ID_BYTES + 1, 'x');
  g_autofree char *long_text = g_strnfill (WB_MESSAGE_MAX_TEXT_BYTES + 1, 'x');
  g_autofree char *max_id = g_strnfill (WB_MESSAGE_MAX_STREAM_ID_BYTES, 'x');
  struct
  {
    WbMessageType type;
    const char *stream_id;
    const char *text;
  } cases[] = {
    { WB_MESSAGE_CHAT_MESSAGE, "s1", "" },          { WB_MESSAGE_CHAT_MESSAGE, "s1", NULL },
    { WB_MESSAGE_CHAT_MESSAGE, "", "hi" },          { WB_MESSAGE_CHAT_MESSAGE, NULL, "hi" },
    { WB_MESSAGE_REACTION_SENT, long_id, "hi" },    { WB_MESSAGE_REACTION_SENT, "s1", long_text },
    { WB_MESSAGE_REACTION_SENT, "s1", "\xff\xfe" }, { WB_MESSAGE_PING, "s1", "hi" },
    { WB_MESSAGE_SUBSCRIBE, "s1", "hi" },
  };

  fixture->config->chat_per_minute = 1;
  fixture->config->reactions_per_minute = 1;
  a = sink_new (fixture, "a");

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;

      g_assert_false (try_send (a, cases[i].type, cases[i].stream_id, cases[i].text, &error));
      g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
    }
  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 0);

  /* Refusals cost no tokens; the longest id is fine. */
  g_assert_true (try_send (a, WB_MESSAGE_CHAT_MESSAGE, max_id, "ok", NULL));
  g_assert_true (try_send (a, WB_MESSAGE_REACTION_SENT, "s1", "ok", NULL));
  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 2);
  g_assert_cmpuint (a->sends_done, ==, 0);
}

static void
test_send_client_freed (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  g_autoptr (GError) failure = NULL;

  g_assert_true (try_send (a, WB_MESSAGE_CHAT_MESSAGE, "s1", "one", NULL));
  g_assert_true (try_send (a, WB_MESSAGE_REACTION_SENT, "s1", "two", NULL));
  g_assert_true (try_send (b, WB_MESSAGE_CHAT_MESSAGE, "s1", "three", NULL));
  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 3);

  /* The outcome arrives after the client is gone: swallowed. */
  g_clear_pointer (&a->client, wb_hub_client_free);
  recorder_complete_send (&fixture->recorder, 0, NULL);
  failure = g_error_new_literal (WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED, "down");
  recorder_complete_send (&fixture->recorder, 1, failure);
  g_assert_cmpuint (a->sends_done, ==, 0);

  /* Others' sends are unaffected. */
  recorder_complete_send (&fixture->recorder, 2, NULL);
  g_assert_cmpuint (b->sends_done, ==, 1);
}

/* A send callback that frees its own client must not trip the hub. */
static void
send_done_free_cb (WbHubClient *client, const GError *error, gpointer user_data)
{
  Sink *sink = user_data;

  sink->sends_done++;
  g_clear_pointer (&sink->client, wb_hub_client_free);
}

static void
test_send_free_in_callback (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");

  g_assert_true (wb_hub_client_send (a->client, WB_MESSAGE_CHAT_MESSAGE, "s1", "one",
                                     send_done_free_cb, a, NULL, NULL));
  g_assert_true (wb_hub_client_send (a->client, WB_MESSAGE_CHAT_MESSAGE, "s1", "two",
                                     send_done_free_cb, a, NULL, NULL));
  recorder_complete_send (&fixture->recorder, 0, NULL);
  g_assert_null (a->client);
  recorder_complete_send (&fixture->recorder, 1, NULL);
  g_assert_cmpuint (a->sends_done, ==, 1);
}

static void
count_destroy (gpointer user_data)
{
  (*(guint *)user_data)++;
}

static void
count_outcome_cb (WbHubClient *client, const GError *error, gpointer user_data)
{
  /* The context is still alive when the outcome arrives. */
  g_assert_cmpuint (*(guint *)user_data, ==, 0);
}

/* The hub owns a send's context: destroyed once, whatever happens. */
static void
test_send_context_destroyed_once (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  guint answered = 0;
  guint orphaned = 0;
  guint refused = 0;

  g_assert_true (wb_hub_client_send (a->client, WB_MESSAGE_CHAT_MESSAGE, "s1", "one",
                                     count_outcome_cb, &answered, count_destroy, NULL));
  recorder_complete_send (&fixture->recorder, 0, NULL);
  g_assert_cmpuint (answered, ==, 1);

  g_assert_true (wb_hub_client_send (a->client, WB_MESSAGE_CHAT_MESSAGE, "s1", "two",
                                     count_outcome_cb, &orphaned, count_destroy, NULL));
  g_assert_false (wb_hub_client_send (a->client, WB_MESSAGE_CHAT_MESSAGE, "s1", "",
                                      count_outcome_cb, &refused, count_destroy, NULL));
  g_assert_cmpuint (refused, ==, 1);
  g_clear_pointer (&a->client, wb_hub_client_free);
  g_assert_cmpuint (orphaned, ==, 1);
  /* The late outcome finds nobody and destroys nothing twice. */
  recorder_complete_send (&fixture->recorder, 1, NULL);
  g_assert_cmpuint (orphaned, ==, 1);
}

/* ---- per-user quotas ----------------------------------------------------- */

static gboolean
try_subscribe (Sink *sink, const char *stream_id, GError **error)
{
  return wb_hub_client_subscribe (sink->client, stream_id, NULL, NULL, error);
}

/* MaxClientsPerUser counts one uid's clients; others are not disturbed. */
static void
test_quota_clients_per_user (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Sink *third;
  Sink *other;

  fixture->config->max_clients_per_user = 2;
  sink_new_full (fixture, "u1-a", 5001, NULL);
  sink_new_full (fixture, "u1-b", 5001, NULL);
  third = sink_new_full (fixture, "u1-c", 5001, &error);
  g_assert_null (third->client);
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_CLIENTS);
  g_assert_nonnull (strstr (error->message, "MaxClientsPerUser"));
  g_clear_error (&error);
  other = sink_new_full (fixture, "u2", 5002, &error);
  g_assert_no_error (error);
  g_assert_nonnull (other->client);
  /* Root is exempt from per-user quotas. */
  for (guint i = 0; i < 3; i++)
    {
      Sink *root = sink_new_full (fixture, "root", 0, &error);

      g_assert_no_error (error);
      g_assert_nonnull (root->client);
    }
  /* A client that leaves frees its place. */
  g_clear_pointer (&((Sink *)g_ptr_array_index (fixture->sinks, 0))->client, wb_hub_client_free);
  third = sink_new_full (fixture, "u1-c", 5001, &error);
  g_assert_no_error (error);
  g_assert_nonnull (third->client);
}

/* MaxClients bounds everyone together. */
static void
test_quota_clients_total (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  guint before = wb_hub_get_status (fixture->hub)->clients;
  Sink *refused;

  fixture->config->max_clients = before + 1;
  sink_new (fixture, "last");
  refused = sink_new_full (fixture, "root", 0, &error);
  g_assert_null (refused->client);
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_CLIENTS);
  g_assert_nonnull (strstr (error->message, "MaxClients="));
}

/* MaxSubscriptionsPerUser sums one uid's subscriptions over its clients;
 * re-subscribing to a stream already held is no new subscription. */
static void
test_quota_subscriptions_per_user (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Sink *a = sink_new_full (fixture, "u1-a", 5001, NULL);
  Sink *b = sink_new_full (fixture, "u1-b", 5001, NULL);
  Sink *other = sink_new_full (fixture, "u2", 5002, NULL);

  fixture->config->max_subscriptions_per_user = 3;
  subscribe (a, "s1", NULL);
  subscribe (a, "s2", NULL);
  subscribe (b, "s1", NULL);
  subscribe (a, "s2", "chat.message");
  g_assert_false (try_subscribe (b, "s3", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS);
  g_assert_nonnull (strstr (error->message, "MaxSubscriptionsPerUser"));
  g_clear_error (&error);
  /* Not the union's fault: another user still subscribes. */
  subscribe (other, "s3", NULL);
  /* Ending one gives the place back, also when a client leaves. */
  unsubscribe (a, "s1");
  subscribe (b, "s3", NULL);
  g_clear_pointer (&a->client, wb_hub_client_free);
  subscribe (b, "s4", NULL);
}

/* MaxStreams bounds the distinct streams followed upstream, for everyone. */
static void
test_quota_streams (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Sink *a = sink_new (fixture, "a");
  Sink *root = sink_new_full (fixture, "root", 0, NULL);

  fixture->config->max_streams = 2;
  subscribe (a, "s1", NULL);
  subscribe (a, "s2", NULL);
  g_assert_false (try_subscribe (root, "s3", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS);
  g_assert_nonnull (strstr (error->message, "MaxStreams"));
  /* A stream already followed is no new one. */
  subscribe (root, "s2", NULL);
  g_assert_cmpuint (fixture->recorder.set_calls->len, ==, 2);
}

/* A user's allowance is shared by all its clients: a new connection
 * refills nothing; another user has its own. The owner reaches upstream. */
static void
test_allowance_per_user (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  Sink *a = sink_new_full (fixture, "u1-a", 5001, NULL);
  Sink *b;
  Sink *other = sink_new_full (fixture, "u2", 5002, NULL);

  fixture->config->chat_per_minute = 1;
  g_assert_true (try_send (a, WB_MESSAGE_CHAT_MESSAGE, "s1", "one", &error));
  g_clear_pointer (&a->client, wb_hub_client_free);
  b = sink_new_full (fixture, "u1-b", 5001, NULL);
  g_assert_false (try_send (b, WB_MESSAGE_CHAT_MESSAGE, "s1", "two", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_RATE_LIMITED);
  g_clear_error (&error);
  g_assert_true (try_send (other, WB_MESSAGE_CHAT_MESSAGE, "s1", "three", &error));
  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 2);
  g_assert_cmpint (((SendCall *)g_ptr_array_index (fixture->recorder.send_calls, 0))->owner, ==,
                   5001);
  g_assert_cmpint (((SendCall *)g_ptr_array_index (fixture->recorder.send_calls, 1))->owner, ==,
                   5002);
}

/* [Access] SendGroup on every transport: the hub decides, from the
 * credentials the frontend vouches for. */
static void
test_send_group (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gid_t member_groups[] = { 7777 };
  g_autoptr (WbPeerCredentials) member_credentials
      = wb_peer_credentials_new (1, 5003, 5003, member_groups, 1);
  Sink *outsider = sink_new_full (fixture, "outsider", 5001, NULL);
  Sink *anonymous = sink_new_full (fixture, "anonymous", WB_HUB_UID_UNKNOWN, NULL);
  Sink *root = sink_new_full (fixture, "root", 0, NULL);
  Sink *member = g_new0 (Sink, 1);

  g_free (fixture->config->send_group);
  fixture->config->send_group = g_strdup ("7777");
  wb_hub_set_config (fixture->hub, fixture->config);
  member->fixture = fixture;
  member->events = g_ptr_array_new_with_free_func ((GDestroyNotify)wb_event_unref);
  member->client = wb_hub_client_new (fixture->hub, "member", member_credentials, &recording_sink,
                                      member, NULL);
  g_ptr_array_add (fixture->sinks, member);

  g_assert_false (try_send (outsider, WB_MESSAGE_CHAT_MESSAGE, "s1", "hi", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_FORBIDDEN);
  g_assert_nonnull (strstr (error->message, "'7777'"));
  g_clear_error (&error);
  g_assert_false (try_send (anonymous, WB_MESSAGE_REACTION_SENT, "s1", "x", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_FORBIDDEN);
  g_clear_error (&error);
  g_assert_true (try_send (member, WB_MESSAGE_CHAT_MESSAGE, "s1", "hi", &error));
  g_assert_true (try_send (root, WB_MESSAGE_CHAT_MESSAGE, "s1", "hi", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (fixture->recorder.send_calls->len, ==, 2);
}

/* D-Bus callers' credentials carry no primary group ((gid_t)-1: the bus
 * lists the groups without saying which is primary); a group whose gid is
 * (gid_t)-1 (NSS resolves one from /etc/group) must not admit them all. */
static void
test_send_group_unknown_primary (void)
{
  gid_t groups[] = { 7777 };
  g_autoptr (WbPeerCredentials) dbus_caller
      = wb_peer_credentials_new (1, 5003, (gid_t)-1, groups, G_N_ELEMENTS (groups));
  g_autoptr (WbPeerCredentials) dbus_root = wb_peer_credentials_new (1, 0, (gid_t)-1, NULL, 0);

  g_assert_false (wb_peer_credentials_in_group (dbus_caller, (gid_t)-1));
  g_assert_true (wb_peer_credentials_in_group (dbus_caller, 7777));
  g_assert_false (wb_peer_credentials_in_group (dbus_caller, 7778));
  g_assert_true (wb_peer_credentials_in_group (dbus_root, (gid_t)-1));
}

/* ---- subscriptions: limits and arguments --------------------------------- */

static void
test_subscribe_cap (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  g_autoptr (GError) error = NULL;

  fixture->config->max_subscriptions = 2;
  subscribe (a, "s1", NULL);
  subscribe (a, "s2", NULL);
  g_assert_false (wb_hub_client_subscribe (a->client, "s3", NULL, NULL, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS);
  g_clear_error (&error);
  g_assert_false (wb_hub_client_is_subscribed (a->client, "s3"));
  g_assert_null (wb_hub_get_stream (fixture->hub, "s3"));
  g_assert_cmpuint (n_set_calls (fixture), ==, 2);

  /* Changing an existing subscription is not a new one; the cap is per client. */
  subscribe (a, "s2", "chat.message");
  subscribe (b, "s3", NULL);

  unsubscribe (a, "s1");
  subscribe (a, "s3", NULL);
  g_assert_true (wb_hub_client_is_subscribed (a->client, "s3"));
}

static void
test_subscribe_invalid (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  g_autofree char *long_id = g_strnfill (WB_MESSAGE_MAX_STREAM_ID_BYTES + 1, 's');
  const char *const bad_events[] = { "chat.message", "pong", NULL };
  const char *const unknown_events[] = { "nope", NULL };
  g_autoptr (GError) error = NULL;

  g_assert_false (wb_hub_client_subscribe (a->client, "", NULL, NULL, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (wb_hub_client_subscribe (a->client, NULL, NULL, NULL, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (wb_hub_client_subscribe (a->client, long_id, NULL, NULL, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (wb_hub_client_subscribe (a->client, "s1", bad_events, NULL, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (wb_hub_client_subscribe (a->client, "s1", unknown_events, NULL, &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_cmpuint (n_set_calls (fixture), ==, 0);
  g_assert_false (wb_hub_client_is_subscribed (a->client, "s1"));

  /* A failed replacement keeps the old subscription. */
  subscribe (a, "s1", "chat.message");
  g_assert_false (wb_hub_client_subscribe (a->client, "s1", bad_events, NULL, &error));
  g_clear_error (&error);
  g_assert_true (wb_hub_client_is_subscribed (a->client, "s1"));
  g_assert_cmpuint (n_set_calls (fixture), ==, 1);

  g_assert_false (wb_hub_client_unsubscribe (a->client, "s2", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_NOT_SUBSCRIBED);
  g_clear_error (&error);
  g_assert_false (wb_hub_client_unsubscribe (a->client, "", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  unsubscribe (a, "s1");
  g_assert_false (wb_hub_client_unsubscribe (a->client, "s1", &error));
  g_assert_error (error, WB_HUB_ERROR, WB_HUB_ERROR_NOT_SUBSCRIBED);
}

/* ---- status, reconnect, reload ------------------------------------------- */

static void
test_status (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");
  g_autoptr (JsonObject) status = NULL;
  const char *const keys[] = {
    "state",
    "state_since",
    "upstream_url",
    "upstream_rtt_us",
    "connected_since",
    "next_attempt",
    "reconnects",
    "last_close_code",
    "last_close_reason",
    "last_error",
    "held_sends",
    "invalid_messages",
    "clients",
    "streams",
    "events_received",
    "events_delivered",
    "events_dropped",
    "version",
    "streams_total",
  };
  const char *const stream_keys[] = {
    "stream_id",   "live",         "subscribers", "concurrent_viewers",
    "total_views", "peak_viewers", "bitrate",     "fps",
    "packet_loss", "latency",      "started_at",  "ended_at",
  };
  JsonArray *streams;
  JsonObject *s1;

  subscribe (a, "s2", NULL);
  subscribe (a, "s1", NULL);
  subscribe (b, "s1", "chat.message");
  feed_started (fixture, "s1");
  feed_analytics (fixture, "s1", 12);

  status = wb_hub_build_status (fixture->hub, NULL, 0);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    g_assert_true (json_object_has_member (status, keys[i]));
  g_assert_cmpuint (json_object_get_size (status), ==, G_N_ELEMENTS (keys));

  g_assert_cmpstr (json_object_get_string_member (status, "state"), ==, "connected");
  g_assert_cmpstr (json_object_get_string_member (status, "upstream_url"), ==,
                   "wss://ws.example/v1/streams?api_key=REDACTED");
  g_assert_cmpint (json_object_get_int_member (status, "upstream_rtt_us"), ==, 1234);
  g_assert_cmpint (json_object_get_int_member (status, "connected_since"), ==, 1700000000000000);
  g_assert_cmpint (json_object_get_int_member (status, "reconnects"), ==, 3);
  g_assert_cmpint (json_object_get_int_member (status, "last_close_code"), ==, 1006);
  g_assert_cmpstr (json_object_get_string_member (status, "last_error"), ==,
                   "stream_not_found: no such stream");
  g_assert_cmpint (json_object_get_int_member (status, "state_since"), ==, 1700000000000000);
  g_assert_cmpint (json_object_get_int_member (status, "next_attempt"), ==, 0);
  g_assert_cmpstr (json_object_get_string_member (status, "last_close_reason"), ==, "going away");
  g_assert_cmpint (json_object_get_int_member (status, "held_sends"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (status, "invalid_messages"), ==, 7);
  g_assert_cmpint (json_object_get_int_member (status, "clients"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (status, "events_received"), ==, 2);
  g_assert_cmpstr (json_object_get_string_member (status, "version"), ==, WB_VERSION);

  streams = json_object_get_array_member (status, "streams");
  g_assert_cmpuint (json_array_get_length (streams), ==, 2);
  s1 = json_array_get_object_element (streams, 0);
  for (guint i = 0; i < G_N_ELEMENTS (stream_keys); i++)
    g_assert_true (json_object_has_member (s1, stream_keys[i]));
  g_assert_cmpstr (json_object_get_string_member (s1, "stream_id"), ==, "s1");
  g_assert_true (json_object_get_boolean_member (s1, "live"));
  g_assert_cmpint (json_object_get_int_member (s1, "subscribers"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (s1, "concurrent_viewers"), ==, 12);
  g_assert_cmpint (json_object_get_int_member (s1, "total_views"), ==, 5000000000);
  g_assert_cmpstr (json_object_get_string_member (s1, "started_at"), ==, "2024-01-01T10:00:00Z");
  g_assert_cmpstr (json_object_get_string_member (s1, "ended_at"), ==, "");
  g_assert_cmpstr (
      json_object_get_string_member (json_array_get_object_element (streams, 1), "stream_id"), ==,
      "s2");

  /* Read at each call, not cached. */
  fixture->recorder.status.state = WB_LINK_WAITING;
  fixture->recorder.status.next_attempt_us = 1700000000500000;
  g_clear_pointer (&status, json_object_unref);
  status = wb_hub_build_status (fixture->hub, NULL, 0);
  g_assert_cmpstr (json_object_get_string_member (status, "state"), ==, "waiting");
  g_assert_cmpint (json_object_get_int_member (status, "next_attempt"), ==, 1700000000500000);

  /* status_changed reaches observers. */
  g_ptr_array_set_size (fixture->log, 0);
  wb_hub_handle_upstream_status (fixture->hub);
  g_assert_true (log_contains (fixture, "status"));
  g_assert_cmpint (wb_hub_get_status (fixture->hub)->link.state, ==, WB_LINK_WAITING);
}

/* However many streams: one page at a time, with a cursor to the next. */
static void
test_status_pages (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new_full (fixture, "root", 0, NULL);
  g_autoptr (GPtrArray) seen = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *cursor = NULL;
  guint pages = 0;

  fixture->config->max_subscriptions = 1000;
  for (guint i = 0; i < 250; i++)
    {
      g_autofree char *id = g_strdup_printf ("s%03u", i);

      subscribe (a, id, NULL);
    }
  do
    {
      g_autoptr (JsonObject) status = wb_hub_build_status (fixture->hub, cursor, 0);
      JsonArray *streams = json_object_get_array_member (status, "streams");

      g_assert_cmpint (json_object_get_int_member (status, "streams_total"), ==, 250);
      g_assert_cmpuint (json_array_get_length (streams), <=, WB_HUB_STATUS_STREAMS_PAGE);
      for (guint i = 0; i < json_array_get_length (streams); i++)
        g_ptr_array_add (seen, g_strdup (json_object_get_string_member (
                                   json_array_get_object_element (streams, i), "stream_id")));
      g_free (cursor);
      cursor = g_strdup (json_object_get_string_member_with_default (status, "streams_next", NULL));
      pages++;
    }
  while (cursor != NULL);
  g_assert_cmpuint (pages, ==, 3);
  g_assert_cmpuint (seen->len, ==, 250);
  for (guint i = 0; i < seen->len; i++)
    {
      g_autofree char *expected = g_strdup_printf ("s%03u", i);

      g_assert_cmpstr (g_ptr_array_index (seen, i), ==, expected);
    }
  /* A smaller page on request; a larger one is capped. */
  {
    g_autoptr (JsonObject) small = wb_hub_build_status (fixture->hub, "s010", 5);
    g_autoptr (JsonObject) large = wb_hub_build_status (fixture->hub, NULL, 100000);
    JsonArray *streams = json_object_get_array_member (small, "streams");

    g_assert_cmpuint (json_array_get_length (streams), ==, 5);
    g_assert_cmpstr (
        json_object_get_string_member (json_array_get_object_element (streams, 0), "stream_id"), ==,
        "s011");
    g_assert_cmpstr (json_object_get_string_member (small, "streams_next"), ==, "s015");
    g_assert_cmpuint (json_array_get_length (json_object_get_array_member (large, "streams")), ==,
                      250);
    g_assert_false (json_object_has_member (large, "streams_next"));
  }
}

static void
test_reconnect (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (wb_hub_reconnect (fixture->hub, &error));
  g_assert_no_error (error);
  /* Upstream's refusal reaches the caller as it is. */
  fixture->recorder.refuse_reconnect = TRUE;
  g_assert_false (wb_hub_reconnect (fixture->hub, &error));
  g_assert_error (error, WB_LINK_ERROR, WB_LINK_ERROR_SERVER_WAIT);
  g_assert_cmpuint (fixture->recorder.reconnects, ==, 2);
}

/* ---- the contract: nothing calls back into the hub during a fan-out -------- */

/* A frontend that freed a client from deliver() would pull the list from
 * under the fan-out: the hub refuses (a programmer error) and stays whole. */
static void
test_free_in_deliver_refused (Fixture *fixture, gconstpointer data)
{
  Sink *a = sink_new (fixture, "a");
  Sink *b = sink_new (fixture, "b");

  subscribe (a, "s1", NULL);
  subscribe (b, "s1", NULL);
  a->free_on_deliver = b;
  g_test_expect_message ("wave-hub", G_LOG_LEVEL_CRITICAL, "*dispatching == 0*");
  feed_chat (fixture, "s1");
  g_test_assert_expected_messages ();

  /* Refused, so b is still there and got the event too. */
  g_assert_nonnull (b->client);
  g_assert_cmpuint (a->events->len, ==, 1);
  g_assert_cmpuint (b->events->len, ==, 1);
  g_assert_cmpuint (wb_hub_get_status (fixture->hub)->clients, ==, 2);
  g_assert_cmpuint (wb_hub_get_stream (fixture->hub, "s1")->subscribers, ==, 2);
}

typedef struct
{
  Fixture *fixture;
  guint id;
  guint calls;
} SelfRemover;

static void
remove_self_cb (gpointer user_data)
{
  SelfRemover *remover = user_data;

  remover->calls++;
  wb_hub_remove_observer (remover->fixture->hub, remover->id);
}

static void
test_observer_removed_in_callback_refused (Fixture *fixture, gconstpointer data)
{
  const WbHubObserver observer = { .status_changed = remove_self_cb };
  SelfRemover remover = { fixture, 0, 0 };

  remover.id = wb_hub_add_observer (fixture->hub, &observer, &remover);
  g_test_expect_message ("wave-hub", G_LOG_LEVEL_CRITICAL, "*dispatching == 0*");
  wb_hub_handle_upstream_status (fixture->hub);
  g_test_assert_expected_messages ();
  /* Still registered: removed from outside a callback, it goes. */
  wb_hub_remove_observer (fixture->hub, remover.id);
  wb_hub_handle_upstream_status (fixture->hub);
  g_assert_cmpuint (remover.calls, ==, 1);
  g_assert_cmpuint (log_count_prefix (fixture, "status"), ==, 2);
}

static void
test_hub_freed_first (void)
{
  g_autoptr (WbConfig) config = wb_config_new_defaults (TRUE);
  Recorder recorder = { 0 };
  WbHub *hub;
  WbHubClient *client;
  g_autoptr (GError) error = NULL;

  recorder.set_calls = g_ptr_array_new_with_free_func ((GDestroyNotify)set_call_free);
  recorder.send_calls = g_ptr_array_new_with_free_func ((GDestroyNotify)send_call_free);
  hub = wb_hub_new (config, &recorder_ops, &recorder);
  client = wb_hub_client_new (hub, "late", NULL, NULL, NULL, NULL);
  g_assert_true (wb_hub_client_subscribe (client, "s1", NULL, NULL, NULL));
  g_assert_true (
      wb_hub_client_send (client, WB_MESSAGE_CHAT_MESSAGE, "s1", "hi", NULL, NULL, NULL, NULL));

  wb_hub_free (hub);
  g_assert_cmpuint (recorder.set_calls->len, ==, 1);
  /* Cut off, but safe to use and free. */
  g_assert_false (wb_hub_client_is_subscribed (client, "s1"));
  g_assert_false (wb_hub_client_subscribe (client, "s1", NULL, NULL, &error));
  g_assert_nonnull (error);
  wb_hub_client_free (client);
  ((SendCall *)g_ptr_array_index (recorder.send_calls, 0))
      ->callback (NULL, ((SendCall *)g_ptr_array_index (recorder.send_calls, 0))->user_data);

  g_ptr_array_unref (recorder.set_calls);
  g_ptr_array_unref (recorder.send_calls);
}

static void
test_event_new (void)
{
  const char *expected = "{\"type\":\"bridge.dropped\",\"payload\":{\"count\":3}}\n";
  JsonObject *payload = json_object_new ();
  g_autoptr (WbEvent) event = NULL;
  g_autoptr (WbEvent) extra = NULL;
  GBytes *line;

  json_object_set_int_member (payload, "count", 3);
  event = wb_event_new ("bridge.dropped", NULL, payload);
  g_assert_cmpstr (wb_event_get_type_name (event), ==, "bridge.dropped");
  g_assert_null (wb_event_get_stream_id (event));
  g_assert_true (wb_event_get_payload (event) == payload);
  line = wb_event_get_line (event);
  g_assert_true (line == wb_event_get_line (event));
  g_assert_cmpmem (g_bytes_get_data (line, NULL), g_bytes_get_size (line), expected,
                   strlen (expected));

  /* Our own copy of a known type keeps its type. */
  extra = wb_event_new ("pong", "s1", json_object_new ());
  g_assert_cmpint (wb_event_get_message_type (extra), ==, WB_MESSAGE_PONG);
  g_assert_cmpstr (wb_event_get_stream_id (extra), ==, "s1");
  g_assert_true (wb_event_ref (extra) == extra);
  wb_event_unref (extra);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("/hub/union/shared", test_union_shared);
  ADD ("/hub/union/grow-shrink", test_union_grow_shrink);
  ADD ("/hub/union/replace", test_union_replace);
  ADD ("/hub/union/all-events", test_union_all_events);
  ADD ("/hub/union/client-freed", test_union_client_freed);
  ADD ("/hub/fanout/filter", test_fanout_filter);
  ADD ("/hub/fanout/shared-line", test_fanout_shared_line);
  ADD ("/hub/fanout/counters", test_fanout_counters);
  ADD ("/hub/fanout/observers", test_fanout_observers);
  ADD ("/hub/stream/live-inferred-from-health", test_live_inferred_from_health);
  ADD ("/hub/union/subscribe-is-demand", test_subscribe_is_demand);
  ADD ("/hub/cache/replay", test_cache_replay);
  ADD ("/hub/cache/age", test_cache_age);
  ADD ("/hub/state", test_state);
  ADD ("/hub/resync", test_resync);
  ADD ("/hub/error-routing", test_error_routing);
  ADD ("/hub/send/ok", test_send);
  ADD ("/hub/send/rate-limited", test_send_rate_limited);
  ADD ("/hub/send/invalid", test_send_invalid);
  ADD ("/hub/send/client-freed", test_send_client_freed);
  ADD ("/hub/send/free-in-callback", test_send_free_in_callback);
  ADD ("/hub/subscribe/cap", test_subscribe_cap);
  ADD ("/hub/subscribe/invalid", test_subscribe_invalid);
  ADD ("/hub/status", test_status);
  ADD ("/hub/reconnect", test_reconnect);
  ADD ("/hub/status/pages", test_status_pages);
  ADD ("/hub/send/context-destroyed-once", test_send_context_destroyed_once);
  ADD ("/hub/quota/clients-per-user", test_quota_clients_per_user);
  ADD ("/hub/quota/clients-total", test_quota_clients_total);
  ADD ("/hub/quota/subscriptions-per-user", test_quota_subscriptions_per_user);
  ADD ("/hub/quota/streams", test_quota_streams);
  ADD ("/hub/quota/allowance-per-user", test_allowance_per_user);
  ADD ("/hub/send/send-group", test_send_group);
  ADD ("/hub/history/order", test_history_order);
  ADD ("/hub/history/filter", test_history_filter);
  ADD ("/hub/history/bounds", test_history_bounds);
  ADD ("/hub/history/upstream-twice", test_history_upstream_twice);
  ADD ("/hub/history/take", test_history_take);
  ADD ("/hub/contract/free-in-deliver-refused", test_free_in_deliver_refused);
  ADD ("/hub/contract/observer-removed-in-callback-refused",
       test_observer_removed_in_callback_refused);
#undef ADD
  g_test_add_func ("/hub/freed-before-clients", test_hub_freed_first);
  g_test_add_func ("/hub/event/new", test_event_new);
  g_test_add_func ("/hub/send/send-group-unknown-primary", test_send_group_unknown_primary);
  return g_test_run ();
}
