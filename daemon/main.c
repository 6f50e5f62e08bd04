/* SPDX-License-Identifier: MIT */
/*
 * wave-bridged: options, configuration, wiring, signals, sd_notify.
 * The modules do the work; see docs/architecture.md.
 */
#define G_LOG_DOMAIN "wave-bridged"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.h"
#include "dbus-frontend.h"
#include "hub.h"
#include "socket-frontend.h"
#include "text.h"
#include "upstream.h"
#include "wake-monitor.h"
#include "ws-frontend.h"
#include "wb-build-config.h"

/* sysexits.h EX_CONFIG: systemd shows a configuration problem, not a crash. */
#define EXIT_CONFIG 78
/* Bounded: a source that keeps itself ready must not stall the exit. */
#define SHUTDOWN_DRAIN_ITERATIONS 100

typedef struct
{
  GMainLoop *loop;
  int exit_status;
  WbConfigOverrides overrides;
  gboolean user_mode;
  WbConfig *config;
  char *api_key;
  /* What the process really serves; a reload cannot move them. */
  char *running_socket_path;
  WbBusType running_bus;
  WbUpstream *upstream;
  WbHub *hub;
  WbSocketFrontend *socket_frontend;
  WbDbusFrontend *dbus_frontend;
  WbWsFrontend *ws_frontend; /* NULL unless [WebSocket] Listen is set */
  char *running_ws_listen;
  WbWakeMonitor *wake_monitor;
  GFileMonitor *key_monitor;
  guint watchdog_source;
  guint dbus_reload_id; /* a Reload() over D-Bus, to run from the loop */
} Daemon;

/* ---- hub → upstream ------------------------------------------------------ */

static void
ops_set_stream_events (gpointer user_data, const char *stream_id, const char *const *events,
                       gint64 owner)
{
  Daemon *daemon = user_data;

  wb_upstream_set_stream_events (daemon->upstream, stream_id, events, owner);
}

static void
ops_send (gpointer user_data, JsonNode *message, gint64 owner, WbSendCallback callback,
          gpointer callback_data)
{
  Daemon *daemon = user_data;

  wb_upstream_send (daemon->upstream, message, owner, callback, callback_data);
}

static const WbLinkStatus *
ops_get_status (gpointer user_data)
{
  Daemon *daemon = user_data;

  return wb_upstream_get_status (daemon->upstream);
}

static gboolean
ops_reconnect (gpointer user_data, GError **error)
{
  Daemon *daemon = user_data;

  return wb_upstream_reconnect (daemon->upstream, error);
}

static void
ops_demand (gpointer user_data)
{
  Daemon *daemon = user_data;

  wb_upstream_demand (daemon->upstream);
}

static const WbHubUpstreamOps hub_upstream_ops = {
  .set_stream_events = ops_set_stream_events,
  .send = ops_send,
  .get_status = ops_get_status,
  .reconnect = ops_reconnect,
  .demand = ops_demand,
};

/* ---- upstream → hub ------------------------------------------------------ */

static void
upstream_message_cb (const WbMessage *message, gpointer user_data)
{
  Daemon *daemon = user_data;

  wb_hub_handle_upstream_message (daemon->hub, message);
}

/* The server chooses error texts and close reasons: a newline in them would
 * start a new sd_notify assignment (WATCHDOG=trigger, STOPPING=1 ...).
 * upstream.c keeps them sanitized already; this is the rule at this door. */
static char *
notify_safe_text (const char *text)
{
  return wb_text_sanitize (text, -1, WB_TEXT_MAX_BYTES);
}

static void
upstream_state_changed_cb (const WbUpstreamStateChange *change, gpointer user_data)
{
  Daemon *daemon = user_data;
  const WbLinkStatus *status = wb_upstream_get_status (daemon->upstream);

  /* Once connected, the last failure no longer describes the state. */
  g_autofree char *last_error
      = notify_safe_text (change->new_state == WB_LINK_CONNECTED ? "" : status->last_error);

  sd_notifyf (FALSE, "STATUS=upstream %s%s%s", wb_link_state_to_string (change->new_state),
              last_error[0] != '\0' ? ": " : "", last_error);
  wb_hub_handle_upstream_state (daemon->hub, change->old_state, change->new_state);
}

static void
upstream_resynced_cb (const char *stream_id, gint64 gap_ms, gpointer user_data)
{
  Daemon *daemon = user_data;

  wb_hub_handle_upstream_resynced (daemon->hub, stream_id, gap_ms);
}

