/* SPDX-License-Identifier: MIT */
/* wave-sim: a local WAVE cloud simulator. Options, wiring, signals. */
#define G_LOG_DOMAIN "wave-sim"

#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>

#include "sim-control.h"
#include "sim-server.h"
#include "sim-streams.h"
#include "wb-build-config.h"

#define SIM_DEFAULT_STREAMS 3
#define SIM_DEFAULT_SEED 1
/* Lets the close frames of a shutdown reach the clients. */
#define SIM_SHUTDOWN_GRACE_MS 200

typedef struct
{
  gint port;
  char *api_key;
  gboolean any_key;
  gint n_streams;
  double speed;
  gint64 seed;
  char *tls_cert;
  char *tls_key;
  gint rate_limit;
  gint max_connections;
  char *event_log;
  gboolean quiet;
  gboolean version;
} SimOptions;

static void
sim_options_clear (SimOptions *options)
{
  g_free (options->api_key);
  g_free (options->tls_cert);
  g_free (options->tls_key);
  g_free (options->event_log);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (SimOptions, sim_options_clear)

static gboolean quiet_logs;

/* Logs go to stderr only: stdout carries the start-up lines tests read. */
static GLogWriterOutput
log_writer_cb (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if (quiet_logs && (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG)) != 0)
    return G_LOG_WRITER_HANDLED;
  return g_log_writer_default (level, fields, n_fields, user_data);
}

