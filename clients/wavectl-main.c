/* SPDX-License-Identifier: MIT */
/*
 * wavectl: command-line client of wave-bridge. Parses the command line,
 * opens the transport (socket by default, D-Bus with --dbus) and runs the
 * command. Exit codes: 0 ok, 1 failure, 2 usage.
 */
#define G_LOG_DOMAIN "wave-ctl"

#include "wavectl.h"
#include "wb-build-config.h"

#include <locale.h>
#include <stdio.h>
#include <unistd.h>

/* GOption cannot say whether an int was given: a value nobody types. */
#define HISTORY_NOT_GIVEN G_MININT

typedef struct
{
  char *socket_path;
  gboolean dbus;
  char *bus;
  gboolean json;
  char **events;
  int history; /* tail --history; HISTORY_NOT_GIVEN if not given */
} Options;

static void
options_clear (Options *options)
{
  g_clear_pointer (&options->socket_path, g_free);
  g_clear_pointer (&options->bus, g_free);
  g_clear_pointer (&options->events, g_strfreev);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Options, options_clear)

typedef int (*CommandFunc) (Options *options, char **args);

typedef struct
{
  const char *name;
  const char *parameters;
  const char *summary;
  guint min_args;
  guint max_args; /* G_MAXUINT: any number */
  gboolean has_json;
  gboolean has_events;
  gboolean has_history;
  CommandFunc run;
} Command;

static int
print_usage_error (const char *command, const char *message)
{
  g_printerr ("wavectl: %s\n", message);
  if (command != NULL)
    g_printerr ("Try 'wavectl %s --help'.\n", command);
  else
    g_printerr ("Try 'wavectl --help'.\n");
  return WCTL_EXIT_USAGE;
}

static WctlClient *
open_client (Options *options, GError **error)
{
  if (options->dbus || options->bus != NULL)
    {
      WctlBusChoice bus = WCTL_BUS_AUTO;

      if (g_strcmp0 (options->bus, "system") == 0)
        bus = WCTL_BUS_SYSTEM;
      else if (g_strcmp0 (options->bus, "session") == 0 || g_strcmp0 (options->bus, "user") == 0)
        bus = WCTL_BUS_SESSION;
      return wctl_dbus_client_new (bus, error);
    }
  return wctl_socket_client_new (options->socket_path, error);
}

static int
report_error (const char *what, const GError *error)
{
  if (what != NULL)
    g_printerr ("wavectl: %s: %s\n", what, error->message);
  else
    g_printerr ("wavectl: %s\n", error->message);
  return WCTL_EXIT_FAILURE;
}

static int
run_status (Options *options, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WctlClient) client = open_client (options, &error);
  g_autoptr (JsonObject) status = NULL;
  g_autofree char *text = NULL;

  if (client == NULL)
    return report_error (NULL, error);
  status = wctl_client_get_status (client, &error);
  if (status == NULL)
    return report_error ("cannot read the status", error);
  if (options->json)
    text = wctl_json_to_string (status);
  else
    text = wctl_format_status (status, wctl_stdout_wants_color ());
  fputs (text, stdout);
  if (options->json)
    fputc ('\n', stdout);
  return WCTL_EXIT_OK;
}

static int
run_streams (Options *options, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WctlClient) client = open_client (options, &error);
  g_autoptr (JsonObject) status = NULL;

  if (client == NULL)
    return report_error (NULL, error);
  status = wctl_client_get_status (client, &error);
  if (status == NULL)
    return report_error ("cannot read the status", error);
  if (options->json)
    {
      JsonNode *streams = json_object_get_member (status, "streams");
      g_autofree char *text = NULL;

      if (streams != NULL)
        text = json_to_string (streams, FALSE);
      puts (text != NULL ? text : "[]");
    }
  else
    {
      g_autofree char *text = wctl_format_streams (status, wctl_stdout_wants_color ());
      fputs (text, stdout);
    }
  return WCTL_EXIT_OK;
}

