/* SPDX-License-Identifier: MIT */
/*
 * wave-sim against a real libsoup WebSocket client: the WAVE protocol it
 * speaks (auth, ping, subscriptions, errors, rate limit), every /sim/
 * control endpoint, its limits, TLS with a throwaway CA, and shutdown.
 */
#define G_LOG_DOMAIN "wave-test-sim"

#include <glib/gstdio.h>
#include <libsoup/soup.h>
#include <string.h>

#include "message.h"
#include "sim-fixture.h"
#include "test-util.h"

#define FAST "50" /* --speed for tests that want natural events quickly */

static SimFixture *
start_sim (const char *const *args)
{
  g_autoptr (GError) error = NULL;
  SimFixture *sim = sim_fixture_new (args, &error);

  g_assert_no_error (error);
  g_assert_nonnull (sim);
  return sim;
}

static JsonObject *
post_ok (SimFixture *sim, const char *path, const char *body)
{
  g_autoptr (GError) error = NULL;
  JsonObject *answer = sim_fixture_post (sim, path, body, &error);

  g_assert_no_error (error);
  g_assert_nonnull (answer);
  return answer;
}

static JsonObject *
get_stats (SimFixture *sim)
{
  g_autoptr (GError) error = NULL;
  JsonObject *stats = sim_fixture_get_stats (sim, &error);

  g_assert_no_error (error);
  g_assert_nonnull (stats);
  return stats;
}

static void
post_fails (SimFixture *sim, const char *path, const char *body, guint expected_status)
{
  g_autoptr (GError) error = NULL;
  guint status = 0;
  g_autoptr (JsonObject) answer = sim_fixture_request (sim, "POST", path, body, &status, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, expected_status);
  g_assert_false (json_object_get_boolean_member_with_default (answer, "ok", TRUE));
  g_assert_nonnull (json_object_get_string_member_with_default (answer, "error", NULL));
}

/* ---- a WebSocket client ---- */

typedef struct
{
  SoupSession *session;
  SoupMessage *msg;
  SoupWebsocketConnection *ws;
  gboolean connect_done;
  GError *connect_error;
  GPtrArray *messages; /* JsonObject: every text frame that parsed as an object */
  GPtrArray *texts;    /* char *: every text frame */
  GPtrArray *binaries; /* GBytes */
  gboolean closed;
  gushort close_code;
  gint64 next_ping;
} WsClient;

static void
ws_client_free (WsClient *client)
{
  if (client == NULL)
    return;
  if (client->ws != NULL)
    {
      g_signal_handlers_disconnect_by_data (client->ws, client);
      if (soup_websocket_connection_get_state (client->ws) == SOUP_WEBSOCKET_STATE_OPEN)
        soup_websocket_connection_close (client->ws, SOUP_WEBSOCKET_CLOSE_NORMAL, NULL);
    }
  g_clear_object (&client->ws);
  g_clear_object (&client->msg);
  g_clear_object (&client->session);
  g_clear_error (&client->connect_error);
  g_ptr_array_unref (client->messages);
  g_ptr_array_unref (client->texts);
  g_ptr_array_unref (client->binaries);
  g_free (client);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WsClient, ws_client_free)

static void
ws_message_cb (SoupWebsocketConnection *ws, gint type, GBytes *data, gpointer user_data)
{
  WsClient *client = user_data;
  g_autoptr (JsonParser) parser = json_parser_new ();
  gsize length = 0;
  const char *bytes = g_bytes_get_data (data, &length);
  g_autofree char *text = NULL;

  if (type == SOUP_WEBSOCKET_DATA_BINARY)
    {
      g_ptr_array_add (client->binaries, g_bytes_ref (data));
      return;
    }
  text = g_strndup (bytes, length);
  if (json_parser_load_from_data (parser, text, -1, NULL)
      && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    g_ptr_array_add (client->messages,
                     json_object_ref (json_node_get_object (json_parser_get_root (parser))));
  g_ptr_array_add (client->texts, g_steal_pointer (&text));
}

static void
ws_closed_cb (SoupWebsocketConnection *ws, gpointer user_data)
{
  WsClient *client = user_data;

  client->closed = TRUE;
  client->close_code = soup_websocket_connection_get_close_code (ws);
}

static void
ws_connected_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  WsClient *client = user_data;

  client->ws = soup_session_websocket_connect_finish (SOUP_SESSION (source), result,
                                                      &client->connect_error);
  if (client->ws != NULL)
    {
      g_signal_connect (client->ws, "message", G_CALLBACK (ws_message_cb), client);
      g_signal_connect (client->ws, "closed", G_CALLBACK (ws_closed_cb), client);
    }
  client->connect_done = TRUE;
}

/* Connects and waits for the handshake's outcome (check ->ws / ->connect_error). */
static WsClient *
ws_client_try (const char *url, GTlsDatabase *database)
{
  WsClient *client = g_new0 (WsClient, 1);

  client->messages = g_ptr_array_new_with_free_func ((GDestroyNotify)json_object_unref);
  client->texts = g_ptr_array_new_with_free_func (g_free);
  client->binaries = g_ptr_array_new_with_free_func ((GDestroyNotify)g_bytes_unref);
  client->session = soup_session_new ();
  if (database != NULL)
    soup_session_set_tls_database (client->session, database);
  client->msg = soup_message_new (SOUP_METHOD_GET, url);
  soup_session_websocket_connect_async (client->session, client->msg, NULL, NULL,
                                        G_PRIORITY_DEFAULT, NULL, ws_connected_cb, client);
  WAIT_UNTIL (client->connect_done, WB_TEST_WAIT_MS);
  return client;
}

static WsClient *
ws_client_connect (SimFixture *sim)
{
  g_autofree char *url = sim_fixture_dup_ws_url (sim, SIM_FIXTURE_DEFAULT_KEY);
  WsClient *client = ws_client_try (url, NULL);

  g_assert_no_error (client->connect_error);
  return client;
}

static void
ws_client_send (WsClient *client, const char *text)
{
  soup_websocket_connection_send_text (client->ws, text);
}

static void
ws_client_subscribe (WsClient *client, const char *stream_id, const char *events_json)
{
  g_autofree char *text = g_strdup_printf (
      "{\"type\":\"subscribe\",\"stream_id\":\"%s\",\"events\":%s}", stream_id, events_json);

  ws_client_send (client, text);
}

static const char *
message_type (JsonObject *message)
{
  return json_object_get_string_member_with_default (message, "type", "");
}

static JsonObject *
message_payload (JsonObject *message)
{
  JsonNode *payload = json_object_get_member (message, "payload");

  return payload != NULL && JSON_NODE_HOLDS_OBJECT (payload) ? json_node_get_object (payload)
                                                             : NULL;
}

/* Index of the first message of @type at or after @from, or -1. */
static int
ws_client_find (WsClient *client, const char *type, guint from)
{
  for (guint i = from; i < client->messages->len; i++)
    if (g_str_equal (message_type (g_ptr_array_index (client->messages, i)), type))
      return (int)i;
  return -1;
}

static guint
ws_client_count (WsClient *client, const char *type, const char *stream_id)
{
  guint count = 0;

  for (guint i = 0; i < client->messages->len; i++)
    {
      JsonObject *message = g_ptr_array_index (client->messages, i);
      JsonObject *payload = message_payload (message);

      if (g_str_equal (message_type (message), type)
          && (stream_id == NULL
              || g_strcmp0 (json_object_get_string_member_with_default (payload, "stream_id", NULL),
                            stream_id)
                     == 0))
        count++;
    }
  return count;
}

/* Waits for the next message of @type and returns it (borrowed). */
static JsonObject *
ws_client_wait (WsClient *client, const char *type, guint *cursor)
{
  int index = -1;

  WAIT_UNTIL ((index = ws_client_find (client, type, *cursor)) >= 0 || client->closed,
              WB_TEST_WAIT_MS);
  g_assert_cmpint (index, >=, 0);
  *cursor = (guint)index + 1;
  return g_ptr_array_index (client->messages, index);
}

/* A ping/pong round trip: the sim handles a connection's messages in order,
 * so everything sent before has been processed when the pong arrives. */
static void
ws_client_sync (WsClient *client)
{
  gint64 stamp = ++client->next_ping;
  g_autofree char *ping
      = g_strdup_printf ("{\"type\":\"ping\",\"timestamp\":%" G_GINT64_FORMAT "}", stamp);
  gboolean found = FALSE;

  ws_client_send (client, ping);
  for (guint cursor = 0; !found;)
    {
      JsonObject *pong = ws_client_wait (client, "pong", &cursor);

      found = json_object_get_int_member (message_payload (pong), "timestamp") == stamp;
    }
}

static JsonObject *
ws_client_wait_error (WsClient *client, guint *cursor, const char *code)
{
  JsonObject *error = ws_client_wait (client, "error", cursor);
  JsonObject *payload = message_payload (error);

  g_assert_cmpstr (json_object_get_string_member (payload, "code"), ==, code);
  g_assert_nonnull (json_object_get_string_member (payload, "message"));
  g_assert_true (json_object_has_member (payload, "details"));
  return payload;
}