static gboolean bad_option (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
bad_option (GError **error, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  g_propagate_error (error,
                     g_error_new_valist (G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, format, args));
  va_end (args);
  return FALSE;
}

static gboolean
parse_options (int *argc, char ***argv, SimOptions *options, GError **error)
{
  g_autoptr (GOptionContext) context = NULL;
  GOptionEntry entries[] = {
    { "port", 'p', 0, G_OPTION_ARG_INT, &options->port, "Port on 127.0.0.1 (0: any free port)",
      "N" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &options->api_key,
      "The API key clients must give (default " SIM_SERVER_DEFAULT_API_KEY ")", "KEY" },
    { "any-key", 0, 0, G_OPTION_ARG_NONE, &options->any_key, "Accept any API key, or none", NULL },
    { "streams", 'n', 0, G_OPTION_ARG_INT, &options->n_streams, "Number of simulated streams",
      "N" },
    { "speed", 0, 0, G_OPTION_ARG_DOUBLE, &options->speed,
      "Simulated time runs X times faster (10: health every 0.5 s)", "X" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &options->seed, "Seed: the same seed replays the same run",
      "N" },
    { "tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &options->tls_cert,
      "PEM certificate: serve wss:// and https://", "FILE" },
    { "tls-key", 0, 0, G_OPTION_ARG_FILENAME, &options->tls_key, "PEM private key for --tls-cert",
      "FILE" },
    { "rate-limit", 0, 0, G_OPTION_ARG_INT, &options->rate_limit,
      "Close with 4429 past this many client messages in 1 s (0: no limit)", "N" },
    { "max-connections", 0, 0, G_OPTION_ARG_INT, &options->max_connections,
      "Open WebSockets allowed at once; more get HTTP 503", "N" },
    { "event-log", 0, 0, G_OPTION_ARG_FILENAME, &options->event_log,
      "Write every connection, subscription and numbered event to FILE (JSON lines)", "FILE" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &options->quiet, "Log only warnings and errors", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &options->version, "Print the version and exit", NULL },
    { NULL },
  };

  context = g_option_context_new ("- local WAVE cloud simulator");
  g_option_context_set_summary (
      context,
      "Serves the WAVE real-time WebSocket API on 127.0.0.1 with simulated streams,\n"
      "plus a /sim/ HTTP control API for fault injection (see docs/wave-sim.md).\n"
      "Prints the WebSocket URL, then one 'stream ID' line per stream, then a blank line.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, argc, argv, error))
    return FALSE;

  if (*argc > 1)
    return bad_option (error, "unexpected argument '%s'", (*argv)[1]);
  if (options->port < 0 || options->port > G_MAXUINT16)
    return bad_option (error, "--port must be 0 to %u", G_MAXUINT16);
  if (options->any_key && options->api_key != NULL)
    return bad_option (error, "--api-key and --any-key exclude each other");
  if (options->api_key != NULL && options->api_key[0] == '\0')
    return bad_option (error, "--api-key must not be empty");
  if (options->n_streams < 0 || options->n_streams > SIM_STREAMS_MAX)
    return bad_option (error, "--streams must be 0 to %d", SIM_STREAMS_MAX);
  if (!(options->speed > 0.0 && options->speed <= SIM_STREAMS_MAX_SPEED))
    return bad_option (error, "--speed must be above 0 and at most %g", SIM_STREAMS_MAX_SPEED);
  if (options->seed < 0 || options->seed > G_MAXUINT32)
    return bad_option (error, "--seed must be 0 to %u", G_MAXUINT32);
  if ((options->tls_cert == NULL) != (options->tls_key == NULL))
    return bad_option (error, "--tls-cert and --tls-key go together");
  if (options->rate_limit < 0 || options->rate_limit > SIM_SERVER_MAX_RATE_LIMIT)
    return bad_option (error, "--rate-limit must be 0 to %d", SIM_SERVER_MAX_RATE_LIMIT);
  if (options->max_connections < 1 || options->max_connections > SIM_SERVER_MAX_CONNECTIONS)
    return bad_option (error, "--max-connections must be 1 to %d", SIM_SERVER_MAX_CONNECTIONS);
  return TRUE;
}

static gboolean
quit_cb (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

typedef struct
{
  GMainLoop *loop;
  SimServer *server;
  gboolean stopping;
} SignalData;

static gboolean
signal_cb (gpointer user_data)
{
  SignalData *data = user_data;

  if (data->stopping)
    return G_SOURCE_CONTINUE;
  data->stopping = TRUE;
  g_message ("stopping");
  sim_server_shutdown (data->server);
  g_timeout_add (SIM_SHUTDOWN_GRACE_MS, quit_cb, data->loop);
  return G_SOURCE_CONTINUE;
}

static void
print_startup (SimServer *server, SimStreams *streams)
{
  printf ("%s\n", sim_server_get_url (server));
  for (guint i = 0; i < sim_streams_get_n (streams); i++)
    printf ("stream %s\n", sim_streams_get_id (streams, i));
  printf ("\n");
  fflush (stdout);
}

static int
run (const SimOptions *options)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GTlsCertificate) certificate = NULL;
  g_autoptr (SimStreams) streams = NULL;
  g_autoptr (SimServer) server = NULL;
  g_autoptr (SimControl) control = NULL;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  SimServerOptions server_options = { 0 };
  SignalData signal_data = { 0 };
  guint sigint_id, sigterm_id;

  if (options->tls_cert != NULL)
    {
      certificate = g_tls_certificate_new_from_files (options->tls_cert, options->tls_key, &error);
      if (certificate == NULL)
        {
          g_printerr ("wave-sim: %s\n", error->message);
          return EXIT_FAILURE;
        }
    }

  streams = sim_streams_new ((guint)options->n_streams, (guint32)options->seed, options->speed);
  server_options.port = (guint16)options->port;
  server_options.api_key = options->any_key           ? NULL
                           : options->api_key != NULL ? options->api_key
                                                      : SIM_SERVER_DEFAULT_API_KEY;
  server_options.rate_limit = (guint)options->rate_limit;
  server_options.max_connections = (guint)options->max_connections;
  server_options.tls_certificate = certificate;
  server_options.event_log = options->event_log;
  server = sim_server_new (&server_options, streams, &error);
  if (server == NULL)
    {
      g_printerr ("wave-sim: %s\n", error->message);
      return EXIT_FAILURE;
    }
  control = sim_control_new (server, streams);
  sim_streams_set_publish_func (streams, sim_server_publish_cb, server);
  sim_streams_start (streams);

  signal_data.loop = loop;
  signal_data.server = server;
  sigint_id = g_unix_signal_add (SIGINT, signal_cb, &signal_data);
  sigterm_id = g_unix_signal_add (SIGTERM, signal_cb, &signal_data);

  print_startup (server, streams);
  g_message ("listening on %s: %u streams, speed %g, seed %" G_GINT64_FORMAT ", %s",
             sim_server_get_url (server), sim_streams_get_n (streams), options->speed,
             options->seed, options->any_key ? "any key" : "api key required");
  g_main_loop_run (loop);

  g_source_remove (sigint_id);
  g_source_remove (sigterm_id);
  /* Stop the event sources before the server they publish to. */
  sim_streams_set_publish_func (streams, NULL, NULL);
  return EXIT_SUCCESS;
}

int
main (int argc, char **argv)
{
  g_auto (SimOptions) options = {
    .n_streams = SIM_DEFAULT_STREAMS,
    .speed = 1.0,
    .seed = SIM_DEFAULT_SEED,
    .rate_limit = SIM_SERVER_DEFAULT_RATE_LIMIT,
    .max_connections = SIM_SERVER_DEFAULT_MAX_CONNECTIONS,
  };
  g_autoptr (GError) error = NULL;

  setlocale (LC_ALL, "");
  g_log_writer_default_set_use_stderr (TRUE);
  g_log_set_writer_func (log_writer_cb, NULL, NULL);

  if (!parse_options (&argc, &argv, &options, &error))
    {
      g_printerr ("wave-sim: %s\nTry 'wave-sim --help'.\n", error->message);
      return EXIT_FAILURE;
    }
  if (options.version)
    {
      printf ("wave-sim %s\n", WB_VERSION);
      return EXIT_SUCCESS;
    }
  quiet_logs = options.quiet;
  return run (&options);
}