static int
run_send (Options *options, const char *type, const char *stream_id, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WctlClient) client = NULL;

  if (text[0] == '\0')
    return print_usage_error (g_str_equal (type, "chat.message") ? "chat" : "react",
                              "nothing to send: the text is empty");
  client = open_client (options, &error);
  if (client == NULL)
    return report_error (NULL, error);
  if (!wctl_client_send (client, type, stream_id, text, &error))
    return report_error ("not sent", error);
  if (isatty (STDOUT_FILENO))
    {
      g_autofree char *clean = wctl_sanitize (stream_id);
      printf ("sent to %s\n", clean);
    }
  return WCTL_EXIT_OK;
}

static int
run_chat (Options *options, char **args)
{
  return run_send (options, "chat.message", args[0], args[1]);
}

static int
run_react (Options *options, char **args)
{
  return run_send (options, "reaction.sent", args[0], args[1]);
}

/* "stream.started, stream.ended, …": in the schema's order, the order
 * docs/protocol.md introduces them, rather than the sorted list. */
static char *
known_event_names (void)
{
  GString *known = g_string_new (NULL);

  for (int t = WB_MESSAGE_TYPE_INVALID + 1; t < WB_MESSAGE_N_TYPES; t++)
    if (wb_message_type_is_stream_event ((WbMessageType)t))
      g_string_append_printf (known, "%s%s", known->len > 0 ? ", " : "",
                              wb_message_type_to_string ((WbMessageType)t));
  return g_string_free (known, FALSE);
}

/* --events a,b --events c: the validated list, or NULL (all) if not given. */
static gboolean
collect_events (char **given, char ***out_events, GError **error)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr (GPtrArray) seen = g_ptr_array_new_with_free_func (g_free);

  *out_events = NULL;
  if (given == NULL)
    return TRUE;
  for (gsize i = 0; given[i] != NULL; i++)
    {
      g_auto (GStrv) parts = g_strsplit (given[i], ",", -1);

      for (gsize j = 0; parts[j] != NULL; j++)
        {
          char *name = g_strstrip (parts[j]);

          if (name[0] == '\0')
            continue;
          if (!wb_message_is_stream_event_name (name))
            {
              g_autofree char *valid = known_event_names ();
              g_autofree char *clean = wctl_sanitize (name);

              g_set_error (error, WCTL_ERROR, WCTL_ERROR_USAGE,
                           "unknown event type '%s' (known: %s)", clean, valid);
              return FALSE;
            }
          if (!g_ptr_array_find_with_equal_func (seen, name, g_str_equal, NULL))
            {
              g_ptr_array_add (seen, g_strdup (name));
              g_strv_builder_add (builder, name);
            }
        }
    }
  if (seen->len == 0)
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_USAGE, "--events needs at least one event type");
      return FALSE;
    }
  *out_events = g_strv_builder_end (builder);
  return TRUE;
}

static int
run_tail (Options *options, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WctlClient) client = NULL;
  g_auto (GStrv) events = NULL;

  if (!collect_events (options->events, &events, &error))
    return print_usage_error ("tail", error->message);
  if (options->history != HISTORY_NOT_GIVEN && options->history < 0)
    return print_usage_error ("tail", "--history is a number of events, 0 or more");
  client = open_client (options, &error);
  if (client == NULL)
    return report_error (NULL, error);
  return wctl_tail_run (client, args, (const char *const *)events, (guint)MAX (options->history, 0),
                        options->json);
}

static int
run_watch (Options *options, char **args)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WctlClient) client = open_client (options, &error);

  if (client == NULL)
    return report_error (NULL, error);
  return wctl_watch_run (client, args[0]);
}

static const Command commands[] = {
  { "status", "",
    "Show the upstream connection: state and since when, round trip, reconnects, "
    "last close code and error, clients, streams, event counters.",
    0, 0, TRUE, FALSE, FALSE, run_status },
  { "streams", "", "List the streams the bridge follows (those someone is subscribed to).", 0, 0,
    TRUE, FALSE, FALSE, run_streams },
  { "tail", "STREAM…",
    "Subscribe to streams and print one line per event until Ctrl-C.\n"
    "Cached events replayed on subscribe are marked; bridge.state, bridge.resync\n"
    "and bridge.dropped lines show where events may be missing.\n"
    "--history N first prints the last N chat messages and reactions the bridge\n"
    "kept (at most its HistoryPerStream), marked cached, then the live events.",
    1, G_MAXUINT, TRUE, TRUE, TRUE, run_tail },
  { "chat", "STREAM TEXT",
    "Send a chat message. Exits 0 once the bridge wrote it upstream, 1 with the bridge's "
    "error otherwise.",
    2, 2, FALSE, FALSE, FALSE, run_chat },
  { "react", "STREAM EMOJI",
    "Send a reaction. Exits 0 once the bridge wrote it upstream, 1 with the bridge's error "
    "otherwise.",
    2, 2, FALSE, FALSE, FALSE, run_react },
  { "watch", "STREAM",
    "Full-screen live dashboard of a stream: viewers, bitrate and fps history, loss, "
    "latency, chat, reactions, upstream state. Press q to quit.",
    1, 1, FALSE, FALSE, FALSE, run_watch },
};

