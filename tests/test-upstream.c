/* SPDX-License-Identifier: MIT */
/*
 * Integration tests of daemon/upstream.c against the real wave-sim binary:
 * one test per row of DESIGN.md's close table, handshake refusals, network,
 * DNS and TLS failures, the heartbeat, resubscription, the send queue and
 * idle close. Waits are measured: the lower bound is strict (what the
 * table allows), the upper bound generous (the machine is shared).
 */
#define G_LOG_DOMAIN "wave-test"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>

#include "config.h"
#include "sim-fixture.h"
#include "test-util.h"
#include "upstream.h"

/* Short versions of the WAVE timings so the table can be exercised quickly. */
#define TEST_BACKOFF_INITIAL_MS 100
#define TEST_BACKOFF_MAX_MS 1600
#define TEST_GOING_AWAY_MS 300
#define TEST_RATE_LIMITED_MS 600
#define TEST_PING_INTERVAL_MS 2000
#define TEST_PONG_TIMEOUT_MS 3000
/* Slack on top of a planned wait before "it never retried" is concluded. */
#define TEST_SLACK_MS 2500
/* Deadline for anything that should happen "soon". */
#define TEST_DEADLINE_MS 15000
#define TEST_JITTER 1.2

/* "A long flapping upstream ... for minutes"; WB_SOAK_SECONDS overrides. */
#define SOAK_DURATION_S 180

typedef struct
{
  gint64 at_us;
  WbLinkState state;
  guint16 last_close_code;
  gint64 next_attempt_us;
} StateEvent;

typedef struct
{
  gboolean done;
  GError *error;
  gint64 at_us;
  guint calls;
} SendResult;

typedef struct
{
  SimFixture *sim;
  WbConfig *config;
  char *api_key;
  WbUpstream *upstream;
  GArray *states;      /* StateEvent */
  GPtrArray *messages; /* JSON text of forwarded messages */
  GArray *resync_gaps; /* gint64 ms */
  char *tmpdir;
} Fixture;

static guint upstream_warnings;

/* Upstream never calls back from inside a call made into it: every call the
 * tests make goes through call_*() below, and every callback checks. */
static gboolean in_upstream_call;
static gboolean callback_inside_call;

static void
check_not_in_call (void)
{
  if (in_upstream_call)
    callback_inside_call = TRUE;
}

/* ---- helpers ----------------------------------------------------------------- */

static void
message_cb (const WbMessage *message, gpointer user_data)
{
  Fixture *f = user_data;

  check_not_in_call ();
  g_ptr_array_add (f->messages, wb_json_to_string (message->root, NULL));
}

static void
state_changed_cb (const WbUpstreamStateChange *change, gpointer user_data)
{
  Fixture *f = user_data;
  StateEvent event
      = { change->at_us, change->new_state, change->last_close_code, change->next_attempt_us };

  check_not_in_call ();
  /* Reported in order: each change starts where the previous one ended. */
  if (f->states->len > 0)
    g_assert_cmpint (g_array_index (f->states, StateEvent, f->states->len - 1).state, ==,
                     change->old_state);
  g_test_message ("%.3f s: %s -> %s (close %u)", event.at_us / 1e6,
                  wb_link_state_to_string (change->old_state),
                  wb_link_state_to_string (change->new_state), change->last_close_code);
  g_array_append_val (f->states, event);
}

static void
resynced_cb (const char *stream_id, gint64 gap_ms, gpointer user_data)
{
  Fixture *f = user_data;

  check_not_in_call ();
  g_array_append_val (f->resync_gaps, gap_ms);
}

static void
status_changed_cb (gpointer user_data)
{
  check_not_in_call ();
}

static const WbUpstreamCallbacks callbacks = {
  .message = message_cb,
  .state_changed = state_changed_cb,
  .resynced = resynced_cb,
  .status_changed = status_changed_cb,
};

/* Warnings about hostile input are expected here: counted, not fatal. */
static void
upstream_warning_cb (const char *log_domain, GLogLevelFlags level, const char *message,
                     gpointer user_data)
{
  upstream_warnings++;
  g_test_message ("%s-WARNING: %s", log_domain, message);
}

static const WbLinkStatus *
status (Fixture *f)
{
  return wb_upstream_get_status (f->upstream);
}

/* The state as last reported to the callbacks (a moment after it changed). */
static WbLinkState
state (Fixture *f)
{
  if (f->states->len == 0)
    return WB_LINK_IDLE;
  return g_array_index (f->states, StateEvent, f->states->len - 1).state;
}

static gboolean
is_healthy (Fixture *f)
{
  return state (f) == WB_LINK_CONNECTED && status (f)->rtt_us > 0;
}

static guint
count_states (Fixture *f, WbLinkState wanted)
{
  guint n = 0;

  for (guint i = 0; i < f->states->len; i++)
    n += g_array_index (f->states, StateEvent, i).state == wanted;
  return n;
}

/* Index of the first transition to @wanted at or after @from, or -1. */
static gint
find_state (Fixture *f, guint from, WbLinkState wanted)
{
  for (guint i = from; i < f->states->len; i++)
    if (g_array_index (f->states, StateEvent, i).state == wanted)
      return (gint)i;
  return -1;
}

/* The measured wait of the @nth retry: from entering a waiting state
 * (waiting or rate-limited) to the next connecting. -1 if incomplete. */
static gint64
measured_wait_ms (Fixture *f, guint nth, StateEvent *out_wait_event)
{
  guint seen = 0;

  for (guint i = 0; i < f->states->len; i++)
    {
      StateEvent *event = &g_array_index (f->states, StateEvent, i);

      if (event->state != WB_LINK_WAITING && event->state != WB_LINK_RATE_LIMITED)
        continue;
      if (seen++ < nth)
        continue;
      if (out_wait_event != NULL)
        *out_wait_event = *event;
      for (guint j = i + 1; j < f->states->len; j++)
        {
          StateEvent *next = &g_array_index (f->states, StateEvent, j);

          if (next->state == WB_LINK_CONNECTING)
            return (next->at_us - event->at_us) / 1000;
        }
      return -1;
    }
  return -1;
}

static guint
count_waits (Fixture *f)
{
  return count_states (f, WB_LINK_WAITING) + count_states (f, WB_LINK_RATE_LIMITED);
}

static void
assert_wait_between (gint64 measured_ms, guint min_ms, guint max_ms, const char *what)
{
  g_test_message ("%s: waited %" G_GINT64_FORMAT " ms (allowed %u..%u)", what, measured_ms, min_ms,
                  max_ms);
  g_assert_cmpint (measured_ms, >=, min_ms);
  g_assert_cmpint (measured_ms, <=, max_ms);
}

static JsonObject *
stats (Fixture *f)
{
  g_autoptr (GError) error = NULL;
  JsonObject *object = sim_fixture_get_stats (f->sim, &error);

  g_assert_no_error (error);
  return object;
}

static gint64
stats_int (Fixture *f, const char *member)
{
  g_autoptr (JsonObject) object = stats (f);

  return json_object_get_int_member_with_default (object, member, 0);
}

static gint64
stats_received (Fixture *f, const char *type)
{
  g_autoptr (JsonObject) object = stats (f);
  JsonObject *received = json_object_get_object_member (object, "received");

  return received != NULL ? json_object_get_int_member_with_default (received, type, 0) : 0;
}

static void
sim_post (Fixture *f, const char *path, const char *body)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) answer = sim_fixture_post (f->sim, path, body, &error);

  g_assert_no_error (error);
}

