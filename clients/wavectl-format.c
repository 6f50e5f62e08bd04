/* SPDX-License-Identifier: MIT */
/*
 * Human output of wavectl: one readable line per event for tail, the
 * status and streams reports, and the small helpers the dashboard shares
 * (durations, counts, terminal-safe and width-aware text).
 */
#define G_LOG_DOMAIN "wave-ctl"

#include "wavectl.h"

#include "status.h"

#include <math.h>
#include <unistd.h>

/* Below this share of a percent, loss is shown with one more decimal. */
#define WCTL_LOSS_FINE_PERCENT 0.1
#define WCTL_SECONDS_PER_MINUTE 60
#define WCTL_SECONDS_PER_HOUR 3600
#define WCTL_SECONDS_PER_DAY 86400

/* ---- JSON helpers ------------------------------------------------------ */

JsonObject *
wctl_json_object (JsonObject *object, const char *member)
{
  JsonNode *node;

  if (object == NULL || (node = json_object_get_member (object, member)) == NULL)
    return NULL;
  return JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

JsonObject *
wctl_message_payload (JsonObject *message)
{
  static JsonObject *empty = NULL;
  JsonObject *payload = wctl_json_object (message, "payload");

  if (payload != NULL)
    return payload;
  if (g_once_init_enter (&empty))
    g_once_init_leave (&empty, json_object_new ());
  return empty;
}

const char *
wctl_message_type (JsonObject *message)
{
  return wb_json_get_string (message, "type", NULL);
}

const char *
wctl_message_stream_id (JsonObject *message)
{
  JsonObject *payload = wctl_message_payload (message);
  const char *stream_id = wb_json_get_string (payload, "stream_id", NULL);

  if (stream_id != NULL)
    return stream_id;
  return wb_json_get_string (wctl_json_object (payload, "details"), "stream_id", NULL);
}

JsonObject *
wctl_json_parse_object (const char *text, gsize length, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  JsonNode *root;

  if (!json_parser_load_from_data (parser, text, (gssize)length, error))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_PROTOCOL, "not a JSON object");
      return NULL;
    }
  return json_object_ref (json_node_get_object (root));
}

char *
wctl_json_to_string (JsonObject *object)
{
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);

  json_node_set_object (node, object);
  return json_to_string (node, FALSE);
}

/* ---- terminal text ----------------------------------------------------- */

gboolean
wctl_stdout_wants_color (void)
{
  const char *no_color = g_getenv ("NO_COLOR");

  if (no_color != NULL && no_color[0] != '\0')
    return FALSE;
  return isatty (STDOUT_FILENO);
}

static const char *
style_sequence (WctlStyle style)
{
  switch (style)
    {
    case WCTL_STYLE_BOLD:
      return "\033[1m";
    case WCTL_STYLE_DIM:
      return "\033[2m";
    case WCTL_STYLE_RED:
      return "\033[31m";
    case WCTL_STYLE_GREEN:
      return "\033[32m";
    case WCTL_STYLE_YELLOW:
      return "\033[33m";
    case WCTL_STYLE_BLUE:
      return "\033[34m";
    case WCTL_STYLE_MAGENTA:
      return "\033[35m";
    case WCTL_STYLE_CYAN:
      return "\033[36m";
    case WCTL_STYLE_NONE:
    default:
      return "";
    }
}

void
wctl_append_styled (GString *out, gboolean color, WctlStyle style, const char *text)
{
  if (!color || style == WCTL_STYLE_NONE)
    {
      g_string_append (out, text);
      return;
    }
  g_string_append (out, style_sequence (style));
  g_string_append (out, text);
  g_string_append (out, "\033[0m");
}

static gboolean
is_control (gunichar c)
{
  return c < 0x20 || (c >= 0x7f && c < 0xa0) || c == 0x2028 || c == 0x2029;
}