static void
check_timestamp (JsonObject *payload, const char *field)
{
  const char *text = json_object_get_string_member (payload, field);
  g_autoptr (GDateTime) time = g_date_time_new_from_iso8601 (text, NULL);

  g_assert_nonnull (time);
  g_assert_true (g_str_has_suffix (text, "Z"));
}

static gboolean
connections_are (SimFixture *sim, gint64 n, JsonObject **inout_stats)
{
  g_clear_pointer (inout_stats, json_object_unref);
  *inout_stats = get_stats (sim);
  return json_object_get_int_member (*inout_stats, "connections") == n;
}

/* Polls /sim/stats until @n connections are open; returns those stats. */
static JsonObject *
wait_connections (SimFixture *sim, gint64 n)
{
  JsonObject *stats = NULL;

  POLL_UNTIL (connections_are (sim, n, &stats), WB_TEST_WAIT_MS);
  return stats;
}

/* ---- start-up and options ---- */

static gboolean
stream_id_is_doc_shaped (const char *stream_id)
{
  return g_regex_match_simple ("^stream_[a-z]{3}[0-9]{3}$", stream_id, 0, 0);
}

static void
test_startup (void)
{
  const char *args_a[] = { "--quiet", "--streams", "4", "--seed", "7", NULL };
  const char *args_b[] = { "--quiet", "--streams", "4", "--seed", "8", NULL };
  g_autoptr (SimFixture) a = start_sim (args_a);
  g_autoptr (SimFixture) a_again = start_sim (args_a);
  g_autoptr (SimFixture) b = start_sim (args_b);
  const char *const *ids = sim_fixture_get_stream_ids (a);
  g_autoptr (GError) error = NULL;

  g_assert_true (g_str_has_prefix (sim_fixture_get_url (a), "ws://127.0.0.1:"));
  g_assert_true (g_str_has_suffix (sim_fixture_get_url (a), "/v1/streams"));
  g_assert_cmpuint (sim_fixture_get_port (a), >, 0);
  g_assert_cmpuint (g_strv_length ((char **)ids), ==, 4);
  for (guint i = 0; i < 4; i++)
    {
      g_assert_true (stream_id_is_doc_shaped (ids[i]));
      g_assert_cmpstr (ids[i], ==, sim_fixture_get_stream_id (a_again, i));
    }
  g_assert_false (g_strv_equal ((const char *const *)ids, sim_fixture_get_stream_ids (b)));
  g_assert_true (sim_fixture_stop (a, &error));
  g_assert_no_error (error);
}

static void
test_default_streams_live (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (JsonObject) stats = get_stats (sim);
  JsonArray *streams = json_object_get_array_member (stats, "streams");

  g_assert_cmpuint (json_array_get_length (streams), ==, 3);
  for (guint i = 0; i < 3; i++)
    {
      JsonObject *stream = json_array_get_object_element (streams, i);

      g_assert_cmpstr (json_object_get_string_member (stream, "stream_id"), ==,
                       sim_fixture_get_stream_id (sim, i));
      g_assert_true (json_object_get_boolean_member (stream, "live"));
    }
}

static gboolean
run_sim_sync (const char *const *args, int *out_status, char **out_stdout, char **out_stderr)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  gboolean ok;

  g_ptr_array_add (argv, sim_fixture_dup_binary_path ());
  for (; *args != NULL; args++)
    g_ptr_array_add (argv, g_strdup (*args));
  g_ptr_array_add (argv, NULL);
  ok = g_spawn_sync (NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out_stdout,
                     out_stderr, out_status, &error);
  g_assert_no_error (error);
  return ok;
}

static void
test_options (void)
{
  const char *help[] = { "--help", NULL };
  const char *bad[][4] = {
    { "--speed", "0", NULL },
    { "--any-key", "--api-key", "k", NULL },
    { "--tls-cert", "/nonexistent.pem", NULL },
    { "--streams", "-1", NULL },
    { "--rate-limit", "-5", NULL },
    { "stray", NULL },
  };
  const char *missing_files[]
      = { "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key", NULL };
  int status = -1;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;

  run_sim_sync (help, &status, &out, &err);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  g_assert_nonnull (strstr (out, "--speed"));
  g_assert_nonnull (strstr (out, "--tls-cert"));

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *o = NULL;
      g_autofree char *e = NULL;

      run_sim_sync (bad[i], &status, &o, &e);
      g_assert_false (g_spawn_check_wait_status (status, NULL));
      g_assert_nonnull (strstr (e, "wave-sim:"));
      g_assert_cmpstr (o, ==, "");
    }
  {
    g_autofree char *o = NULL;
    g_autofree char *e = NULL;

    run_sim_sync (missing_files, &status, &o, &e);
    g_assert_false (g_spawn_check_wait_status (status, NULL));
    g_assert_cmpstr (o, ==, "");
  }
}

/* ---- protocol ---- */