static void sim_post_printf (Fixture *f, const char *path, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static void
sim_post_printf (Fixture *f, const char *path, const char *format, ...)
{
  g_autofree char *body = NULL;
  va_list args;

  va_start (args, format);
  body = g_strdup_vprintf (format, args);
  va_end (args);
  sim_post (f, path, body);
}

static const char *
stream0 (Fixture *f)
{
  return sim_fixture_get_stream_id (f->sim, 0);
}

static const char *
stream1 (Fixture *f)
{
  return sim_fixture_get_stream_id (f->sim, 1);
}

static void
start_sim (Fixture *f, const char *const *args)
{
  g_autoptr (GError) error = NULL;

  f->sim = sim_fixture_new (args, &error);
  g_assert_no_error (error);
  g_free (f->config->url);
  f->config->url = g_strdup (sim_fixture_get_url (f->sim));
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  static const char *const default_args[] = { "--streams", "3", "--quiet", NULL };

  upstream_warnings = 0;
  f->states = g_array_new (FALSE, TRUE, sizeof (StateEvent));
  f->messages = g_ptr_array_new_with_free_func (g_free);
  f->resync_gaps = g_array_new (FALSE, TRUE, sizeof (gint64));
  f->config = wb_config_new_defaults (TRUE);
  f->config->ping_interval_ms = TEST_PING_INTERVAL_MS;
  f->config->pong_timeout_ms = TEST_PONG_TIMEOUT_MS;
  f->config->backoff_initial_ms = TEST_BACKOFF_INITIAL_MS;
  f->config->backoff_max_ms = TEST_BACKOFF_MAX_MS;
  f->config->going_away_wait_ms = TEST_GOING_AWAY_MS;
  f->config->rate_limited_wait_ms = TEST_RATE_LIMITED_MS;
  /* One test owner may hold SendQueueSize / 16 of it: two. */
  f->config->send_queue_size = 32;
  f->config->send_queue_timeout_ms = 20000;
  f->api_key = g_strdup (SIM_FIXTURE_DEFAULT_KEY);
  f->tmpdir = g_dir_make_tmp ("test-upstream-XXXXXX", &error);
  g_assert_no_error (error);
  if (data == NULL)
    start_sim (f, default_args);
}

/* Created lazily so tests can tune the config first. */
static WbUpstream *
upstream (Fixture *f)
{
  if (f->upstream == NULL)
    f->upstream = wb_upstream_new (f->config, f->api_key, &callbacks, f);
  return f->upstream;
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->upstream, wb_upstream_free);
  /* Let closing handshakes and abandoned callbacks run. */
  wb_test_run_for_ms (50);
  g_clear_pointer (&f->sim, sim_fixture_free);
  g_clear_pointer (&f->config, wb_config_free);
  g_clear_pointer (&f->states, g_array_unref);
  g_clear_pointer (&f->messages, g_ptr_array_unref);
  g_clear_pointer (&f->resync_gaps, g_array_unref);
  if (f->tmpdir != NULL)
    {
      g_autofree char *command = g_strdup_printf ("rm -rf '%s'", f->tmpdir);

      g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL);
      g_free (f->tmpdir);
    }
  g_free (f->api_key);
  g_assert_false (callback_inside_call);
}

/* The uid the tests' subscriptions and sends come from. */
#define TEST_OWNER 1000

#define IN_UPSTREAM_CALL(call)                                                                     \
  G_STMT_START                                                                                     \
  {                                                                                                \
    in_upstream_call = TRUE;                                                                       \
    call;                                                                                          \
    in_upstream_call = FALSE;                                                                      \
  }                                                                                                \
  G_STMT_END

static void
call_set_stream_events (Fixture *f, const char *stream_id, const char *const *events)
{
  IN_UPSTREAM_CALL (wb_upstream_set_stream_events (upstream (f), stream_id, events, TEST_OWNER));
}

static void
call_send (Fixture *f, JsonNode *message, WbSendCallback callback, gpointer user_data)
{
  IN_UPSTREAM_CALL (wb_upstream_send (upstream (f), message, TEST_OWNER, callback, user_data));
}

static gboolean
call_reconnect (Fixture *f, GError **error)
{
  gboolean done;

  IN_UPSTREAM_CALL (done = wb_upstream_reconnect (upstream (f), error));
  return done;
}

static void
call_reload (Fixture *f, const WbConfig *config, const char *api_key)
{
  IN_UPSTREAM_CALL (wb_upstream_reload (upstream (f), config, api_key));
}

static void
call_network_changed (Fixture *f)
{
  IN_UPSTREAM_CALL (wb_upstream_network_changed (upstream (f)));
}

static const char *const health_events[] = { "stream.health", NULL };
static const char *const chat_events[] = { "chat.message", "stream.health", NULL };

static void
subscribe_and_wait_healthy (Fixture *f)
{
  call_set_stream_events (f, stream0 (f), health_events);
  WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
}

static void
send_cb (const GError *error, gpointer user_data)
{
  SendResult *result = user_data;

  check_not_in_call ();
  result->calls++;
  result->done = TRUE;
  result->at_us = g_get_monotonic_time ();
  g_clear_error (&result->error);
  result->error = error != NULL ? g_error_copy (error) : NULL;
}

static void
send_chat (Fixture *f, const char *text, SendResult *result)
{
  g_autoptr (JsonNode) chat = wb_message_new_chat (stream0 (f), text);

  call_send (f, chat, send_cb, result);
}

static void
send_result_clear (SendResult *result)
{
  g_clear_error (&result->error);
}

/* A TCP port on 127.0.0.1 that nobody listens on (bound, then released). */
static guint16
closed_port (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) socket
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) bound = NULL;

  g_assert_no_error (error);
  g_socket_bind (socket, address, FALSE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

/* ---- the tests --------------------------------------------------------------- */

static void
test_lazy_connect_and_events (Fixture *f, gconstpointer data)
{
  g_autofree char *emit = NULL;
  gboolean seen = FALSE;

  upstream (f);
  wb_test_run_for_ms (300);
  g_assert_cmpint (state (f), ==, WB_LINK_IDLE);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, 0);
  g_assert_nonnull (strstr (status (f)->url, "REDACTED"));
  g_assert_null (strstr (status (f)->url, SIM_FIXTURE_DEFAULT_KEY));

  subscribe_and_wait_healthy (f);
  g_assert_cmpuint (status (f)->reconnects, ==, 0);
  g_assert_cmpint (status (f)->connected_since_us, >, 0);
  g_assert_cmpint (stats_received (f, "ping"), >=, 1);
  POLL_UNTIL (stats_received (f, "subscribe") == 1, TEST_DEADLINE_MS);
  /* First connect: nothing to resync. */
  g_assert_cmpuint (f->resync_gaps->len, ==, 0);

  emit = g_strdup_printf ("{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"%s\","
                          "\"bitrate\":4500,\"fps\":60,\"packet_loss\":0.25,\"latency\":42}}",
                          stream0 (f));
  sim_post (f, "/sim/emit", emit);
  WAIT_UNTIL (f->messages->len > 0
                  && (seen = strstr (g_ptr_array_index (f->messages, f->messages->len - 1), "0.25")
                             != NULL),
              TEST_DEADLINE_MS);
  g_assert_true (seen);
  for (guint i = 0; i < f->messages->len; i++)
    g_assert_null (strstr (g_ptr_array_index (f->messages, i), "\"pong\""));
}

/* 1000 from the server: closed, no retry until local demand. */
static void
test_close_1000 (Fixture *f, gconstpointer data)
{
  gint64 connections;

  subscribe_and_wait_healthy (f);
  sim_post (f, "/sim/close", "{\"code\":1000,\"reason\":\"bye\"}");
  WAIT_UNTIL (state (f) == WB_LINK_CLOSED, TEST_DEADLINE_MS);
  g_assert_cmpuint (status (f)->last_close_code, ==, 1000);
  g_assert_cmpstr (status (f)->last_close_reason, ==, "bye");
  connections = stats_int (f, "connections_total");

  /* Longer than any backoff or fixed wait of this configuration. */
  wb_test_run_for_ms (TEST_BACKOFF_MAX_MS + TEST_RATE_LIMITED_MS);
  g_assert_cmpint (state (f), ==, WB_LINK_CLOSED);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, connections);

  /* Re-setting the same union is no new demand… */
  call_set_stream_events (f, stream0 (f), health_events);
  wb_test_run_for_ms (200);
  g_assert_cmpint (state (f), ==, WB_LINK_CLOSED);
  /* …a new subscription is. */
  call_set_stream_events (f, stream1 (f), health_events);
  WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
  g_assert_cmpuint (status (f)->reconnects, ==, 1);
  WAIT_UNTIL (f->resync_gaps->len == 1, TEST_DEADLINE_MS);
  g_assert_cmpint (g_array_index (f->resync_gaps, gint64, 0), >=,
                   TEST_BACKOFF_MAX_MS + TEST_RATE_LIMITED_MS);
}

typedef struct
{
  const char *name;
  const char *action; /* /sim/ path */
  const char *body;
  guint16 expected_code;
  WbLinkState expected_state;
  guint min_wait_ms;
  gboolean server_wait; /* the server set the wait: Reconnect() may not cut it */
} CloseRow;