char *
wctl_sanitize (const char *text)
{
  GString *out;

  if (text == NULL)
    return g_strdup ("");
  if (!g_utf8_validate (text, -1, NULL))
    return g_utf8_make_valid (text, -1);

  out = g_string_sized_new (strlen (text));
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (c == '\t' || c == '\n' || c == '\r')
        g_string_append_c (out, ' ');
      else if (is_control (c))
        g_string_append_unichar (out, 0xfffd);
      else
        g_string_append_unichar (out, c);
    }
  return g_string_free (out, FALSE);
}

static guint
char_width (gunichar c)
{
  /* Variation selectors and joiners are zero-width; emoji are wide. */
  if (g_unichar_iszerowidth (c) || (c >= 0xfe00 && c <= 0xfe0f) || c == 0x200d)
    return 0;
  if (g_unichar_iswide (c))
    return 2;
  return 1;
}

guint
wctl_text_width (const char *text)
{
  guint width = 0;

  for (const char *p = text; p != NULL && *p != '\0'; p = g_utf8_next_char (p))
    width += char_width (g_utf8_get_char (p));
  return width;
}

char *
wctl_text_truncate (const char *text, guint columns)
{
  GString *out;
  guint width = 0;

  if (text == NULL)
    return g_strdup ("");
  if (wctl_text_width (text) <= columns)
    return g_strdup (text);
  out = g_string_new (NULL);
  if (columns == 0)
    return g_string_free (out, FALSE);
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);
      guint w = char_width (c);

      /* Keep one column for the ellipsis. */
      if (width + w > columns - 1)
        break;
      g_string_append_unichar (out, c);
      width += w;
    }
  g_string_append (out, "…");
  return g_string_free (out, FALSE);
}

/* ---- numbers ----------------------------------------------------------- */

char *
wctl_format_duration (double seconds)
{
  guint64 s;

  if (!isfinite (seconds) || seconds < 0)
    return g_strdup ("-");
  s = (guint64)llround (seconds);
  if (s < WCTL_SECONDS_PER_MINUTE)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "s", s);
  if (s < WCTL_SECONDS_PER_HOUR)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "m%02" G_GUINT64_FORMAT "s",
                            s / WCTL_SECONDS_PER_MINUTE, s % WCTL_SECONDS_PER_MINUTE);
  if (s < WCTL_SECONDS_PER_DAY)
    return g_strdup_printf ("%" G_GUINT64_FORMAT "h%02" G_GUINT64_FORMAT "m",
                            s / WCTL_SECONDS_PER_HOUR,
                            (s % WCTL_SECONDS_PER_HOUR) / WCTL_SECONDS_PER_MINUTE);
  return g_strdup_printf ("%" G_GUINT64_FORMAT "d%02" G_GUINT64_FORMAT "h",
                          s / WCTL_SECONDS_PER_DAY,
                          (s % WCTL_SECONDS_PER_DAY) / WCTL_SECONDS_PER_HOUR);
}

char *
wctl_format_count (guint64 count)
{
  g_autofree char *digits = g_strdup_printf ("%" G_GUINT64_FORMAT, count);
  gsize length = strlen (digits);
  GString *out = g_string_new (NULL);

  for (gsize i = 0; i < length; i++)
    {
      if (i > 0 && (length - i) % 3 == 0)
        g_string_append_c (out, ',');
      g_string_append_c (out, digits[i]);
    }
  return g_string_free (out, FALSE);
}

char *
wctl_format_rtt (gint64 rtt_us)
{
  if (rtt_us <= 0)
    return g_strdup ("-");
  return g_strdup_printf ("%.1f ms", (double)rtt_us / G_TIME_SPAN_MILLISECOND);
}