static void
test_auth (void)
{
  const char *args[] = { "--quiet", NULL };
  const char *custom_args[] = { "--quiet", "--api-key", "s3cret", NULL };
  const char *any_args[] = { "--quiet", "--any-key", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (SimFixture) custom = start_sim (custom_args);
  g_autoptr (SimFixture) any = start_sim (any_args);
  const struct
  {
    SimFixture *sim;
    const char *key;
    gboolean accepted;
  } cases[] = {
    { sim, "wrong", FALSE },    { sim, NULL, FALSE },
    { sim, "", FALSE },         { sim, SIM_FIXTURE_DEFAULT_KEY, TRUE },
    { custom, "s3cret", TRUE }, { custom, SIM_FIXTURE_DEFAULT_KEY, FALSE },
    { any, "whatever", TRUE },  { any, NULL, TRUE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *url = sim_fixture_dup_ws_url (cases[i].sim, cases[i].key);
      g_autoptr (WsClient) client = ws_client_try (url, NULL);

      /* The handshake itself succeeds either way, as with the real service. */
      g_assert_no_error (client->connect_error);
      if (cases[i].accepted)
        {
          ws_client_sync (client);
          g_assert_false (client->closed);
        }
      else
        {
          WAIT_UNTIL (client->closed, WB_TEST_WAIT_MS);
          g_assert_cmpuint (client->close_code, ==, 4401);
          g_assert_cmpstr (soup_websocket_connection_get_close_data (client->ws), ==,
                           "invalid api key");
          g_assert_cmpuint (client->messages->len, ==, 0);
        }
    }
}

static void
test_ping (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (JsonObject) stats = NULL;
  guint cursor = 0;
  JsonObject *pong;

  ws_client_send (client, "{\"type\":\"ping\",\"timestamp\":1712345678901}");
  pong = ws_client_wait (client, "pong", &cursor);
  g_assert_cmpint (json_object_get_int_member (message_payload (pong), "timestamp"), ==,
                   1712345678901);
  /* The timestamp is optional; the pong then carries none. */
  ws_client_send (client, "{\"type\":\"ping\"}");
  pong = ws_client_wait (client, "pong", &cursor);
  g_assert_false (json_object_has_member (message_payload (pong), "timestamp"));

  stats = get_stats (sim);
  g_assert_cmpint (
      json_object_get_int_member (json_object_get_object_member (stats, "received"), "ping"), ==,
      2);
}

static gboolean
all_messages_match (WsClient *client, const char *stream_id, const char *const *types)
{
  for (guint i = 0; i < client->messages->len; i++)
    {
      JsonObject *message = g_ptr_array_index (client->messages, i);
      const char *type = message_type (message);

      if (g_str_equal (type, "pong"))
        continue;
      if (!g_strv_contains (types, type)
          || g_strcmp0 (json_object_get_string_member (message_payload (message), "stream_id"),
                        stream_id)
                 != 0)
        return FALSE;
    }
  return TRUE;
}

static void
test_subscription_filter (void)
{
  const char *args[] = { "--quiet", "--speed", FAST, "--streams", "2", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (WsClient) other = ws_client_connect (sim);
  const char *a = sim_fixture_get_stream_id (sim, 0);
  const char *b = sim_fixture_get_stream_id (sim, 1);
  const char *health_only[] = { "stream.health", NULL };
  const char *health_and_chat[] = { "stream.health", "chat.message", NULL };
  g_autofree char *unsubscribe
      = g_strdup_printf ("{\"type\":\"unsubscribe\",\"stream_id\":\"%s\"}", a);
  guint before;

  /* Nothing arrives before a subscription. */
  ws_client_sync (client);
  wb_test_run_for_ms (300);
  g_assert_cmpuint (client->messages->len, ==, 1);

  ws_client_subscribe (client, a, "[\"stream.health\"]");
  WAIT_UNTIL (ws_client_count (client, "stream.health", a) >= 3, WB_TEST_WAIT_MS);
  g_assert_true (all_messages_match (client, a, health_only));

  /* A new subscribe replaces the event set of that stream. */
  ws_client_subscribe (client, a, "[\"chat.message\",\"stream.health\"]");
  ws_client_sync (client);
  WAIT_UNTIL (ws_client_count (client, "chat.message", a) >= 2, WB_TEST_WAIT_MS);
  g_assert_true (all_messages_match (client, a, health_and_chat));
  g_assert_cmpuint (ws_client_count (client, "stream.health", b), ==, 0);

  /* Events missing (or empty) = every stream event. */
  ws_client_subscribe (other, b, "[]");
  WAIT_UNTIL (ws_client_count (other, "viewer.joined", b) >= 1
                  && ws_client_count (other, "analytics.update", b) >= 1,
              WB_TEST_WAIT_MS);
  g_assert_cmpuint (ws_client_count (other, "stream.health", a), ==, 0);

  /* Unsubscribe stops them: nothing after the sync point. */
  ws_client_send (client, unsubscribe);
  ws_client_sync (client);
  before = client->messages->len;
  wb_test_run_for_ms (500);
  g_assert_cmpuint (client->messages->len, ==, before);
  g_assert_false (client->closed);
}

static void
test_subscription_emit (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  const char *a = sim_fixture_get_stream_id (sim, 0);
  g_autofree char *health
      = g_strdup_printf ("{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"%s\","
                         "\"bitrate\":1234.5,\"fps\":29.97,\"packet_loss\":0.0125,\"latency\":42}}",
                         a);
  g_autofree char *chat = g_strdup_printf (
      "{\"type\":\"chat.message\",\"payload\":{\"stream_id\":\"%s\",\"message\":\"x\"}}", a);
  g_autoptr (JsonObject) answer = NULL;
  g_autoptr (JsonObject) ignored = NULL;
  g_autoptr (JsonObject) unknown = NULL;
  g_autoptr (JsonObject) error_answer = NULL;
  guint cursor = 0;
  JsonObject *payload;

  ws_client_subscribe (client, a, "[\"stream.health\"]");
  /* A stream the sim does not simulate: only /sim/emit feeds it. */
  ws_client_subscribe (client, "stream_zzz999", "[\"viewer.joined\"]");
  ws_client_sync (client);

  answer = post_ok (sim, "/sim/emit", health);
  g_assert_cmpint (json_object_get_int_member (answer, "delivered"), ==, 1);
  payload = message_payload (ws_client_wait (client, "stream.health", &cursor));
  while (json_object_get_double_member (payload, "bitrate") != 1234.5)
    payload = message_payload (ws_client_wait (client, "stream.health", &cursor));
  g_assert_cmpfloat (json_object_get_double_member (payload, "fps"), ==, 29.97);
  g_assert_cmpfloat (json_object_get_double_member (payload, "packet_loss"), ==, 0.0125);
  g_assert_cmpint (json_object_get_int_member (payload, "latency"), ==, 42);

  /* Not subscribed to that type: not delivered, payload not validated. */
  ignored = post_ok (sim, "/sim/emit", chat);
  g_assert_cmpint (json_object_get_int_member (ignored, "delivered"), ==, 0);

  unknown = post_ok (sim, "/sim/emit",
                     "{\"type\":\"viewer.joined\",\"payload\":{\"stream_id\":\"stream_zzz999\","
                     "\"viewer_id\":\"v1\",\"country\":\"NO\",\"device\":\"tv\","
                     "\"joined_at\":\"2024-01-01T00:00:00Z\"}}");
  g_assert_cmpint (json_object_get_int_member (unknown, "delivered"), ==, 1);
  cursor = 0;
  payload = message_payload (ws_client_wait (client, "viewer.joined", &cursor));
  g_assert_cmpstr (json_object_get_string_member (payload, "viewer_id"), ==, "v1");

  /* Types that are not stream events go to every connection. */
  error_answer = post_ok (sim, "/sim/emit",
                          "{\"type\":\"error\",\"payload\":{\"code\":\"server_error\","
                          "\"message\":\"boom\",\"details\":{\"stream_id\":\"stream_zzz999\"}}}");
  g_assert_cmpint (json_object_get_int_member (error_answer, "delivered"), ==, 1);
  cursor = 0;
  payload = ws_client_wait_error (client, &cursor, "server_error");
  g_assert_cmpstr (json_object_get_string_member (payload, "message"), ==, "boom");

  post_fails (sim, "/sim/emit", "{\"type\":\"stream.health\"}", 400);
  post_fails (sim, "/sim/emit", "{\"type\":\"stream.health\",\"payload\":{}}", 400);
  post_fails (sim, "/sim/emit", "{\"payload\":{}}", 400);
}

static gint64
flood_sent (SimFixture *sim)
{
  g_autoptr (JsonObject) stats = get_stats (sim);
  JsonArray *floods = json_object_get_array_member (stats, "floods");

  return json_array_get_length (floods) > 0
             ? json_object_get_int_member (json_array_get_object_element (floods, 0), "sent")
             : 0;
}

/* sim_stream_seq numbers each stream's events 1, 2, 3 … whoever gets them
 * (natural events and floods alike, /sim/emit excepted), and --event-log
 * records every one with the connections it was written to. */
static void
test_event_numbers (void)
{
  g_autofree char *dir = g_dir_make_tmp ("wb-sim-log-XXXXXX", NULL);
  g_autofree char *log_path = g_build_filename (dir, "events.jsonl", NULL);
  const char *args[] = { "--quiet", "--speed", FAST, "--event-log", log_path, NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  const char *a = sim_fixture_get_stream_id (sim, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) flood = NULL;
  g_autoptr (JsonObject) stats = NULL;
  g_autoptr (JsonObject) emitted = NULL;
  g_autofree char *emit = NULL;
  g_autofree char *flood_body = NULL;
  g_autofree char *contents = NULL;
  g_auto (GStrv) lines = NULL;
  gint64 first = 0, previous = 0, last_seen = 0;
  guint numbered = 0, logged = 0, to_client = 0, opens = 0, subscribes = 0;
  gint64 last_to_client = 0;
  gboolean unnumbered_seen = FALSE;

  g_assert_nonnull (dir);
  ws_client_subscribe (client, a, "[]");
  ws_client_sync (client);
  WAIT_UNTIL (ws_client_count (client, "viewer.joined", a)
                      + ws_client_count (client, "chat.message", a)
                      + ws_client_count (client, "stream.health", a)
                  >= 20,
              WB_TEST_WAIT_MS);
  flood_body = g_strdup_printf ("{\"stream_id\":\"%s\",\"count\":5}", a);
  flood = post_ok (sim, "/sim/flood", flood_body);
  emit = g_strdup_printf ("{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"%s\","
                          "\"bitrate\":1.5,\"fps\":1,\"packet_loss\":0,\"latency\":1}}",
                          a);
  emitted = post_ok (sim, "/sim/emit", emit);
  WAIT_UNTIL (ws_client_count (client, "chat.message", a) >= 5, WB_TEST_WAIT_MS);
  WAIT_UNTIL (flood_sent (sim) == 5, WB_TEST_WAIT_MS);
  ws_client_sync (client);

  /* Everything of stream a since the subscription, numbered without a hole. */
  for (guint i = 0; i < client->messages->len; i++)
    {
      JsonObject *payload = message_payload (g_ptr_array_index (client->messages, i));
      gint64 seq;

      if (payload == NULL
          || g_strcmp0 (json_object_get_string_member_with_default (payload, "stream_id", NULL), a)
                 != 0)
        continue;
      if (!json_object_has_member (payload, "sim_stream_seq"))
        {
          g_assert_cmpfloat (json_object_get_double_member (payload, "bitrate"), ==, 1.5);
          unnumbered_seen = TRUE;
          continue;
        }
      seq = json_object_get_int_member (payload, "sim_stream_seq");
      if (numbered++ == 0)
        first = seq;
      else
        g_assert_cmpint (seq, ==, previous + 1);
      previous = seq;
    }
  g_assert_true (unnumbered_seen);
  g_assert_cmpuint (numbered, >=, 25);
  stats = get_stats (sim);
  g_assert_cmpint (
      json_object_get_int_member (json_object_get_object_member (stats, "stream_seqs"), a), >=,
      previous);

  /* The log: the connection, its subscription, every numbered event of a
   * (those before the subscription too, written to no connection). */
  g_assert_true (sim_fixture_stop (sim, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (log_path, &contents, NULL, &error));
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL && lines[i][0] != '\0'; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      JsonObject *record, *payload;
      const char *kind;

      g_assert_true (json_parser_load_from_data (parser, lines[i], -1, &error));
      record = json_node_get_object (json_parser_get_root (parser));
      g_assert_true (json_object_has_member (record, "t"));
      kind = json_object_get_string_member (record, "kind");
      if (g_str_equal (kind, "open"))
        opens++;
      else if (g_str_equal (kind, "subscribe"))
        {
          g_assert_cmpstr (json_object_get_string_member (record, "stream_id"), ==, a);
          g_assert_cmpuint (json_array_get_length (json_object_get_array_member (record, "events")),
                            ==, 8);
          subscribes++;
        }
      else if (g_str_equal (kind, "event"))
        {
          payload = json_object_get_object_member (
              json_object_get_object_member (record, "message"), "payload");
          if (!g_str_equal (json_object_get_string_member (payload, "stream_id"), a))
            continue;
          g_assert_cmpint (json_object_get_int_member (payload, "sim_stream_seq"), ==,
                           last_seen + 1);
          last_seen = json_object_get_int_member (payload, "sim_stream_seq");
          logged++;
          if (json_array_get_length (json_object_get_array_member (record, "conns")) == 1)
            {
              /* Between the subscription and SIGTERM, every event went to it. */
              g_assert_cmpint (last_seen, >=, first);
              if (to_client > 0)
                g_assert_cmpint (last_seen, ==, last_to_client + 1);
              last_to_client = last_seen;
              to_client++;
            }
        }
    }
  g_assert_cmpuint (opens, ==, 1);
  g_assert_cmpuint (subscribes, ==, 1);
  g_assert_cmpint (last_seen, >=, previous);
  g_assert_cmpuint (logged, ==, (guint)last_seen);
  g_assert_cmpuint (to_client, >=, numbered);
  g_unlink (log_path);
  g_rmdir (dir);
}

static void
test_chat_and_reactions (void)
{
  const char *args[] = { "--quiet", "--speed", FAST, NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (WsClient) listener = ws_client_connect (sim);
  const char *a = sim_fixture_get_stream_id (sim, 0);
  g_autofree char *chat = g_strdup_printf (
      "{\"type\":\"chat.message\",\"stream_id\":\"%s\",\"message\":\"hi all\"}", a);
  g_autofree char *reaction = g_strdup_printf (
      "{\"type\":\"reaction.sent\",\"stream_id\":\"%s\",\"reaction\":\"🦄\"}", a);
  guint cursor = 0;
  JsonObject *payload = NULL;
  g_autoptr (GDateTime) timestamp = NULL;

  ws_client_subscribe (listener, a, "[\"chat.message\",\"reaction.received\"]");
  ws_client_sync (listener);
  ws_client_send (client, chat);
  do
    payload = message_payload (ws_client_wait (listener, "chat.message", &cursor));
  while (g_strcmp0 (json_object_get_string_member (payload, "user_id"), "local") != 0);
  g_assert_cmpstr (json_object_get_string_member (payload, "username"), ==, "you");
  g_assert_cmpstr (json_object_get_string_member (payload, "message"), ==, "hi all");
  g_assert_nonnull (json_object_get_string_member (payload, "message_id"));
  timestamp
      = g_date_time_new_from_iso8601 (json_object_get_string_member (payload, "timestamp"), NULL);
  g_assert_nonnull (timestamp);

  /* Counted into the next reaction.received of that stream. */
  ws_client_send (client, reaction);
  ws_client_send (client, reaction);
  cursor = 0;
  do
    payload = message_payload (ws_client_wait (listener, "reaction.received", &cursor));
  while (g_strcmp0 (json_object_get_string_member (payload, "reaction"), "🦄") != 0);
  g_assert_cmpint (json_object_get_int_member (payload, "count"), >=, 2);
}

static void
test_invalid_messages (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (JsonObject) stats = NULL;
  g_autoptr (GBytes) binary = g_bytes_new_static ("\x01\x02", 2);
  const struct
  {
    const char *text;
    const char *code;
    const char *stream_id; /* expected details.stream_id */
  } cases[] = {
    { "not json", "invalid_json", NULL },
    { "{\"type\":", "invalid_json", NULL },
    { "[1,2]", "invalid_message", NULL },
    { "{\"stream_id\":\"s1\"}", "invalid_message", "s1" },
    { "{\"type\":42}", "invalid_message", NULL },
    { "{\"type\":\"bogus.thing\"}", "unknown_type", NULL },
    { "{\"type\":\"status\"}", "unknown_type", NULL },
    { "{\"type\":\"stream.started\",\"stream_id\":\"s2\"}", "unknown_type", "s2" },
    { "{\"type\":\"subscribe\"}", "invalid_message", NULL },
    { "{\"type\":\"subscribe\",\"stream_id\":\"s3\",\"events\":[\"nope\"]}", "invalid_message",
      "s3" },
    { "{\"type\":\"subscribe\",\"stream_id\":\"s4\",\"events\":\"stream.health\"}",
      "invalid_message", "s4" },
    { "{\"type\":\"chat.message\",\"stream_id\":\"s5\",\"message\":\"\"}", "invalid_message",
      "s5" },
    { "{\"type\":\"reaction.sent\",\"stream_id\":\"s6\"}", "invalid_message", "s6" },
    { "{\"type\":\"unsubscribe\",\"stream_id\":\"\"}", "invalid_message", "" },
  };
  guint cursor = 0;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      JsonObject *payload;
      JsonObject *details;

      ws_client_send (client, cases[i].text);
      payload = ws_client_wait_error (client, &cursor, cases[i].code);
      details = json_object_get_object_member (payload, "details");
      g_assert_cmpstr (json_object_get_string_member_with_default (details, "stream_id", NULL), ==,
                       cases[i].stream_id);
    }
  soup_websocket_connection_send_message (client->ws, SOUP_WEBSOCKET_DATA_BINARY, binary);
  ws_client_wait_error (client, &cursor, "invalid_message");

  /* A bad message is answered, the connection stays. */
  ws_client_sync (client);
  g_assert_false (client->closed);
  stats = get_stats (sim);
  g_assert_cmpint (
      json_object_get_int_member (json_object_get_object_member (stats, "received"), "invalid"), ==,
      G_N_ELEMENTS (cases) + 1);
}

static void
test_rate_limit (void)
{
  const char *args[] = { "--quiet", "--rate-limit", "5", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (WsClient) polite = ws_client_connect (sim);
  g_autoptr (JsonObject) stats = NULL;
  JsonArray *closes;

  /* 5 in a burst is allowed (the sync itself is the 5th message)... */
  for (guint i = 0; i < 4; i++)
    ws_client_send (client, "{\"type\":\"ping\",\"timestamp\":0}");
  ws_client_sync (client);
  g_assert_false (client->closed);
  /* ...a burst past it is not (more than one extra, in case a second went by). */
  for (guint i = 0; i < 10; i++)
    ws_client_send (client, "{\"type\":\"ping\",\"timestamp\":0}");
  WAIT_UNTIL (client->closed, WB_TEST_WAIT_MS);
  g_assert_cmpuint (client->close_code, ==, 4429);

  /* Spread out (at most 4 in any second), more than 5 in all pass. */
  for (guint i = 0; i < 4; i++)
    {
      ws_client_sync (polite);
      ws_client_sync (polite);
      wb_test_run_for_ms (600);
    }
  g_assert_false (polite->closed);

  stats = wait_connections (sim, 1);
  closes = json_object_get_array_member (stats, "closes");
  g_assert_cmpuint (json_array_get_length (closes), ==, 1);
  g_assert_cmpint (json_object_get_int_member (json_array_get_object_element (closes, 0), "code"),
                   ==, 4429);
}

/* ---- control API ---- */

static void
test_control_close (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) one = ws_client_connect (sim);
  g_autoptr (WsClient) two = ws_client_connect (sim);
  g_autoptr (JsonObject) answer = NULL;
  g_autoptr (JsonObject) stats = NULL;
  JsonArray *closes;

  ws_client_sync (one);
  ws_client_sync (two);
  answer = post_ok (sim, "/sim/close", "{\"code\":4500,\"reason\":\"maintenance\"}");
  g_assert_cmpint (json_object_get_int_member (answer, "closed"), ==, 2);
  WAIT_UNTIL (one->closed && two->closed, WB_TEST_WAIT_MS);
  g_assert_cmpuint (one->close_code, ==, 4500);
  g_assert_cmpuint (two->close_code, ==, 4500);
  g_assert_cmpstr (soup_websocket_connection_get_close_data (one->ws), ==, "maintenance");

  /* The sim sees the close once the client's answer is back. */
  stats = wait_connections (sim, 0);
  closes = json_object_get_array_member (stats, "closes");
  g_assert_cmpuint (json_array_get_length (closes), ==, 2);
  for (guint i = 0; i < 2; i++)
    {
      JsonObject *close = json_array_get_object_element (closes, i);

      g_assert_cmpint (json_object_get_int_member (close, "code"), ==, 4500);
      g_assert_cmpstr (json_object_get_string_member (close, "initiator"), ==, "server");
    }

  /* 1000 and 1001 too; codes that cannot be sent are refused. */
  {
    g_autoptr (WsClient) three = ws_client_connect (sim);
    g_autoptr (JsonObject) normal = NULL;

    ws_client_sync (three);
    normal = post_ok (sim, "/sim/close", "{\"code\":1000}");
    WAIT_UNTIL (three->closed, WB_TEST_WAIT_MS);
    g_assert_cmpuint (three->close_code, ==, 1000);
  }
  post_fails (sim, "/sim/close", "{\"code\":1005}", 400);
  post_fails (sim, "/sim/close", "{\"code\":1006}", 400);
  post_fails (sim, "/sim/close", "{\"code\":5000}", 400);
  post_fails (sim, "/sim/close", "{\"code\":\"4500\"}", 400);
}

static void
test_control_drop (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (JsonObject) answer = NULL;
  g_autoptr (JsonObject) stats = NULL;
  JsonObject *close;

  ws_client_sync (client);
  answer = post_ok (sim, "/sim/drop", "{}");
  g_assert_cmpint (json_object_get_int_member (answer, "dropped"), ==, 1);
  WAIT_UNTIL (client->closed, WB_TEST_WAIT_MS);
  /* No close frame: libsoup reports no code (0) or 1006. */
  g_assert_true (client->close_code == 0 || client->close_code == SOUP_WEBSOCKET_CLOSE_ABNORMAL);

  stats = wait_connections (sim, 0);
  close = json_array_get_object_element (json_object_get_array_member (stats, "closes"), 0);
  g_assert_cmpstr (json_object_get_string_member (close, "initiator"), ==, "drop");
  g_assert_cmpint (json_object_get_int_member (close, "code"), ==, 1006);

  /* The sim keeps serving. */
  {
    g_autoptr (WsClient) again = ws_client_connect (sim);

    ws_client_sync (again);
  }
}

static void
test_control_pings (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (JsonObject) off = NULL;
  g_autoptr (JsonObject) on = NULL;
  g_autoptr (JsonObject) stats = NULL;
  guint cursor = 0;

  off = post_ok (sim, "/sim/pings", "{\"answer\":false}");
  stats = get_stats (sim);
  g_assert_false (json_object_get_boolean_member (stats, "answer_pings"));
  ws_client_send (client, "{\"type\":\"ping\",\"timestamp\":5}");
  /* An invalid message as the barrier: its error would come after the pong. */
  ws_client_send (client, "nope");
  ws_client_wait_error (client, &cursor, "invalid_json");
  g_assert_cmpint (ws_client_find (client, "pong", 0), ==, -1);

  on = post_ok (sim, "/sim/pings", "{\"answer\":true}");
  ws_client_sync (client);
  post_fails (sim, "/sim/pings", "{}", 400);
  post_fails (sim, "/sim/pings", "{\"answer\":1}", 400);
}

static void
test_control_reject (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autofree char *url = sim_fixture_dup_ws_url (sim, SIM_FIXTURE_DEFAULT_KEY);
  const guint statuses[] = { 401, 429, 503 };
  g_autoptr (JsonObject) stats = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (statuses); i++)
    {
      g_autofree char *body = g_strdup_printf ("{\"count\":2,\"http_status\":%u}", statuses[i]);
      g_autoptr (JsonObject) answer = post_ok (sim, "/sim/reject", body);

      for (guint n = 0; n < 2; n++)
        {
          g_autoptr (WsClient) client = ws_client_try (url, NULL);

          g_assert_null (client->ws);
          g_assert_nonnull (client->connect_error);
          g_assert_cmpuint (soup_message_get_status (client->msg), ==, statuses[i]);
        }
      {
        g_autoptr (WsClient) client = ws_client_connect (sim);

        ws_client_sync (client);
      }
    }

  {
    g_autoptr (JsonObject) answer
        = post_ok (sim, "/sim/reject", "{\"count\":1,\"close_code\":4429}");
    g_autoptr (WsClient) rejected = ws_client_try (url, NULL);
    g_autoptr (WsClient) accepted = NULL;

    g_assert_no_error (rejected->connect_error);
    WAIT_UNTIL (rejected->closed, WB_TEST_WAIT_MS);
    g_assert_cmpuint (rejected->close_code, ==, 4429);
    accepted = ws_client_connect (sim);
    ws_client_sync (accepted);
  }

  {
    /* A reason phrase that is not UTF-8 ("Accès refusé" in Latin-1), as a
     * proxy or captive portal might send: the client gets the bytes. */
    g_autoptr (JsonObject) answer
        = post_ok (sim, "/sim/reject",
                   "{\"count\":1,\"http_status\":403,\"reason_base64\":\"QWNj6HMgcmVmdXPp\"}");
    g_autoptr (WsClient) client = ws_client_try (url, NULL);

    g_assert_nonnull (client->connect_error);
    g_assert_cmpuint (soup_message_get_status (client->msg), ==, 403);
    g_assert_cmpstr (soup_message_get_reason_phrase (client->msg), ==, "Acc\xe8s refus\xe9");
  }

  stats = get_stats (sim);
  g_assert_cmpint (json_object_get_int_member (stats, "handshakes_rejected"), ==, 8);
  g_assert_cmpint (json_object_get_int_member (stats, "rejects_pending"), ==, 0);

  post_fails (sim, "/sim/reject", "{\"count\":1,\"close_code\":4500,\"reason_base64\":\"eA==\"}",
              400);
  /* "a\r\nX: y": would be a header, not a reason. */
  post_fails (sim, "/sim/reject",
              "{\"count\":1,\"http_status\":503,\"reason_base64\":\"YQ0KWDogeQ==\"}", 400);
  post_fails (sim, "/sim/reject", "{\"count\":1,\"http_status\":503,\"reason_base64\":\"\"}", 400);
  post_fails (sim, "/sim/reject", "{\"count\":1}", 400);
  post_fails (sim, "/sim/reject", "{\"count\":1,\"http_status\":503,\"close_code\":4500}", 400);
  post_fails (sim, "/sim/reject", "{\"count\":1,\"http_status\":200}", 400);
  post_fails (sim, "/sim/reject", "{\"count\":-1,\"http_status\":503}", 400);
  post_fails (sim, "/sim/reject", "{\"count\":1,\"close_code\":1006}", 400);
}

static void
test_control_raw (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (JsonObject) text = NULL;
  g_autoptr (JsonObject) binary = NULL;
  g_autoptr (JsonObject) padded = NULL;
  GBytes *received;

  ws_client_sync (client);
  text = post_ok (sim, "/sim/raw", "{\"text\":\"{\\\"type\\\":\\\"half\"}");
  g_assert_cmpint (json_object_get_int_member (text, "sent"), ==, 1);
  WAIT_UNTIL (client->texts->len == 2, WB_TEST_WAIT_MS);
  g_assert_cmpstr (g_ptr_array_index (client->texts, 1), ==, "{\"type\":\"half");

  binary = post_ok (sim, "/sim/raw", "{\"binary_base64\":\"AAEC/w==\"}");
  WAIT_UNTIL (client->binaries->len == 1, WB_TEST_WAIT_MS);
  received = g_ptr_array_index (client->binaries, 0);
  g_assert_cmpmem (g_bytes_get_data (received, NULL), g_bytes_get_size (received),
                   "\x00\x01\x02\xff", 4);

  /* Padded with spaces (still the same JSON), for frames over the body limit. */
  padded = post_ok (sim, "/sim/raw", "{\"text\":\"{}\",\"pad_to\":10}");
  WAIT_UNTIL (client->texts->len == 3, WB_TEST_WAIT_MS);
  g_assert_cmpstr (g_ptr_array_index (client->texts, 2), ==, "{}        ");

  post_fails (sim, "/sim/raw", "{}", 400);
  post_fails (sim, "/sim/raw", "{\"text\":\"a\",\"binary_base64\":\"AA==\"}", 400);
  post_fails (sim, "/sim/raw", "{\"binary_base64\":\"AA==\",\"pad_to\":10}", 400);
  post_fails (sim, "/sim/raw", "{\"text\":\"a\",\"pad_to\":16777217}", 400);
}

static void
test_control_flood (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (JsonObject) answer = NULL;
  g_autoptr (JsonObject) stats = NULL;
  const guint count = 300;
  const guint size = 600;
  gint64 expected_seq = 0;
  gint64 first_us = 0, last_us = 0;
  guint stamped = 0;
  JsonObject *flood;

  ws_client_subscribe (client, "stream_flood1", "[\"chat.message\"]");
  ws_client_sync (client);
  answer = post_ok (sim, "/sim/flood",
                    "{\"stream_id\":\"stream_flood1\",\"type\":\"chat.message\",\"rate\":1000,"
                    "\"size\":600,\"count\":300}");
  g_assert_cmpint (json_object_get_int_member (answer, "flood"), >, 0);
  WAIT_UNTIL (ws_client_count (client, "chat.message", "stream_flood1") == count, WB_TEST_WAIT_MS);

  for (guint i = 0, t = 0; i < client->messages->len; i++)
    {
      JsonObject *message = g_ptr_array_index (client->messages, i);
      JsonObject *payload = message_payload (message);
      gsize length = strlen (g_ptr_array_index (client->texts, i));

      if (!g_str_equal (message_type (message), "chat.message"))
        continue;
      g_assert_cmpint (json_object_get_int_member (payload, "sim_seq"), ==, expected_seq++);
      g_assert_cmpuint (length, >=, size - 2);
      g_assert_cmpuint (length, <=, size + 2);
      g_assert_nonnull (json_object_get_string_member (payload, "message_id"));
      last_us = json_object_get_int_member (payload, "sim_sent_us");
      if (t++ == 0)
        first_us = last_us;
    }
  /* 300 at 1000/s take about 0.3 s; generous bounds for a busy machine. */
  g_assert_cmpint (last_us - first_us, >=, 250 * 1000);
  g_assert_cmpint (last_us - first_us, <=, 5 * G_USEC_PER_SEC);

  stats = get_stats (sim);
  flood = json_array_get_object_element (json_object_get_array_member (stats, "floods"), 0);
  g_assert_true (json_object_get_boolean_member (flood, "done"));
  g_assert_cmpint (json_object_get_int_member (flood, "sent"), ==, count);
  g_assert_cmpint (json_object_get_int_member (flood, "delivered"), ==, count);

  /* stamp_message_id: the message_id carries sim_sent_us, the size stays. */
  g_clear_pointer (&answer, json_object_unref);
  answer = post_ok (sim, "/sim/flood",
                    "{\"stream_id\":\"stream_flood1\",\"rate\":1000,\"size\":600,"
                    "\"count\":5,\"stamp_message_id\":true}");
  WAIT_UNTIL (ws_client_count (client, "chat.message", "stream_flood1") == count + 5,
              WB_TEST_WAIT_MS);
  for (guint i = 0; i < client->messages->len; i++)
    {
      JsonObject *message = g_ptr_array_index (client->messages, i);
      JsonObject *payload;
      g_autofree char *expected_id = NULL;
      gsize length = strlen (g_ptr_array_index (client->texts, i));

      if (!g_str_equal (message_type (message), "chat.message"))
        continue;
      payload = message_payload (message);
      if (json_object_get_int_member (payload, "sim_seq") >= 5
          || !g_str_has_prefix (json_object_get_string_member (payload, "message_id"), "t"))
        continue;
      expected_id = g_strdup_printf ("t%016" G_GINT64_FORMAT,
                                     json_object_get_int_member (payload, "sim_sent_us"));
      g_assert_cmpstr (json_object_get_string_member (payload, "message_id"), ==, expected_id);
      g_assert_cmpuint (length, >=, size - 2);
      g_assert_cmpuint (length, <=, size + 2);
      stamped++;
    }
  g_assert_cmpuint (stamped, ==, 5);
  post_fails (sim, "/sim/flood", "{\"stream_id\":\"s\",\"count\":1,\"stamp_message_id\":1}", 400);

  post_fails (sim, "/sim/flood", "{\"stream_id\":\"s\",\"count\":0}", 400);
  post_fails (sim, "/sim/flood", "{\"stream_id\":\"s\",\"count\":100000000}", 400);
  post_fails (sim, "/sim/flood", "{\"stream_id\":\"s\",\"count\":1,\"type\":\"ping\"}", 400);
  post_fails (sim, "/sim/flood", "{\"count\":1}", 400);
  post_fails (sim, "/sim/flood", "{\"stream_id\":\"s\",\"count\":1,\"size\":100000000}", 400);
}

static void
test_control_stream (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  const char *a = sim_fixture_get_stream_id (sim, 0);
  g_autofree char *end = g_strdup_printf ("{\"stream_id\":\"%s\",\"live\":false}", a);
  g_autofree char *start = g_strdup_printf ("{\"stream_id\":\"%s\",\"live\":true}", a);
  g_autoptr (JsonObject) ended = NULL;
  g_autoptr (JsonObject) again = NULL;
  g_autoptr (JsonObject) started = NULL;
  g_autoptr (JsonObject) stats = NULL;
  g_autofree char *first_recording = NULL;
  guint cursor = 0;
  JsonObject *payload;
  JsonNode *recording;

  ws_client_subscribe (client, a, "[]");
  ws_client_sync (client);
  ended = post_ok (sim, "/sim/stream", end);
  g_assert_true (json_object_get_boolean_member (ended, "changed"));
  payload = message_payload (ws_client_wait (client, "stream.ended", &cursor));
  g_assert_cmpint (json_object_get_int_member (payload, "duration"), >=, 30);
  check_timestamp (payload, "ended_at");
  recording = json_object_get_member (payload, "recording_id");
  g_assert_nonnull (recording);
  if (!JSON_NODE_HOLDS_NULL (recording))
    first_recording = g_strdup (json_node_get_string (recording));
  stats = get_stats (sim);
  g_assert_false (json_object_get_boolean_member (
      json_array_get_object_element (json_object_get_array_member (stats, "streams"), 0), "live"));

  again = post_ok (sim, "/sim/stream", end);
  g_assert_false (json_object_get_boolean_member (again, "changed"));

  started = post_ok (sim, "/sim/stream", start);
  g_assert_true (json_object_get_boolean_member (started, "changed"));
  payload = message_payload (ws_client_wait (client, "stream.started", &cursor));
  g_assert_cmpstr (json_object_get_string_member (payload, "stream_id"), ==, a);
  g_assert_nonnull (json_object_get_string_member (payload, "protocol"));
  g_assert_true (strstr (json_object_get_string_member (payload, "ingest_endpoint"), a) != NULL);

  post_fails (sim, "/sim/stream", "{\"stream_id\":\"stream_nope00\",\"live\":true}", 400);
  post_fails (sim, "/sim/stream", "{\"live\":true}", 400);
}

static void
test_control_stats (void)
{
  const char *args[] = { "--quiet", "--streams", "2", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) one = ws_client_connect (sim);
  g_autoptr (WsClient) two = ws_client_connect (sim);
  g_autoptr (JsonObject) stats = NULL;
  const char *a = sim_fixture_get_stream_id (sim, 0);
  JsonObject *received;
  JsonArray *subscriptions;
  JsonObject *sub;
  JsonArray *events;

  ws_client_subscribe (one, a, "[\"stream.health\",\"chat.message\",\"stream.health\"]");
  ws_client_subscribe (two, "stream_other1", "[]");
  ws_client_send (two, "{\"type\":\"unsubscribe\",\"stream_id\":\"stream_never\"}");
  ws_client_sync (one);
  ws_client_sync (two);

  stats = get_stats (sim);
  g_assert_true (json_object_get_boolean_member (stats, "ok"));
  g_assert_cmpint (json_object_get_int_member (stats, "connections"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (stats, "connections_total"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (stats, "handshakes_rejected"), ==, 0);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (stats, "streams")), ==, 2);
  received = json_object_get_object_member (stats, "received");
  g_assert_cmpint (json_object_get_int_member (received, "ping"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (received, "subscribe"), ==, 2);
  g_assert_cmpint (json_object_get_int_member (received, "unsubscribe"), ==, 1);
  g_assert_cmpint (json_object_get_int_member (received, "chat.message"), ==, 0);

  subscriptions = json_object_get_array_member (stats, "subscriptions");
  g_assert_cmpuint (json_array_get_length (subscriptions), ==, 2);
  sub = json_array_get_object_element (subscriptions, 0);
  g_assert_cmpstr (json_object_get_string_member (sub, "stream_id"), ==, a);
  events = json_object_get_array_member (sub, "events");
  g_assert_cmpuint (json_array_get_length (events), ==, 2);
  g_assert_cmpstr (json_array_get_string_element (events, 0), ==, "chat.message");
  g_assert_cmpstr (json_array_get_string_element (events, 1), ==, "stream.health");
  sub = json_array_get_object_element (subscriptions, 1);
  g_assert_cmpint (
      json_object_get_int_member (sub, "connection"), !=,
      json_object_get_int_member (json_array_get_object_element (subscriptions, 0), "connection"));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (sub, "events")), ==,
                    g_strv_length ((char **)wb_message_stream_event_names ()));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (stats, "closes")), ==, 0);
}