static void
upstream_frames_dropped_cb (guint count, gpointer user_data)
{
  Daemon *daemon = user_data;

  wb_hub_handle_upstream_dropped (daemon->hub, count);
}

static void
upstream_status_changed_cb (gpointer user_data)
{
  Daemon *daemon = user_data;

  wb_hub_handle_upstream_status (daemon->hub);
}

static const WbUpstreamCallbacks upstream_callbacks = {
  .message = upstream_message_cb,
  .state_changed = upstream_state_changed_cb,
  .resynced = upstream_resynced_cb,
  .frames_dropped = upstream_frames_dropped_cb,
  .status_changed = upstream_status_changed_cb,
};

/* ---- configuration and key ----------------------------------------------- */

static void key_file_changed_cb (GFileMonitor *monitor, GFile *file, GFile *other,
                                 GFileMonitorEvent event, gpointer user_data);

/* Watches the key file so a rewritten key leaves auth-failed by itself. */
static void
daemon_watch_key_file (Daemon *daemon)
{
  g_autofree char *path = wb_config_api_key_path (daemon->config);
  g_autoptr (GFile) file = NULL;
  g_autoptr (GError) error = NULL;

  if (daemon->key_monitor != NULL)
    {
      g_signal_handlers_disconnect_by_data (daemon->key_monitor, daemon);
      g_clear_object (&daemon->key_monitor);
    }
  if (path == NULL)
    return;
  file = g_file_new_for_path (path);
  daemon->key_monitor = g_file_monitor_file (file, G_FILE_MONITOR_WATCH_MOVES, NULL, &error);
  if (daemon->key_monitor == NULL)
    {
      g_warning ("cannot watch API key file %s: %s", path, error->message);
      return;
    }
  g_signal_connect (daemon->key_monitor, "changed", G_CALLBACK (key_file_changed_cb), daemon);
}

static gboolean
daemon_load_config (Daemon *daemon, WbConfig **out_config, char **out_api_key, GError **error)
{
  g_autoptr (WbConfig) config = NULL;
  g_autofree char *api_key = NULL;
  g_autofree char *key_source = NULL;
  g_autofree char *redacted = NULL;

  config = wb_config_load (&daemon->overrides, daemon->user_mode, error);
  if (config == NULL)
    return FALSE;
  api_key = wb_config_read_api_key (config, &key_source, error);
  if (api_key == NULL)
    return FALSE;
  redacted = wb_config_redact_url (config->url);
  g_message ("configuration from %s; upstream %s; API key from %s",
             config->loaded_from != NULL ? config->loaded_from : "built-in defaults", redacted,
             key_source);
  *out_config = g_steal_pointer (&config);
  *out_api_key = g_steal_pointer (&api_key);
  return TRUE;
}

static gboolean
daemon_reload (Daemon *daemon, GError **error)
{
  g_autoptr (WbConfig) config = NULL;
  g_autofree char *api_key = NULL;

  sd_notify (FALSE, "RELOADING=1");
  if (!daemon_load_config (daemon, &config, &api_key, error))
    {
      sd_notify (FALSE, "READY=1");
      return FALSE;
    }
  if (g_strcmp0 (config->socket_path, daemon->running_socket_path) != 0
      || config->bus != daemon->running_bus)
    g_message ("still serving socket %s and bus %s: changes to them take effect on restart",
               daemon->running_socket_path, wb_bus_type_to_string (daemon->running_bus));

  if (g_strcmp0 (config->ws_listen, daemon->running_ws_listen) != 0)
    g_message ("[WebSocket] Listen changes take effect on restart");
  /* The local key first: a reload that cannot read it changes nothing. */
  if (daemon->ws_frontend != NULL)
    {
      if (!wb_ws_frontend_set_config (daemon->ws_frontend, config, error))
        {
          sd_notify (FALSE, "READY=1");
          return FALSE;
        }
      if (wb_ws_frontend_key_is (daemon->ws_frontend, api_key))
        g_warning ("The local key is the real API key: every local app holding it holds the "
                   "account's key; delete the local key file and reload");
    }
  /* Everyone gets the new config before the old one is freed. */
  wb_upstream_reload (daemon->upstream, config, api_key);
  wb_hub_set_config (daemon->hub, config);
  if (daemon->socket_frontend != NULL)
    wb_socket_frontend_set_config (daemon->socket_frontend, config);
  if (daemon->dbus_frontend != NULL)
    wb_dbus_frontend_set_config (daemon->dbus_frontend, config);
  g_clear_pointer (&daemon->config, wb_config_free);
  daemon->config = g_steal_pointer (&config);
  wb_clear_secret (&daemon->api_key);
  daemon->api_key = g_steal_pointer (&api_key);
  daemon_watch_key_file (daemon);
  sd_notify (FALSE, "READY=1");
  return TRUE;
}