char *
wctl_format_realtime (gint64 realtime_us)
{
  g_autoptr (GDateTime) when = NULL;
  g_autofree char *clock = NULL;
  g_autofree char *ago = NULL;
  gint64 age_us;

  if (realtime_us <= 0)
    return g_strdup ("-");
  when = g_date_time_new_from_unix_local (realtime_us / G_USEC_PER_SEC);
  if (when == NULL)
    return g_strdup ("-");
  clock = g_date_time_format (when, "%Y-%m-%d %H:%M:%S");
  age_us = g_get_real_time () - realtime_us;
  ago = wctl_format_duration ((double)MAX (age_us, 0) / G_USEC_PER_SEC);
  return g_strdup_printf ("%s (%s ago)", clock, ago);
}

static char *
format_fps (double fps)
{
  if (fabs (fps - round (fps)) < 0.05)
    return g_strdup_printf ("%.0f", fps);
  return g_strdup_printf ("%.1f", fps);
}

static char *
format_loss (double ratio)
{
  double percent = ratio * 100.0;

  if (percent > 0 && percent < WCTL_LOSS_FINE_PERCENT)
    return g_strdup_printf ("%.2f%%", percent);
  return g_strdup_printf ("%.1f%%", percent);
}

/* ---- events ------------------------------------------------------------ */

static void
append_field (GString *out, JsonObject *payload, const char *member, const char *fallback)
{
  g_autofree char *clean = wctl_sanitize (wb_json_get_string (payload, member, fallback));

  g_string_append (out, clean);
}