static void
test_control_http_errors (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (GError) error = NULL;
  g_autofree char *big = NULL;
  guint status = 0;
  g_autoptr (JsonObject) not_found = NULL;
  g_autoptr (JsonObject) wrong_method = NULL;

  not_found = sim_fixture_request (sim, "GET", "/sim/nothing", NULL, &status, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 404);
  wrong_method = sim_fixture_request (sim, "GET", "/sim/close", NULL, &status, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 405);
  post_fails (sim, "/sim/close", "not json", 400);
  post_fails (sim, "/sim/close", "[4500]", 400);

  /* Chunked bodies have no length to check up front: refused. */
  {
    g_autoptr (GSocketClient) socket_client = g_socket_client_new ();
    g_autoptr (GSocketConnection) connection = g_socket_client_connect_to_host (
        socket_client, "127.0.0.1", sim_fixture_get_port (sim), NULL, &error);
    const char request[] = "POST /sim/close HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    char answer[64] = { 0 };
    gsize got = 0;

    g_assert_no_error (error);
    g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (connection)), request,
                               sizeof request - 1, NULL, NULL, &error);
    g_assert_no_error (error);
    g_input_stream_read_all (g_io_stream_get_input_stream (G_IO_STREAM (connection)), answer,
                             strlen ("HTTP/1.1 411"), &got, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (answer, ==, "HTTP/1.1 411");
  }

  /* Over the body limit: refused before it is read. */
  big = g_strnfill (2 * 1024 * 1024, ' ');
  post_fails (sim, "/sim/close", big, 413);
}

