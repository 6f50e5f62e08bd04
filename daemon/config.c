/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-config"

#include "config.h"

#include <errno.h>
#include <gio/gio.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "stream-history.h"
#include "text.h"
#include "wb-build-config.h"

#define DEFAULT_URL "wss://ws.wave.inc/v1/streams"
#define SYSTEM_CONFIG_FILE WB_SYSCONFDIR "/wave-bridge/wave-bridge.conf"
#define SYSTEM_API_KEY_FILE WB_SYSCONFDIR "/wave-bridge/api-key"
#define CONFIG_ERROR_MAX_BYTES 4096
#define SYSTEM_SOCKET_PATH WB_RUNSTATEDIR "/wave-bridge/wave.sock"
/* systemd's StateDirectory=wave-bridge: kept across reboots, so apps keep
 * working with the local key they were given. */
#define SYSTEM_LOCAL_KEY_FILE WB_STATEDIR "/wave-bridge/local-key"
#define MAX_WS_MESSAGES_PER_SECOND 100000
#define CREDENTIAL_NAME "wave-api-key"
#define API_KEY_ENV "WAVE_API_KEY"
/* An API key is a short token; anything longer is a wrong file. */
#define MAX_API_KEY_BYTES 4096
#define REDACTED "REDACTED"

/* Upper bounds keep a typo from turning into a resource problem. */
#define MAX_SECONDS_SETTING (24.0 * 3600.0)
#define MAX_CLIENTS_LIMIT 65536
#define MAX_QUEUE_BYTES_LIMIT ((guint64)1 << 30)
#define MIN_QUEUE_BYTES 4096
#define MIN_LINE_BYTES 1024
#define MAX_LINE_BYTES_LIMIT ((guint64)16 << 20)
#define MAX_RATE_LIMIT 100000
#define MAX_SEND_QUEUE_SIZE 65536
#define MAX_SUBSCRIPTIONS_LIMIT 65536
#define MAX_MESSAGES_PER_SECOND 10000

/* clang-format off */
G_DEFINE_QUARK (wb-config-error-quark, wb_config_error)
/* clang-format on */

gboolean
wb_config_is_user_mode (uid_t uid, int bus_override)
{
  if (bus_override == WB_BUS_SYSTEM)
    return FALSE;
  if (bus_override == WB_BUS_SESSION)
    return TRUE;
  return uid != 0;
}

WbConfig *
wb_config_new_defaults (gboolean user_mode)
{
  WbConfig *config = g_new0 (WbConfig, 1);

  config->url = g_strdup (DEFAULT_URL);
  config->api_key_file
      = user_mode ? g_build_filename (g_get_user_config_dir (), "wave-bridge", "api-key", NULL)
                  : g_strdup (SYSTEM_API_KEY_FILE);
  config->ping_interval_ms = 30 * 1000;
  config->pong_timeout_ms = 5 * 1000;
  config->idle_timeout_ms = 60 * 1000;
  config->backoff_initial_ms = 1000;
  config->backoff_max_ms = 30 * 1000;
  config->going_away_wait_ms = 5 * 1000;
  config->rate_limited_wait_ms = 60 * 1000;
  config->messages_per_second = 20;

  if (user_mode)
    config->socket_path
        = g_build_filename (g_get_user_runtime_dir (), "wave-bridge", "wave.sock", NULL);
  else
    config->socket_path = g_strdup (SYSTEM_SOCKET_PATH);

  config->max_clients = 1024;
  config->client_queue_bytes = 1024 * 1024;
  config->max_line_bytes = 64 * 1024;
  config->chat_per_minute = 20;
  config->reactions_per_minute = 120;
  config->send_queue_size = 256;
  config->send_queue_timeout_ms = 30 * 1000;
  config->max_subscriptions = 256;
  config->max_clients_per_user = 64;
  config->max_subscriptions_per_user = 256;
  config->max_queued_bytes_per_user = 8 * 1024 * 1024;
  config->max_streams = 4096;
  config->slow_client_timeout_ms = 30 * 1000;
  config->history_per_stream = WB_STREAM_HISTORY_DEFAULT_EVENTS;
  config->history_bytes_per_stream = WB_STREAM_HISTORY_DEFAULT_BYTES;

  config->ws_origins = g_new0 (char *, 1);
  config->ws_local_key_file
      = user_mode ? g_build_filename (g_get_user_state_dir (), "wave-bridge", "local-key", NULL)
                  : g_strdup (SYSTEM_LOCAL_KEY_FILE);
  config->ws_messages_per_second = 50;

  config->bus = user_mode ? WB_BUS_SESSION : WB_BUS_SYSTEM;
  config->user_mode = user_mode;
  return config;
}