char *
wctl_format_event_body (JsonObject *message, gboolean color)
{
  const char *type = wctl_message_type (message);
  JsonObject *payload = wctl_message_payload (message);
  g_autoptr (GString) out = g_string_new (NULL);

  if (type == NULL)
    return NULL;

  if (g_str_equal (type, "stream.started"))
    {
      wctl_append_styled (out, color, WCTL_STYLE_GREEN, "started");
      g_string_append (out, " ");
      append_field (out, payload, "protocol", "?");
      g_string_append (out, " ingest ");
      append_field (out, payload, "ingest_endpoint", "?");
      g_string_append (out, " at ");
      append_field (out, payload, "started_at", "?");
    }
  else if (g_str_equal (type, "stream.ended"))
    {
      g_autofree char *duration
          = wctl_format_duration (wb_json_get_double (payload, "duration", -1));
      const char *recording = wb_json_get_string (payload, "recording_id", NULL);
      g_autofree char *clean_recording = wctl_sanitize (recording);

      wctl_append_styled (out, color, WCTL_STYLE_RED, "ended");
      g_string_append_printf (out, " after %s, ", duration);
      if (recording != NULL && recording[0] != '\0')
        g_string_append_printf (out, "recording %s", clean_recording);
      else
        g_string_append (out, "no recording");
    }
  else if (g_str_equal (type, "stream.health"))
    {
      g_autofree char *fps = format_fps (wb_json_get_double (payload, "fps", 0));
      g_autofree char *loss = format_loss (wb_json_get_double (payload, "packet_loss", 0));

      wctl_append_styled (out, color, WCTL_STYLE_GREEN, "health");
      g_string_append_printf (out, " %.0f kbps %s fps loss %s %.0f ms",
                              wb_json_get_double (payload, "bitrate", 0), fps, loss,
                              wb_json_get_double (payload, "latency", 0));
    }
  else if (g_str_equal (type, "viewer.joined"))
    {
      wctl_append_styled (out, color, WCTL_STYLE_BLUE, "viewer joined");
      g_string_append (out, " ");
      append_field (out, payload, "viewer_id", "?");
      g_string_append (out, " (");
      append_field (out, payload, "country", "?");
      g_string_append (out, ", ");
      append_field (out, payload, "device", "?");
      g_string_append (out, ")");
    }
  else if (g_str_equal (type, "viewer.left"))
    {
      g_autofree char *watched
          = wctl_format_duration (wb_json_get_double (payload, "watch_time", -1));

      wctl_append_styled (out, color, WCTL_STYLE_BLUE, "viewer left");
      g_string_append (out, " ");
      append_field (out, payload, "viewer_id", "?");
      g_string_append_printf (out, " after %s", watched);
    }
  else if (g_str_equal (type, "analytics.update"))
    {
      g_autofree char *total
          = wctl_format_count ((guint64)MAX (wb_json_get_int (payload, "total_views", 0), 0));
      g_autofree char *watch
          = wctl_format_duration (wb_json_get_double (payload, "average_watch_time", -1));

      wctl_append_styled (out, color, WCTL_STYLE_BLUE, "viewers");
      g_string_append_printf (
          out, " %" G_GINT64_FORMAT " (peak %" G_GINT64_FORMAT ") total %s avg watch %s",
          wb_json_get_int (payload, "concurrent_viewers", 0),
          wb_json_get_int (payload, "peak_viewers", 0), total, watch);
    }
  else if (g_str_equal (type, "chat.message"))
    {
      g_autofree char *user = wctl_sanitize (wb_json_get_string (payload, "username", "?"));

      wctl_append_styled (out, color, WCTL_STYLE_MAGENTA, "chat");
      g_string_append (out, " ");
      wctl_append_styled (out, color, WCTL_STYLE_BOLD, user);
      g_string_append (out, ": ");
      append_field (out, payload, "message", "");
    }
  else if (g_str_equal (type, "reaction.received"))
    {
      wctl_append_styled (out, color, WCTL_STYLE_MAGENTA, "reaction");
      g_string_append (out, " ");
      append_field (out, payload, "reaction", "?");
      g_string_append_printf (out, " x%" G_GINT64_FORMAT, wb_json_get_int (payload, "count", 1));
    }
  else if (g_str_equal (type, "error"))
    {
      wctl_append_styled (out, color, WCTL_STYLE_RED, "error");
      g_string_append (out, " ");
      append_field (out, payload, "code", "?");
      g_string_append (out, ": ");
      append_field (out, payload, "message", "");
    }
  else if (g_str_equal (type, "bridge.state"))
    {
      const char *previous = wb_json_get_string (payload, "previous", NULL);

      wctl_append_styled (out, color, WCTL_STYLE_YELLOW, "bridge upstream");
      g_string_append (out, " ");
      append_field (out, payload, "state", "?");
      if (previous != NULL)
        {
          g_string_append (out, " (was ");
          append_field (out, payload, "previous", "?");
          g_string_append (out, ")");
        }
    }
  else if (g_str_equal (type, "bridge.resync"))
    {
      wctl_append_styled (out, color, WCTL_STYLE_YELLOW, "bridge resync");
      g_string_append_printf (out,
                              ": upstream reconnected, events of the last %.1f s may be "
                              "missing",
                              (double)wb_json_get_int (payload, "gap_ms", 0) / 1000.0);
    }
  else if (g_str_equal (type, "bridge.dropped"))
    {
      wctl_append_styled (out, color, WCTL_STYLE_YELLOW, "bridge dropped");
      g_string_append_printf (out, " %" G_GINT64_FORMAT " events: this client read too slowly",
                              wb_json_get_int (payload, "count", 0));
    }
  else if (g_str_equal (type, "subscribed") || g_str_equal (type, "unsubscribed")
           || g_str_equal (type, "pong") || g_str_equal (type, "sent")
           || g_str_equal (type, "bridge.hello") || g_str_equal (type, "bridge.status"))
    return NULL;
  else
    {
      /* A type newer than this wavectl: show it rather than hide it. */
      g_autofree char *clean = wctl_sanitize (type);
      g_autofree char *json = wctl_json_to_string (payload);
      g_autofree char *clean_json = wctl_sanitize (json);

      g_string_append_printf (out, "%s %s", clean, clean_json);
    }

  return g_string_free (g_steal_pointer (&out), FALSE);
}