static void
print_main_help (void)
{
  printf ("Usage:\n"
          "  wavectl [--socket PATH | --dbus] COMMAND [OPTION…] [ARG…]\n"
          "\n"
          "Talk to wave-bridge, the local daemon sharing one WAVE real-time connection.\n"
          "\n"
          "Commands:\n"
          "  status               upstream state, round trip, reconnects, counters\n"
          "  streams              the streams the bridge follows, as a table\n"
          "  tail STREAM…         print events as they come (--events a,b  --history N  --json)\n"
          "  chat STREAM TEXT     send a chat message\n"
          "  react STREAM EMOJI   send a reaction\n"
          "  watch STREAM         live dashboard (q quits)\n"
          "\n"
          "Options for every command:\n"
          "  -s, --socket=PATH    the bridge's socket (default: $WAVE_BRIDGE_SOCKET, else\n"
          "                       $XDG_RUNTIME_DIR/wave-bridge/wave.sock and\n"
          "                       /run/wave-bridge/wave.sock)\n"
          "  --dbus               talk D-Bus (inc.wave.Bridge1) instead of the socket\n"
          "  --bus=system|session which bus for --dbus (default: session, then system)\n"
          "  --json               raw JSON output (status, streams, tail)\n"
          "  --version            print the version\n"
          "\n"
          "`wavectl COMMAND --help` describes a command. Exit status: 0 ok, 1 failure, 2 usage.\n");
}

static const Command *
find_command (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      return &commands[i];
  return NULL;
}

/* Options with a separate value; the command word is the first argument
 * that is neither an option nor such a value. */
static gboolean
option_takes_value (const char *arg)
{
  static const char *const with_value[]
      = { "-s", "--socket", "--bus", "-e", "--events", "--history", NULL };

  return g_strv_contains (with_value, arg);
}

