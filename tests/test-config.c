/* SPDX-License-Identifier: MIT */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"

static WbConfig *
load_text (const char *text, GError **error)
{
  g_autoptr (GKeyFile) key_file = g_key_file_new ();
  g_autoptr (WbConfig) config = wb_config_new_defaults (FALSE);

  g_assert_true (g_key_file_load_from_data (key_file, text, -1, G_KEY_FILE_NONE, NULL));
  if (!wb_config_load_key_file (config, key_file, "test.conf", error))
    return NULL;
  return g_steal_pointer (&config);
}

/* The system unit runs as the wave-bridge user with --bus=system: that must
 * read /etc and serve /run, not the wave-bridge user's XDG directories. */
static void
test_mode (void)
{
  const uid_t service_user = 998;
  g_autofree char *service_path = NULL;
  g_autofree char *system_path = wb_config_default_path (FALSE);
  g_autoptr (WbConfig) system = wb_config_new_defaults (FALSE);
  g_autoptr (WbConfig) service = NULL;

  g_assert_false (wb_config_is_user_mode (0, -1));
  g_assert_true (wb_config_is_user_mode (service_user, -1));
  g_assert_false (wb_config_is_user_mode (service_user, WB_BUS_SYSTEM));
  g_assert_true (wb_config_is_user_mode (0, WB_BUS_SESSION));
  /* --bus=none says nothing about the mode. */
  g_assert_true (wb_config_is_user_mode (service_user, WB_BUS_NONE));
  g_assert_false (wb_config_is_user_mode (0, WB_BUS_NONE));

  service = wb_config_new_defaults (wb_config_is_user_mode (service_user, WB_BUS_SYSTEM));
  service_path = wb_config_default_path (service->user_mode);
  g_assert_cmpstr (service_path, ==, system_path);
  g_assert_false (g_str_has_prefix (service_path, g_get_user_config_dir ()));
  g_assert_cmpstr (service->socket_path, ==, "/run/wave-bridge/wave.sock");
  g_assert_cmpstr (service->api_key_file, ==, system->api_key_file);
  g_assert_cmpint (service->bus, ==, WB_BUS_SYSTEM);
}

static void
test_defaults (void)
{
  g_autoptr (WbConfig) system = wb_config_new_defaults (FALSE);
  g_autoptr (WbConfig) user = wb_config_new_defaults (TRUE);

  g_assert_cmpstr (system->url, ==, "wss://ws.wave.inc/v1/streams");
  g_assert_cmpuint (system->ping_interval_ms, ==, 30000);
  g_assert_cmpuint (system->pong_timeout_ms, ==, 5000);
  g_assert_cmpuint (system->idle_timeout_ms, ==, 60000);
  g_assert_cmpuint (system->backoff_initial_ms, ==, 1000);
  g_assert_cmpuint (system->backoff_max_ms, ==, 30000);
  g_assert_cmpuint (system->going_away_wait_ms, ==, 5000);
  g_assert_cmpuint (system->rate_limited_wait_ms, ==, 60000);
  g_assert_cmpuint (system->messages_per_second, ==, 20);
  g_assert_cmpstr (system->socket_path, ==, "/run/wave-bridge/wave.sock");
  g_assert_cmpuint (system->max_clients, ==, 1024);
  g_assert_cmpuint (system->client_queue_bytes, ==, 1048576);
  g_assert_cmpuint (system->max_line_bytes, ==, 65536);
  g_assert_cmpuint (system->chat_per_minute, ==, 20);
  g_assert_cmpuint (system->reactions_per_minute, ==, 120);
  g_assert_cmpuint (system->send_queue_size, ==, 256);
  g_assert_cmpuint (system->send_queue_timeout_ms, ==, 30000);
  g_assert_cmpuint (system->history_per_stream, ==, 50);
  g_assert_cmpuint (system->history_bytes_per_stream, ==, 65536);
  g_assert_null (system->send_group);
  g_assert_cmpint (system->bus, ==, WB_BUS_SYSTEM);
  g_assert_true (g_str_has_suffix (system->api_key_file, "/wave-bridge/api-key"));

  g_assert_cmpint (user->bus, ==, WB_BUS_SESSION);
  g_assert_true (g_str_has_prefix (user->socket_path, g_get_user_runtime_dir ()));
  g_assert_true (g_str_has_suffix (user->socket_path, "/wave-bridge/wave.sock"));
  g_assert_true (g_str_has_prefix (user->api_key_file, g_get_user_config_dir ()));
  g_assert_true (g_str_has_suffix (user->api_key_file, "/wave-bridge/api-key"));
}

