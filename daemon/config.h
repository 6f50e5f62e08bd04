/* SPDX-License-Identifier: MIT */
/*
 * wave-bridge configuration: every key of DESIGN.md's GKeyFile with its
 * default, command-line overrides and validation. See docs/configuration.md.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

#define WB_CONFIG_ERROR (wb_config_error_quark ())
GQuark wb_config_error_quark (void);

typedef enum
{
  WB_CONFIG_ERROR_INVALID_VALUE,
  WB_CONFIG_ERROR_NO_API_KEY,
  WB_CONFIG_ERROR_API_KEY,
} WbConfigError;

typedef enum
{
  WB_BUS_SYSTEM,
  WB_BUS_SESSION,
  WB_BUS_NONE,
} WbBusType;

typedef struct
{
  /* [Upstream] */
  char *url;          /* without the api_key query parameter */
  char *api_key_file; /* NULL: credential, then WAVE_API_KEY */
  char *ca_file;      /* extra trusted CA (PEM), NULL: system trust */
  /* Keys are in seconds (fractions allowed, so tests can be quick). */
  guint ping_interval_ms;
  guint pong_timeout_ms;
  guint idle_timeout_ms;
  /* Close-policy waits; the defaults are the WAVE doc's, tests shorten them. */
  guint backoff_initial_ms;
  guint backoff_max_ms;
  guint going_away_wait_ms;
  guint rate_limited_wait_ms;
  /* Client → server messages per second (and burst): keeps the bridge under
   * the service's own rate limit. */
  guint messages_per_second;
  /* ws:// to a host that is not loopback (the key would travel in clear). */
  gboolean allow_insecure;

  /* [Socket] */
  char *socket_path;

  /* [Limits] */
  guint max_clients;
  gsize client_queue_bytes;
  gsize max_line_bytes;
  guint chat_per_minute;
  guint reactions_per_minute;
  guint send_queue_size;
  guint send_queue_timeout_ms;
  guint max_subscriptions; /* per local client */
  /* Per user (uid), over all of its connections on both transports; root
   * and the daemon's own user are exempt. */
  guint max_clients_per_user;
  guint max_subscriptions_per_user;
  gsize max_queued_bytes_per_user;
  guint max_streams;            /* distinct streams followed upstream, for everyone */
  guint slow_client_timeout_ms; /* a client stuck over its queue this long is cut */
  /* Recent chat.message / reaction.received kept per stream (0: none). */
  guint history_per_stream;
  gsize history_bytes_per_stream;

  /* [Access] */
  char *send_group; /* NULL or empty: anyone who can connect */

  /* [WebSocket]: the local WAVE endpoint (docs/websocket.md) */
  char *ws_listen;              /* "127.0.0.1:PORT" or "[::1]:PORT"; NULL: off */
  char *ws_allowed_origins;     /* as written; parsed into ws_origins */
  char **ws_origins;            /* NULL-terminated, lower case; empty: no browser */
  char *ws_local_key_file;      /* where the local key is kept (created if missing) */
  guint ws_messages_per_second; /* per connection, and burst; past it: close 4429 */

  /* Not from the file. */
  WbBusType bus;
  gboolean user_mode; /* paths under XDG dirs instead of /etc and /run */
  char *loaded_from;  /* the file read, or NULL */
} WbConfig;

/* Command-line values that override the file; NULL/-1 = not given. */
typedef struct
{
  const char *config_file;
  const char *url;
  const char *api_key_file;
  const char *socket_path;
  int bus; /* WbBusType or -1 */
} WbConfigOverrides;

/* User mode (XDG paths, session bus) or system mode (/etc, /run, system
 * bus): --bus=system or --bus=session decides, else running as root is the
 * system service. The system unit runs as its own user with --bus=system. */
gboolean wb_config_is_user_mode (uid_t uid, int bus_override);

WbConfig *wb_config_new_defaults (gboolean user_mode);
void wb_config_free (WbConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbConfig, wb_config_free)

/* The file wb_config_load() reads when no --config is given. */
char *wb_config_default_path (gboolean user_mode);

/* Defaults, then the file (a missing default file is fine, a missing
 * --config file is not), then @overrides; validated. */
WbConfig *wb_config_load (const WbConfigOverrides *overrides, gboolean user_mode, GError **error);
/* Same, from a GKeyFile already in memory (tests, fuzzing). */
gboolean wb_config_load_key_file (WbConfig *config, GKeyFile *key_file, const char *source_name,
                                  GError **error);

/* Reads the API key: $CREDENTIALS_DIRECTORY/wave-api-key, else APIKeyFile,
 * else $WAVE_API_KEY. Warns when the file is readable by others. The key
 * is never logged. @out_source (optional) names where it came from. */
char *wb_config_read_api_key (const WbConfig *config, char **out_source, GError **error);
/* The file the key comes from, to watch for rewrites; NULL if the environment. */
char *wb_config_api_key_path (const WbConfig *config);

/* The API key and every string holding it (the upstream URL) are wiped
 * before their memory goes back to the allocator, where a later owner of
 * the block or a core dump would find it. explicit_bzero, because a
 * compiler may drop a memset of memory that is freed right after. */
/* Zeroes the string's bytes up to its terminator; NULL is fine. */
void wb_secret_wipe (char *secret);
/* Wipes, then g_free()s; NULL is fine. */
void wb_secret_free (char *secret);
/* wb_secret_free (*secret), then *secret = NULL. */
void wb_clear_secret (char **secret);
/* g_autoptr (WbSecret) key = …: a char * wiped and freed at scope exit. */
typedef char WbSecret;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbSecret, wb_secret_free)

/* URL with the api_key query parameter, and the same redacted for logs. */
char *wb_config_build_upstream_url (const WbConfig *config, const char *api_key);
char *wb_config_redact_url (const char *url);

/* [WebSocket] Listen: an IP literal that is a loopback address (127.0.0.0/8
 * or ::1) and a port from 1 to 65535, "127.0.0.1:8765" or "[::1]:8765".
 * Anything else (a host name, 0.0.0.0, ::ffff:127.0.0.1) is refused. */
gboolean wb_config_parse_listen (const char *text, char **out_host, guint16 *out_port,
                                 GError **error);

const char *wb_bus_type_to_string (WbBusType bus);
gboolean wb_bus_type_from_string (const char *name, WbBusType *out_bus);

G_END_DECLS