static const CloseRow close_rows[] = {
  { "1001", "/sim/close", "{\"code\":1001}", 1001, WB_LINK_WAITING, TEST_GOING_AWAY_MS, TRUE },
  { "1006", "/sim/drop", "{}", 1006, WB_LINK_WAITING, TEST_BACKOFF_INITIAL_MS },
  { "4429", "/sim/close", "{\"code\":4429}", 4429, WB_LINK_RATE_LIMITED, TEST_RATE_LIMITED_MS,
    TRUE },
  { "4500", "/sim/close", "{\"code\":4500}", 4500, WB_LINK_WAITING, TEST_BACKOFF_INITIAL_MS },
  { "unknown", "/sim/close", "{\"code\":4123}", 4123, WB_LINK_WAITING, TEST_BACKOFF_INITIAL_MS },
};

/* One row of the close table: the state, the measured wait, the way back. */
static void
test_close_row (Fixture *f, gconstpointer data)
{
  const CloseRow *row = NULL;
  const char *name = g_strrstr (g_test_get_path (), "/") + 1;
  StateEvent waiting = { 0 };
  gint64 wait_ms;
  gint index;

  for (gsize i = 0; i < G_N_ELEMENTS (close_rows); i++)
    if (g_str_equal (close_rows[i].name, name))
      row = &close_rows[i];
  g_assert_nonnull (row);

  subscribe_and_wait_healthy (f);
  sim_post (f, row->action, row->body);
  WAIT_UNTIL (count_waits (f) >= 1, TEST_DEADLINE_MS);
  index = find_state (f, 0, row->expected_state);
  g_assert_cmpint (index, >=, 0);
  g_assert_cmpuint (status (f)->last_close_code, ==, row->expected_code);
  if (row->server_wait)
    {
      g_autoptr (GError) error = NULL;

      /* Reconnect() may not shorten a wait the server imposed; it says how long is left. */
      g_assert_false (call_reconnect (f, &error));
      g_assert_error (error, WB_LINK_ERROR, WB_LINK_ERROR_SERVER_WAIT);
      g_assert_nonnull (strstr (error->message, "the next attempt is in"));
    }

  WAIT_UNTIL (is_healthy (f), row->min_wait_ms * TEST_JITTER + TEST_DEADLINE_MS);
  wait_ms = measured_wait_ms (f, 0, &waiting);
  g_assert_cmpint (waiting.state, ==, row->expected_state);
  /* Backoff was reset by the healthy connection: the first delay is the initial one. */
  assert_wait_between (wait_ms, row->min_wait_ms, row->min_wait_ms * TEST_JITTER + TEST_SLACK_MS,
                       row->name);
  g_assert_cmpuint (status (f)->reconnects, ==, 1);
  WAIT_UNTIL (f->resync_gaps->len == 1, TEST_DEADLINE_MS);
  g_assert_cmpint (g_array_index (f->resync_gaps, gint64, 0), >=, row->min_wait_ms);
}

/* 4401: parked until reload, sends refused, at most one attempt. */
static void
test_close_4401 (Fixture *f, gconstpointer data)
{
  SendResult result = { 0 };
  gint64 connections;

  subscribe_and_wait_healthy (f);
  sim_post (f, "/sim/close", "{\"code\":4401,\"reason\":\"invalid api key\"}");
  WAIT_UNTIL (state (f) == WB_LINK_AUTH_FAILED, TEST_DEADLINE_MS);
  connections = stats_int (f, "connections_total");

  send_chat (f, "hello", &result);
  WAIT_UNTIL (result.done, TEST_DEADLINE_MS);
  g_assert_error (result.error, WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED);
  {
    g_autoptr (GError) error = NULL;

    /* Parked until the key changes: Reconnect() cannot help and says so. */
    g_assert_false (call_reconnect (f, &error));
    g_assert_error (error, WB_LINK_ERROR, WB_LINK_ERROR_AUTH_FAILED);
  }
  call_set_stream_events (f, stream1 (f), health_events);
  call_network_changed (f);
  wb_test_run_for_ms (TEST_BACKOFF_MAX_MS + TEST_RATE_LIMITED_MS);
  g_assert_cmpint (state (f), ==, WB_LINK_AUTH_FAILED);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, connections);

  call_reload (f, f->config, f->api_key);
  WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
  g_assert_cmpuint (result.calls, ==, 1);
  send_result_clear (&result);
}

/* A wrong key: one attempt, then silence until the key is fixed. */
static void
test_wrong_key (Fixture *f, gconstpointer data)
{
  g_free (f->api_key);
  f->api_key = g_strdup ("wrong_key");
  call_set_stream_events (f, stream0 (f), health_events);
  WAIT_UNTIL (state (f) == WB_LINK_AUTH_FAILED, TEST_DEADLINE_MS);
  g_assert_cmpuint (status (f)->last_close_code, ==, 4401);
  /* What `wavectl status` and LastError show to explain auth-failed. */
  g_assert_cmpstr (status (f)->last_error, ==, "closed by the server with 4401: invalid api key");
  wb_test_run_for_ms (TEST_BACKOFF_MAX_MS * 2);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, 1);
  g_assert_cmpint (state (f), ==, WB_LINK_AUTH_FAILED);

  /* Reloading the same wrong key tries once more, and only once. */
  call_reload (f, f->config, f->api_key);
  WAIT_UNTIL (count_states (f, WB_LINK_AUTH_FAILED) == 2, TEST_DEADLINE_MS);
  wb_test_run_for_ms (TEST_BACKOFF_MAX_MS);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, 2);

  call_reload (f, f->config, SIM_FIXTURE_DEFAULT_KEY);
  WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, 3);
}

typedef struct
{
  const char *name;
  guint http_status;
  WbLinkState expected_state;
  guint min_wait_ms;
} HandshakeRow;

static const HandshakeRow handshake_rows[] = {
  { "401", 401, WB_LINK_AUTH_FAILED, 0 },
  { "403", 403, WB_LINK_AUTH_FAILED, 0 },
  { "429", 429, WB_LINK_RATE_LIMITED, TEST_RATE_LIMITED_MS },
  { "503", 503, WB_LINK_WAITING, TEST_BACKOFF_INITIAL_MS },
};

/* Established TCP connections of this process to 127.0.0.1:@port (the
 * upstream runs in-process here; so does the fixture's control session). */
static guint
count_tcp_to_port (guint16 port)
{
  g_autoptr (GHashTable) inodes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr (GDir) dir = g_dir_open ("/proc/self/fd", 0, NULL);
  g_autofree char *table = NULL;
  g_auto (GStrv) lines = NULL;
  g_autofree char *remote = g_strdup_printf ("0100007F:%04X", port);
  const char *name;
  guint count = 0;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename ("/proc/self/fd", name, NULL);
      g_autofree char *target = g_file_read_link (path, NULL);

      if (target != NULL && g_str_has_prefix (target, "socket:["))
        g_hash_table_add (inodes, g_strndup (target + 8, strlen (target) - 9));
    }
  g_assert_true (g_file_get_contents ("/proc/self/net/tcp", &table, NULL, NULL));
  lines = g_strsplit (table, "\n", -1);
  for (guint i = 1; lines[i] != NULL; i++)
    {
      g_auto (GStrv) cols = g_strsplit_set (g_strstrip (lines[i]), " ", -1);
      g_autoptr (GPtrArray) fields = g_ptr_array_new ();

      for (guint j = 0; cols[j] != NULL; j++)
        if (cols[j][0] != '\0')
          g_ptr_array_add (fields, cols[j]);
      /* sl local remote st … inode: state 01 is ESTABLISHED. */
      if (fields->len > 9 && g_str_equal (g_ptr_array_index (fields, 2), remote)
          && g_str_equal (g_ptr_array_index (fields, 3), "01")
          && g_hash_table_contains (inodes, g_ptr_array_index (fields, 9)))
        count++;
    }
  return count;
}