static void
test_every_key (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbConfig) config = load_text ("[Upstream]\n"
                                           "URL=ws://127.0.0.1:9/v1/streams\n"
                                           "AllowInsecure=true\n"
                                           "APIKeyFile=/tmp/key\n"
                                           "CAFile=/tmp/ca.pem\n"
                                           "PingInterval=2.5\n"
                                           "PongTimeout=0.5\n"
                                           "IdleTimeout=3\n"
                                           "BackoffInitial=0.1\n"
                                           "BackoffMax=0.8\n"
                                           "GoingAwayWait=0.3\n"
                                           "RateLimitedWait=0.6\n"
                                           "MessagesPerSecond=7\n"
                                           "[Socket]\nPath=/tmp/x/wave.sock\n"
                                           "[Limits]\nMaxClients=5\nClientQueueBytes=8192\n"
                                           "MaxLineBytes=2048\nChatPerMinute=3\n"
                                           "ReactionsPerMinute=4\nSendQueueSize=7\n"
                                           "SendQueueTimeout=1.5\nMaxSubscriptions=9\n"
                                           "SlowClientTimeout=2\n"
                                           "HistoryPerStream=0\nHistoryBytesPerStream=4096\n"
                                           "[Access]\nSendGroup=wave-chat\n"
                                           "[WebSocket]\nListen=[::1]:8765\n"
                                           "AllowedOrigins=HTTP://A.example:8080, "
                                           "https://b.example;null\n"
                                           "LocalKeyFile=/tmp/lk\nMessagesPerSecond=3\n",
                                           &error);
  const char *const origins[] = { "http://a.example:8080", "https://b.example", "null", NULL };

  g_assert_no_error (error);
  g_assert_cmpstr (config->url, ==, "ws://127.0.0.1:9/v1/streams");
  g_assert_true (config->allow_insecure);
  g_assert_cmpstr (config->api_key_file, ==, "/tmp/key");
  g_assert_cmpstr (config->ca_file, ==, "/tmp/ca.pem");
  g_assert_cmpuint (config->ping_interval_ms, ==, 2500);
  g_assert_cmpuint (config->pong_timeout_ms, ==, 500);
  g_assert_cmpuint (config->idle_timeout_ms, ==, 3000);
  g_assert_cmpuint (config->backoff_initial_ms, ==, 100);
  g_assert_cmpuint (config->backoff_max_ms, ==, 800);
  g_assert_cmpuint (config->going_away_wait_ms, ==, 300);
  g_assert_cmpuint (config->rate_limited_wait_ms, ==, 600);
  g_assert_cmpuint (config->messages_per_second, ==, 7);
  g_assert_cmpstr (config->socket_path, ==, "/tmp/x/wave.sock");
  g_assert_cmpuint (config->max_clients, ==, 5);
  g_assert_cmpuint (config->client_queue_bytes, ==, 8192);
  g_assert_cmpuint (config->max_line_bytes, ==, 2048);
  g_assert_cmpuint (config->chat_per_minute, ==, 3);
  g_assert_cmpuint (config->reactions_per_minute, ==, 4);
  g_assert_cmpuint (config->send_queue_size, ==, 7);
  g_assert_cmpuint (config->send_queue_timeout_ms, ==, 1500);
  g_assert_cmpuint (config->max_subscriptions, ==, 9);
  g_assert_cmpuint (config->slow_client_timeout_ms, ==, 2000);
  g_assert_cmpuint (config->history_per_stream, ==, 0);
  g_assert_cmpuint (config->history_bytes_per_stream, ==, 4096);
  g_assert_cmpstr (config->send_group, ==, "wave-chat");
  g_assert_cmpstr (config->ws_listen, ==, "[::1]:8765");
  g_assert_cmpstrv (config->ws_origins, origins);
  g_assert_cmpstr (config->ws_local_key_file, ==, "/tmp/lk");
  g_assert_cmpuint (config->ws_messages_per_second, ==, 3);
}

