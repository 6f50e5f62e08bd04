/* SPDX-License-Identifier: MIT */
/*
 * The sd-bus GSource (daemon/bus-source.c) against a private dbus-daemon:
 * method round trips, sd-bus timeouts with nothing on the fd, output queued
 * outside dispatch, and a bus that dies.
 */
#define G_LOG_DOMAIN "wave-test"

#include <gio/gio.h>
#include <signal.h>
#include <sys/prctl.h>
#include <systemd/sd-bus.h>

#include "bus-source.h"
#include "test-util.h"

#define TEST_PATH "/test"
#define TEST_INTERFACE "test.BusSource"
#define CALL_TIMEOUT_US (300 * G_TIME_SPAN_MILLISECOND)
#define BIG_SIGNAL_BYTES (64 * 1024)
#define BIG_SIGNAL_MAX 2000 /* gives up (fails) past 128 MiB */
#define BIG_SIGNAL_QUEUED 10
/* A source that sleeps until the sd-bus deadline needs a handful of wake-ups;
 * one that returns timeout 0 would spin thousands of times. */
#define MAX_IDLE_WAKEUPS 50

typedef struct
{
  GSubprocess *daemon;
  char *address;
  sd_bus *server;
  sd_bus *client;
  GSource *server_source;
  GSource *client_source;
  sd_bus_slot *vtable_slot;
  sd_bus_message *never_answered;

  char *echo_reply;
  gboolean reply_done;
  char *reply_error;
  gint64 reply_at_us;
  guint signals_sent;
  guint signals_received;
  guint lost_count;
  int lost_error;
  guint replies;
} Fixture;

static int
echo_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  const char *text = NULL;
  int r = sd_bus_message_read (call, "s", &text);

  if (r < 0)
    return r;
  return sd_bus_reply_method_return (call, "s", text);
}

static int
never_cb (sd_bus_message *call, void *user_data, sd_bus_error *ret_error)
{
  Fixture *fixture = user_data;

  /* Keep the call unanswered so only the caller's timeout can end it. */
  fixture->never_answered = sd_bus_message_ref (call);
  return 1;
}

static const sd_bus_vtable test_vtable[] = {
  SD_BUS_VTABLE_START (0),
  SD_BUS_METHOD ("Echo", "s", "s", echo_cb, 0),
  SD_BUS_METHOD ("Never", "", "", never_cb, 0),
  SD_BUS_SIGNAL ("Big", "ay", 0),
  SD_BUS_VTABLE_END,
};

static void
lost_cb (int error, gpointer user_data)
{
  Fixture *fixture = user_data;

  fixture->lost_count++;
  fixture->lost_error = error;
}

static sd_bus *
open_bus (const char *address)
{
  sd_bus *bus = NULL;

  g_assert_cmpint (sd_bus_new (&bus), >=, 0);
  g_assert_cmpint (sd_bus_set_address (bus, address), >=, 0);
  g_assert_cmpint (sd_bus_set_bus_client (bus, 1), >=, 0);
  g_assert_cmpint (sd_bus_start (bus), >=, 0);
  return bus;
}

static GSource *
attach_bus (Fixture *fixture, sd_bus *bus)
{
  GSource *source = wb_bus_source_new (bus);

  g_source_set_callback (source, G_SOURCE_FUNC (lost_cb), fixture, NULL);
  g_source_attach (source, NULL);
  return source;
}

/* A failed assertion aborts the test: take the bus daemon along. */
static void
die_with_parent_cb (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static void
fixture_setup (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GDataInputStream) out = NULL;
  GInputStream *stdout_pipe;

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent_cb, NULL, NULL);
  fixture->daemon = g_subprocess_launcher_spawn (launcher, &error, "dbus-daemon", "--session",
                                                 "--nofork", "--print-address=1", NULL);
  g_assert_no_error (error);
  stdout_pipe = g_subprocess_get_stdout_pipe (fixture->daemon);
  out = g_data_input_stream_new (stdout_pipe);
  fixture->address = g_data_input_stream_read_line (out, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fixture->address);

  fixture->server = open_bus (fixture->address);
  fixture->client = open_bus (fixture->address);
  g_assert_cmpint (sd_bus_add_object_vtable (fixture->server, &fixture->vtable_slot, TEST_PATH,
                                             TEST_INTERFACE, test_vtable, fixture),
                   >=, 0);
  fixture->server_source = attach_bus (fixture, fixture->server);
  fixture->client_source = attach_bus (fixture, fixture->client);
}