char *
wctl_format_tail_line (JsonObject *message, GDateTime *now, gboolean color)
{
  g_autofree char *body = wctl_format_event_body (message, color);
  g_autofree char *clock = NULL;
  g_autofree char *stream = NULL;
  const char *stream_id;
  GString *out;

  if (body == NULL)
    return NULL;

  stream_id = wctl_message_stream_id (message);
  stream = wctl_sanitize (stream_id != NULL ? stream_id : "--");
  clock = g_date_time_format (now, "%H:%M:%S");
  out = g_string_new (NULL);
  wctl_append_styled (out, color, WCTL_STYLE_DIM, clock);
  g_string_append (out, " ");
  wctl_append_styled (out, color, WCTL_STYLE_CYAN, stream);
  g_string_append (out, " ");
  g_string_append (out, body);

  if (json_object_get_boolean_member_with_default (message, "cached", FALSE))
    {
      g_autofree char *age
          = wctl_format_duration ((double)wb_json_get_int (message, "age_ms", 0) / 1000.0);
      g_autofree char *mark = g_strdup_printf ("[cached, %s old]", age);

      g_string_append (out, " ");
      wctl_append_styled (out, color, WCTL_STYLE_DIM, mark);
    }
  return g_string_free (out, FALSE);
}

/* ---- status and streams ------------------------------------------------ */

static void
append_row (GString *out, gboolean color, const char *label, const char *value)
{
  g_autofree char *padded = g_strdup_printf ("%-12s", label);

  wctl_append_styled (out, color, WCTL_STYLE_BOLD, padded);
  g_string_append (out, value);
  g_string_append_c (out, '\n');
}

static WctlStyle
state_style (const char *state)
{
  if (g_strcmp0 (state, "connected") == 0)
    return WCTL_STYLE_GREEN;
  if (g_strcmp0 (state, "idle") == 0 || g_strcmp0 (state, "connecting") == 0)
    return WCTL_STYLE_YELLOW;
  return WCTL_STYLE_RED;
}

static gboolean
has_text (JsonObject *object, const char *member)
{
  return g_strcmp0 (wb_json_get_string (object, member, ""), "") != 0;
}

/* "live":false also stands for "the bridge never saw the stream start":
 * say "unknown" unless it saw a start or an end. */
static const char *
stream_live_text (JsonObject *stream)
{
  if (json_object_get_boolean_member_with_default (stream, "live", FALSE))
    return "live";
  if (has_text (stream, "started_at") || has_text (stream, "ended_at"))
    return "offline";
  return "unknown";
}

