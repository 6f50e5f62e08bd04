/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-sim-fixture"

#include "sim-fixture.h"

#include <libsoup/soup.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

/* Generous: the test machine is shared and may be slow. */
#define SIM_FIXTURE_START_TIMEOUT_S 30
#define SIM_FIXTURE_STOP_TIMEOUT_S 10
#define SIM_FIXTURE_REQUEST_TIMEOUT_S 20

struct _SimFixture
{
  GSubprocess *process;
  GDataInputStream *stdout_lines;
  char *url;
  char *http_base;
  guint16 port;
  GPtrArray *stream_ids; /* NULL-terminated */
  SoupSession *session;
  gboolean stopped;
};

char *
sim_fixture_dup_binary_path (void)
{
  const char *override = g_getenv ("WB_SIM_BINARY");
  const char *build_dir = g_getenv ("WB_BUILD_DIR");

  if (override != NULL && override[0] != '\0')
    return g_strdup (override);
  return g_build_filename (build_dir != NULL ? build_dir : ".", "sim", "wave-sim", NULL);
}

/* Runs async operations of this file on a private context with a deadline,
 * so a hung simulator fails the test instead of hanging it. */
typedef struct
{
  GAsyncResult *result;
  gboolean timed_out;
} AsyncWait;

static void
async_wait_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncWait *wait = user_data;

  wait->result = g_object_ref (result);
}

static gboolean
async_wait_timeout_cb (gpointer user_data)
{
  AsyncWait *wait = user_data;

  wait->timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates @context until the operation started on it finishes; FALSE on timeout. */
static gboolean
async_wait_run (AsyncWait *wait, GMainContext *context, guint timeout_s)
{
  g_autoptr (GSource) timeout = g_timeout_source_new_seconds (timeout_s);

  g_source_set_callback (timeout, async_wait_timeout_cb, wait, NULL);
  g_source_attach (timeout, context);
  while (wait->result == NULL && !wait->timed_out)
    g_main_context_iteration (context, TRUE);
  g_source_destroy (timeout);
  return wait->result != NULL;
}

static void
async_wait_clear (AsyncWait *wait)
{
  g_clear_object (&wait->result);
  wait->timed_out = FALSE;
}

static char *
read_line (GDataInputStream *lines, GMainContext *context, gint64 deadline, GError **error)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  AsyncWait wait = { 0 };
  gint64 remaining_s = (deadline - g_get_monotonic_time ()) / G_USEC_PER_SEC;
  char *line;

  g_data_input_stream_read_line_async (lines, G_PRIORITY_DEFAULT, cancellable, async_wait_done_cb,
                                       &wait);
  if (!async_wait_run (&wait, context, (guint)MAX (remaining_s, 1)))
    {
      /* @wait lives on this stack: the read must end before we return. */
      g_cancellable_cancel (cancellable);
      while (wait.result == NULL)
        g_main_context_iteration (context, TRUE);
      async_wait_clear (&wait);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                   "wave-sim printed no start-up lines within %d s", SIM_FIXTURE_START_TIMEOUT_S);
      return NULL;
    }
  line = g_data_input_stream_read_line_finish (lines, wait.result, NULL, error);
  async_wait_clear (&wait);
  if (line == NULL && error != NULL && *error == NULL)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
                         "wave-sim exited before printing its start-up lines");
  return line;
}

static gboolean
parse_url (SimFixture *fixture, const char *line, GError **error)
{
  g_autoptr (GUri) uri = g_uri_parse (line, G_URI_FLAGS_NONE, error);
  const char *scheme;

  if (uri == NULL)
    {
      g_prefix_error (error, "wave-sim start-up line '%s': ", line);
      return FALSE;
    }
  scheme = g_uri_get_scheme (uri);
  if ((g_strcmp0 (scheme, "ws") != 0 && g_strcmp0 (scheme, "wss") != 0)
      || g_uri_get_port (uri) <= 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "wave-sim start-up line is not a ws:// URL: '%s'", line);
      return FALSE;
    }
  fixture->url = g_strdup (line);
  fixture->port = (guint16)g_uri_get_port (uri);
  fixture->http_base
      = g_strdup_printf ("%s://%s:%u", strcmp (scheme, "wss") == 0 ? "https" : "http",
                         g_uri_get_host (uri), fixture->port);
  return TRUE;
}