static void
fixture_teardown (Fixture *fixture, gconstpointer data)
{
  fixture->never_answered = sd_bus_message_unref (fixture->never_answered);
  fixture->vtable_slot = sd_bus_slot_unref (fixture->vtable_slot);
  g_source_destroy (fixture->server_source);
  g_source_destroy (fixture->client_source);
  g_clear_pointer (&fixture->server_source, g_source_unref);
  g_clear_pointer (&fixture->client_source, g_source_unref);
  /* The sources closed the buses; drop our own references. */
  fixture->server = sd_bus_unref (fixture->server);
  fixture->client = sd_bus_unref (fixture->client);
  g_subprocess_force_exit (fixture->daemon);
  g_subprocess_wait (fixture->daemon, NULL, NULL);
  g_clear_object (&fixture->daemon);
  g_free (fixture->address);
  g_free (fixture->echo_reply);
  g_free (fixture->reply_error);
}

static const char *
server_name (Fixture *fixture)
{
  const char *name = NULL;

  g_assert_cmpint (sd_bus_get_unique_name (fixture->server, &name), >=, 0);
  return name;
}

static int
reply_cb (sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  Fixture *fixture = user_data;
  const sd_bus_error *error = sd_bus_message_get_error (reply);
  const char *text = NULL;

  fixture->reply_at_us = g_get_monotonic_time ();
  if (error != NULL)
    fixture->reply_error = g_strdup (error->name);
  else if (sd_bus_message_read (reply, "s", &text) >= 0)
    fixture->echo_reply = g_strdup (text);
  fixture->reply_done = TRUE;
  return 0;
}

static void
test_call_roundtrip (Fixture *fixture, gconstpointer data)
{
  g_assert_cmpint (sd_bus_call_method_async (fixture->client, NULL, server_name (fixture),
                                             TEST_PATH, TEST_INTERFACE, "Echo", reply_cb, fixture,
                                             "s", "hello"),
                   >=, 0);
  WAIT_UNTIL (fixture->reply_done, WB_TEST_WAIT_MS);
  g_assert_null (fixture->reply_error);
  g_assert_cmpstr (fixture->echo_reply, ==, "hello");
  g_assert_cmpuint (fixture->lost_count, ==, 0);
}

/* Dispatch is bounded per main-loop iteration; a backlog far past the bound
 * must still be worked off, without waiting for new fd activity. */
static int
count_reply_cb (sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  Fixture *fixture = user_data;

  if (sd_bus_message_get_error (reply) == NULL)
    fixture->replies++;
  return 0;
}

static void
test_backlog_past_the_bound (Fixture *fixture, gconstpointer data)
{
  const guint calls = 1000;

  for (guint i = 0; i < calls; i++)
    g_assert_cmpint (sd_bus_call_method_async (fixture->client, NULL, server_name (fixture),
                                               TEST_PATH, TEST_INTERFACE, "Echo", count_reply_cb,
                                               fixture, "s", "x"),
                     >=, 0);
  WAIT_UNTIL (fixture->replies == calls, WB_TEST_WAIT_MS);
  g_assert_cmpuint (fixture->lost_count, ==, 0);
}

static void
test_timeout_without_fd_activity (Fixture *fixture, gconstpointer data)
{
  g_autoptr (sd_bus_message) call = NULL;
  gint64 started_us;
  guint wakeups = 0;
  WbTestWait wait;

  g_assert_cmpint (sd_bus_message_new_method_call (fixture->client, &call, server_name (fixture),
                                                   TEST_PATH, TEST_INTERFACE, "Never"),
                   >=, 0);
  started_us = g_get_monotonic_time ();
  g_assert_cmpint (
      sd_bus_call_async (fixture->client, NULL, call, reply_cb, fixture, CALL_TIMEOUT_US), >=, 0);
  /* Once the server holds the call, only the sd-bus timeout is left. */
  WAIT_UNTIL (fixture->never_answered != NULL, WB_TEST_WAIT_MS);

  /* WAIT_UNTIL, counting iterations: apart from the bus sources only the
   * deadline, seconds away, has a timer in this loop. */
  wb_test_wait_begin (&wait, WB_TEST_WAIT_MS, 0);
  while (!fixture->reply_done && !wait.expired)
    {
      g_main_context_iteration (NULL, TRUE);
      wakeups++;
    }
  wb_test_wait_end (&wait);
  g_assert_true (fixture->reply_done);
  g_assert_cmpstr (fixture->reply_error, ==, SD_BUS_ERROR_NO_REPLY);
  /* Not early (the timeout is rounded up, never down)... */
  g_assert_cmpint (fixture->reply_at_us - started_us, >=, CALL_TIMEOUT_US);
  /* ...and slept through rather than spinning. */
  g_assert_cmpuint (wakeups, <, MAX_IDLE_WAKEUPS);
}

static int
big_signal_cb (sd_bus_message *message, void *user_data, sd_bus_error *ret_error)
{
  Fixture *fixture = user_data;

  fixture->signals_received++;
  return 0;
}