int
main (int argc, char **argv)
{
  g_auto (Options) options = { .history = HISTORY_NOT_GIVEN };
  g_autoptr (GOptionContext) context = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) rest = g_ptr_array_new ();
  g_autofree char *prgname = NULL;
  const Command *command = NULL;
  gboolean show_version = FALSE;
  int command_index = -1;
  char **args;
  guint n_args;
  int result;

  setlocale (LC_ALL, "");

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--"))
        break;
      if (option_takes_value (argv[i]))
        {
          i++;
          continue;
        }
      if (argv[i][0] == '-')
        continue;
      command_index = i;
      break;
    }

  if (command_index < 0)
    {
      for (int i = 1; i < argc; i++)
        {
          if (g_str_equal (argv[i], "--help") || g_str_equal (argv[i], "-h"))
            {
              print_main_help ();
              return WCTL_EXIT_OK;
            }
          if (g_str_equal (argv[i], "--version"))
            show_version = TRUE;
        }
      if (show_version)
        {
          printf ("wavectl %s\n", WB_VERSION);
          return WCTL_EXIT_OK;
        }
      return print_usage_error (NULL, "no command given (status, streams, tail, chat, react, "
                                      "watch)");
    }

  if (g_str_equal (argv[command_index], "help"))
    {
      print_main_help ();
      return WCTL_EXIT_OK;
    }
  command = find_command (argv[command_index]);
  if (command == NULL)
    {
      g_autofree char *clean = wctl_sanitize (argv[command_index]);
      g_autofree char *message = g_strdup_printf ("unknown command '%s'", clean);
      return print_usage_error (NULL, message);
    }

  {
    const GOptionEntry global_entries[] = {
      { "socket", 's', 0, G_OPTION_ARG_FILENAME, &options.socket_path,
        "The bridge's socket (default: $WAVE_BRIDGE_SOCKET, else the user's and the system's)",
        "PATH" },
      { "dbus", 0, 0, G_OPTION_ARG_NONE, &options.dbus, "Talk D-Bus instead of the socket", NULL },
      { "bus", 0, 0, G_OPTION_ARG_STRING, &options.bus,
        "Which bus for --dbus (default: session, then system)", "system|session" },
      { "version", 0, 0, G_OPTION_ARG_NONE, &show_version, "Print the version", NULL },
      G_OPTION_ENTRY_NULL,
    };
    const GOptionEntry json_entries[] = {
      { "json", 'j', 0, G_OPTION_ARG_NONE, &options.json, "Raw JSON output", NULL },
      G_OPTION_ENTRY_NULL,
    };
    const GOptionEntry events_entries[] = {
      { "events", 'e', 0, G_OPTION_ARG_STRING_ARRAY, &options.events,
        "Only these event types (comma-separated, repeatable)", "TYPE,…" },
      G_OPTION_ENTRY_NULL,
    };
    const GOptionEntry history_entries[] = {
      { "history", 0, 0, G_OPTION_ARG_INT, &options.history,
        "First the last N chat messages and reactions the bridge kept", "N" },
      G_OPTION_ENTRY_NULL,
    };
    g_autofree char *parameter_string = g_strdup_printf (
        "%s%s%s", command->name, command->parameters[0] ? " " : "", command->parameters);

    prgname = g_strdup ("wavectl");
    g_set_prgname (prgname);
    context = g_option_context_new (parameter_string);
    g_option_context_set_summary (context, command->summary);
    g_option_context_add_main_entries (context, global_entries, NULL);
    if (command->has_json)
      g_option_context_add_main_entries (context, json_entries, NULL);
    if (command->has_events)
      g_option_context_add_main_entries (context, events_entries, NULL);
    if (command->has_history)
      g_option_context_add_main_entries (context, history_entries, NULL);
    g_option_context_set_description (context, "Exit status: 0 ok, 1 failure, 2 usage error.");
  }

  /* Everything but the command word, so that GOption sees only our args. */
  for (int i = 0; i < argc; i++)
    if (i != command_index)
      g_ptr_array_add (rest, argv[i]);
  g_ptr_array_add (rest, NULL);
  {
    int rest_argc = (int)rest->len - 1;
    char **rest_argv = (char **)rest->pdata;

    if (!g_option_context_parse (context, &rest_argc, &rest_argv, &error))
      return print_usage_error (command->name, error->message);
    if (show_version)
      {
        printf ("wavectl %s\n", WB_VERSION);
        return WCTL_EXIT_OK;
      }
    if (options.bus != NULL && g_strcmp0 (options.bus, "system") != 0
        && g_strcmp0 (options.bus, "session") != 0 && g_strcmp0 (options.bus, "user") != 0)
      return print_usage_error (command->name, "--bus must be 'system' or 'session'");
    if (options.socket_path != NULL && (options.dbus || options.bus != NULL))
      return print_usage_error (command->name, "--socket and --dbus exclude each other");

    /* Skip "--" if GOption left it. */
    args = rest_argv + 1;
    n_args = (guint)(rest_argc - 1);
    if (n_args > 0 && g_str_equal (args[0], "--"))
      {
        args++;
        n_args--;
      }
    if (n_args < command->min_args || n_args > command->max_args)
      {
        g_autofree char *message = NULL;

        if (n_args < command->min_args)
          message = g_strdup_printf ("missing arguments: wavectl %s %s", command->name,
                                     command->parameters);
        else
          message = g_strdup_printf ("too many arguments: wavectl %s%s%s", command->name,
                                     command->parameters[0] ? " " : "", command->parameters);
        return print_usage_error (command->name, message);
      }
    for (guint i = 0; i < n_args && command->min_args > 0; i++)
      if (i == 0 || command->max_args == G_MAXUINT)
        if (args[i][0] == '\0')
          return print_usage_error (command->name, "a stream id must not be empty");

    result = command->run (&options, args);
  }

  return result;
}
