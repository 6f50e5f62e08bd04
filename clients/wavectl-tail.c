/* SPDX-License-Identifier: MIT */
/*
 * wavectl tail: subscribe, then one line per event until SIGINT/SIGTERM or
 * the end of the connection. Gaps (bridge.state, bridge.resync,
 * bridge.dropped) are printed like events so a reader sees them.
 */
#define G_LOG_DOMAIN "wave-ctl"

#include "wavectl.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>

typedef struct
{
  GMainLoop *loop;
  gboolean json;
  gboolean color;
  int exit_code;
} Tail;

static void
tail_message_cb (JsonObject *message, const char *line, const GError *error, gpointer user_data)
{
  Tail *tail = user_data;

  if (message == NULL)
    {
      g_printerr ("wavectl: %s\n", error != NULL ? error->message : "connection lost");
      tail->exit_code = WCTL_EXIT_FAILURE;
      g_main_loop_quit (tail->loop);
      return;
    }

  if (tail->json)
    {
      g_autofree char *text = line != NULL ? NULL : wctl_json_to_string (message);

      fputs (line != NULL ? line : text, stdout);
      fputc ('\n', stdout);
    }
  else
    {
      g_autoptr (GDateTime) now = g_date_time_new_now_local ();
      g_autofree char *formatted = wctl_format_tail_line (message, now, tail->color);

      if (formatted == NULL)
        return;
      fputs (formatted, stdout);
      fputc ('\n', stdout);
    }
  /* Lines are for people and pipes watching live: never sit in a buffer. */
  fflush (stdout);
}

static gboolean
tail_signal_cb (gpointer user_data)
{
  Tail *tail = user_data;

  g_main_loop_quit (tail->loop);
  return G_SOURCE_CONTINUE;
}

/* tail shows state changes as they come; one that happened before it started
 * (auth-failed, waiting, rate-limited) would otherwise explain nothing. */
static void
tail_report_upstream (WctlClient *client)
{
  g_autoptr (JsonObject) status = wctl_client_get_status (client, NULL);
  const char *state = status != NULL ? wb_json_get_string (status, "state", NULL) : NULL;
  const char *last_error = status != NULL ? wb_json_get_string (status, "last_error", NULL) : NULL;
  g_autofree char *clean_error = NULL;

  if (state == NULL || g_str_equal (state, "connected") || g_str_equal (state, "connecting")
      || g_str_equal (state, "idle"))
    return;
  clean_error = wctl_sanitize (last_error != NULL ? last_error : "");
  g_printerr ("wavectl: upstream is %s%s%s\n", state, clean_error[0] != '\0' ? ": " : "",
              clean_error);
}

int
wctl_tail_run (WctlClient *client, char **streams, const char *const *events, guint history,
               gboolean json)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  Tail tail = {
    .loop = loop,
    .json = json,
    .color = !json && wctl_stdout_wants_color (),
    .exit_code = WCTL_EXIT_OK,
  };
  guint sigint_id;
  guint sigterm_id;

  /* Before the first line on stderr: whoever reads "waiting for events"
   * and then sends SIGTERM must get exit status 0, not death by signal. */
  sigint_id = g_unix_signal_add (SIGINT, tail_signal_cb, &tail);
  sigterm_id = g_unix_signal_add (SIGTERM, tail_signal_cb, &tail);
  for (gsize i = 0; streams[i] != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *clean = wctl_sanitize (streams[i]);

      if (!wctl_client_subscribe (client, streams[i], events, history, &error))
        {
          g_printerr ("wavectl: cannot subscribe to %s: %s\n", clean, error->message);
          g_source_remove (sigint_id);
          g_source_remove (sigterm_id);
          return WCTL_EXIT_FAILURE;
        }
      /* A stream nobody streams to stays silent; say we are listening. */
      g_printerr ("wavectl: waiting for events of %s (Ctrl-C to stop)\n", clean);
    }
  tail_report_upstream (client);

  wctl_client_listen (client, tail_message_cb, &tail);
  g_main_loop_run (loop);
  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  return tail.exit_code;
}
