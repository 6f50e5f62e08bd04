/* SPDX-License-Identifier: MIT */
/*
 * wavectl: the command-line client of wave-bridge. Commands talk to the
 * bridge through a WctlClient, which is either the local socket (newline
 * JSON, the default) or D-Bus (--dbus). Both deliver messages in the socket
 * protocol's shape ({"type":T,"payload":{...}}), so formatting, tail and
 * the dashboard do not care which transport is used.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

/* The daemon's message model: event names, JSON member readers. */
#include "message.h"

G_BEGIN_DECLS

#define WCTL_EXIT_OK 0
#define WCTL_EXIT_FAILURE 1
#define WCTL_EXIT_USAGE 2

/* A request waits this long for its reply. Sends get longer: the bridge may
 * hold one while upstream is down, up to its SendQueueTimeout (30 s by
 * default), before it answers. */
#define WCTL_REQUEST_TIMEOUT_MS 15000
#define WCTL_SEND_TIMEOUT_MS 60000

#define WCTL_ERROR (wctl_error_quark ())
GQuark wctl_error_quark (void);

typedef enum
{
  WCTL_ERROR_NOT_RUNNING,
  WCTL_ERROR_PERMISSION,
  WCTL_ERROR_PROTOCOL, /* unexpected reply, connection lost */
  WCTL_ERROR_REMOTE,   /* the bridge answered with an error */
  WCTL_ERROR_TIMEOUT,
  WCTL_ERROR_USAGE,
} WctlError;

/* The well-known text of the errors users see most. */
#define WCTL_NOT_RUNNING_HINT                                                                      \
  "wave-bridge is not running: start it with `systemctl start wave-bridge` (or `wave-bridged "     \
  "--bus=session` for a user session)"

/* ---- transports -------------------------------------------------------- */

typedef struct _WctlClient WctlClient;

/* One message from the bridge, in the socket protocol's shape. @line is the
 * raw line when the transport has one, else NULL. When the connection is
 * lost, called once more with @message NULL and @error set. */
typedef void (*WctlMessageFunc) (JsonObject *message, const char *line, const GError *error,
                                 gpointer user_data);

typedef struct
{
  /* The bridge.status payload. Blocking. */
  JsonObject *(*get_status) (WctlClient *client, GError **error);
  /* Subscribes and waits for the acknowledgement. @events NULL = all.
   * @history > 0: the bridge's last @history chat messages and reactions
   * of the stream (of @events) come first, marked "cached" like the
   * replayed state. */
  gboolean (*subscribe) (WctlClient *client, const char *stream_id, const char *const *events,
                         guint history, GError **error);
  /* @type "chat.message" or "reaction.sent"; waits until the bridge wrote
   * it upstream or refused it (WCTL_ERROR_REMOTE, message "code: text"). */
  gboolean (*send) (WctlClient *client, const char *type, const char *stream_id, const char *text,
                    GError **error);
  /* From now on, every message (including those that arrived during the
   * blocking calls above) goes to @func from the default main context. */
  void (*listen) (WctlClient *client, WctlMessageFunc func, gpointer user_data);
  /* Asks for a status; the answer reaches the listener as bridge.status. */
  void (*request_status) (WctlClient *client);
  void (*free) (WctlClient *client);
} WctlClientOps;

struct _WctlClient
{
  const WctlClientOps *ops;
};

JsonObject *wctl_client_get_status (WctlClient *client, GError **error);
gboolean wctl_client_subscribe (WctlClient *client, const char *stream_id,
                                const char *const *events, guint history, GError **error);
gboolean wctl_client_send (WctlClient *client, const char *type, const char *stream_id,
                           const char *text, GError **error);
void wctl_client_listen (WctlClient *client, WctlMessageFunc func, gpointer user_data);
void wctl_client_request_status (WctlClient *client);
void wctl_client_free (WctlClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WctlClient, wctl_client_free)