/* [WebSocket] Listen: loopback IP literals only, with a real port. */
static void
test_websocket_listen (void)
{
  static const struct
  {
    const char *text;
    const char *host; /* NULL: refused */
    guint16 port;
  } cases[] = {
    { "127.0.0.1:8765", "127.0.0.1", 8765 },
    { "127.1.2.3:1", "127.1.2.3", 1 },
    { "[::1]:65535", "::1", 65535 },
    { "0.0.0.0:8765", NULL, 0 },
    { "[::]:8765", NULL, 0 },
    { "192.168.1.2:8765", NULL, 0 },
    { "localhost:8765", NULL, 0 },
    { "[::ffff:127.0.0.1]:8765", NULL, 0 },
    { "127.0.0.1", NULL, 0 },
    { "127.0.0.1:0", NULL, 0 },
    { "127.0.0.1:65536", NULL, 0 },
    { "127.0.0.1:80x", NULL, 0 },
    { "[::1:8765", NULL, 0 },
    { "::1:8765", NULL, 0 },
    { ":8765", NULL, 0 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *host = NULL;
      guint16 port = 0;
      gboolean ok = wb_config_parse_listen (cases[i].text, &host, &port, &error);

      g_test_message ("%s", cases[i].text);
      if (cases[i].host == NULL)
        {
          g_assert_false (ok);
          g_assert_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE);
          continue;
        }
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpstr (host, ==, cases[i].host);
      g_assert_cmpuint (port, ==, cases[i].port);
    }
}

/* data/wave-bridge.conf shows every key commented out with its default:
 * with the comment marks removed, each must be a key the daemon reads
 * (an unknown one warns, which fails the test) and leave the defaults be. */