static void
test_handshake_status (Fixture *f, gconstpointer data)
{
  const HandshakeRow *row = NULL;
  const char *name = g_strrstr (g_test_get_path (), "/") + 1;
  guint control_connections;

  for (gsize i = 0; i < G_N_ELEMENTS (handshake_rows); i++)
    if (g_str_equal (handshake_rows[i].name, name))
      row = &handshake_rows[i];
  g_assert_nonnull (row);

  sim_post_printf (f, "/sim/reject", "{\"count\":1,\"http_status\":%u}", row->http_status);
  control_connections = count_tcp_to_port (sim_fixture_get_port (f->sim));
  call_set_stream_events (f, stream0 (f), health_events);
  WAIT_UNTIL (find_state (f, 0, row->expected_state) >= 0, TEST_DEADLINE_MS);
  g_assert_nonnull (strstr (status (f)->last_error, name));
  g_assert_cmpint (stats_int (f, "handshakes_rejected"), ==, 1);

  if (row->expected_state == WB_LINK_AUTH_FAILED)
    {
      wb_test_run_for_ms (MAX (TEST_BACKOFF_MAX_MS, 1500));
      g_assert_cmpint (state (f), ==, WB_LINK_AUTH_FAILED);
      /* The refused handshake's HTTP connection is not kept open (it was
       * for libsoup's 60 s idle timeout; upstream.c gives it 1 s). */
      g_assert_cmpuint (count_tcp_to_port (sim_fixture_get_port (f->sim)), ==, control_connections);
      g_assert_cmpuint (count_states (f, WB_LINK_CONNECTING), ==, 1);
      call_reload (f, f->config, f->api_key);
      WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
      return;
    }
  WAIT_UNTIL (is_healthy (f), row->min_wait_ms * TEST_JITTER + TEST_DEADLINE_MS);
  assert_wait_between (measured_wait_ms (f, 0, NULL), row->min_wait_ms,
                       row->min_wait_ms * TEST_JITTER + TEST_SLACK_MS, row->name);
  /* A first connect after failed attempts is still the first connection. */
  g_assert_cmpuint (status (f)->reconnects, ==, 0);
}

/* Checks that @n waits were measured and that each doubled (backoff never reset). */
static void
assert_backoff_grows (Fixture *f, guint n, const char *what)
{
  for (guint i = 0; i < n; i++)
    {
      guint base = MIN (TEST_BACKOFF_INITIAL_MS << i, TEST_BACKOFF_MAX_MS);
      g_autofree char *label = g_strdup_printf ("%s, wait %u", what, i + 1);

      assert_wait_between (measured_wait_ms (f, i, NULL), base, base * TEST_JITTER + TEST_SLACK_MS,
                           label);
    }
}

static void
test_connection_refused (Fixture *f, gconstpointer data)
{
  g_free (f->config->url);
  f->config->url = g_strdup_printf ("ws://127.0.0.1:%u/v1/streams", closed_port ());
  call_set_stream_events (f, "stream_abc123", health_events);
  WAIT_UNTIL (measured_wait_ms (f, 3, NULL) >= 0, TEST_DEADLINE_MS * 2);
  g_assert_cmpint (state (f), !=, WB_LINK_CONNECTED);
  g_assert_cmpstr (status (f)->last_error, !=, "");
  g_test_message ("last error: %s", status (f)->last_error);
  assert_backoff_grows (f, 4, "connection refused");
}

static void
test_unresolvable_host (Fixture *f, gconstpointer data)
{
  g_free (f->config->url);
  f->config->url = g_strdup ("ws://nonexistent.invalid/v1/streams");
  call_set_stream_events (f, "stream_abc123", health_events);
  /* Resolvers may take their time to give up. */
  WAIT_UNTIL (measured_wait_ms (f, 1, NULL) >= 0, 60000);
  g_test_message ("last error: %s", status (f)->last_error);
  g_assert_cmpstr (status (f)->last_error, !=, "");
  assert_backoff_grows (f, 2, "unresolvable host");
}

/* A server that completes TCP (the kernel's backlog) but never answers. */
static void
test_handshake_timeout (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) socket
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  guint timeout_ms;
  gint index;

  g_assert_no_error (error);
  g_socket_bind (socket, address, FALSE, &error);
  g_assert_no_error (error);
  g_socket_listen (socket, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);

  f->config->ping_interval_ms = 300;
  f->config->pong_timeout_ms = 300;
  timeout_ms = f->config->ping_interval_ms + f->config->pong_timeout_ms;
  g_free (f->config->url);
  f->config->url = g_strdup_printf ("ws://127.0.0.1:%u/v1/streams",
                                    g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  call_set_stream_events (f, "stream_abc123", health_events);
  WAIT_UNTIL (measured_wait_ms (f, 0, NULL) >= 0, TEST_DEADLINE_MS);
  index = find_state (f, 0, WB_LINK_WAITING);
  assert_wait_between ((g_array_index (f->states, StateEvent, index).at_us
                        - g_array_index (f->states, StateEvent, 0).at_us)
                           / 1000,
                       timeout_ms, timeout_ms + TEST_SLACK_MS, "handshake timeout");
  g_assert_cmpstr (status (f)->last_error, ==, "connect timeout");
  g_assert_cmpuint (count_states (f, WB_LINK_CONNECTED), ==, 0);
}

/* A server that accepts the WebSocket handshake, sends a close frame, and
 * then keeps the TCP connection open until released: the bridge's
 * WebSocket stays in CLOSING (libsoup waits for the server to end TCP). */
typedef struct
{
  GSocket *listener;
  GMutex lock;
  gboolean close_sent;
  gboolean release;
} HalfClosingServer;

static gboolean
half_closing_flag (HalfClosingServer *server, gboolean *flag)
{
  gboolean value;

  g_mutex_lock (&server->lock);
  value = *flag;
  g_mutex_unlock (&server->lock);
  return value;
}

static gpointer
half_closing_server_run (gpointer data)
{
  static const guint8 close_frame[] = { 0x88, 0x02, 0x03, 0xe8 }; /* 1000, unmasked */
  HalfClosingServer *server = data;
  g_autoptr (GSocket) conn = g_socket_accept (server->listener, NULL, NULL);
  g_autoptr (GString) request = g_string_new (NULL);
  g_autoptr (GChecksum) sha1 = g_checksum_new (G_CHECKSUM_SHA1);
  g_autofree char *accept = NULL;
  g_autofree char *response = NULL;
  guint8 digest[20];
  gsize digest_length = sizeof digest;
  const char *key, *end;
  char buffer[4096];

  g_assert_nonnull (conn);
  while (strstr (request->str, "\r\n\r\n") == NULL)
    {
      gssize n = g_socket_receive (conn, buffer, sizeof buffer, NULL, NULL);

      g_assert_cmpint (n, >, 0);
      g_string_append_len (request, buffer, n);
    }
  key = strstr (request->str, "Sec-WebSocket-Key: ");
  g_assert_nonnull (key);
  key += strlen ("Sec-WebSocket-Key: ");
  end = strstr (key, "\r\n");
  g_checksum_update (sha1, (const guchar *)key, end - key);
  g_checksum_update (sha1, (const guchar *)"258EAFA5-E914-47DA-95CA-C5AB0DC85B11", -1);
  g_checksum_get_digest (sha1, digest, &digest_length);
  accept = g_base64_encode (digest, digest_length);
  response = g_strdup_printf ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                              accept);
  g_assert_cmpint (g_socket_send (conn, response, strlen (response), NULL, NULL), ==,
                   (gssize)strlen (response));
  g_usleep (300 * 1000); /* the bridge reports connected and pings */
  g_assert_cmpint (g_socket_send (conn, (const char *)close_frame, sizeof close_frame, NULL, NULL),
                   ==, sizeof close_frame);
  g_mutex_lock (&server->lock);
  server->close_sent = TRUE;
  g_mutex_unlock (&server->lock);
  while (!half_closing_flag (server, &server->release))
    g_usleep (10 * 1000);
  g_socket_close (conn, NULL);
  return NULL;
}

/* Between the server's close frame and the end of TCP the WebSocket is
 * CLOSING: nothing may be written into it. The paced outbox did (a
 * subscription change due then): a CRITICAL from write_json, and a send
 * written then would have failed. Found by the 1-hour soak. */