void
wb_config_free (WbConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->url);
  g_free (config->api_key_file);
  g_free (config->ca_file);
  g_free (config->socket_path);
  g_free (config->send_group);
  g_free (config->ws_listen);
  g_free (config->ws_allowed_origins);
  g_strfreev (config->ws_origins);
  g_free (config->ws_local_key_file);
  g_free (config->loaded_from);
  g_free (config);
}

char *
wb_config_default_path (gboolean user_mode)
{
  if (user_mode)
    return g_build_filename (g_get_user_config_dir (), "wave-bridge", "wave-bridge.conf", NULL);
  return g_strdup (SYSTEM_CONFIG_FILE);
}

const char *
wb_bus_type_to_string (WbBusType bus)
{
  switch (bus)
    {
    case WB_BUS_SYSTEM:
      return "system";
    case WB_BUS_SESSION:
      return "session";
    case WB_BUS_NONE:
      return "none";
    }
  g_return_val_if_reached (NULL);
}

gboolean
wb_bus_type_from_string (const char *name, WbBusType *out_bus)
{
  static const WbBusType all[] = { WB_BUS_SYSTEM, WB_BUS_SESSION, WB_BUS_NONE };

  for (guint i = 0; i < G_N_ELEMENTS (all); i++)
    if (g_strcmp0 (name, wb_bus_type_to_string (all[i])) == 0)
      {
        *out_bus = all[i];
        return TRUE;
      }
  return FALSE;
}

/* ---- typed key readers: absent keys keep the default ------------------- */

/* Messages quote the file's bytes (ours and GKeyFile's: "'12\xff' is not
 * a whole number"), and go to the journal and into Reload()'s D-Bus reply:
 * made valid UTF-8 without controls, like any other text from outside. */
static gboolean set_config_error (GError **error, gint code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static gboolean
set_config_error (GError **error, gint code, const char *format, ...)
{
  g_autofree char *raw = NULL;
  g_autofree char *safe = NULL;
  va_list args;

  va_start (args, format);
  raw = g_strdup_vprintf (format, args);
  va_end (args);
  safe = wb_text_sanitize (raw, -1, CONFIG_ERROR_MAX_BYTES);
  g_set_error_literal (error, WB_CONFIG_ERROR, code, safe);
  return FALSE;
}

static gboolean
invalid_value (GError **error, const char *source, const char *group, const char *key,
               const char *why)
{
  return set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE, "%s: [%s] %s: %s", source, group,
                           key, why);
}

static gboolean
read_string (GKeyFile *key_file, const char *source, const char *group, const char *key,
             char **value, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *text = NULL;

  if (!g_key_file_has_key (key_file, group, key, NULL))
    return TRUE;
  text = g_key_file_get_string (key_file, group, key, &local_error);
  if (text == NULL)
    return invalid_value (error, source, group, key, local_error->message);
  g_strstrip (text);
  g_free (*value);
  *value = text[0] != '\0' ? g_steal_pointer (&text) : NULL;
  return TRUE;
}

static gboolean
read_bool (GKeyFile *key_file, const char *source, const char *group, const char *key,
           gboolean *value, GError **error)
{
  g_autofree char *text = NULL;

  if (!g_key_file_has_key (key_file, group, key, NULL))
    return TRUE;
  text = g_key_file_get_value (key_file, group, key, NULL);
  g_strstrip (text);
  if (g_strcmp0 (text, "true") == 0)
    *value = TRUE;
  else if (g_strcmp0 (text, "false") == 0)
    *value = FALSE;
  else
    {
      g_autofree char *why = g_strdup_printf ("'%s' is neither true nor false", text);

      return invalid_value (error, source, group, key, why);
    }
  return TRUE;
}

static gboolean
read_uint64 (GKeyFile *key_file, const char *source, const char *group, const char *key,
             guint64 min, guint64 max, guint64 *value, GError **error)
{
  g_autofree char *text = NULL;
  g_autofree char *why = NULL;
  guint64 parsed;

  if (!g_key_file_has_key (key_file, group, key, NULL))
    return TRUE;
  text = g_key_file_get_value (key_file, group, key, NULL);
  g_strstrip (text);
  if (!g_ascii_string_to_unsigned (text, 10, min, max, &parsed, NULL))
    {
      why = g_strdup_printf ("'%s' is not a whole number from %" G_GUINT64_FORMAT
                             " to %" G_GUINT64_FORMAT,
                             text, min, max);
      return invalid_value (error, source, group, key, why);
    }
  *value = parsed;
  return TRUE;
}