/* wavectl-connection.c: @socket_path NULL = $WAVE_BRIDGE_SOCKET, else the
 * system and user default paths (the user's first when not root). */
WctlClient *wctl_socket_client_new (const char *socket_path, GError **error);
/* The paths tried when none is given, in order; for messages and tests. */
char **wctl_socket_default_paths (void);

typedef enum
{
  WCTL_BUS_AUTO,
  WCTL_BUS_SESSION,
  WCTL_BUS_SYSTEM,
} WctlBusChoice;

/* wavectl-dbus.c */
WctlClient *wctl_dbus_client_new (WctlBusChoice bus, GError **error);

/* ---- JSON helpers (wavectl-format.c) ----------------------------------- */

static inline const char *
wctl_or (const char *value, const char *fallback)
{
  return value != NULL ? value : fallback;
}

/* NULL when absent or not an object. Strings and numbers: wb_json_get_*
 * (message.h). */
JsonObject *wctl_json_object (JsonObject *object, const char *member);
/* The message's payload, or an empty object owned by nobody's business:
 * never NULL, borrowed. */
JsonObject *wctl_message_payload (JsonObject *message);
const char *wctl_message_type (JsonObject *message);
/* payload.stream_id, else payload.details.stream_id. */
const char *wctl_message_stream_id (JsonObject *message);
JsonObject *wctl_json_parse_object (const char *text, gsize length, GError **error);
char *wctl_json_to_string (JsonObject *object);

/* ---- human formatting (wavectl-format.c) ------------------------------- */

/* Colour when stdout is a terminal and NO_COLOR is unset or empty. */
gboolean wctl_stdout_wants_color (void);

typedef enum
{
  WCTL_STYLE_NONE,
  WCTL_STYLE_BOLD,
  WCTL_STYLE_DIM,
  WCTL_STYLE_RED,
  WCTL_STYLE_GREEN,
  WCTL_STYLE_YELLOW,
  WCTL_STYLE_BLUE,
  WCTL_STYLE_MAGENTA,
  WCTL_STYLE_CYAN,
} WctlStyle;

/* Appends @text in @style (plain when !@color). */
void wctl_append_styled (GString *out, gboolean color, WctlStyle style, const char *text);

/* Replaces control characters (terminal escapes in chat text from strangers
 * included) so that text from the network cannot drive the terminal. */
char *wctl_sanitize (const char *text);
/* Columns @text takes on a terminal (wide characters count 2). */
guint wctl_text_width (const char *text);
/* At most @columns columns of @text, "…" marking a cut. */
char *wctl_text_truncate (const char *text, guint columns);

char *wctl_format_duration (double seconds); /* "3m12s", "1h02m", "45s" */
char *wctl_format_count (guint64 count);     /* "12,345" */
char *wctl_format_rtt (gint64 rtt_us);       /* "1.2 ms", "-" for 0 */
/* "12:00:01 (5 min ago)" for a g_get_real_time () value, "-" for 0. */
char *wctl_format_realtime (gint64 realtime_us);

/* The event part of a tail line ("chat alice: hello"), without time and
 * stream; NULL for messages tail does not show (acks, pong, hello). */
char *wctl_format_event_body (JsonObject *message, gboolean color);
/* A whole tail line, without the newline; NULL as above. */
char *wctl_format_tail_line (JsonObject *message, GDateTime *now, gboolean color);
char *wctl_format_status (JsonObject *status, gboolean color);
char *wctl_format_streams (JsonObject *status, gboolean color);

/* ---- commands ---------------------------------------------------------- */

/* wavectl-tail.c: runs until SIGINT/SIGTERM or the connection ends. */
/* @history: chat messages and reactions of the past to print first (0: none). */
int wctl_tail_run (WctlClient *client, char **streams, const char *const *events, guint history,
                   gboolean json);
/* wavectl-watch.c: the full-screen dashboard. */
int wctl_watch_run (WctlClient *client, const char *stream_id);

G_END_DECLS