static void
test_shipped_file (void)
{
  g_autofree char *path
      = g_build_filename (g_getenv ("WB_SOURCE_DIR"), "data", "wave-bridge.conf", NULL);
  g_autofree char *text = NULL;
  g_autoptr (GRegex) commented_key = g_regex_new ("^#([A-Za-z]+=)", G_REGEX_MULTILINE, 0, NULL);
  g_autofree char *uncommented = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (WbConfig) defaults = wb_config_new_defaults (FALSE);
  g_autoptr (WbConfig) config = NULL;

  g_assert_nonnull (g_getenv ("WB_SOURCE_DIR"));
  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  uncommented = g_regex_replace (commented_key, text, -1, 0, "\\1", 0, &error);
  g_assert_no_error (error);
  config = load_text (uncommented, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (config->url, ==, defaults->url);
  g_assert_false (config->allow_insecure);
  g_assert_null (config->ca_file);
  g_assert_cmpuint (config->ping_interval_ms, ==, defaults->ping_interval_ms);
  g_assert_cmpuint (config->pong_timeout_ms, ==, defaults->pong_timeout_ms);
  g_assert_cmpuint (config->idle_timeout_ms, ==, defaults->idle_timeout_ms);
  g_assert_cmpuint (config->backoff_initial_ms, ==, defaults->backoff_initial_ms);
  g_assert_cmpuint (config->backoff_max_ms, ==, defaults->backoff_max_ms);
  g_assert_cmpuint (config->going_away_wait_ms, ==, defaults->going_away_wait_ms);
  g_assert_cmpuint (config->rate_limited_wait_ms, ==, defaults->rate_limited_wait_ms);
  g_assert_cmpuint (config->messages_per_second, ==, defaults->messages_per_second);
  g_assert_cmpstr (config->socket_path, ==, defaults->socket_path);
  g_assert_cmpuint (config->max_clients, ==, defaults->max_clients);
  g_assert_cmpuint (config->client_queue_bytes, ==, defaults->client_queue_bytes);
  g_assert_cmpuint (config->max_line_bytes, ==, defaults->max_line_bytes);
  g_assert_cmpuint (config->chat_per_minute, ==, defaults->chat_per_minute);
  g_assert_cmpuint (config->reactions_per_minute, ==, defaults->reactions_per_minute);
  g_assert_cmpuint (config->send_queue_size, ==, defaults->send_queue_size);
  g_assert_cmpuint (config->send_queue_timeout_ms, ==, defaults->send_queue_timeout_ms);
  g_assert_cmpuint (config->max_subscriptions, ==, defaults->max_subscriptions);
  g_assert_cmpuint (config->slow_client_timeout_ms, ==, defaults->slow_client_timeout_ms);
  g_assert_null (config->send_group);
}

typedef struct
{
  const char *text;
  const char *expected_in_message;
} BadCase;

static void
test_bad_values (void)
{
  static const BadCase cases[] = {
    { "[Upstream]\nURL=http://example.com/\n", "[Upstream] URL: the scheme must be ws or wss" },
    { "[Upstream]\nURL=not a url\n", "[Upstream] URL" },
    { "[Upstream]\nURL=wss://h/v1?api_key=secret\n", "never in the URL" },
    { "[Upstream]\nURL=\n", "[Upstream] URL: must not be empty" },
    /* The key in clear text, by accident. */
    { "[Upstream]\nURL=ws://ws.wave.inc/v1/streams\n",
      "[Upstream] URL: ws:// would send the API key in clear text to a host that is not this "
      "machine; use wss://, or set [Upstream] AllowInsecure=true" },
    { "[Upstream]\nURL=ws://10.0.0.1/v1\nAllowInsecure=false\n", "AllowInsecure=true" },
    { "[Upstream]\nURL=ws://[::ffff:127.0.0.1]/v1\n", "AllowInsecure=true" },
    { "[Upstream]\nURL=ws://localhost.example/v1\n", "AllowInsecure=true" },
    { "[Upstream]\nURL=wss://user:secret@ws.wave.inc/v1\n",
      "[Upstream] URL: credentials in the URL (user:password@host) are not allowed" },
    { "[Upstream]\nURL=ws://token@127.0.0.1/v1\nAllowInsecure=true\n", "credentials in the URL" },
    { "[Upstream]\nURL=wss://@ws.wave.inc/v1\n", "credentials in the URL" },
    /* The file's bytes are quoted, made valid UTF-8 (U+FFFD) for the
     * journal and the D-Bus reply to Reload(). */
    { "[Limits]\nMaxClients=12\xff\n", "[Limits] MaxClients: " },
    { "[Limits]\nMaxClients=12\xff\n", "\xef\xbf\xbd" },
    { "[Limits]\nMaxClients=1\x1b[2J\n", "\xef\xbf\xbd" },
    /* The key is appended as a query: after a fragment it is never sent. */
    { "[Upstream]\nURL=wss://ws.wave.inc/v1/streams#live\n",
      "[Upstream] URL: a fragment (#...) is never sent to the server; remove it" },
    { "[Upstream]\nAllowInsecure=yes\n",
      "[Upstream] AllowInsecure: 'yes' is neither true nor false" },
    { "[Upstream]\nPingInterval=abc\n", "[Upstream] PingInterval: 'abc' is not a number" },
    { "[Upstream]\nPingInterval=-1\n", "[Upstream] PingInterval" },
    { "[Upstream]\nPingInterval=nan\n", "[Upstream] PingInterval" },
    { "[Upstream]\nPongTimeout=40\n", "must be shorter than PingInterval" },
    { "[Upstream]\nBackoffInitial=5\nBackoffMax=1\n", "must not be below BackoffInitial" },
    { "[Limits]\nMaxClients=0\n", "[Limits] MaxClients: '0' is not a whole number from 1" },
    { "[Upstream]\nMessagesPerSecond=0\n", "[Upstream] MessagesPerSecond" },
    { "[Limits]\nMaxClients=12x\n", "[Limits] MaxClients" },
    { "[Limits]\nMaxClients=-3\n", "[Limits] MaxClients" },
    { "[Limits]\nClientQueueBytes=99999999999999\n", "[Limits] ClientQueueBytes" },
    { "[Limits]\nMaxLineBytes=10\n", "[Limits] MaxLineBytes" },
    { "[Limits]\nHistoryPerStream=1001\n", "[Limits] HistoryPerStream" },
    { "[WebSocket]\nListen=0.0.0.0:8765\n",
      "[WebSocket] Listen: 0.0.0.0 is not a loopback address" },
    { "[WebSocket]\nListen=localhost:8765\n", "[WebSocket] Listen: 'localhost' is not an IP" },
    { "[WebSocket]\nListen=127.0.0.1\n", "[WebSocket] Listen: '127.0.0.1' has no port" },
    { "[WebSocket]\nAllowedOrigins=http://a.example/path\n",
      "[WebSocket] AllowedOrigins: 'http://a.example/path' is not an origin" },
    { "[WebSocket]\nAllowedOrigins=*\n", "[WebSocket] AllowedOrigins: '*' is not an origin" },
    { "[WebSocket]\nLocalKeyFile=relative\n", "[WebSocket] LocalKeyFile: must be an absolute" },
    { "[WebSocket]\nMessagesPerSecond=0\n", "[WebSocket] MessagesPerSecond" },
    { "[Limits]\nHistoryPerStream=-1\n", "[Limits] HistoryPerStream" },
    { "[Limits]\nHistoryBytesPerStream=1000\n", "[Limits] HistoryBytesPerStream" },
    { "[Limits]\nHistoryBytesPerStream=16777217\n", "[Limits] HistoryBytesPerStream" },
    { "[Socket]\nPath=relative.sock\n", "[Socket] Path: must be an absolute path" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (WbConfig) config = load_text (cases[i].text, &error);
      /* TAP readers want UTF-8: the cases with stray bytes are escaped. */
      g_autofree char *shown = g_strescape (cases[i].text, NULL);

      g_test_message ("case %u: %s", i, shown);
      g_assert_null (config);
      g_assert_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE);
      g_assert_nonnull (strstr (error->message, "test.conf: "));
      g_assert_nonnull (strstr (error->message, cases[i].expected_in_message));
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      g_assert_null (strchr (error->message, '\x1b'));
    }
}

/* ws:// is fine to this machine; elsewhere only when the file says so. */
static void
test_insecure_urls (void)
{
  static const char *const loopback[] = {
    "ws://127.0.0.1:9/v1/streams",  "ws://127.0.0.2/",
    "ws://[::1]:8080/v1",           "ws://localhost/",
    "ws://LOCALHOST:80/",           "ws://localhost./",
    "wss://ws.wave.inc/v1/streams",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (loopback); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *text = g_strdup_printf ("[Upstream]\nURL=%s\n", loopback[i]);
      g_autoptr (WbConfig) config = load_text (text, &error);

      g_assert_no_error (error);
      g_assert_cmpstr (config->url, ==, loopback[i]);
    }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (WbConfig) config = NULL;

    /* Allowed, and said out loud. */
    g_test_expect_message ("wave-config", G_LOG_LEVEL_WARNING,
                           "test.conf: [Upstream] AllowInsecure=true: the API key goes to "
                           "ws.example in clear text (ws://)");
    config = load_text ("[Upstream]\nURL=ws://ws.example/v1\nAllowInsecure=true\n", &error);
    g_test_assert_expected_messages ();
    g_assert_no_error (error);
    g_assert_true (config->allow_insecure);
  }
}