static gboolean
read_uint (GKeyFile *key_file, const char *source, const char *group, const char *key, guint min,
           guint max, guint *value, GError **error)
{
  guint64 wide = *value;

  if (!read_uint64 (key_file, source, group, key, min, max, &wide, error))
    return FALSE;
  *value = (guint)wide;
  return TRUE;
}

static gboolean
read_size (GKeyFile *key_file, const char *source, const char *group, const char *key, guint64 min,
           guint64 max, gsize *value, GError **error)
{
  guint64 wide = *value;

  if (!read_uint64 (key_file, source, group, key, min, max, &wide, error))
    return FALSE;
  *value = (gsize)wide;
  return TRUE;
}

/* Seconds, fractions allowed ("0.25"), stored as milliseconds. */
static gboolean
read_seconds (GKeyFile *key_file, const char *source, const char *group, const char *key,
              double min_seconds, guint *value_ms, GError **error)
{
  g_autofree char *text = NULL;
  g_autofree char *why = NULL;
  char *end = NULL;
  double seconds;

  if (!g_key_file_has_key (key_file, group, key, NULL))
    return TRUE;
  text = g_key_file_get_value (key_file, group, key, NULL);
  g_strstrip (text);
  errno = 0;
  seconds = g_ascii_strtod (text, &end);
  if (text[0] == '\0' || *end != '\0' || errno != 0 || !isfinite (seconds) || seconds < min_seconds
      || seconds > MAX_SECONDS_SETTING)
    {
      why = g_strdup_printf ("'%s' is not a number of seconds from %g to %g", text, min_seconds,
                             MAX_SECONDS_SETTING);
      return invalid_value (error, source, group, key, why);
    }
  *value_ms = (guint)llround (seconds * 1000.0);
  return TRUE;
}

/* "localhost" or a loopback address: ws:// to it never leaves the machine. */
static gboolean
host_is_loopback (const char *host)
{
  g_autoptr (GInetAddress) address = NULL;

  if (g_ascii_strcasecmp (host, "localhost") == 0 || g_ascii_strcasecmp (host, "localhost.") == 0)
    return TRUE;
  address = g_inet_address_new_from_string (host);
  return address != NULL && g_inet_address_get_is_loopback (address);
}

/* @allow_insecure: [Upstream] AllowInsecure, which permits ws:// to a host
 * that is not loopback (the key then travels in clear text). */
static gboolean
validate_url (const char *url, gboolean allow_insecure, const char *source, GError **error)
{
  g_autoptr (GUri) uri = NULL;
  g_autoptr (GError) local_error = NULL;
  const char *scheme;
  const char *host;

  uri = g_uri_parse (url, G_URI_FLAGS_NONE, &local_error);
  if (uri == NULL)
    return invalid_value (error, source, "Upstream", "URL", local_error->message);
  scheme = g_uri_get_scheme (uri);
  host = g_uri_get_host (uri);
  if (g_ascii_strcasecmp (scheme, "ws") != 0 && g_ascii_strcasecmp (scheme, "wss") != 0)
    return invalid_value (error, source, "Upstream", "URL", "the scheme must be ws or wss");
  if (host == NULL || host[0] == '\0')
    return invalid_value (error, source, "Upstream", "URL", "the URL has no host");
  /* It would be sent with every handshake and shown in UpstreamURL. */
  if (g_uri_get_userinfo (uri) != NULL)
    return invalid_value (error, source, "Upstream", "URL",
                          "credentials in the URL (user:password@host) are not allowed; the API "
                          "key goes in APIKeyFile");
  /* The key is appended as a query; after a fragment it would never be sent. */
  if (g_uri_get_fragment (uri) != NULL)
    return invalid_value (error, source, "Upstream", "URL",
                          "a fragment (#...) is never sent to the server; remove it");
  if (g_uri_get_query (uri) != NULL && strstr (g_uri_get_query (uri), "api_key") != NULL)
    return invalid_value (error, source, "Upstream", "URL",
                          "put the API key in APIKeyFile, never in the URL");
  if (g_ascii_strcasecmp (scheme, "ws") == 0 && !host_is_loopback (host))
    {
      if (!allow_insecure)
        return invalid_value (error, source, "Upstream", "URL",
                              "ws:// would send the API key in clear text to a host that is not "
                              "this machine; use wss://, or set [Upstream] AllowInsecure=true");
      g_warning ("%s: [Upstream] AllowInsecure=true: the API key goes to %s in clear text (ws://)",
                 source, host);
    }
  return TRUE;
}