static void
daemon_reload_or_warn (Daemon *daemon, const char *why)
{
  g_autoptr (GError) error = NULL;

  g_message ("reloading (%s)", why);
  if (!daemon_reload (daemon, &error))
    g_warning ("reload failed, keeping the previous configuration: %s", error->message);
}

static void
key_file_changed_cb (GFileMonitor *monitor, GFile *file, GFile *other, GFileMonitorEvent event,
                     gpointer user_data)
{
  if (event != G_FILE_MONITOR_EVENT_CHANGES_DONE_HINT && event != G_FILE_MONITOR_EVENT_CREATED
      && event != G_FILE_MONITOR_EVENT_MOVED_IN && event != G_FILE_MONITOR_EVENT_RENAMED)
    return;
  daemon_reload_or_warn (user_data, "API key file changed");
}

/* ---- signals and systemd ------------------------------------------------- */

static gboolean
quit_signal_cb (gpointer user_data)
{
  Daemon *daemon = user_data;

  g_message ("shutting down");
  sd_notify (FALSE, "STOPPING=1");
  g_main_loop_quit (daemon->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean
hangup_signal_cb (gpointer user_data)
{
  daemon_reload_or_warn (user_data, "SIGHUP");
  return G_SOURCE_CONTINUE;
}

static gboolean
watchdog_cb (gpointer user_data)
{
  sd_notify (FALSE, "WATCHDOG=1");
  return G_SOURCE_CONTINUE;
}

static void
dbus_lost_cb (gpointer user_data)
{
  Daemon *daemon = user_data;

  g_warning ("lost the D-Bus connection; exiting so the service manager restarts us");
  daemon->exit_status = EXIT_FAILURE;
  g_main_loop_quit (daemon->loop);
}

static gboolean
dbus_reload_cb (gpointer user_data)
{
  Daemon *daemon = user_data;
  g_autoptr (GError) error = NULL;

  daemon->dbus_reload_id = 0;
  g_message ("reloading (Reload() over D-Bus)");
  if (!daemon_reload (daemon, &error))
    g_warning ("reload failed, keeping the previous configuration: %s", error->message);
  wb_dbus_frontend_reload_finished (daemon->dbus_frontend, error);
  return G_SOURCE_REMOVE;
}

static void
dbus_reload_requested_cb (gpointer user_data)
{
  Daemon *daemon = user_data;

  if (daemon->dbus_reload_id == 0)
    daemon->dbus_reload_id = g_idle_add (dbus_reload_cb, daemon);
}

static const WbDbusFrontendCallbacks dbus_callbacks = {
  .lost = dbus_lost_cb,
  .reload_requested = dbus_reload_requested_cb,
};

static void
wake_cb (const char *reason, gpointer user_data)
{
  Daemon *daemon = user_data;

  wb_upstream_network_changed (daemon->upstream);
}

/* 1024 clients need more descriptors than the usual soft limit of 1024. */
static void
raise_fd_limit (void)
{
  struct rlimit limit;

  if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max)
    {
      limit.rlim_cur = limit.rlim_max;
      if (setrlimit (RLIMIT_NOFILE, &limit) < 0)
        g_debug ("cannot raise RLIMIT_NOFILE: %s", g_strerror (errno));
    }
}

static void
daemon_start_watchdog (Daemon *daemon)
{
  guint64 watchdog_us = 0;

  if (sd_watchdog_enabled (FALSE, &watchdog_us) > 0 && watchdog_us > 0)
    daemon->watchdog_source = g_timeout_add ((guint)(watchdog_us / 2000), watchdog_cb, daemon);
}

static gboolean
daemon_start (Daemon *daemon, GError **error)
{
  if (!daemon_load_config (daemon, &daemon->config, &daemon->api_key, error))
    return FALSE;
  daemon->running_socket_path = g_strdup (daemon->config->socket_path);
  daemon->running_bus = daemon->config->bus;

  daemon->hub = wb_hub_new (daemon->config, &hub_upstream_ops, daemon);
  daemon->upstream = wb_upstream_new (daemon->config, daemon->api_key, &upstream_callbacks, daemon);

  /* Before the socket: whoever waits for the socket finds the port open. */
  daemon->running_ws_listen = g_strdup (daemon->config->ws_listen);
  if (daemon->config->ws_listen != NULL)
    {
      daemon->ws_frontend = wb_ws_frontend_new (daemon->hub, daemon->config, error);
      if (daemon->ws_frontend == NULL)
        return FALSE;
      if (wb_ws_frontend_key_is (daemon->ws_frontend, daemon->api_key))
        {
          g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE,
                       "the local key must not be the real API key (local apps would hold "
                       "the account's key); delete the local key file to get a new one");
          return FALSE;
        }
    }
  daemon->socket_frontend = wb_socket_frontend_new (daemon->hub, daemon->config, error);
  if (daemon->socket_frontend == NULL)
    return FALSE;
  if (daemon->config->bus != WB_BUS_NONE)
    {
      daemon->dbus_frontend
          = wb_dbus_frontend_new (daemon->hub, daemon->config, &dbus_callbacks, daemon, error);
      if (daemon->dbus_frontend == NULL)
        return FALSE;
    }

  daemon->wake_monitor = wb_wake_monitor_new (wake_cb, daemon);
  daemon_watch_key_file (daemon);
  daemon_start_watchdog (daemon);
  g_message ("wave-bridge %s ready: socket %s, bus %s", WB_VERSION,
             wb_socket_frontend_get_path (daemon->socket_frontend),
             wb_bus_type_to_string (daemon->config->bus));
  sd_notifyf (FALSE, "READY=1\nSTATUS=upstream %s",
              wb_link_state_to_string (wb_upstream_get_status (daemon->upstream)->state));
  return TRUE;
}

