/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the configuration file. Each input is a GKeyFile read by
 * wb_config_load_key_file() in system and in user mode. Refused, it must
 * be refused with a WB_CONFIG_ERROR whose text is UTF-8 and, made carryable
 * as the D-Bus frontend makes it, is taken by sd-bus as the error reply of
 * a Reload() that failed. Accepted, the configuration must hold
 * what config.c promises (a ws/wss URL with a host, an absolute socket
 * path that fits sockaddr_un, the ordering of the timeouts, the lower
 * bounds of the limits), the API key must reach the server in the URL's
 * query, and redacting that URL must leave no trace of the key.
 */
#define G_LOG_DOMAIN "wave-fuzz-config"

#include <string.h>
#include <sys/un.h>

#include "config.h"
#include "dbus-text.h"
#include "fuzz.h"

/* Only characters g_uri_escape_string leaves alone, so the key appears in
 * the URL as is; it starts with a digit, so no text around "REDACTED" can
 * complete it. */
#define FUZZ_API_KEY "7wbFuzzApiKey0123456789"
/* The lower bounds of config.c's key table, as its documentation states
 * them (docs/configuration.md). */
#define MIN_LINE_BYTES 1024
#define MIN_QUEUE_BYTES 4096
#define MAX_SECONDS_MS (24u * 3600u * 1000u)

static guint
count_occurrences (const char *haystack, const char *needle)
{
  guint n = 0;

  for (const char *p = strstr (haystack, needle); p != NULL; p = strstr (p + 1, needle))
    n++;
  return n;
}

/* What the D-Bus frontend makes of @text (dbus-text.h) must be a string
 * sd-bus takes: a property, or the error reply of a Reload() that failed. */
static void
check_carryable (const char *text, const char *what)
{
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);

  if (!wb_fuzz_dbus_accepts_string (wb_dbus_text_carryable (text, keep)))
    wb_fuzz_fail (__FILE__, __LINE__, "%s cannot travel on D-Bus: %s", what, text);
}

/* As the server reads the query: "&"-separated, the key's value decoded. */
static void
check_key_reaches_server (const WbConfig *config, const char *url)
{
  g_autoptr (GUri) uri = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);
  g_auto (GStrv) parts = NULL;
  guint found = 0;

  FUZZ_CHECK (uri != NULL);
  /* config.c refuses a fragment: the key after it would never be sent. */
  FUZZ_CHECK (g_uri_get_fragment (uri) == NULL);
  FUZZ_CHECK (g_uri_get_query (uri) != NULL);
  parts = g_strsplit (g_uri_get_query (uri), "&", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    if (g_str_has_prefix (parts[i], "api_key="))
      {
        g_autofree char *value = g_uri_unescape_string (parts[i] + strlen ("api_key="), NULL);

        FUZZ_CHECK (g_strcmp0 (value, FUZZ_API_KEY) == 0);
        found++;
      }
  if (found != 1)
    wb_fuzz_fail (__FILE__, __LINE__, "the key reaches the server %u times in %s (URL=%s)", found,
                  url, config->url);
}

static void
check_accepted (const WbConfig *config)
{
  g_autoptr (GUri) uri = NULL;
  g_autofree char *url = NULL;
  g_autofree char *redacted = NULL;
  g_autofree char *logged = NULL;
  const guint timeouts[] = {
    config->ping_interval_ms,     config->pong_timeout_ms,       config->idle_timeout_ms,
    config->backoff_initial_ms,   config->backoff_max_ms,        config->going_away_wait_ms,
    config->rate_limited_wait_ms, config->send_queue_timeout_ms, config->slow_client_timeout_ms,
  };
  const char *const strings[] = { config->api_key_file, config->ca_file, config->send_group };

  FUZZ_CHECK (config->url != NULL && g_utf8_validate (config->url, -1, NULL));
  uri = g_uri_parse (config->url, G_URI_FLAGS_NONE, NULL);
  FUZZ_CHECK (uri != NULL);
  FUZZ_CHECK (g_ascii_strcasecmp (g_uri_get_scheme (uri), "ws") == 0
              || g_ascii_strcasecmp (g_uri_get_scheme (uri), "wss") == 0);
  FUZZ_CHECK (g_uri_get_host (uri) != NULL && g_uri_get_host (uri)[0] != '\0');
  FUZZ_CHECK (config->socket_path != NULL && g_path_is_absolute (config->socket_path));
  FUZZ_CHECK (strlen (config->socket_path) < sizeof ((struct sockaddr_un *)NULL)->sun_path);
  FUZZ_CHECK (g_utf8_validate (config->socket_path, -1, NULL));
  for (gsize i = 0; i < G_N_ELEMENTS (strings); i++)
    FUZZ_CHECK (strings[i] == NULL
                || (strings[i][0] != '\0' && g_utf8_validate (strings[i], -1, NULL)));
  for (gsize i = 0; i < G_N_ELEMENTS (timeouts); i++)
    FUZZ_CHECK (timeouts[i] > 0 && timeouts[i] <= MAX_SECONDS_MS);
  FUZZ_CHECK (config->pong_timeout_ms < config->ping_interval_ms);
  FUZZ_CHECK (config->backoff_initial_ms <= config->backoff_max_ms);
  FUZZ_CHECK (config->max_line_bytes >= MIN_LINE_BYTES);
  FUZZ_CHECK (config->client_queue_bytes >= MIN_QUEUE_BYTES);
  FUZZ_CHECK (config->max_clients >= 1 && config->max_subscriptions >= 1);
  FUZZ_CHECK (config->messages_per_second >= 1);

  /* The URL as upstream.c dials it, and as logs and D-Bus show it. */
  url = wb_config_build_upstream_url (config, FUZZ_API_KEY);
  check_key_reaches_server (config, url);
  redacted = wb_config_redact_url (url);
  if (count_occurrences (redacted, FUZZ_API_KEY) > count_occurrences (config->url, FUZZ_API_KEY))
    wb_fuzz_fail (__FILE__, __LINE__, "the key survives redaction: %s", redacted);
  FUZZ_CHECK (strstr (redacted, "api_key=REDACTED") != NULL);
  FUZZ_CHECK (g_utf8_validate (redacted, -1, NULL));
  check_carryable (redacted, "the redacted URL (UpstreamURL)");
  logged = wb_config_redact_url (config->url);
  FUZZ_CHECK (g_strcmp0 (logged, config->url) == 0 || strstr (config->url, "api_key=") != NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GKeyFile) key_file = g_key_file_new ();

  wb_fuzz_init_logging ();
  if (!g_key_file_load_from_data (key_file, (const char *)data, size, G_KEY_FILE_NONE, NULL))
    return 0;
  for (int user_mode = 0; user_mode <= 1; user_mode++)
    {
      g_autoptr (WbConfig) config = wb_config_new_defaults (user_mode);
      g_autoptr (GError) error = NULL;

      if (wb_config_load_key_file (config, key_file, "fuzz.conf", &error))
        {
          FUZZ_CHECK (error == NULL);
          check_accepted (config);
          continue;
        }
      FUZZ_CHECK (g_error_matches (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE));
      /* Logged, and quoted by the D-Bus error reply of a failed Reload(). */
      FUZZ_CHECK (g_utf8_validate (error->message, -1, NULL));
      check_carryable (error->message, "the error message");
    }
  return 0;
}