static gboolean
validate_socket_path (const char *path, const char *source, GError **error)
{
  /* sockaddr_un.sun_path is 108 bytes including the terminator. */
  if (!g_path_is_absolute (path) || strlen (path) >= 108)
    return invalid_value (error, source, "Socket", "Path",
                          "must be an absolute path shorter than 108 bytes");
  return TRUE;
}

gboolean
wb_config_parse_listen (const char *text, char **out_host, guint16 *out_port, GError **error)
{
  g_autoptr (GInetAddress) address = NULL;
  g_autofree char *host = NULL;
  const char *colon;
  guint64 port;

  g_return_val_if_fail (text != NULL, FALSE);

  if (text[0] == '[')
    {
      const char *close = strchr (text, ']');

      if (close == NULL || close[1] != ':')
        return set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE, "'%s' is not [IPV6]:PORT",
                                 text);
      host = g_strndup (text + 1, close - text - 1);
      colon = close + 1;
    }
  else
    {
      colon = strrchr (text, ':');
      if (colon == NULL)
        return set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE,
                                 "'%s' has no port (ADDRESS:PORT, e.g. 127.0.0.1:8765)", text);
      host = g_strndup (text, colon - text);
      /* "::1:8765" could be an address without a port. */
      if (strchr (host, ':') != NULL)
        return set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE,
                                 "'%s': write an IPv6 address in brackets, [::1]:PORT", text);
    }
  if (!g_ascii_string_to_unsigned (colon + 1, 10, 1, G_MAXUINT16, &port, NULL))
    return set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE,
                             "'%s' is not a port from 1 to 65535", colon + 1);
  address = g_inet_address_new_from_string (host);
  if (address == NULL)
    return set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE,
                             "'%s' is not an IP address (a name could resolve anywhere; write "
                             "127.0.0.1 or [::1])",
                             host);
  /* Every local user and every web page can reach a loopback port, and
   * nobody else: anything wider would hand the bridge to the network. */
  if (!g_inet_address_get_is_loopback (address))
    return set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE,
                             "%s is not a loopback address: the local endpoint listens only on "
                             "127.0.0.0/8 or ::1",
                             host);
  if (out_host != NULL)
    *out_host = g_inet_address_to_string (address);
  if (out_port != NULL)
    *out_port = (guint16)port;
  return TRUE;
}

/* An origin as browsers send it: scheme://host[:port], nothing more, or
 * "null" (a sandboxed page or a file: page; listing it lets all of them in). */
static gboolean
validate_origin (const char *origin, const char *source, GError **error)
{
  g_autoptr (GUri) uri = NULL;
  g_autofree char *why = NULL;

  if (g_str_equal (origin, "null"))
    return TRUE;
  uri = g_uri_parse (origin, G_URI_FLAGS_NONE, NULL);
  if (uri == NULL || g_uri_get_host (uri) == NULL || g_uri_get_host (uri)[0] == '\0'
      || g_uri_get_userinfo (uri) != NULL || g_uri_get_query (uri) != NULL
      || g_uri_get_fragment (uri) != NULL || g_uri_get_path (uri)[0] != '\0')
    {
      why = g_strdup_printf ("'%s' is not an origin (scheme://host or scheme://host:port, as "
                             "browsers send it)",
                             origin);
      return invalid_value (error, source, "WebSocket", "AllowedOrigins", why);
    }
  return TRUE;
}