static void
test_nothing_written_while_closing (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (JsonNode) chat = wb_message_new_chat ("stream_abc123", "held");
  HalfClosingServer server = { 0 };
  SendResult result = { 0 };
  GThread *thread;

  server.listener
      = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &error);
  g_assert_no_error (error);
  g_socket_bind (server.listener, address, FALSE, &error);
  g_assert_no_error (error);
  g_socket_listen (server.listener, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (server.listener, &error);
  g_assert_no_error (error);
  g_mutex_init (&server.lock);
  thread = g_thread_new ("half-closing-server", half_closing_server_run, &server);

  g_free (f->config->url);
  f->config->url = g_strdup_printf ("ws://127.0.0.1:%u/v1/streams",
                                    g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  call_set_stream_events (f, "stream_abc123", health_events);
  WAIT_UNTIL (find_state (f, 0, WB_LINK_CONNECTED) >= 0, TEST_DEADLINE_MS);
  WAIT_UNTIL (half_closing_flag (&server, &server.close_sent), TEST_DEADLINE_MS);
  wb_test_run_for_ms (100); /* the close frame is read: CLOSING */

  /* Due within a pace interval, while the WebSocket is CLOSING. */
  call_set_stream_events (f, "stream_def456", health_events);
  call_send (f, chat, send_cb, &result);
  wb_test_run_for_ms (500);
  /* Never written: still held for the next connection, not failed. */
  g_assert_false (result.done);

  g_mutex_lock (&server.lock);
  server.release = TRUE;
  g_mutex_unlock (&server.lock);
  g_thread_join (thread);
  WAIT_UNTIL (find_state (f, 0, WB_LINK_CLOSED) >= 0, TEST_DEADLINE_MS);
  g_assert_cmpuint (status (f)->last_close_code, ==, 1000);
  g_assert_false (result.done);
  /* Still exactly one outcome: freeing upstream fails what is held. */
  g_clear_pointer (&f->upstream, wb_upstream_free);
  WAIT_UNTIL (result.done, TEST_DEADLINE_MS);
  g_assert_cmpuint (result.calls, ==, 1);
  g_assert_error (result.error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
  g_clear_object (&server.listener);
  g_mutex_clear (&server.lock);
  send_result_clear (&result);
}

/* A URL libsoup cannot use is retried (cheaply), never parked. */
static void
test_invalid_url (Fixture *f, gconstpointer data)
{
  g_free (f->config->url);
  f->config->url = g_strdup ("ws://");
  call_set_stream_events (f, "stream_abc123", health_events);
  WAIT_UNTIL (measured_wait_ms (f, 1, NULL) >= 0, TEST_DEADLINE_MS);
  g_test_message ("last error: %s", status (f)->last_error);
  g_assert_cmpstr (status (f)->last_error, !=, "");
  assert_backoff_grows (f, 2, "invalid URL");
}

static gboolean
make_certificate (Fixture *f, char **out_cert, char **out_key)
{
  g_autofree char *cert = g_build_filename (f->tmpdir, "cert.pem", NULL);
  g_autofree char *key = g_build_filename (f->tmpdir, "key.pem", NULL);
  g_autofree char *openssl = g_find_program_in_path ("openssl");
  g_autoptr (GError) error = NULL;
  int wait_status = 0;
  const char *argv[] = { openssl,    "req",
                         "-x509",    "-newkey",
                         "rsa:2048", "-nodes",
                         "-keyout",  key,
                         "-out",     cert,
                         "-days",    "2",
                         "-subj",    "/CN=127.0.0.1",
                         "-addext",  "subjectAltName=IP:127.0.0.1",
                         NULL };

  if (openssl == NULL)
    return FALSE;
  g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                NULL, NULL, NULL, NULL, &wait_status, &error);
  g_assert_no_error (error);
  g_spawn_check_wait_status (wait_status, &error);
  g_assert_no_error (error);
  *out_cert = g_steal_pointer (&cert);
  *out_key = g_steal_pointer (&key);
  return TRUE;
}

static void
start_tls_sim (Fixture *f, gboolean trusted)
{
  g_autofree char *cert = NULL;
  g_autofree char *key = NULL;
  g_autoptr (GTlsDatabase) database = NULL;
  g_autoptr (GError) error = NULL;

  if (!make_certificate (f, &cert, &key))
    {
      g_test_skip ("openssl not found to make a test certificate");
      return;
    }
  {
    const char *const args[]
        = { "--streams", "2", "--quiet", "--tls-cert", cert, "--tls-key", key, NULL };

    start_sim (f, args);
  }
  g_assert_true (g_str_has_prefix (f->config->url, "wss://"));
  database = g_tls_file_database_new (cert, &error);
  g_assert_no_error (error);
  sim_fixture_set_tls_database (f->sim, database);
  if (trusted)
    f->config->ca_file = g_strdup (cert);
}

static void
test_tls_trusted (Fixture *f, gconstpointer data)
{
  start_tls_sim (f, TRUE);
  if (g_test_failed () || f->sim == NULL)
    return;
  subscribe_and_wait_healthy (f);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, 1);
  g_assert_cmpuint (count_waits (f), ==, 0);
}

static void
test_tls_untrusted (Fixture *f, gconstpointer data)
{
  start_tls_sim (f, FALSE);
  if (f->sim == NULL)
    return;
  call_set_stream_events (f, stream0 (f), health_events);
  WAIT_UNTIL (measured_wait_ms (f, 1, NULL) >= 0, TEST_DEADLINE_MS);
  g_test_message ("last error: %s", status (f)->last_error);
  g_assert_cmpstr (status (f)->last_error, !=, "");
  g_assert_cmpuint (count_states (f, WB_LINK_CONNECTED), ==, 0);
  assert_backoff_grows (f, 2, "untrusted certificate");
}

/* A CAFile that is not the server's CA does not make it trusted either. */
static void
test_tls_wrong_ca (Fixture *f, gconstpointer data)
{
  g_autofree char *other_dir = g_build_filename (f->tmpdir, "other", NULL);
  g_autofree char *cert = NULL;
  g_autofree char *key = NULL;
  char *saved_tmpdir;

  start_tls_sim (f, FALSE);
  if (f->sim == NULL)
    return;
  g_mkdir (other_dir, 0700);
  saved_tmpdir = f->tmpdir;
  f->tmpdir = other_dir;
  g_assert_true (make_certificate (f, &cert, &key));
  f->tmpdir = saved_tmpdir;
  f->config->ca_file = g_strdup (cert);
  call_set_stream_events (f, stream0 (f), health_events);
  WAIT_UNTIL (measured_wait_ms (f, 0, NULL) >= 0, TEST_DEADLINE_MS);
  g_assert_cmpuint (count_states (f, WB_LINK_CONNECTED), ==, 0);
}

static void
test_pong_timeout (Fixture *f, gconstpointer data)
{
  gint64 silenced_us;
  gint index;

  f->config->ping_interval_ms = 300;
  f->config->pong_timeout_ms = 500;
  subscribe_and_wait_healthy (f);
  sim_post (f, "/sim/pings", "{\"answer\":false}");
  silenced_us = g_get_monotonic_time ();
  WAIT_UNTIL (count_waits (f) >= 1, TEST_DEADLINE_MS);
  index = find_state (f, 0, WB_LINK_WAITING);
  g_assert_cmpint ((g_array_index (f->states, StateEvent, index).at_us - silenced_us) / 1000, >=,
                   f->config->pong_timeout_ms);
  g_assert_cmpuint (status (f)->last_close_code, ==, 1006);
  g_assert_cmpstr (status (f)->last_close_reason, ==, "pong timeout");

  /* Still silent: the next connection times out as well, with a longer backoff. */
  WAIT_UNTIL (count_waits (f) >= 2, TEST_DEADLINE_MS);
  sim_post (f, "/sim/pings", "{\"answer\":true}");
  WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
  assert_wait_between (measured_wait_ms (f, 0, NULL), TEST_BACKOFF_INITIAL_MS,
                       TEST_BACKOFF_INITIAL_MS * TEST_JITTER + TEST_SLACK_MS, "pong timeout 1");
  assert_wait_between (measured_wait_ms (f, 1, NULL), TEST_BACKOFF_INITIAL_MS * 2,
                       TEST_BACKOFF_INITIAL_MS * 2 * TEST_JITTER + TEST_SLACK_MS, "pong timeout 2");
}

/* A server that accepts and closes at once: no 1 s loop, held sends survive. */
static void
test_accept_and_close (Fixture *f, gconstpointer data)
{
  SendResult result = { 0 };
  const guint rejects = 4;

  sim_post_printf (f, "/sim/reject", "{\"count\":%u,\"close_code\":4500}", rejects);
  call_set_stream_events (f, stream0 (f), chat_events);
  send_chat (f, "survives", &result);
  WAIT_UNTIL (is_healthy (f) && result.done, TEST_DEADLINE_MS * 2);
  g_assert_no_error (result.error);
  g_assert_cmpuint (count_states (f, WB_LINK_CONNECTED), ==, rejects + 1);
  assert_backoff_grows (f, rejects, "accept and close");
  /* Written once, on the healthy connection only (the sim counts it a moment later). */
  POLL_UNTIL (stats_received (f, "chat.message") == 1, TEST_DEADLINE_MS);
  wb_test_run_for_ms (200);
  g_assert_cmpint (stats_received (f, "chat.message"), ==, 1);
  g_assert_cmpuint (result.calls, ==, 1);
  send_result_clear (&result);
}

