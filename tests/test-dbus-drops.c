/* SPDX-License-Identifier: MIT */
/*
 * The D-Bus frontend's accounting of what it could not publish, against a
 * private dbus-daemon and a hub with a do-nothing upstream: every failed
 * emit is a dropped event (EventsDropped), whatever the reason, and an
 * upstream event whose text D-Bus cannot carry as it is (U+FFFE) is not
 * one of them: it is published, with U+FFFD in its place.
 */
#define G_LOG_DOMAIN "wave-test-dbus-drops"

#include <errno.h>
#include <sys/prctl.h>
#include <signal.h>

#include "dbus-private.h"
#include "test-util.h"

#define CHAT_WAIT_US (WB_TEST_WAIT_MS * G_TIME_SPAN_MILLISECOND)

/* ---- a hub whose upstream does nothing ------------------------------------ */

static WbLinkStatus quiet_status = { .state = WB_LINK_CONNECTED };

static void
quiet_set_stream_events (gpointer upstream, const char *stream_id, const char *const *events,
                         gint64 owner)
{
}

static void
quiet_send (gpointer upstream, JsonNode *message, gint64 owner, WbSendCallback callback,
            gpointer user_data)
{
}

static const WbLinkStatus *
quiet_get_status (gpointer upstream)
{
  return &quiet_status;
}

static gboolean
quiet_reconnect (gpointer upstream, GError **error)
{
  return TRUE;
}

static void
quiet_demand (gpointer upstream)
{
}

static const WbHubUpstreamOps quiet_ops = {
  .set_stream_events = quiet_set_stream_events,
  .send = quiet_send,
  .get_status = quiet_get_status,
  .reconnect = quiet_reconnect,
  .demand = quiet_demand,
};

static void
frontend_callback (gpointer user_data)
{
}

static const WbDbusFrontendCallbacks frontend_callbacks = {
  .lost = frontend_callback,
  .reload_requested = frontend_callback,
};

/* ---- fixture --------------------------------------------------------------- */

typedef struct
{
  GSubprocess *daemon;
  WbConfig *config;
  WbHub *hub;
  WbDbusFrontend *frontend;
  /* Watches the bridge's signals, from its own connection. */
  sd_bus *watcher;
  GPtrArray *chat_texts;
} Fixture;

static void
die_with_parent_cb (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static int
chat_signal_cb (sd_bus_message *message, void *user_data, sd_bus_error *ret_error)
{
  Fixture *fixture = user_data;
  const char *fields[5] = { NULL };

  if (sd_bus_message_read (message, "sssss", &fields[0], &fields[1], &fields[2], &fields[3],
                           &fields[4])
      >= 0)
    g_ptr_array_add (fixture->chat_texts, g_strdup (fields[3]));
  return 0;
}

static void
fixture_setup (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GDataInputStream) out = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *address = NULL;

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent_cb, NULL, NULL);
  fixture->daemon = g_subprocess_launcher_spawn (launcher, &error, "dbus-daemon", "--session",
                                                 "--nofork", "--print-address=1", NULL);
  g_assert_no_error (error);
  out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (fixture->daemon));
  address = g_data_input_stream_read_line (out, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (address);
  g_setenv ("DBUS_SESSION_BUS_ADDRESS", address, TRUE);

  fixture->config = wb_config_new_defaults (TRUE);
  fixture->config->bus = WB_BUS_SESSION;
  fixture->hub = wb_hub_new (fixture->config, &quiet_ops, NULL);
  fixture->frontend
      = wb_dbus_frontend_new (fixture->hub, fixture->config, &frontend_callbacks, NULL, &error);
  g_assert_no_error (error);

  fixture->chat_texts = g_ptr_array_new_with_free_func (g_free);
  g_assert_cmpint (sd_bus_new (&fixture->watcher), >=, 0);
  g_assert_cmpint (sd_bus_set_address (fixture->watcher, address), >=, 0);
  g_assert_cmpint (sd_bus_set_bus_client (fixture->watcher, 1), >=, 0);
  g_assert_cmpint (sd_bus_start (fixture->watcher), >=, 0);
  g_assert_cmpint (sd_bus_match_signal (fixture->watcher, NULL, NULL, NULL,
                                        WB_DBUS_STREAM_INTERFACE, "ChatMessage", chat_signal_cb,
                                        fixture),
                   >=, 0);
}

static void
fixture_teardown (Fixture *fixture, gconstpointer data)
{
  fixture->watcher = sd_bus_flush_close_unref (fixture->watcher);
  g_clear_pointer (&fixture->chat_texts, g_ptr_array_unref);
  g_clear_pointer (&fixture->frontend, wb_dbus_frontend_free);
  g_clear_pointer (&fixture->hub, wb_hub_free);
  g_clear_pointer (&fixture->config, wb_config_free);
  g_subprocess_force_exit (fixture->daemon);
  g_subprocess_wait (fixture->daemon, NULL, NULL);
  g_clear_object (&fixture->daemon);
}