static gboolean
validate_websocket (WbConfig *config, const char *source, GError **error)
{
  g_auto (GStrv) words = NULL;
  g_autoptr (GPtrArray) origins = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) local_error = NULL;

  if (config->ws_listen != NULL
      && !wb_config_parse_listen (config->ws_listen, NULL, NULL, &local_error))
    return invalid_value (error, source, "WebSocket", "Listen", local_error->message);
  if (config->ws_local_key_file == NULL || !g_path_is_absolute (config->ws_local_key_file))
    return invalid_value (error, source, "WebSocket", "LocalKeyFile", "must be an absolute path");
  /* Separated by spaces, commas or semicolons. */
  words = g_regex_split_simple (
      "[\\s,;]+", config->ws_allowed_origins != NULL ? config->ws_allowed_origins : "",
      G_REGEX_DEFAULT, G_REGEX_MATCH_DEFAULT);
  for (guint i = 0; words[i] != NULL; i++)
    {
      if (words[i][0] == '\0')
        continue;
      if (!validate_origin (words[i], source, error))
        return FALSE;
      g_ptr_array_add (origins, g_ascii_strdown (words[i], -1));
    }
  g_ptr_array_add (origins, NULL);
  g_strfreev (config->ws_origins);
  config->ws_origins = (char **)g_ptr_array_free (g_steal_pointer (&origins), FALSE);
  return TRUE;
}

/* ---- the keys ------------------------------------------------------------ */

typedef enum
{
  KEY_STRING,  /* char *: stripped, empty = NULL */
  KEY_SECONDS, /* guint milliseconds; the file says seconds, fractions allowed */
  KEY_UINT,    /* guint */
  KEY_SIZE,    /* gsize */
  KEY_BOOL,    /* gboolean: true or false */
} KeyKind;

typedef struct
{
  const char *group;
  const char *key;
  KeyKind kind;
  double min_seconds; /* KEY_SECONDS (at most MAX_SECONDS_SETTING) */
  guint64 min;        /* KEY_UINT, KEY_SIZE: inclusive */
  guint64 max;
  gsize offset; /* of the field in WbConfig */
} KeySpec;

#define STRING_KEY(g, k, field)                                                                    \
  {                                                                                                \
    .group = (g), .key = (k), .kind = KEY_STRING, .offset = G_STRUCT_OFFSET (WbConfig, field)      \
  }
#define SECONDS_KEY(g, k, min_s, field)                                                            \
  {                                                                                                \
    .group = (g), .key = (k), .kind = KEY_SECONDS, .min_seconds = (min_s),                         \
    .offset = G_STRUCT_OFFSET (WbConfig, field)                                                    \
  }
#define UINT_KEY(g, k, lo, hi, field)                                                              \
  {                                                                                                \
    .group = (g), .key = (k), .kind = KEY_UINT, .min = (lo), .max = (hi),                          \
    .offset = G_STRUCT_OFFSET (WbConfig, field)                                                    \
  }
#define BOOL_KEY(g, k, field)                                                                      \
  {                                                                                                \
    .group = (g), .key = (k), .kind = KEY_BOOL, .offset = G_STRUCT_OFFSET (WbConfig, field)        \
  }
#define SIZE_KEY(g, k, lo, hi, field)                                                              \
  {                                                                                                \
    .group = (g), .key = (k), .kind = KEY_SIZE, .min = (lo), .max = (hi),                          \
    .offset = G_STRUCT_OFFSET (WbConfig, field)                                                    \
  }

/* Every key of the file, in the order they are read (the first bad one is
 * reported); anything else in the file draws an "unknown key" warning. */