/* ---- limits ---- */

static void
test_limits (void)
{
  const char *args[] = { "--quiet", "--max-connections", "1", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autofree char *url = sim_fixture_dup_ws_url (sim, SIM_FIXTURE_DEFAULT_KEY);
  g_autoptr (WsClient) first = ws_client_connect (sim);
  g_autoptr (WsClient) second = ws_client_try (url, NULL);
  g_autoptr (GString) huge
      = g_string_new ("{\"type\":\"chat.message\",\"stream_id\":\"s\",\"message\":\"");
  g_autoptr (JsonObject) stats = NULL;

  g_assert_null (second->ws);
  g_assert_cmpuint (soup_message_get_status (second->msg), ==, 503);

  /* A frame over the payload limit closes the connection with 1009. */
  while (huge->len < 70 * 1024)
    g_string_append (huge, "xxxxxxxxxxxxxxxx");
  g_string_append (huge, "\"}");
  ws_client_sync (first);
  ws_client_send (first, huge->str);
  WAIT_UNTIL (first->closed, WB_TEST_WAIT_MS);
  /* libsoup drops it at once: the close frame may be lost to a TCP reset. */
  g_assert_true (first->close_code == 0 || first->close_code == SOUP_WEBSOCKET_CLOSE_TOO_BIG);

  /* Subscriptions per connection are bounded. */
  {
    const char *unlimited[] = { "--quiet", "--rate-limit", "0", NULL };
    g_autoptr (SimFixture) open_sim = start_sim (unlimited);
    g_autoptr (WsClient) client = ws_client_connect (open_sim);
    g_autoptr (JsonObject) limited = NULL;
    guint cursor = 0;
    JsonObject *payload;

    for (guint i = 0; i <= 1024; i++)
      {
        g_autofree char *stream_id = g_strdup_printf ("stream_%04u", i);

        ws_client_subscribe (client, stream_id, "[]");
      }
    payload = ws_client_wait_error (client, &cursor, "invalid_message");
    g_assert_cmpstr (json_object_get_string_member (
                         json_object_get_object_member (payload, "details"), "stream_id"),
                     ==, "stream_1024");
    limited = get_stats (open_sim);
    g_assert_cmpuint (
        json_array_get_length (json_object_get_array_member (limited, "subscriptions")), ==, 1024);
    /* Re-subscribing a stream it has is still fine. */
    ws_client_subscribe (client, "stream_0001", "[\"chat.message\"]");
    ws_client_sync (client);
    g_assert_cmpint (ws_client_find (client, "error", cursor), ==, -1);
  }

  /* The slot is free again. */
  {
    g_autoptr (WsClient) third = NULL;
    JsonObject *close;

    stats = wait_connections (sim, 0);
    close = json_array_get_object_element (json_object_get_array_member (stats, "closes"), 0);
    g_assert_cmpint (json_object_get_int_member (close, "code"), ==, SOUP_WEBSOCKET_CLOSE_TOO_BIG);
    g_assert_cmpstr (json_object_get_string_member (close, "initiator"), ==, "error");
    third = ws_client_connect (sim);
    ws_client_sync (third);
  }
}

/* ---- realistic data ---- */

static void
check_event (JsonObject *message, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) parsed
      = wb_message_parse (text, strlen (text), WB_DIRECTION_TO_CLIENT, &error);
  JsonObject *payload = message_payload (message);
  const char *type = message_type (message);

  /* Every event passes the project's own schema. */
  g_assert_no_error (error);
  g_assert_nonnull (parsed);
  if (g_str_equal (type, "stream.health"))
    {
      double loss = json_object_get_double_member (payload, "packet_loss");
      double fps = json_object_get_double_member (payload, "fps");

      double bitrate = json_object_get_double_member (payload, "bitrate");

      /* Targets are 2500-8000 kbps; dips go down to 55 % of the target. */
      g_assert_cmpfloat (bitrate, >=, 2500.0 * 0.55);
      g_assert_cmpfloat (bitrate, <=, 8000.0 * 1.5);
      g_assert_cmpfloat (fps, >, 0.0);
      g_assert_cmpfloat (fps, <=, 60.0);
      g_assert_cmpfloat (loss, >=, 0.0);
      g_assert_cmpfloat (loss, <=, 0.05);
      g_assert_cmpint (json_object_get_int_member (payload, "latency"), >, 0);
    }
  else if (g_str_equal (type, "viewer.joined"))
    {
      const char *devices[] = { "desktop", "mobile", "tv", "tablet", NULL };

      g_assert_true (g_regex_match_simple (
          "^[A-Z]{2}$", json_object_get_string_member (payload, "country"), 0, 0));
      g_assert_true (g_strv_contains (devices, json_object_get_string_member (payload, "device")));
      check_timestamp (payload, "joined_at");
    }
  else if (g_str_equal (type, "viewer.left"))
    {
      g_assert_cmpint (json_object_get_int_member (payload, "watch_time"), >=, 0);
      check_timestamp (payload, "left_at");
    }
  else if (g_str_equal (type, "analytics.update"))
    {
      gint64 concurrent = json_object_get_int_member (payload, "concurrent_viewers");
      gint64 peak = json_object_get_int_member (payload, "peak_viewers");

      g_assert_cmpint (concurrent, <=, peak);
      g_assert_cmpint (peak, <=, json_object_get_int_member (payload, "total_views"));
      g_assert_cmpfloat (json_object_get_double_member (payload, "average_watch_time"), >=, 0.0);
    }
  else if (g_str_equal (type, "chat.message"))
    check_timestamp (payload, "timestamp");
  else if (g_str_equal (type, "reaction.received"))
    {
      g_assert_cmpint (json_object_get_int_member (payload, "count"), >=, 1);
      check_timestamp (payload, "timestamp");
    }
}