static void
test_unknown_keys_warn (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbConfig) config = NULL;

  g_test_expect_message ("wave-config", G_LOG_LEVEL_WARNING,
                         "test.conf: unknown key [Limits] ChatPerMinut, ignored");
  g_test_expect_message ("wave-config", G_LOG_LEVEL_WARNING,
                         "test.conf: unknown key [Nope] X, ignored");
  config = load_text ("[Limits]\nChatPerMinut=5\nChatPerMinute=7\n[Nope]\nX=1\n", &error);
  g_test_assert_expected_messages ();
  g_assert_no_error (error);
  g_assert_cmpuint (config->chat_per_minute, ==, 7);
}

static char *
write_temp (const char *dir, const char *name, const char *contents, int mode)
{
  char *path = g_build_filename (dir, name, NULL);

  g_assert_true (g_file_set_contents (path, contents, -1, NULL));
  g_assert_cmpint (g_chmod (path, mode), ==, 0);
  return path;
}

static void
test_file_and_overrides (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("wb-config-XXXXXX", NULL);
  g_autofree char *path
      = write_temp (dir, "wave-bridge.conf",
                    "[Upstream]\nURL=ws://127.0.0.1:1/v1/streams\n[Limits]\nMaxClients=7\n", 0644);
  WbConfigOverrides overrides = { .config_file = path,
                                  .url = "wss://override.example/v1/streams",
                                  .socket_path = "/tmp/override.sock",
                                  .bus = WB_BUS_NONE };
  g_autoptr (WbConfig) config = wb_config_load (&overrides, FALSE, &error);
  g_autoptr (WbConfig) missing = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (config->loaded_from, ==, path);
  g_assert_cmpstr (config->url, ==, "wss://override.example/v1/streams");
  g_assert_cmpstr (config->socket_path, ==, "/tmp/override.sock");
  g_assert_cmpuint (config->max_clients, ==, 7);
  g_assert_cmpint (config->bus, ==, WB_BUS_NONE);

  /* An explicit --config that does not exist is an error naming the file. */
  overrides = (WbConfigOverrides){ .config_file = "/nonexistent/wb.conf", .bus = -1 };
  missing = wb_config_load (&overrides, FALSE, &error);
  g_assert_null (missing);
  g_assert_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE);
  g_assert_nonnull (strstr (error->message, "/nonexistent/wb.conf"));
  g_clear_error (&error);

  overrides = (WbConfigOverrides){ .config_file = path, .url = "ftp://x/", .bus = -1 };
  missing = wb_config_load (&overrides, FALSE, &error);
  g_assert_null (missing);
  g_assert_nonnull (strstr (error->message, "command line: [Upstream] URL"));
  g_clear_error (&error);

  /* --url is held to the same rule. */
  overrides = (WbConfigOverrides){ .config_file = path, .url = "ws://x.example/", .bus = -1 };
  missing = wb_config_load (&overrides, FALSE, &error);
  g_assert_null (missing);
  g_assert_nonnull (strstr (error->message, "command line: [Upstream] URL: ws://"));

  g_unlink (path);
  g_rmdir (dir);
}