static const KeySpec config_keys[] = {
  STRING_KEY ("Upstream", "URL", url),
  BOOL_KEY ("Upstream", "AllowInsecure", allow_insecure),
  STRING_KEY ("Upstream", "APIKeyFile", api_key_file),
  STRING_KEY ("Upstream", "CAFile", ca_file),
  SECONDS_KEY ("Upstream", "PingInterval", 0.05, ping_interval_ms),
  SECONDS_KEY ("Upstream", "PongTimeout", 0.05, pong_timeout_ms),
  SECONDS_KEY ("Upstream", "IdleTimeout", 0.05, idle_timeout_ms),
  SECONDS_KEY ("Upstream", "BackoffInitial", 0.01, backoff_initial_ms),
  SECONDS_KEY ("Upstream", "BackoffMax", 0.01, backoff_max_ms),
  SECONDS_KEY ("Upstream", "GoingAwayWait", 0.01, going_away_wait_ms),
  SECONDS_KEY ("Upstream", "RateLimitedWait", 0.01, rate_limited_wait_ms),
  UINT_KEY ("Upstream", "MessagesPerSecond", 1, MAX_MESSAGES_PER_SECOND, messages_per_second),
  STRING_KEY ("Socket", "Path", socket_path),
  UINT_KEY ("Limits", "MaxClients", 1, MAX_CLIENTS_LIMIT, max_clients),
  SIZE_KEY ("Limits", "ClientQueueBytes", MIN_QUEUE_BYTES, MAX_QUEUE_BYTES_LIMIT,
            client_queue_bytes),
  SIZE_KEY ("Limits", "MaxLineBytes", MIN_LINE_BYTES, MAX_LINE_BYTES_LIMIT, max_line_bytes),
  UINT_KEY ("Limits", "ChatPerMinute", 0, MAX_RATE_LIMIT, chat_per_minute),
  UINT_KEY ("Limits", "ReactionsPerMinute", 0, MAX_RATE_LIMIT, reactions_per_minute),
  UINT_KEY ("Limits", "SendQueueSize", 0, MAX_SEND_QUEUE_SIZE, send_queue_size),
  SECONDS_KEY ("Limits", "SendQueueTimeout", 0.01, send_queue_timeout_ms),
  UINT_KEY ("Limits", "MaxSubscriptions", 1, MAX_SUBSCRIPTIONS_LIMIT, max_subscriptions),
  UINT_KEY ("Limits", "MaxClientsPerUser", 1, MAX_CLIENTS_LIMIT, max_clients_per_user),
  UINT_KEY ("Limits", "MaxSubscriptionsPerUser", 1, MAX_SUBSCRIPTIONS_LIMIT,
            max_subscriptions_per_user),
  SIZE_KEY ("Limits", "MaxQueuedBytesPerUser", MIN_QUEUE_BYTES, MAX_QUEUE_BYTES_LIMIT,
            max_queued_bytes_per_user),
  UINT_KEY ("Limits", "MaxStreams", 1, MAX_SUBSCRIPTIONS_LIMIT, max_streams),
  SECONDS_KEY ("Limits", "SlowClientTimeout", 0.01, slow_client_timeout_ms),
  UINT_KEY ("Limits", "HistoryPerStream", 0, WB_STREAM_HISTORY_MAX_EVENTS, history_per_stream),
  SIZE_KEY ("Limits", "HistoryBytesPerStream", WB_STREAM_HISTORY_MIN_BYTES,
            WB_STREAM_HISTORY_MAX_BYTES, history_bytes_per_stream),
  STRING_KEY ("Access", "SendGroup", send_group),
  STRING_KEY ("WebSocket", "Listen", ws_listen),
  STRING_KEY ("WebSocket", "AllowedOrigins", ws_allowed_origins),
  STRING_KEY ("WebSocket", "LocalKeyFile", ws_local_key_file),
  UINT_KEY ("WebSocket", "MessagesPerSecond", 1, MAX_WS_MESSAGES_PER_SECOND,
            ws_messages_per_second),
};

#undef STRING_KEY
#undef SECONDS_KEY
#undef UINT_KEY
#undef SIZE_KEY
#undef BOOL_KEY

static gboolean
is_known_key (const char *group, const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (strcmp (config_keys[i].group, group) == 0 && strcmp (config_keys[i].key, key) == 0)
      return TRUE;
  return FALSE;
}

/* A misspelt key would otherwise silently keep its default. */
static void
warn_unknown_keys (GKeyFile *key_file, const char *source)
{
  g_auto (GStrv) groups = g_key_file_get_groups (key_file, NULL);

  for (guint g = 0; groups[g] != NULL; g++)
    {
      g_auto (GStrv) keys = g_key_file_get_keys (key_file, groups[g], NULL, NULL);

      for (guint k = 0; keys != NULL && keys[k] != NULL; k++)
        if (!is_known_key (groups[g], keys[k]))
          g_warning ("%s: unknown key [%s] %s, ignored", source, groups[g], keys[k]);
    }
}

static gboolean
read_key (GKeyFile *key_file, const char *source, const KeySpec *spec, WbConfig *config,
          GError **error)
{
  gpointer field = G_STRUCT_MEMBER_P (config, spec->offset);

  switch (spec->kind)
    {
    case KEY_STRING:
      return read_string (key_file, source, spec->group, spec->key, field, error);
    case KEY_SECONDS:
      return read_seconds (key_file, source, spec->group, spec->key, spec->min_seconds, field,
                           error);
    case KEY_UINT:
      return read_uint (key_file, source, spec->group, spec->key, (guint)spec->min,
                        (guint)spec->max, field, error);
    case KEY_SIZE:
      return read_size (key_file, source, spec->group, spec->key, spec->min, spec->max, field,
                        error);
    case KEY_BOOL:
      return read_bool (key_file, source, spec->group, spec->key, field, error);
    }
  g_return_val_if_reached (FALSE);
}