static void
test_realistic_events (void)
{
  const char *args[] = { "--quiet", "--speed", FAST, "--streams", "1", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  const char *a = sim_fixture_get_stream_id (sim, 0);
  const char *types[] = { "stream.health", "analytics.update",  "viewer.joined",
                          "chat.message",  "reaction.received", NULL };
  gint64 joins = 0, leaves = 0;

  ws_client_subscribe (client, a, "[]");
  for (const char *const *type = types; *type != NULL; type++)
    WAIT_UNTIL (ws_client_count (client, *type, a) >= 2, WB_TEST_WAIT_MS);
  for (guint i = 0; i < client->messages->len; i++)
    check_event (g_ptr_array_index (client->messages, i), g_ptr_array_index (client->texts, i));

  /* Analytics follow the joins and leaves seen between two updates. */
  {
    guint cursor = 0;
    JsonObject *first = message_payload (ws_client_wait (client, "analytics.update", &cursor));
    guint first_index = cursor;
    JsonObject *second = message_payload (ws_client_wait (client, "analytics.update", &cursor));

    for (guint i = first_index; i < cursor - 1; i++)
      {
        const char *type = message_type (g_ptr_array_index (client->messages, i));

        joins += g_str_equal (type, "viewer.joined");
        leaves += g_str_equal (type, "viewer.left");
      }
    g_assert_cmpint (json_object_get_int_member (second, "concurrent_viewers"), ==,
                     json_object_get_int_member (first, "concurrent_viewers") + joins - leaves);
    g_assert_cmpint (json_object_get_int_member (second, "total_views"), ==,
                     json_object_get_int_member (first, "total_views") + joins);
  }
}

/* Subscribes to the health of stream 0 of @sim. */
static WsClient *
health_client (SimFixture *sim)
{
  WsClient *client = ws_client_connect (sim);

  ws_client_subscribe (client, sim_fixture_get_stream_id (sim, 0), "[\"stream.health\"]");
  return client;
}

/* The first @count health payloads @client got, as text, without stream_id. */
static GPtrArray *
collect_health (WsClient *client, guint count)
{
  GPtrArray *values = g_ptr_array_new_with_free_func (g_free);

  WAIT_UNTIL (ws_client_count (client, "stream.health", NULL) >= count, WB_TEST_WAIT_MS);
  for (guint i = 0; i < client->messages->len && values->len < count; i++)
    {
      JsonObject *payload = message_payload (g_ptr_array_index (client->messages, i));

      if (!g_str_equal (message_type (g_ptr_array_index (client->messages, i)), "stream.health"))
        continue;
      g_ptr_array_add (values,
                       g_strdup_printf ("%g/%g/%g/%" G_GINT64_FORMAT,
                                        json_object_get_double_member (payload, "bitrate"),
                                        json_object_get_double_member (payload, "fps"),
                                        json_object_get_double_member (payload, "packet_loss"),
                                        json_object_get_int_member (payload, "latency")));
    }
  return values;
}

/* Whether @compare consecutive entries of @a equal @compare of @b at some
 * shift either way (the clients subscribe a few events apart). */
static gboolean
health_aligns (GPtrArray *a, GPtrArray *b, guint compare)
{
  for (int shift = -(int)(b->len - compare); shift <= (int)(a->len - compare); shift++)
    {
      guint matched = 0;

      for (guint i = 0; i < compare; i++)
        {
          int ai = shift > 0 ? shift + (int)i : (int)i;
          int bi = shift > 0 ? (int)i : (int)i - shift;

          if (ai < (int)a->len && bi < (int)b->len && g_str_equal (a->pdata[ai], b->pdata[bi]))
            matched++;
        }
      if (matched == compare)
        return TRUE;
    }
  return FALSE;
}

static void
test_seed_replays (void)
{
  const char *args[] = { "--quiet", "--speed", FAST, "--streams", "1", "--seed", "42", NULL };
  const char *other_args[] = { "--quiet", "--speed", FAST, "--streams", "1", "--seed", "43", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (SimFixture) again = start_sim (args);
  g_autoptr (SimFixture) other = start_sim (other_args);
  g_autoptr (WsClient) first_client = health_client (sim);
  g_autoptr (WsClient) second_client = health_client (again);
  g_autoptr (WsClient) third_client = health_client (other);
  g_autoptr (GPtrArray) first = collect_health (first_client, 16);
  g_autoptr (GPtrArray) second = collect_health (second_client, 16);
  g_autoptr (GPtrArray) third = collect_health (third_client, 16);

  g_assert_true (health_aligns (first, second, 4));
  g_assert_false (health_aligns (first, third, 4));
}

static void
test_speed (void)
{
  const char *args[] = { "--quiet", "--speed", "10", "--streams", "1", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  const char *a = sim_fixture_get_stream_id (sim, 0);
  gint64 first_us, elapsed_us;

  /* Health every 5 simulated s: 0.5 s at --speed 10; 4 intervals ~ 2 s. */
  ws_client_subscribe (client, a, "[\"stream.health\"]");
  WAIT_UNTIL (ws_client_count (client, "stream.health", a) >= 1, WB_TEST_WAIT_MS);
  first_us = g_get_monotonic_time ();
  WAIT_UNTIL (ws_client_count (client, "stream.health", a) >= 5, WB_TEST_WAIT_MS);
  elapsed_us = g_get_monotonic_time () - first_us;
  g_assert_cmpint (elapsed_us, >=, 1500 * 1000);
  g_assert_cmpint (elapsed_us, <=, 4 * G_USEC_PER_SEC);
}

/* ---- TLS ---- */

static void
run_openssl (const char *dir, const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *err = NULL;
  int status = -1;

  g_ptr_array_add (argv, (gpointer) "openssl");
  for (; *args != NULL; args++)
    g_ptr_array_add (argv, (gpointer)*args);
  g_ptr_array_add (argv, NULL);
  g_spawn_sync (dir, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                NULL, NULL, NULL, &err, &status, &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("openssl %s failed: %s", (char *)argv->pdata[1], err);
}

/* A throwaway CA and a server certificate for 127.0.0.1 signed by it. */
static void
make_certificates (const char *dir)
{
  const char *ca[] = { "req",
                       "-x509",
                       "-newkey",
                       "ec",
                       "-pkeyopt",
                       "ec_paramgen_curve:prime256v1",
                       "-nodes",
                       "-keyout",
                       "ca.key",
                       "-out",
                       "ca.pem",
                       "-days",
                       "1",
                       "-subj",
                       "/CN=wave-sim test CA",
                       "-addext",
                       "basicConstraints=critical,CA:TRUE",
                       "-addext",
                       "keyUsage=critical,keyCertSign,cRLSign",
                       NULL };
  const char *csr[] = {
    "req",           "-new",    "-newkey",    "ec",   "-pkeyopt",   "ec_paramgen_curve:prime256v1",
    "-nodes",        "-keyout", "server.key", "-out", "server.csr", "-subj",
    "/CN=127.0.0.1", NULL
  };
  const char *sign[] = { "x509",       "-req",   "-in",    "server.csr",      "-CA",
                         "ca.pem",     "-CAkey", "ca.key", "-CAcreateserial", "-out",
                         "server.pem", "-days",  "1",      "-extfile",        "server.ext",
                         NULL };
  g_autofree char *ext_path = g_build_filename (dir, "server.ext", NULL);
  g_autoptr (GError) error = NULL;

  g_file_set_contents (ext_path,
                       "subjectAltName=IP:127.0.0.1\n"
                       "basicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\n",
                       -1, &error);
  g_assert_no_error (error);
  run_openssl (dir, ca);
  run_openssl (dir, csr);
  run_openssl (dir, sign);
}

static void
remove_dir (const char *dir)
{
  const char *names[] = { "ca.key",     "ca.pem",     "ca.srl",     "server.key",
                          "server.csr", "server.pem", "server.ext", NULL };

  for (const char *const *name = names; *name != NULL; name++)
    {
      g_autofree char *path = g_build_filename (dir, *name, NULL);

      g_unlink (path);
    }
  g_rmdir (dir);
}

static void
test_tls (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("wave-sim-tls-XXXXXX", &error);
  g_autofree char *cert = NULL;
  g_autofree char *key = NULL;
  g_autofree char *ca = NULL;
  g_autoptr (GTlsDatabase) database = NULL;

  g_assert_no_error (error);
  make_certificates (dir);
  cert = g_build_filename (dir, "server.pem", NULL);
  key = g_build_filename (dir, "server.key", NULL);
  ca = g_build_filename (dir, "ca.pem", NULL);
  database = g_tls_file_database_new (ca, &error);
  g_assert_no_error (error);

  {
    const char *args[] = { "--quiet", "--tls-cert", cert, "--tls-key", key, NULL };
    g_autoptr (SimFixture) sim = start_sim (args);
    g_autofree char *url = sim_fixture_dup_ws_url (sim, SIM_FIXTURE_DEFAULT_KEY);
    g_autoptr (WsClient) client = NULL;
    g_autoptr (WsClient) untrusting = NULL;
    g_autoptr (JsonObject) stats = NULL;

    g_assert_true (g_str_has_prefix (url, "wss://127.0.0.1:"));
    client = ws_client_try (url, database);
    g_assert_no_error (client->connect_error);
    ws_client_sync (client);
    g_assert_nonnull (soup_message_get_tls_peer_certificate (client->msg));

    /* The verification is real: without the CA the handshake fails. */
    untrusting = ws_client_try (url, NULL);
    g_assert_null (untrusting->ws);
    g_assert_error (untrusting->connect_error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);

    sim_fixture_set_tls_database (sim, database);
    stats = get_stats (sim);
    g_assert_cmpint (json_object_get_int_member (stats, "connections"), ==, 1);
  }
  remove_dir (dir);
}

/* ---- shutdown ---- */

static void
test_sigterm (void)
{
  const char *args[] = { "--quiet", NULL };
  g_autoptr (SimFixture) sim = start_sim (args);
  g_autoptr (WsClient) client = ws_client_connect (sim);
  g_autoptr (GError) error = NULL;
  gboolean stopped;

  ws_client_sync (client);
  stopped = sim_fixture_stop (sim, &error);
  g_assert_no_error (error);
  g_assert_true (stopped);
  WAIT_UNTIL (client->closed, WB_TEST_WAIT_MS);
  g_assert_cmpuint (client->close_code, ==, SOUP_WEBSOCKET_CLOSE_GOING_AWAY);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/sim/startup", test_startup);
  g_test_add_func ("/sim/startup/streams-live", test_default_streams_live);
  g_test_add_func ("/sim/options", test_options);
  g_test_add_func ("/sim/protocol/auth", test_auth);
  g_test_add_func ("/sim/protocol/ping", test_ping);
  g_test_add_func ("/sim/event-numbers", test_event_numbers);
  g_test_add_func ("/sim/protocol/subscription-filter", test_subscription_filter);
  g_test_add_func ("/sim/protocol/subscription-emit", test_subscription_emit);
  g_test_add_func ("/sim/protocol/chat-and-reactions", test_chat_and_reactions);
  g_test_add_func ("/sim/protocol/invalid", test_invalid_messages);
  g_test_add_func ("/sim/protocol/rate-limit", test_rate_limit);
  g_test_add_func ("/sim/control/close", test_control_close);
  g_test_add_func ("/sim/control/drop", test_control_drop);
  g_test_add_func ("/sim/control/pings", test_control_pings);
  g_test_add_func ("/sim/control/reject", test_control_reject);
  g_test_add_func ("/sim/control/raw", test_control_raw);
  g_test_add_func ("/sim/control/flood", test_control_flood);
  g_test_add_func ("/sim/control/stream", test_control_stream);
  g_test_add_func ("/sim/control/stats", test_control_stats);
  g_test_add_func ("/sim/control/http-errors", test_control_http_errors);
  g_test_add_func ("/sim/limits", test_limits);
  g_test_add_func ("/sim/realistic-events", test_realistic_events);
  g_test_add_func ("/sim/seed-replays", test_seed_replays);
  g_test_add_func ("/sim/speed", test_speed);
  g_test_add_func ("/sim/tls", test_tls);
  g_test_add_func ("/sim/sigterm", test_sigterm);
  return g_test_run ();
}