char *
wctl_format_status (JsonObject *status, gboolean color)
{
  g_autoptr (GString) out = g_string_new (NULL);
  g_autoptr (GString) line = g_string_new (NULL);
  const char *state
      = wb_json_get_string (status, wb_status_field_name (WB_STATUS_STATE), "unknown");
  gint64 connected_since
      = wb_json_get_int (status, wb_status_field_name (WB_STATUS_CONNECTED_SINCE), 0);
  gint64 state_since = wb_json_get_int (status, wb_status_field_name (WB_STATUS_STATE_SINCE), 0);
  gint64 close_code = wb_json_get_int (status, wb_status_field_name (WB_STATUS_LAST_CLOSE_CODE), 0);
  const char *close_reason
      = wb_json_get_string (status, wb_status_field_name (WB_STATUS_LAST_CLOSE_REASON), NULL);
  const char *last_error
      = wb_json_get_string (status, wb_status_field_name (WB_STATUS_LAST_ERROR), NULL);
  JsonNode *streams_node = json_object_get_member (status, "streams");
  g_autofree char *clean_state = wctl_sanitize (state);
  g_autofree char *url = wctl_sanitize (
      wb_json_get_string (status, wb_status_field_name (WB_STATUS_UPSTREAM_URL), "-"));
  g_autofree char *rtt = wctl_format_rtt (
      wb_json_get_int (status, wb_status_field_name (WB_STATUS_UPSTREAM_RTT), 0));
  g_autofree char *received = NULL;
  g_autofree char *delivered = NULL;
  g_autofree char *dropped = NULL;

  wctl_append_styled (line, color, state_style (state), clean_state);
  if (connected_since > 0 || state_since > 0)
    {
      g_autofree char *since
          = wctl_format_realtime (connected_since > 0 ? connected_since : state_since);
      g_string_append_printf (line, " since %s", since);
    }
  append_row (out, color, "Upstream:", line->str);
  append_row (out, color, "URL:", url);
  append_row (out, color, "RTT:", rtt);
  g_string_printf (line, "%" G_GINT64_FORMAT,
                   wb_json_get_int (status, wb_status_field_name (WB_STATUS_RECONNECTS), 0));
  append_row (out, color, "Reconnects:", line->str);
  if (close_code > 0)
    {
      g_autofree char *reason = wctl_sanitize (close_reason);

      g_string_printf (line, "%" G_GINT64_FORMAT, close_code);
      if (reason[0] != '\0')
        g_string_append_printf (line, " (%s)", reason);
    }
  else
    g_string_assign (line, "none");
  append_row (out, color, "Last close:", line->str);
  if (last_error != NULL && last_error[0] != '\0')
    {
      g_autofree char *clean = wctl_sanitize (last_error);
      append_row (out, color, "Last error:", clean);
    }
  else
    append_row (out, color, "Last error:", "none");
  g_string_printf (line, "%" G_GINT64_FORMAT,
                   wb_json_get_int (status, wb_status_field_name (WB_STATUS_CLIENTS), 0));
  append_row (out, color, "Clients:", line->str);

  if (streams_node != NULL && JSON_NODE_HOLDS_ARRAY (streams_node))
    {
      JsonArray *streams = json_node_get_array (streams_node);
      guint n = json_array_get_length (streams);

      g_string_printf (line, "%u", n);
      for (guint i = 0; i < n; i++)
        {
          JsonNode *element = json_array_get_element (streams, i);
          JsonObject *stream;
          g_autofree char *id = NULL;

          if (!JSON_NODE_HOLDS_OBJECT (element))
            continue;
          stream = json_node_get_object (element);
          id = wctl_sanitize (wb_json_get_string (stream, "stream_id", "?"));
          g_string_append_printf (line, "%s%s (%s)", i == 0 ? ": " : ", ", id,
                                  stream_live_text (stream));
        }
    }
  else
    g_string_printf (line, "%" G_GINT64_FORMAT, wb_json_get_int (status, "streams", 0));
  append_row (out, color, "Streams:", line->str);

  received = wctl_format_count ((guint64)MAX (
      wb_json_get_int (status, wb_status_field_name (WB_STATUS_EVENTS_RECEIVED), 0), 0));
  delivered = wctl_format_count ((guint64)MAX (
      wb_json_get_int (status, wb_status_field_name (WB_STATUS_EVENTS_DELIVERED), 0), 0));
  dropped = wctl_format_count ((guint64)MAX (
      wb_json_get_int (status, wb_status_field_name (WB_STATUS_EVENTS_DROPPED), 0), 0));
  g_string_printf (line, "%s received, %s delivered, %s dropped", received, delivered, dropped);
  append_row (out, color, "Events:", line->str);
  {
    g_autofree char *version = wctl_sanitize (
        wb_json_get_string (status, wb_status_field_name (WB_STATUS_VERSION), "?"));
    append_row (out, color, "Version:", version);
  }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

/* Pads @text with spaces to @width columns (left-aligned, or right). */
static void
append_cell (GString *out, const char *text, guint width, gboolean right)
{
  guint text_width = wctl_text_width (text);
  guint pad = text_width < width ? width - text_width : 0;

  if (right)
    for (guint i = 0; i < pad; i++)
      g_string_append_c (out, ' ');
  g_string_append (out, text);
  if (!right)
    for (guint i = 0; i < pad; i++)
      g_string_append_c (out, ' ');
}

enum
{
  COL_STREAM,
  COL_STATE,
  COL_SUBS,
  COL_VIEWERS,
  COL_PEAK,
  COL_BITRATE,
  COL_FPS,
  COL_LOSS,
  COL_LATENCY,
  N_COLUMNS
};

static const char *const column_titles[N_COLUMNS] = {
  "STREAM", "STATE", "SUBS", "VIEWERS", "PEAK", "KBPS", "FPS", "LOSS", "LATENCY",
};

char *
wctl_format_streams (JsonObject *status, gboolean color)
{
  JsonNode *streams_node = json_object_get_member (status, "streams");
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify)g_strfreev);
  guint widths[N_COLUMNS];
  g_autoptr (GString) out = g_string_new (NULL);
  JsonArray *streams;

  if (streams_node == NULL || !JSON_NODE_HOLDS_ARRAY (streams_node)
      || json_array_get_length (json_node_get_array (streams_node)) == 0)
    return g_strdup ("No streams: nobody is subscribed to any stream "
                     "(try `wavectl tail STREAM`).\n");

  streams = json_node_get_array (streams_node);
  for (guint c = 0; c < N_COLUMNS; c++)
    widths[c] = (guint)strlen (column_titles[c]);

  for (guint i = 0; i < json_array_get_length (streams); i++)
    {
      JsonNode *element = json_array_get_element (streams, i);
      JsonObject *s;
      char **row;

      if (!JSON_NODE_HOLDS_OBJECT (element))
        continue;
      s = json_node_get_object (element);
      row = g_new0 (char *, N_COLUMNS + 1);
      row[COL_STREAM] = wctl_sanitize (wb_json_get_string (s, "stream_id", "?"));
      row[COL_STATE] = g_strdup (stream_live_text (s));
      row[COL_SUBS]
          = wb_json_has_number (s, "subscribers")
                ? g_strdup_printf ("%" G_GINT64_FORMAT, wb_json_get_int (s, "subscribers", 0))
                : g_strdup ("-");
      row[COL_VIEWERS]
          = wctl_format_count ((guint64)MAX (wb_json_get_int (s, "concurrent_viewers", 0), 0));
      row[COL_PEAK] = wctl_format_count ((guint64)MAX (wb_json_get_int (s, "peak_viewers", 0), 0));
      row[COL_BITRATE] = g_strdup_printf ("%.0f", wb_json_get_double (s, "bitrate", 0));
      row[COL_FPS] = format_fps (wb_json_get_double (s, "fps", 0));
      row[COL_LOSS] = format_loss (wb_json_get_double (s, "packet_loss", 0));
      row[COL_LATENCY] = g_strdup_printf ("%.0f ms", wb_json_get_double (s, "latency", 0));
      for (guint c = 0; c < N_COLUMNS; c++)
        widths[c] = MAX (widths[c], wctl_text_width (row[c]));
      g_ptr_array_add (rows, row);
    }

  {
    g_autoptr (GString) header = g_string_new (NULL);

    for (guint c = 0; c < N_COLUMNS; c++)
      {
        if (c > 0)
          g_string_append (header, "  ");
        append_cell (header, column_titles[c], widths[c], c >= COL_SUBS);
      }
    wctl_append_styled (out, color, WCTL_STYLE_BOLD, header->str);
    g_string_append_c (out, '\n');
  }
  for (guint r = 0; r < rows->len; r++)
    {
      char **row = g_ptr_array_index (rows, r);

      for (guint c = 0; c < N_COLUMNS; c++)
        {
          if (c > 0)
            g_string_append (out, "  ");
          if (c == COL_STATE && color)
            {
              g_autoptr (GString) cell = g_string_new (NULL);

              append_cell (cell, row[c], widths[c], FALSE);
              wctl_append_styled (out, color,
                                  g_str_equal (row[c], "live") ? WCTL_STYLE_GREEN : WCTL_STYLE_DIM,
                                  cell->str);
            }
          else
            append_cell (out, row[c], widths[c], c >= COL_SUBS);
        }
      g_string_append_c (out, '\n');
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}