static gboolean
has_subscription (JsonObject *stats_object, gint64 connection, const char *stream_id,
                  const char *const *events)
{
  JsonArray *subscriptions = json_object_get_array_member (stats_object, "subscriptions");

  for (guint i = 0; subscriptions != NULL && i < json_array_get_length (subscriptions); i++)
    {
      JsonObject *sub = json_array_get_object_element (subscriptions, i);
      JsonArray *got = json_object_get_array_member (sub, "events");
      guint n = g_strv_length ((char **)events);

      if (json_object_get_int_member (sub, "connection") != connection
          || g_strcmp0 (json_object_get_string_member (sub, "stream_id"), stream_id) != 0)
        continue;
      if (got == NULL || json_array_get_length (got) != n)
        return FALSE;
      for (guint j = 0; j < n; j++)
        if (g_strcmp0 (json_array_get_string_element (got, j), events[j]) != 0)
          return FALSE;
      return TRUE;
    }
  return FALSE;
}

static gint64
latest_connection (JsonObject *stats_object)
{
  JsonArray *subscriptions = json_object_get_array_member (stats_object, "subscriptions");
  gint64 latest = -1;

  for (guint i = 0; subscriptions != NULL && i < json_array_get_length (subscriptions); i++)
    latest = MAX (latest, json_object_get_int_member (
                              json_array_get_object_element (subscriptions, i), "connection"));
  return latest;
}

/* 200 streams after a reconnect: each one's resync comes when its own
 * subscribe is back upstream, paced, and its gap covers the whole time it
 * was not covered (not just until the connection was up again). */
static void
test_resync_honest (Fixture *f, gconstpointer data)
{
  gint64 dropped_us;
  gint64 largest = 0;
  gint64 last_arrival_ms;

  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *id = g_strdup_printf ("stream_rs%03u", i);

      call_set_stream_events (f, id, health_events);
    }
  WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
  POLL_UNTIL (stats_received (f, "subscribe") == 200, 30000);

  dropped_us = g_get_monotonic_time ();
  sim_post (f, "/sim/drop", "{}");
  WAIT_UNTIL (f->resync_gaps->len == 200, 30000);
  last_arrival_ms = (g_get_monotonic_time () - dropped_us) / 1000;
  for (guint i = 0; i < f->resync_gaps->len; i++)
    largest = MAX (largest, g_array_index (f->resync_gaps, gint64, i));
  g_test_message ("200 resyncs, the last %" G_GINT64_FORMAT
                  " ms after the drop, largest gap %" G_GINT64_FORMAT " ms",
                  last_arrival_ms, largest);
  /* 200 subscribes at 20/s (burst 20) take about 9 s: the last streams
   * were uncovered that long, and say so. */
  g_assert_cmpint (largest, >=, 8000);
  g_assert_cmpint (largest, <=, last_arrival_ms);
  /* Once each, and no more afterwards. */
  wb_test_run_for_ms (500);
  g_assert_cmpuint (f->resync_gaps->len, ==, 200);
}

static void
test_resubscribe (Fixture *f, gconstpointer data)
{
  g_autoptr (JsonObject) before = NULL;
  g_autoptr (JsonObject) after = NULL;
  gint64 first_connection;

  call_set_stream_events (f, stream1 (f), chat_events);
  subscribe_and_wait_healthy (f);
  /* The same union again sends nothing. */
  call_set_stream_events (f, stream0 (f), health_events);
  call_set_stream_events (f, stream1 (f), chat_events);
  POLL_UNTIL (stats_received (f, "subscribe") == 2, TEST_DEADLINE_MS);
  before = stats (f);
  first_connection = latest_connection (before);
  g_assert_true (has_subscription (before, first_connection, stream0 (f), health_events));
  g_assert_true (has_subscription (before, first_connection, stream1 (f), chat_events));

  sim_post (f, "/sim/drop", "{}");
  WAIT_UNTIL (count_waits (f) == 1 && is_healthy (f), TEST_DEADLINE_MS);
  POLL_UNTIL (stats_received (f, "subscribe") == 4, TEST_DEADLINE_MS);
  after = stats (f);
  g_assert_cmpint (latest_connection (after), !=, first_connection);
  g_assert_true (has_subscription (after, latest_connection (after), stream0 (f), health_events));
  g_assert_true (has_subscription (after, latest_connection (after), stream1 (f), chat_events));
  /* One resync per stream, once it is back upstream. */
  WAIT_UNTIL (f->resync_gaps->len == 2, TEST_DEADLINE_MS);
  g_assert_cmpint (g_array_index (f->resync_gaps, gint64, 0), >=, TEST_BACKOFF_INITIAL_MS);
  g_assert_cmpint (g_array_index (f->resync_gaps, gint64, 1), >=, TEST_BACKOFF_INITIAL_MS);

  /* Changing the union sends exactly one message per change. */
  call_set_stream_events (f, stream1 (f), health_events);
  call_set_stream_events (f, stream0 (f), NULL);
  POLL_UNTIL (stats_received (f, "unsubscribe") == 1 && stats_received (f, "subscribe") == 5,
              TEST_DEADLINE_MS);
  wb_test_run_for_ms (200);
  g_assert_cmpint (stats_received (f, "subscribe"), ==, 5);
  g_assert_cmpint (stats_received (f, "unsubscribe"), ==, 1);
}

static gboolean
message_contains (Fixture *f, guint index, const char *needle)
{
  return index < f->messages->len && strstr (g_ptr_array_index (f->messages, index), needle);
}

/* Held sends: flushed in order after the first pong of the new connection. */
static void
test_queue_flushed_after_reconnect (Fixture *f, gconstpointer data)
{
  SendResult first = { 0 };
  SendResult second = { 0 };
  gint first_index = -1;
  gint second_index = -1;

  call_set_stream_events (f, stream0 (f), chat_events);
  WAIT_UNTIL (is_healthy (f), TEST_DEADLINE_MS);
  /* Keep it down for a few attempts while the sends are held. */
  sim_post (f, "/sim/reject", "{\"count\":2,\"http_status\":503}");
  sim_post (f, "/sim/drop", "{}");
  WAIT_UNTIL (count_waits (f) >= 1, TEST_DEADLINE_MS);
  send_chat (f, "first held", &first);
  send_chat (f, "second held", &second);
  g_assert_cmpuint (status (f)->held_sends, ==, 2);
  g_assert_false (first.done);
  WAIT_UNTIL (first.done && second.done, TEST_DEADLINE_MS);
  g_assert_no_error (first.error);
  g_assert_no_error (second.error);
  g_assert_cmpint (first.at_us, <=, second.at_us);
  g_assert_cmpuint (status (f)->held_sends, ==, 0);
  g_assert_cmpuint (count_waits (f), ==, 3);

  /* The sim echoes chat to subscribers: the order on the wire is the order sent. */
  POLL_UNTIL (stats_received (f, "chat.message") == 2, TEST_DEADLINE_MS);
  for (guint i = 0; i < 200 && second_index < 0; i++)
    {
      for (guint j = 0; j < f->messages->len; j++)
        {
          if (first_index < 0 && message_contains (f, j, "first held"))
            first_index = (gint)j;
          if (second_index < 0 && message_contains (f, j, "second held"))
            second_index = (gint)j;
        }
      if (second_index < 0)
        wb_test_run_for_ms (50);
    }
  g_assert_cmpint (first_index, >=, 0);
  g_assert_cmpint (second_index, >, first_index);
  g_assert_cmpuint (first.calls + second.calls, ==, 2);
  send_result_clear (&first);
  send_result_clear (&second);
}