gboolean
wb_config_load_key_file (WbConfig *config, GKeyFile *key_file, const char *source, GError **error)
{
  const char *up = "Upstream";

  g_return_val_if_fail (config != NULL && key_file != NULL, FALSE);
  if (source == NULL)
    source = "configuration";
  warn_unknown_keys (key_file, source);

  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (!read_key (key_file, source, &config_keys[i], config, error))
      return FALSE;

  if (config->url == NULL)
    return invalid_value (error, source, up, "URL", "must not be empty");
  if (config->socket_path == NULL)
    return invalid_value (error, source, "Socket", "Path", "must not be empty");
  if (!validate_url (config->url, config->allow_insecure, source, error)
      || !validate_socket_path (config->socket_path, source, error)
      || !validate_websocket (config, source, error))
    return FALSE;
  if (config->pong_timeout_ms >= config->ping_interval_ms)
    return invalid_value (error, source, up, "PongTimeout", "must be shorter than PingInterval");
  if (config->backoff_max_ms < config->backoff_initial_ms)
    return invalid_value (error, source, up, "BackoffMax", "must not be below BackoffInitial");
  return TRUE;
}

static gboolean
apply_overrides (WbConfig *config, const WbConfigOverrides *overrides, GError **error)
{
  const char *source = "command line";

  if (overrides->url != NULL)
    {
      g_free (config->url);
      config->url = g_strdup (overrides->url);
      if (!validate_url (config->url, config->allow_insecure, source, error))
        return FALSE;
    }
  if (overrides->api_key_file != NULL)
    {
      g_free (config->api_key_file);
      config->api_key_file = g_strdup (overrides->api_key_file);
    }
  if (overrides->socket_path != NULL)
    {
      g_free (config->socket_path);
      config->socket_path = g_strdup (overrides->socket_path);
      if (!validate_socket_path (config->socket_path, source, error))
        return FALSE;
    }
  if (overrides->bus >= 0)
    config->bus = (WbBusType)overrides->bus;
  return TRUE;
}

WbConfig *
wb_config_load (const WbConfigOverrides *overrides, gboolean user_mode, GError **error)
{
  static const WbConfigOverrides none = { .bus = -1 };
  g_autoptr (WbConfig) config = wb_config_new_defaults (user_mode);
  g_autoptr (GKeyFile) key_file = g_key_file_new ();
  g_autoptr (GError) local_error = NULL;
  g_autofree char *path = NULL;
  gboolean explicit_file;

  if (overrides == NULL)
    overrides = &none;
  explicit_file = overrides->config_file != NULL;
  path = explicit_file ? g_strdup (overrides->config_file) : wb_config_default_path (user_mode);

  if (g_key_file_load_from_file (key_file, path, G_KEY_FILE_NONE, &local_error))
    {
      if (!wb_config_load_key_file (config, key_file, path, error))
        return NULL;
      config->loaded_from = g_steal_pointer (&path);
    }
  else if (explicit_file || !g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    {
      set_config_error (error, WB_CONFIG_ERROR_INVALID_VALUE, "%s: %s", path, local_error->message);
      return NULL;
    }

  if (!apply_overrides (config, overrides, error))
    return NULL;
  return g_steal_pointer (&config);
}

/* ---- the API key --------------------------------------------------------- */

char *
wb_config_api_key_path (const WbConfig *config)
{
  const char *credentials = g_getenv ("CREDENTIALS_DIRECTORY");

  g_return_val_if_fail (config != NULL, NULL);
  /* A credential the service manager passed is deliberate, and the service
   * user usually cannot read the root-only key file it was loaded from. */
  if (credentials != NULL && credentials[0] != '\0')
    {
      g_autofree char *path = g_build_filename (credentials, CREDENTIAL_NAME, NULL);

      if (g_file_test (path, G_FILE_TEST_EXISTS))
        return g_steal_pointer (&path);
    }
  if (config->api_key_file != NULL && g_file_test (config->api_key_file, G_FILE_TEST_EXISTS))
    return g_strdup (config->api_key_file);
  if (g_getenv (API_KEY_ENV) != NULL)
    return NULL;
  /* Nothing exists yet: watch the configured file so writing it is noticed. */
  return g_strdup (config->api_key_file);
}

void
wb_secret_wipe (char *secret)
{
  if (secret != NULL)
    explicit_bzero (secret, strlen (secret));
}

void
wb_secret_free (char *secret)
{
  wb_secret_wipe (secret);
  g_free (secret);
}

void
wb_clear_secret (char **secret)
{
  g_return_if_fail (secret != NULL);
  wb_secret_free (g_steal_pointer (secret));
}

static gboolean
key_is_printable (const char *key)
{
  for (const char *p = key; *p != '\0'; p++)
    if (!g_ascii_isgraph (*p))
      return FALSE;
  return TRUE;
}

static char *
read_key_file (const char *path, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autoptr (WbSecret) contents = NULL;
  gsize length = 0;
  struct stat st;

  if (!g_file_get_contents (path, &contents, &length, &local_error))
    {
      g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_API_KEY, "API key file %s: %s", path,
                   local_error->message);
      return NULL;
    }
  if (stat (path, &st) == 0 && (st.st_mode & S_IROTH) != 0)
    g_warning ("API key file %s is readable by every user; chmod o-r it", path);
  if (length > MAX_API_KEY_BYTES)
    {
      g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_API_KEY,
                   "API key file %s: longer than %d bytes", path, MAX_API_KEY_BYTES);
      return NULL;
    }
  g_strstrip (contents);
  return g_steal_pointer (&contents);
}