static void
daemon_stop (Daemon *daemon)
{
  g_clear_handle_id (&daemon->watchdog_source, g_source_remove);
  g_clear_handle_id (&daemon->dbus_reload_id, g_source_remove);
  if (daemon->key_monitor != NULL)
    g_signal_handlers_disconnect_by_data (daemon->key_monitor, daemon);
  g_clear_object (&daemon->key_monitor);
  g_clear_pointer (&daemon->wake_monitor, wb_wake_monitor_free);
  /* Frontends first: their clients leave the hub before it goes. */
  g_clear_pointer (&daemon->dbus_frontend, wb_dbus_frontend_free);
  g_clear_pointer (&daemon->socket_frontend, wb_socket_frontend_free);
  g_clear_pointer (&daemon->ws_frontend, wb_ws_frontend_free);
  /* Upstream before the hub: failing held sends reports into the hub. */
  g_clear_pointer (&daemon->upstream, wb_upstream_free);
  /* Cancelled connects and closes finish through callbacks of their own;
   * let them run so they release what they hold. */
  for (guint i = 0; i < SHUTDOWN_DRAIN_ITERATIONS && g_main_context_pending (NULL); i++)
    g_main_context_iteration (NULL, FALSE);
  g_clear_pointer (&daemon->hub, wb_hub_free);
  g_clear_pointer (&daemon->config, wb_config_free);
  g_clear_pointer (&daemon->running_socket_path, g_free);
  g_clear_pointer (&daemon->running_ws_listen, g_free);
  wb_clear_secret (&daemon->api_key);
  g_clear_pointer (&daemon->loop, g_main_loop_unref);
}

/* The API key lives in this process's memory. No core dump may carry it:
 * RLIMIT_CORE 0 stops the kernel's core files and systemd-coredump, which
 * honours the limit ("Resource limits disable core dumping"); not being
 * dumpable alone would not, where fs.suid_dumpable is 2. Not dumpable closes
 * the process to other processes of its own user: no ptrace, no
 * /proc/PID/mem or /proc/PID/environ. tests/integration/test_secrets.py
 * checks both. */