static void
test_api_key_sources (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("wb-key-XXXXXX", NULL);
  g_autofree char *key_path = write_temp (dir, "api-key", "  wave_live_secret\n", 0600);
  g_autofree char *cred_dir = g_build_filename (dir, "creds", NULL);
  g_autofree char *cred_path = NULL;
  g_autoptr (WbConfig) config = wb_config_new_defaults (FALSE);
  g_autofree char *source = NULL;
  g_autofree char *key = NULL;

  g_unsetenv ("WAVE_API_KEY");
  g_unsetenv ("CREDENTIALS_DIRECTORY");

  /* 1. APIKeyFile, whitespace trimmed. */
  g_free (config->api_key_file);
  config->api_key_file = g_strdup (key_path);
  key = wb_config_read_api_key (config, &source, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (key, ==, "wave_live_secret");
  g_assert_cmpstr (source, ==, key_path);
  g_clear_pointer (&key, g_free);
  g_clear_pointer (&source, g_free);

  /* 2. The systemd credential when APIKeyFile does not exist. */
  g_assert_cmpint (g_mkdir (cred_dir, 0700), ==, 0);
  cred_path = write_temp (cred_dir, "wave-api-key", "from_credential", 0400);
  g_setenv ("CREDENTIALS_DIRECTORY", cred_dir, TRUE);
  g_free (config->api_key_file);
  config->api_key_file = g_build_filename (dir, "absent", NULL);
  key = wb_config_read_api_key (config, &source, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (key, ==, "from_credential");
  g_assert_cmpstr (source, ==, cred_path);
  g_clear_pointer (&key, g_free);
  g_clear_pointer (&source, g_free);

  /* ... and it wins over an existing APIKeyFile. */
  g_free (config->api_key_file);
  config->api_key_file = g_strdup (key_path);
  key = wb_config_read_api_key (config, &source, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (key, ==, "from_credential");
  g_clear_pointer (&key, g_free);
  g_clear_pointer (&source, g_free);
  g_free (config->api_key_file);
  config->api_key_file = g_build_filename (dir, "absent", NULL);
  g_unsetenv ("CREDENTIALS_DIRECTORY");

  /* 3. The environment, for development. */
  g_setenv ("WAVE_API_KEY", "from_env", TRUE);
  key = wb_config_read_api_key (config, &source, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (key, ==, "from_env");
  g_assert_cmpstr (source, ==, "$WAVE_API_KEY");
  g_assert_null (wb_config_api_key_path (config));
  g_clear_pointer (&key, g_free);
  g_clear_pointer (&source, g_free);

  /* 4. Nothing: the error says where to put it. */
  g_unsetenv ("WAVE_API_KEY");
  key = wb_config_read_api_key (config, NULL, &error);
  g_assert_null (key);
  g_assert_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_NO_API_KEY);
  g_assert_nonnull (strstr (error->message, "absent"));
  g_clear_error (&error);

  /* 5. A key with spaces inside, or empty, is refused and not echoed. */
  g_free (config->api_key_file);
  config->api_key_file = write_temp (dir, "bad-key", "two words", 0600);
  key = wb_config_read_api_key (config, NULL, &error);
  g_assert_null (key);
  g_assert_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_API_KEY);
  g_assert_null (strstr (error->message, "two words"));
  g_clear_error (&error);
}

static void
test_world_readable_key_warns (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *dir = g_dir_make_tmp ("wb-key-XXXXXX", NULL);
      g_autoptr (WbConfig) config = wb_config_new_defaults (FALSE);
      g_autofree char *key = NULL;

      g_free (config->api_key_file);
      config->api_key_file = write_temp (dir, "api-key", "k", 0644);
      key = wb_config_read_api_key (config, NULL, NULL);
      g_assert_cmpstr (key, ==, "k");
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_stderr ("*readable by every user*");
}

static void
test_url_building_and_redaction (void)
{
  g_autoptr (WbConfig) config = wb_config_new_defaults (FALSE);
  g_autofree char *url = wb_config_build_upstream_url (config, "wave_live_a&b");
  g_autofree char *redacted = wb_config_redact_url (url);
  g_autofree char *two = wb_config_redact_url ("ws://h/?x=1&api_key=abc&y=2#api_key=z");
  g_autofree char *userinfo = wb_config_redact_url ("wss://user:pw@h:1/p@x?api_key=k");
  g_autofree char *no_userinfo = wb_config_redact_url ("wss://h/p@x?q=a@b");

  g_assert_cmpstr (url, ==, "wss://ws.wave.inc/v1/streams?api_key=wave_live_a%26b");
  g_assert_cmpstr (redacted, ==, "wss://ws.wave.inc/v1/streams?api_key=REDACTED");
  g_assert_cmpstr (two, ==, "ws://h/?x=1&api_key=REDACTED&y=2#api_key=REDACTED");
  /* Refused by validation; redacted anyway wherever a URL is shown. */
  g_assert_cmpstr (userinfo, ==, "wss://REDACTED@h:1/p@x?api_key=REDACTED");
  g_assert_cmpstr (no_userinfo, ==, "wss://h/p@x?q=a@b");
}

static void
test_bus_names (void)
{
  WbBusType bus;

  g_assert_true (wb_bus_type_from_string ("session", &bus));
  g_assert_cmpint (bus, ==, WB_BUS_SESSION);
  g_assert_true (wb_bus_type_from_string ("none", &bus));
  g_assert_cmpint (bus, ==, WB_BUS_NONE);
  g_assert_false (wb_bus_type_from_string ("user", &bus));
  g_assert_cmpstr (wb_bus_type_to_string (WB_BUS_SYSTEM), ==, "system");
}

static void
test_secret_wipe (void)
{
  char buffer[] = "wave_live_k3y\0guard";
  const gsize key_length = strlen ("wave_live_k3y");

  wb_secret_wipe (buffer);
  for (gsize i = 0; i < key_length; i++)
    g_assert_cmpint (buffer[i], ==, 0);
  /* Only the string: what follows its terminator is not the secret's. */
  g_assert_cmpstr (buffer + key_length + 1, ==, "guard");
  wb_secret_wipe (NULL);
}

static void
test_secret_free (void)
{
  char *key = g_strdup ("wave_live_k3y");
  char *none = NULL;

  wb_clear_secret (&key);
  g_assert_null (key);
  wb_clear_secret (&none);
  g_assert_null (none);
  wb_secret_free (NULL);
  wb_secret_free (g_strdup ("wave_live_k3y"));

  {
    g_autoptr (WbSecret) scoped = g_strdup ("wave_live_k3y");

    g_assert_cmpstr (scoped, ==, "wave_live_k3y");
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/mode", test_mode);
  g_test_add_func ("/config/every-key", test_every_key);
  g_test_add_func ("/config/shipped-file", test_shipped_file);
  g_test_add_func ("/config/bad-values", test_bad_values);
  g_test_add_func ("/config/websocket-listen", test_websocket_listen);
  g_test_add_func ("/config/unknown-keys-warn", test_unknown_keys_warn);
  g_test_add_func ("/config/file-and-overrides", test_file_and_overrides);
  g_test_add_func ("/config/api-key-sources", test_api_key_sources);
  g_test_add_func ("/config/world-readable-key-warns", test_world_readable_key_warns);
  g_test_add_func ("/config/url-redaction", test_url_building_and_redaction);
  g_test_add_func ("/config/insecure-urls", test_insecure_urls);
  g_test_add_func ("/config/bus-names", test_bus_names);
  g_test_add_func ("/config/secret-wipe", test_secret_wipe);
  g_test_add_func ("/config/secret-free", test_secret_free);
  return g_test_run ();
}