char *
wb_config_read_api_key (const WbConfig *config, char **out_source, GError **error)
{
  g_autofree char *path = NULL;
  g_autoptr (WbSecret) key = NULL;
  g_autofree char *source = NULL;

  g_return_val_if_fail (config != NULL, NULL);

  path = wb_config_api_key_path (config);
  if (path != NULL && g_file_test (path, G_FILE_TEST_EXISTS))
    {
      key = read_key_file (path, error);
      if (key == NULL)
        return NULL;
      source = g_strdup (path);
    }
  else if (g_getenv (API_KEY_ENV) != NULL)
    {
      key = g_strstrip (g_strdup (g_getenv (API_KEY_ENV)));
      source = g_strdup ("$" API_KEY_ENV);
    }
  else
    {
      g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_NO_API_KEY,
                   "no API key: write it to %s, pass the systemd credential '%s', or set $%s",
                   config->api_key_file != NULL ? config->api_key_file : "[Upstream] APIKeyFile",
                   CREDENTIAL_NAME, API_KEY_ENV);
      return NULL;
    }

  if (key[0] == '\0' || !key_is_printable (key))
    {
      g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_API_KEY,
                   "API key from %s is empty or contains spaces or control characters", source);
      return NULL;
    }
  if (out_source != NULL)
    *out_source = g_steal_pointer (&source);
  return g_steal_pointer (&key);
}

char *
wb_config_build_upstream_url (const WbConfig *config, const char *api_key)
{
  g_autoptr (WbSecret) escaped = NULL;
  const char *separator;

  g_return_val_if_fail (config != NULL && config->url != NULL && api_key != NULL, NULL);
  escaped = g_uri_escape_string (api_key, NULL, FALSE);
  separator = strchr (config->url, '?') != NULL ? "&" : "?";
  return g_strconcat (config->url, separator, "api_key=", escaped, NULL);
}

char *
wb_config_redact_url (const char *url)
{
  GString *redacted;
  const char *p;
  const char *authority;

  g_return_val_if_fail (url != NULL, NULL);
  redacted = g_string_new (NULL);
  p = url;
  /* Credentials in the authority (user:password@host): validation refuses
   * them, this keeps them out of logs and status even so. */
  authority = strstr (url, "://");
  if (authority != NULL)
    {
      gsize authority_length;
      const char *at;

      authority += strlen ("://");
      authority_length = strcspn (authority, "/?#");
      at = g_strrstr_len (authority, (gssize)authority_length, "@");
      if (at != NULL)
        {
          g_string_append_len (redacted, url, authority - url);
          g_string_append (redacted, REDACTED "@");
          p = at + 1;
        }
    }
  while (*p != '\0')
    {
      const char *found = strstr (p, "api_key=");
      const char *end;

      if (found == NULL)
        {
          g_string_append (redacted, p);
          break;
        }
      end = found + strlen ("api_key=");
      g_string_append_len (redacted, p, end - p);
      g_string_append (redacted, REDACTED);
      p = end + strcspn (end, "&#");
    }
  return g_string_free (redacted, FALSE);
}