static guint64
dropped (Fixture *fixture)
{
  return wb_hub_get_status (fixture->hub)->events_dropped;
}

/* ---- tests ----------------------------------------------------------------- */

static void
test_every_failure_counts (Fixture *fixture, gconstpointer data)
{
  guint64 before = dropped (fixture);

  wb_dbus_frontend_note_emit (fixture->frontend, 0, "Health");
  wb_dbus_frontend_note_emit (fixture->frontend, 1, "Health");
  g_assert_cmpuint (dropped (fixture), ==, before);

  /* A full queue: expected under load, counted quietly. */
  wb_dbus_frontend_note_emit (fixture->frontend, -ENOBUFS, "Health");
  g_assert_cmpuint (dropped (fixture), ==, before + 1);

  /* Anything else (sd-bus refused to build the message, no memory …):
   * counted too, and said once, not once per event. */
  g_test_expect_message ("wave-dbus", G_LOG_LEVEL_WARNING,
                         "Cannot emit ChatMessage: Invalid argument (dropped, counted in "
                         "EventsDropped)");
  wb_dbus_frontend_note_emit (fixture->frontend, -EINVAL, "ChatMessage");
  g_test_assert_expected_messages ();
  wb_dbus_frontend_note_emit (fixture->frontend, -ENOMEM, "InterfacesAdded");
  wb_dbus_frontend_note_emit (fixture->frontend, -EBADMSG, "PropertiesChanged");
  g_assert_cmpuint (dropped (fixture), ==, before + 4);
}

static WbMessage *
chat_message (const char *stream_id, const char *text)
{
  g_autoptr (JsonBuilder) builder = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *json = NULL;
  g_autoptr (GError) error = NULL;
  const char *members[][2] = {
    { "stream_id", stream_id }, { "message_id", "m" }, { "user_id", "u" },
    { "username", "ana" },      { "message", text },   { "timestamp", "t" },
  };
  WbMessage *message;

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "type");
  json_builder_add_string_value (builder, "chat.message");
  json_builder_set_member_name (builder, "payload");
  json_builder_begin_object (builder);
  for (gsize i = 0; i < G_N_ELEMENTS (members); i++)
    {
      json_builder_set_member_name (builder, members[i][0]);
      json_builder_add_string_value (builder, members[i][1]);
    }
  json_builder_end_object (builder);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  json = wb_json_to_string (root, NULL);
  message = wb_message_parse (json, strlen (json), WB_DIRECTION_TO_CLIENT, &error);
  g_assert_no_error (error);
  return message;
}

static void
test_uncarryable_text_is_published (Fixture *fixture, gconstpointer data)
{
  static const WbHubClientSink sink = { .deliver = NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (WbHubClient) client
      = wb_hub_client_new (fixture->hub, "test", NULL, &sink, NULL, &error);
  gint64 deadline = g_get_monotonic_time () + CHAT_WAIT_US;
  guint64 before;

  g_assert_no_error (error);
  g_assert_true (wb_hub_client_subscribe (client, "stream_abc123", NULL, NULL, &error));
  g_assert_no_error (error);
  before = dropped (fixture);
  {
    g_autoptr (WbMessage) odd = chat_message ("stream_abc123", "bad\xef\xbf\xbe chat");
    g_autoptr (WbMessage) marker = chat_message ("stream_abc123", "marker");

    wb_hub_handle_upstream_message (fixture->hub, odd);
    wb_hub_handle_upstream_message (fixture->hub, marker);
  }
  g_assert_cmpuint (dropped (fixture), ==, before);
  /* The watcher sees both, in order, the noncharacter as U+FFFD. */
  while (fixture->chat_texts->len < 2)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, FALSE);
      if (sd_bus_process (fixture->watcher, NULL) == 0)
        g_assert_cmpint (sd_bus_wait (fixture->watcher, 100 * 1000), >=, 0);
    }
  g_assert_cmpstr (g_ptr_array_index (fixture->chat_texts, 0), ==, "bad\xef\xbf\xbd chat");
  g_assert_cmpstr (g_ptr_array_index (fixture->chat_texts, 1), ==, "marker");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/dbus-drops/every-failure-counts", Fixture, NULL, fixture_setup,
              test_every_failure_counts, fixture_teardown);
  g_test_add ("/dbus-drops/uncarryable-text-is-published", Fixture, NULL, fixture_setup,
              test_uncarryable_text_is_published, fixture_teardown);
  return g_test_run ();
}