static void
protect_memory (void)
{
  const struct rlimit no_core = { 0, 0 };

  if (setrlimit (RLIMIT_CORE, &no_core) < 0)
    g_warning ("cannot disable core dumps: %s", g_strerror (errno));
  if (prctl (PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    g_warning ("cannot make the process non-dumpable: %s", g_strerror (errno));
}

/* GOption would say "Unknown option"; say why instead. */
static gboolean
refuse_key_on_command_line (int argc, char **argv)
{
  for (int i = 1; i < argc; i++)
    if (g_str_has_prefix (argv[i], "--api-key") && !g_str_has_prefix (argv[i], "--api-key-file"))
      {
        fprintf (stderr, "wave-bridged: the API key is never accepted on the command line "
                         "(it would show in ps and shell history).\n"
                         "Use --api-key-file=FILE, [Upstream] APIKeyFile, the systemd credential "
                         "'wave-api-key', or $WAVE_API_KEY.\n");
        return TRUE;
      }
  return FALSE;
}

int
main (int argc, char **argv)
{
  Daemon daemon = { .exit_status = EXIT_SUCCESS, .overrides = { .bus = -1 } };
  g_autoptr (GOptionContext) context = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *config_file = NULL;
  g_autofree char *url = NULL;
  g_autofree char *api_key_file = NULL;
  g_autofree char *socket_path = NULL;
  g_autofree char *bus = NULL;
  gboolean verbose = FALSE;
  gboolean version = FALSE;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file, "Read configuration from FILE",
      "FILE" },
    { "url", 0, 0, G_OPTION_ARG_STRING, &url, "Upstream WebSocket URL (without the key)", "URL" },
    { "api-key-file", 0, 0, G_OPTION_ARG_FILENAME, &api_key_file, "Read the API key from FILE",
      "FILE" },
    { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path, "Listen on this Unix socket", "PATH" },
    { "bus", 0, 0, G_OPTION_ARG_STRING, &bus, "D-Bus to serve on: system, session or none", "BUS" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log debug messages", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL },
  };

  protect_memory ();
  setlocale (LC_ALL, "");
  if (refuse_key_on_command_line (argc, argv))
    return EXIT_CONFIG;

  context = g_option_context_new ("- share one WAVE real-time connection on this machine");
  g_option_context_set_summary (
      context, "Connects to the WAVE real-time API once and republishes its events\n"
               "on D-Bus (inc.wave.Bridge1) and a newline-JSON Unix socket.");
  g_option_context_set_description (
      context, "The API key comes from [Upstream] APIKeyFile, the systemd credential\n"
               "'wave-api-key' or $WAVE_API_KEY. SIGHUP reloads the configuration.\n"
               "See wave-bridge.conf(5) in docs/configuration.md.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      fprintf (stderr, "wave-bridged: %s\nTry --help.\n", error->message);
      return EXIT_CONFIG;
    }
  if (argc > 1)
    {
      fprintf (stderr, "wave-bridged: unexpected argument '%s'\nTry --help.\n", argv[1]);
      return EXIT_CONFIG;
    }
  if (version)
    {
      printf ("wave-bridged %s\n", WB_VERSION);
      return EXIT_SUCCESS;
    }
  if (verbose)
    g_log_set_debug_enabled (TRUE);

  daemon.overrides.config_file = config_file;
  daemon.overrides.url = url;
  daemon.overrides.api_key_file = api_key_file;
  daemon.overrides.socket_path = socket_path;
  if (bus != NULL)
    {
      WbBusType bus_type;

      if (!wb_bus_type_from_string (bus, &bus_type))
        {
          fprintf (stderr, "wave-bridged: --bus must be system, session or none, not '%s'\n", bus);
          return EXIT_CONFIG;
        }
      daemon.overrides.bus = (int)bus_type;
    }
  daemon.user_mode = wb_config_is_user_mode (getuid (), daemon.overrides.bus);

  signal (SIGPIPE, SIG_IGN);
  raise_fd_limit ();
  daemon.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGTERM, quit_signal_cb, &daemon);
  g_unix_signal_add (SIGINT, quit_signal_cb, &daemon);
  g_unix_signal_add (SIGHUP, hangup_signal_cb, &daemon);

  if (!daemon_start (&daemon, &error))
    {
      g_warning ("cannot start: %s", error->message);
      sd_notifyf (FALSE, "STATUS=failed: %s", error->message);
      daemon_stop (&daemon);
      return g_error_matches (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE)
                     || g_error_matches (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_NO_API_KEY)
                     || g_error_matches (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_API_KEY)
                 ? EXIT_CONFIG
                 : EXIT_FAILURE;
    }

  g_main_loop_run (daemon.loop);
  daemon_stop (&daemon);
  return daemon.exit_status;
}