static gboolean
read_startup (SimFixture *fixture, GError **error)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  gint64 deadline = g_get_monotonic_time () + SIM_FIXTURE_START_TIMEOUT_S * G_USEC_PER_SEC;
  g_autofree char *first = NULL;
  gboolean ok = TRUE;

  g_main_context_push_thread_default (context);
  first = read_line (fixture->stdout_lines, context, deadline, error);
  ok = first != NULL && parse_url (fixture, first, error);
  while (ok)
    {
      g_autofree char *line = read_line (fixture->stdout_lines, context, deadline, error);

      if (line == NULL)
        ok = FALSE;
      else if (line[0] == '\0')
        break;
      else if (g_str_has_prefix (line, "stream "))
        g_ptr_array_insert (fixture->stream_ids, (int)fixture->stream_ids->len - 1,
                            g_strdup (line + strlen ("stream ")));
      else
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "unexpected wave-sim start-up line '%s'", line);
          ok = FALSE;
        }
    }
  g_main_context_pop_thread_default (context);
  return ok;
}

/* A test that crashes must not leave simulators behind. */
static void
child_setup_cb (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

SimFixture *
sim_fixture_new (const char *const *args, GError **error)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (SimFixture) fixture = g_new0 (SimFixture, 1);
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autofree char *asan_options = NULL;

  fixture->stream_ids = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (fixture->stream_ids, NULL);

  g_ptr_array_add (argv, sim_fixture_dup_binary_path ());
  for (; args != NULL && *args != NULL; args++)
    g_ptr_array_add (argv, g_strdup (*args));
  g_ptr_array_add (argv, NULL);

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_subprocess_launcher_set_child_setup (launcher, child_setup_cb, NULL, NULL);
  /* wave-sim is the test double, not the product, and its exit status is
   * checked: under ASan, LeakSanitizer would fail it for libsoup 3.2's own
   * leak in soup_server_listen_local (a GSocketAddress) and for connections
   * still open at SIGTERM, seen since G_SLICE=always-malloc. The bridge's
   * leaks are checked by ASan and valgrind (docs/reliability.md). */
  asan_options = g_strconcat (g_getenv ("ASAN_OPTIONS") != NULL ? g_getenv ("ASAN_OPTIONS") : "",
                              ":detect_leaks=0", NULL);
  g_subprocess_launcher_setenv (launcher, "ASAN_OPTIONS", asan_options, TRUE);
  fixture->process
      = g_subprocess_launcher_spawnv (launcher, (const char *const *)argv->pdata, error);
  if (fixture->process == NULL)
    {
      fixture->stopped = TRUE;
      return NULL;
    }
  fixture->stdout_lines = g_data_input_stream_new (g_subprocess_get_stdout_pipe (fixture->process));
  if (!read_startup (fixture, error))
    return NULL;

  fixture->session
      = soup_session_new_with_options ("timeout", SIM_FIXTURE_REQUEST_TIMEOUT_S, "idle-timeout",
                                       SIM_FIXTURE_REQUEST_TIMEOUT_S, NULL);
  return g_steal_pointer (&fixture);
}

gboolean
sim_fixture_stop (SimFixture *fixture, GError **error)
{
  g_autoptr (GMainContext) context = NULL;
  AsyncWait wait = { 0 };
  gboolean exited;

  g_return_val_if_fail (fixture != NULL, FALSE);

  if (fixture->stopped)
    return TRUE;
  fixture->stopped = TRUE;

  context = g_main_context_new ();
  g_main_context_push_thread_default (context);
  g_subprocess_send_signal (fixture->process, SIGTERM);
  g_subprocess_wait_async (fixture->process, NULL, async_wait_done_cb, &wait);
  exited = async_wait_run (&wait, context, SIM_FIXTURE_STOP_TIMEOUT_S);
  if (!exited)
    {
      g_subprocess_force_exit (fixture->process);
      while (wait.result == NULL)
        g_main_context_iteration (context, TRUE);
    }
  async_wait_clear (&wait);
  g_main_context_pop_thread_default (context);

  if (!exited)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                   "wave-sim did not exit within %d s of SIGTERM", SIM_FIXTURE_STOP_TIMEOUT_S);
      return FALSE;
    }
  if (!g_subprocess_get_if_exited (fixture->process)
      || g_subprocess_get_exit_status (fixture->process) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "wave-sim did not exit cleanly (%s %d)",
                   g_subprocess_get_if_signaled (fixture->process) ? "signal" : "status",
                   g_subprocess_get_if_signaled (fixture->process)
                       ? g_subprocess_get_term_sig (fixture->process)
                       : g_subprocess_get_exit_status (fixture->process));
      return FALSE;
    }
  return TRUE;
}