static void
emit_big_signal (Fixture *fixture, const guint8 *payload)
{
  g_autoptr (sd_bus_message) message = NULL;

  g_assert_cmpint (
      sd_bus_message_new_signal (fixture->server, &message, TEST_PATH, TEST_INTERFACE, "Big"), >=,
      0);
  g_assert_cmpint (sd_bus_message_append_array (message, 'y', payload, BIG_SIGNAL_BYTES), >=, 0);
  g_assert_cmpint (sd_bus_send (fixture->server, message, NULL), >=, 0);
  fixture->signals_sent++;
}

static gboolean
emit_big_signals_cb (gpointer user_data)
{
  Fixture *fixture = user_data;
  g_autofree guint8 *payload = g_malloc0 (BIG_SIGNAL_BYTES);
  uint64_t queued = 0;

  /* The bus daemon is stopped: fill the socket (sd-bus raises its send
   * buffer to megabytes) until sd-bus has to hold messages for POLLOUT. */
  while (queued == 0 && fixture->signals_sent < BIG_SIGNAL_MAX)
    {
      emit_big_signal (fixture, payload);
      g_assert_cmpint (sd_bus_get_n_queued_write (fixture->server, &queued), >=, 0);
    }
  g_assert_cmpuint (queued, >, 0);
  for (guint i = 0; i < BIG_SIGNAL_QUEUED; i++)
    emit_big_signal (fixture, payload);
  g_subprocess_send_signal (fixture->daemon, SIGCONT);
  return G_SOURCE_REMOVE;
}

static void
test_output_queued_outside_dispatch (Fixture *fixture, gconstpointer data)
{
  g_autofree char *match = NULL;

  match = g_strdup_printf ("type='signal',sender='%s',interface='%s',member='Big'",
                           server_name (fixture), TEST_INTERFACE);
  g_assert_cmpint (sd_bus_add_match (fixture->client, NULL, match, big_signal_cb, fixture), >=, 0);
  /* Make sure the match is installed before the daemon stops reading. */
  g_assert_cmpint (sd_bus_call_method (fixture->client, "org.freedesktop.DBus",
                                       "/org/freedesktop/DBus", "org.freedesktop.DBus.Peer", "Ping",
                                       NULL, NULL, NULL),
                   >=, 0);
  g_subprocess_send_signal (fixture->daemon, SIGSTOP);
  /* From another source's callback, like hub callbacks driven by libsoup. */
  g_idle_add (emit_big_signals_cb, fixture);
  WAIT_UNTIL (fixture->signals_sent > 0 && fixture->signals_received == fixture->signals_sent,
              WB_TEST_WAIT_MS);
  g_assert_cmpuint (fixture->lost_count, ==, 0);
}

static void
test_bus_lost (Fixture *fixture, gconstpointer data)
{
  guint busy = 0;
  gint64 until_us;

  g_subprocess_force_exit (fixture->daemon);
  WAIT_UNTIL (fixture->lost_count == 2, WB_TEST_WAIT_MS);
  g_assert_cmpint (fixture->lost_error, <, 0);
  g_assert_true (wb_bus_source_is_lost (fixture->server_source));
  g_assert_true (wb_bus_source_is_lost (fixture->client_source));
  g_assert_true (g_source_is_destroyed (fixture->server_source));
  g_assert_true (g_source_is_destroyed (fixture->client_source));

  /* A dead fd must not keep the loop busy, nor report twice. */
  until_us = g_get_monotonic_time () + 200 * G_TIME_SPAN_MILLISECOND;
  while (g_get_monotonic_time () < until_us)
    {
      if (g_main_context_iteration (NULL, FALSE))
        busy++;
      g_usleep (G_TIME_SPAN_MILLISECOND);
    }
  g_assert_cmpuint (busy, <, 5);
  g_assert_cmpuint (fixture->lost_count, ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/bus-source/backlog-past-the-bound", Fixture, NULL, fixture_setup,
              test_backlog_past_the_bound, fixture_teardown);
  g_test_add ("/bus-source/call-roundtrip", Fixture, NULL, fixture_setup, test_call_roundtrip,
              fixture_teardown);
  g_test_add ("/bus-source/timeout-without-fd-activity", Fixture, NULL, fixture_setup,
              test_timeout_without_fd_activity, fixture_teardown);
  g_test_add ("/bus-source/output-queued-outside-dispatch", Fixture, NULL, fixture_setup,
              test_output_queued_outside_dispatch, fixture_teardown);
  g_test_add ("/bus-source/bus-lost", Fixture, NULL, fixture_setup, test_bus_lost,
              fixture_teardown);
  return g_test_run ();
}