static void
test_queue_expires (Fixture *f, gconstpointer data)
{
  SendResult result = { 0 };
  gint64 sent_us;

  f->config->send_queue_timeout_ms = 400;
  sim_post (f, "/sim/reject", "{\"count\":1000,\"http_status\":503}");
  call_set_stream_events (f, stream0 (f), health_events);
  sent_us = g_get_monotonic_time ();
  send_chat (f, "never", &result);
  WAIT_UNTIL (result.done, TEST_DEADLINE_MS);
  g_assert_error (result.error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
  assert_wait_between ((result.at_us - sent_us) / 1000, 400, 400 + TEST_SLACK_MS, "expiry");
  g_assert_cmpuint (status (f)->held_sends, ==, 0);
  wb_test_run_for_ms (200);
  g_assert_cmpuint (result.calls, ==, 1);
  g_assert_cmpint (stats_received (f, "chat.message"), ==, 0);
  send_result_clear (&result);
}

static void
test_queue_full (Fixture *f, gconstpointer data)
{
  SendResult results[3] = { { 0 } };

  /* The test's one user holds its share (32 / 16 = 2), then is refused. */
  f->config->send_queue_size = 32;
  sim_post (f, "/sim/reject", "{\"count\":1000,\"http_status\":503}");
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    send_chat (f, "held", &results[i]);
  g_assert_cmpuint (status (f)->held_sends, ==, 2);
  /* Refused, but only from the main loop. */
  g_assert_false (results[2].done);
  WAIT_UNTIL (results[2].done, TEST_DEADLINE_MS);
  g_assert_error (results[2].error, WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED);
  g_assert_false (results[0].done);

  /* Shutting down fails the held ones, each exactly once. */
  g_clear_pointer (&f->upstream, wb_upstream_free);
  for (guint i = 0; i < 2; i++)
    {
      g_assert_true (results[i].done);
      g_assert_error (results[i].error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
    }
  wb_test_run_for_ms (100);
  for (guint i = 0; i < G_N_ELEMENTS (results); i++)
    {
      g_assert_cmpuint (results[i].calls, ==, 1);
      send_result_clear (&results[i]);
    }
}

static void
test_send_when_healthy (Fixture *f, gconstpointer data)
{
  SendResult result = { 0 };

  subscribe_and_wait_healthy (f);
  send_chat (f, "direct", &result);
  g_assert_false (result.done);
  WAIT_UNTIL (result.done, TEST_DEADLINE_MS);
  g_assert_no_error (result.error);
  POLL_UNTIL (stats_received (f, "chat.message") == 1, TEST_DEADLINE_MS);
  send_result_clear (&result);
}

static void
test_idle_close (Fixture *f, gconstpointer data)
{
  gint64 unsubscribed_us;
  gint index;

  f->config->idle_timeout_ms = 400;
  subscribe_and_wait_healthy (f);
  call_set_stream_events (f, stream0 (f), NULL);
  unsubscribed_us = g_get_monotonic_time ();
  WAIT_UNTIL (state (f) == WB_LINK_IDLE, TEST_DEADLINE_MS);
  index = find_state (f, 0, WB_LINK_IDLE);
  assert_wait_between ((g_array_index (f->states, StateEvent, index).at_us - unsubscribed_us)
                           / 1000,
                       400, 400 + TEST_SLACK_MS, "idle close");
  g_assert_cmpuint (status (f)->last_close_code, ==, 1000);
  POLL_UNTIL (stats_int (f, "connections") == 0, TEST_DEADLINE_MS);
  wb_test_run_for_ms (TEST_BACKOFF_MAX_MS);
  g_assert_cmpint (state (f), ==, WB_LINK_IDLE);

  /* New demand connects again; nobody was subscribed across the gap. */
  subscribe_and_wait_healthy (f);
  g_assert_cmpuint (f->resync_gaps->len, ==, 0);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, 2);
}

/* Subscriptions come and go quickly: no idle close while demand is back. */
static void
test_idle_cancelled (Fixture *f, gconstpointer data)
{
  f->config->idle_timeout_ms = 400;
  subscribe_and_wait_healthy (f);
  call_set_stream_events (f, stream0 (f), NULL);
  wb_test_run_for_ms (200);
  call_set_stream_events (f, stream1 (f), health_events);
  wb_test_run_for_ms (800);
  g_assert_cmpint (state (f), ==, WB_LINK_CONNECTED);
  g_assert_cmpint (stats_int (f, "connections_total"), ==, 1);
}

static void
test_invalid_messages (Fixture *f, gconstpointer data)
{
  const guint garbage = 30;
  guint forwarded;
  g_autofree char *text = NULL;

  subscribe_and_wait_healthy (f);
  forwarded = f->messages->len;
  for (guint i = 0; i < garbage; i++)
    sim_post (f, "/sim/raw", "{\"text\":\"this is not json\"}");
  sim_post (f, "/sim/raw", "{\"binary_base64\":\"AAEC\"}");
  sim_post (f, "/sim/raw",
            "{\"text\":\"{\\\"type\\\":\\\"stream.health\\\",\\\"payload\\\":{}}\"}");
  WAIT_UNTIL (status (f)->invalid_messages == garbage + 2, TEST_DEADLINE_MS);
  wb_test_run_for_ms (100);
  g_assert_cmpuint (f->messages->len, ==, forwarded);
  g_assert_cmpint (state (f), ==, WB_LINK_CONNECTED);
  /* Logged, but not once per message. */
  g_test_message ("%u warnings for %u invalid messages", upstream_warnings, garbage + 2);
  g_assert_cmpuint (upstream_warnings, >=, 1);
  g_assert_cmpuint (upstream_warnings, <=, 10);

  /* Still working afterwards. */
  text = g_strdup_printf ("{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"%s\","
                          "\"bitrate\":1,\"fps\":2,\"packet_loss\":0.5,\"latency\":3}}",
                          stream0 (f));
  sim_post (f, "/sim/emit", text);
  WAIT_UNTIL (f->messages->len > forwarded, TEST_DEADLINE_MS);
}

/* Upstream `error` messages: forwarded and published as last_error. */
static void
test_error_message (Fixture *f, gconstpointer data)
{
  SendResult result = { 0 };
  g_autoptr (JsonNode) bad = NULL;
  g_autofree char *details = NULL;

  subscribe_and_wait_healthy (f);
  /* The real server path: a chat message without text is refused by the sim. */
  bad = json_from_string ("{\"type\":\"chat.message\",\"stream_id\":\"stream_abc123\"}", NULL);
  call_send (f, bad, send_cb, &result);
  WAIT_UNTIL (f->messages->len > 0 && message_contains (f, f->messages->len - 1, "\"error\""),
              TEST_DEADLINE_MS);
  g_assert_true (message_contains (f, f->messages->len - 1, "stream_abc123"));
  g_test_message ("last error: %s", status (f)->last_error);
  g_assert_true (g_str_has_prefix (status (f)->last_error, "invalid_message"));
  g_assert_cmpint (state (f), ==, WB_LINK_CONNECTED);
  /* Written: WAVE answers with an error message, not a send failure. */
  WAIT_UNTIL (result.done, TEST_DEADLINE_MS);
  g_assert_no_error (result.error);
  send_result_clear (&result);
}

static void
test_reconnect_now (Fixture *f, gconstpointer data)
{
  gint64 requested_us;

  subscribe_and_wait_healthy (f);
  requested_us = g_get_monotonic_time ();
  g_assert_true (call_reconnect (f, NULL));
  WAIT_UNTIL (is_healthy (f) && count_states (f, WB_LINK_CONNECTED) == 2, TEST_DEADLINE_MS);
  g_assert_cmpuint (count_waits (f), ==, 0);
  g_assert_cmpuint (status (f)->reconnects, ==, 1);
  WAIT_UNTIL (f->resync_gaps->len == 1, TEST_DEADLINE_MS);
  g_assert_cmpint (g_array_index (f->resync_gaps, gint64, 0), <=,
                   (g_get_monotonic_time () - requested_us) / 1000 + 1);
  POLL_UNTIL (stats_int (f, "connections") == 1, TEST_DEADLINE_MS);
}

static void
test_network_changed (Fixture *f, gconstpointer data)
{
  gint64 changed_us;
  gint index;

  f->config->backoff_initial_ms = 5000;
  f->config->backoff_max_ms = 30000;
  g_free (f->config->url);
  f->config->url = g_strdup_printf ("ws://127.0.0.1:%u/v1/streams", closed_port ());
  call_set_stream_events (f, "stream_abc123", health_events);
  WAIT_UNTIL (state (f) == WB_LINK_WAITING, TEST_DEADLINE_MS);
  g_assert_cmpint (status (f)->next_attempt_us, >=, g_get_real_time () + 4000000);
  changed_us = g_get_monotonic_time ();
  call_network_changed (f);
  WAIT_UNTIL (count_waits (f) >= 2, TEST_DEADLINE_MS);
  index = find_state (f, 1, WB_LINK_CONNECTING);
  g_assert_cmpint (index, >=, 0);
  g_assert_cmpint ((g_array_index (f->states, StateEvent, index).at_us - changed_us) / 1000, <,
                   2000);
  /* The skipped wait does not reset the backoff: the next one is longer. */
  g_assert_cmpint (status (f)->next_attempt_us, >=, g_get_real_time () + 9000000);
}

/* Reloading with a new URL moves to the new server at once. */
static void
test_reload_new_url (Fixture *f, gconstpointer data)
{
  g_autofree char *good_url = g_strdup (f->config->url);

  g_free (f->config->url);
  f->config->url = g_strdup_printf ("ws://127.0.0.1:%u/v1/streams", closed_port ());
  f->config->backoff_initial_ms = 5000;
  call_set_stream_events (f, stream0 (f), health_events);
  WAIT_UNTIL (state (f) == WB_LINK_WAITING, TEST_DEADLINE_MS);
  g_free (f->config->url);
  f->config->url = g_strdup (good_url);
  call_reload (f, f->config, f->api_key);
  WAIT_UNTIL (is_healthy (f), 3000);
}

static void
test_free_while_connecting (Fixture *f, gconstpointer data)
{
  SendResult result = { 0 };

  call_set_stream_events (f, stream0 (f), health_events);
  send_chat (f, "pending", &result);
  g_assert_cmpint (status (f)->state, ==, WB_LINK_CONNECTING);
  g_clear_pointer (&f->upstream, wb_upstream_free);
  g_assert_true (result.done);
  g_assert_error (result.error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
  /* The abandoned handshake completes without an owner. */
  wb_test_run_for_ms (500);
  POLL_UNTIL (stats_int (f, "connections") == 0, TEST_DEADLINE_MS);
  g_assert_cmpuint (result.calls, ==, 1);
  send_result_clear (&result);
}

/* ---- the soak (suite 'slow') ------------------------------------------------- */

typedef struct
{
  const char *path;
  const char *body;
} Fault;

static const Fault soak_faults[] = {
  { "/sim/close", "{\"code\":1001}" },
  { "/sim/close", "{\"code\":4500}" },
  { "/sim/close", "{\"code\":4123}" },
  { "/sim/close", "{\"code\":4429}" },
  { "/sim/drop", "{}" },
  { "/sim/reject", "{\"count\":2,\"close_code\":4500}" },
  { "/sim/reject", "{\"count\":1,\"close_code\":1001}" },
};

static guint
table_min_wait_ms (const StateEvent *event)
{
  if (event->state == WB_LINK_RATE_LIMITED)
    return TEST_RATE_LIMITED_MS;
  if (event->last_close_code == 1001)
    return TEST_GOING_AWAY_MS;
  return TEST_BACKOFF_INITIAL_MS;
}

static void
test_flapping_soak (Fixture *f, gconstpointer data)
{
  g_autoptr (GRand) rand = g_rand_new ();
  const char *override = g_getenv ("WB_SOAK_SECONDS");
  gint64 seconds = override != NULL ? g_ascii_strtoll (override, NULL, 10) : SOAK_DURATION_S;
  gint64 end = g_get_monotonic_time () + MAX (seconds, 1) * G_USEC_PER_SEC;
  guint faults = 0;
  guint waits;

  subscribe_and_wait_healthy (f);
  while (g_get_monotonic_time () < end)
    {
      const Fault *fault = &soak_faults[g_rand_int_range (rand, 0, G_N_ELEMENTS (soak_faults))];

      wb_test_run_for_ms ((guint)g_rand_int_range (rand, 700, 1300));
      sim_post (f, fault->path, fault->body);
      faults++;
    }
  /* It never gives up: healthy again once the faults stop. */
  WAIT_UNTIL (is_healthy (f), TEST_BACKOFF_MAX_MS * TEST_JITTER + TEST_DEADLINE_MS);
  g_assert_cmpuint (count_states (f, WB_LINK_CLOSED), ==, 0);
  g_assert_cmpuint (count_states (f, WB_LINK_AUTH_FAILED), ==, 0);

  waits = count_waits (f);
  g_test_message ("%u faults, %u waits, %u reconnects", faults, waits, status (f)->reconnects);
  g_assert_cmpuint (waits, >=, faults / 2);
  for (guint i = 0; i < waits; i++)
    {
      StateEvent event = { 0 };
      gint64 measured = measured_wait_ms (f, i, &event);
      guint min_ms = table_min_wait_ms (&event);
      gint64 planned_ms = (event.next_attempt_us - event.at_us) / 1000;

      /* Every retry came, no sooner than the table allows… */
      g_assert_cmpint (measured, >=, 0);
      g_assert_cmpint (planned_ms, >=, min_ms - 1);
      if (measured < min_ms)
        g_error ("wait %u after close %u: %" G_GINT64_FORMAT " ms < %u ms", i,
                 event.last_close_code, measured, min_ms);
      /* …and not much later than planned. */
      g_assert_cmpint (measured, <=, planned_ms + TEST_SLACK_MS);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* GTest makes warnings fatal; upstream warns about hostile servers, which
   * these tests play. Criticals (programming errors) stay fatal. */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_log_set_handler ("wave-upstream", G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL, upstream_warning_cb,
                     NULL);

#define ADD(path, func)                                                                            \
  g_test_add ("/upstream/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
/* Starts its own simulator. */
#define ADD_NO_SIM(path, func)                                                                     \
  g_test_add ("/upstream/" path, Fixture, GINT_TO_POINTER (1), fixture_setup, func,                \
              fixture_teardown)

  ADD ("lazy-connect-and-events", test_lazy_connect_and_events);
  ADD ("close/1000", test_close_1000);
  for (gsize i = 0; i < G_N_ELEMENTS (close_rows); i++)
    {
      g_autofree char *path = g_strdup_printf ("/upstream/close/%s", close_rows[i].name);

      g_test_add (path, Fixture, NULL, fixture_setup, test_close_row, fixture_teardown);
    }
  ADD ("close/4401", test_close_4401);
  ADD ("wrong-key", test_wrong_key);
  for (gsize i = 0; i < G_N_ELEMENTS (handshake_rows); i++)
    {
      g_autofree char *path = g_strdup_printf ("/upstream/handshake/%s", handshake_rows[i].name);

      g_test_add (path, Fixture, NULL, fixture_setup, test_handshake_status, fixture_teardown);
    }
  ADD_NO_SIM ("connection-refused", test_connection_refused);
  ADD_NO_SIM ("unresolvable-host", test_unresolvable_host);
  ADD_NO_SIM ("handshake-timeout", test_handshake_timeout);
  ADD_NO_SIM ("invalid-url", test_invalid_url);
  ADD_NO_SIM ("closing/nothing-written", test_nothing_written_while_closing);
  ADD_NO_SIM ("tls/trusted", test_tls_trusted);
  ADD_NO_SIM ("tls/untrusted", test_tls_untrusted);
  ADD_NO_SIM ("tls/wrong-ca", test_tls_wrong_ca);
  ADD ("pong-timeout", test_pong_timeout);
  ADD ("accept-and-close", test_accept_and_close);
  ADD ("resubscribe", test_resubscribe);
  ADD ("resync-honest", test_resync_honest);
  ADD ("queue/flushed-after-reconnect", test_queue_flushed_after_reconnect);
  ADD ("queue/expires", test_queue_expires);
  ADD ("queue/full", test_queue_full);
  ADD ("queue/send-when-healthy", test_send_when_healthy);
  ADD ("idle/close", test_idle_close);
  ADD ("idle/cancelled", test_idle_cancelled);
  ADD ("invalid-messages", test_invalid_messages);
  ADD ("error-message", test_error_message);
  ADD ("reconnect", test_reconnect_now);
  ADD_NO_SIM ("network-changed", test_network_changed);
  ADD ("reload-new-url", test_reload_new_url);
  ADD ("free-while-connecting", test_free_while_connecting);
  if (g_test_slow ())
    ADD ("slow/flapping", test_flapping_soak);
#undef ADD
#undef ADD_NO_SIM

  return g_test_run ();
}