void
sim_fixture_free (SimFixture *fixture)
{
  g_autoptr (GError) error = NULL;

  if (fixture == NULL)
    return;
  if (fixture->process != NULL && !sim_fixture_stop (fixture, &error))
    g_debug ("%s", error->message);
  g_clear_object (&fixture->session);
  g_clear_object (&fixture->stdout_lines);
  g_clear_object (&fixture->process);
  g_clear_pointer (&fixture->stream_ids, g_ptr_array_unref);
  g_free (fixture->url);
  g_free (fixture->http_base);
  g_free (fixture);
}

const char *
sim_fixture_get_url (SimFixture *fixture)
{
  g_return_val_if_fail (fixture != NULL, NULL);
  return fixture->url;
}

char *
sim_fixture_dup_ws_url (SimFixture *fixture, const char *api_key)
{
  g_autofree char *escaped = NULL;

  g_return_val_if_fail (fixture != NULL, NULL);
  if (api_key == NULL)
    return g_strdup (fixture->url);
  escaped = g_uri_escape_string (api_key, NULL, FALSE);
  return g_strdup_printf ("%s?api_key=%s", fixture->url, escaped);
}

const char *
sim_fixture_get_http_base (SimFixture *fixture)
{
  g_return_val_if_fail (fixture != NULL, NULL);
  return fixture->http_base;
}

guint16
sim_fixture_get_port (SimFixture *fixture)
{
  g_return_val_if_fail (fixture != NULL, 0);
  return fixture->port;
}

const char *const *
sim_fixture_get_stream_ids (SimFixture *fixture)
{
  g_return_val_if_fail (fixture != NULL, NULL);
  return (const char *const *)fixture->stream_ids->pdata;
}

const char *
sim_fixture_get_stream_id (SimFixture *fixture, guint index)
{
  g_return_val_if_fail (fixture != NULL, NULL);
  g_return_val_if_fail (index + 1 < fixture->stream_ids->len, NULL);
  return g_ptr_array_index (fixture->stream_ids, index);
}

void
sim_fixture_set_tls_database (SimFixture *fixture, GTlsDatabase *database)
{
  g_return_if_fail (fixture != NULL);
  soup_session_set_tls_database (fixture->session, database);
}

JsonObject *
sim_fixture_request (SimFixture *fixture, const char *method, const char *path, const char *body,
                     guint *out_status, GError **error)
{
  g_autofree char *uri = NULL;
  g_autoptr (SoupMessage) message = NULL;
  g_autoptr (GBytes) answer = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonNode *root;

  g_return_val_if_fail (fixture != NULL && method != NULL && path != NULL, NULL);

  uri = g_strconcat (fixture->http_base, path, NULL);
  message = soup_message_new (method, uri);
  if (message == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad control URI '%s'", uri);
      return NULL;
    }
  if (body != NULL)
    {
      g_autoptr (GBytes) bytes = g_bytes_new (body, strlen (body));

      soup_message_set_request_body_from_bytes (message, "application/json", bytes);
    }
  answer = soup_session_send_and_read (fixture->session, message, NULL, error);
  if (answer == NULL)
    {
      g_prefix_error (error, "%s %s: ", method, path);
      return NULL;
    }
  if (out_status != NULL)
    *out_status = soup_message_get_status (message);
  if (!json_parser_load_from_data (parser, g_bytes_get_data (answer, NULL),
                                   (gssize)g_bytes_get_size (answer), error))
    {
      g_prefix_error (error, "%s %s (HTTP %u): ", method, path, soup_message_get_status (message));
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s %s (HTTP %u): answer is not a JSON object", method, path,
                   soup_message_get_status (message));
      return NULL;
    }
  return json_object_ref (json_node_get_object (root));
}

static JsonObject *
request_ok (SimFixture *fixture, const char *method, const char *path, const char *body,
            GError **error)
{
  guint status = 0;
  g_autoptr (JsonObject) answer = sim_fixture_request (fixture, method, path, body, &status, error);

  if (answer == NULL)
    return NULL;
  if (status != SOUP_STATUS_OK
      || !json_object_get_boolean_member_with_default (answer, "ok", FALSE))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s %s: HTTP %u: %s", method, path, status,
                   json_object_get_string_member_with_default (answer, "error", "(no error)"));
      return NULL;
    }
  return g_steal_pointer (&answer);
}

JsonObject *
sim_fixture_post (SimFixture *fixture, const char *path, const char *body, GError **error)
{
  return request_ok (fixture, "POST", path, body != NULL ? body : "{}", error);
}

JsonObject *
sim_fixture_get_stats (SimFixture *fixture, GError **error)
{
  return request_ok (fixture, "GET", "/sim/stats", NULL, error);
}
