/* SPDX-License-Identifier: MIT */
/*
 * wavectl watch: a full-screen dashboard of one stream, redrawn in place.
 * The terminal is put in the alternate screen with the cursor hidden and
 * stdin in non-canonical mode (to read 'q'), and restored on every way out:
 * q, SIGINT, SIGTERM, the end of the connection and exit().
 */
#define G_LOG_DOMAIN "wave-ctl"

#include "wavectl.h"

#include <errno.h>
#include <glib-unix.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

/* Health samples kept for the sparklines (the widest terminal shows this many). */
#define WATCH_HISTORY_SAMPLES 200
#define WATCH_CHAT_KEEP 64
#define WATCH_REACTIONS_SHOWN 8
/* Redraws are coalesced: a busy stream must not repaint per event. */
#define WATCH_REDRAW_DELAY_MS 100
#define WATCH_TICK_MS 1000
#define WATCH_STATUS_INTERVAL_MS 2000
#define WATCH_DEFAULT_COLUMNS 80
#define WATCH_DEFAULT_ROWS 24
#define WATCH_MIN_COLUMNS 40
#define WATCH_MIN_ROWS 16
#define WATCH_LABEL_COLUMNS 10
#define WATCH_VALUE_COLUMNS 12
#define WATCH_INPUT_BYTES 64

#define ESC_ALT_SCREEN_ON "\033[?1049h"
#define ESC_ALT_SCREEN_OFF "\033[?1049l"
#define ESC_CURSOR_HIDE "\033[?25l"
#define ESC_CURSOR_SHOW "\033[?25h"
#define ESC_HOME "\033[H"
#define ESC_CLEAR_SCREEN "\033[2J"
#define ESC_CLEAR_LINE_END "\033[K"
#define ESC_CLEAR_BELOW "\033[J"

static const char *const spark_levels[] = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" };

typedef struct
{
  char *emoji;
  guint64 count;
} Reaction;

typedef struct
{
  WctlClient *client;
  char *stream_id;
  GMainLoop *loop;
  int exit_code;
  char *exit_message;
  gboolean color;

  /* Stream state. */
  gboolean have_events;
  gboolean live_known;
  gboolean live;
  char *started_at;
  double ended_duration;
  gboolean have_analytics;
  guint64 viewers;
  guint64 peak_viewers;
  guint64 total_views;
  double average_watch_time;
  gboolean have_health;
  double bitrate;
  double fps;
  double packet_loss;
  double latency;
  double bitrate_history[WATCH_HISTORY_SAMPLES];
  double fps_history[WATCH_HISTORY_SAMPLES];
  guint history_length;
  GQueue chat; /* char *, oldest first */
  GPtrArray *reactions;
  gint64 last_event_monotonic_us;
  char *notice;

  /* Bridge state. */
  char *upstream_state;
  gint64 rtt_us;
  gint64 reconnects;

  /* Terminal. */
  guint columns;
  guint rows;
  gboolean screen_active;
  guint redraw_source_id;
  guint tick_source_id;
  guint status_source_id;
  guint input_source_id;
  guint signal_source_ids[3];
} Watch;

/* The terminal as found; restored at exit whatever path leads there. */
static struct termios saved_termios;
static gboolean termios_saved;
static gboolean screen_entered;

static void
terminal_restore (void)
{
  if (screen_entered)
    {
      const char *restore = ESC_CURSOR_SHOW ESC_ALT_SCREEN_OFF;
      ssize_t ignored = write (STDOUT_FILENO, restore, strlen (restore));

      (void)ignored;
      screen_entered = FALSE;
    }
  if (termios_saved)
    {
      tcsetattr (STDIN_FILENO, TCSAFLUSH, &saved_termios);
      termios_saved = FALSE;
    }
}

static void
terminal_enter (Watch *watch)
{
  static gboolean atexit_registered;

  if (!atexit_registered)
    {
      atexit (terminal_restore);
      atexit_registered = TRUE;
    }

  if (isatty (STDIN_FILENO) && tcgetattr (STDIN_FILENO, &saved_termios) == 0)
    {
      struct termios raw = saved_termios;

      /* Keys one by one and unechoed; ISIG stays so Ctrl-C is SIGINT. */
      raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
      raw.c_cc[VMIN] = 1;
      raw.c_cc[VTIME] = 0;
      termios_saved = TRUE;
      tcsetattr (STDIN_FILENO, TCSAFLUSH, &raw);
    }

  fputs (ESC_ALT_SCREEN_ON ESC_CURSOR_HIDE ESC_HOME ESC_CLEAR_SCREEN, stdout);
  fflush (stdout);
  screen_entered = TRUE;
  watch->screen_active = TRUE;
}

static void
watch_read_size (Watch *watch)
{
  struct winsize size = { 0 };

  if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 && size.ws_row > 0)
    {
      watch->columns = size.ws_col;
      watch->rows = size.ws_row;
      return;
    }
  watch->columns = (guint)g_ascii_strtoull (wctl_or (g_getenv ("COLUMNS"), ""), NULL, 10);
  watch->rows = (guint)g_ascii_strtoull (wctl_or (g_getenv ("LINES"), ""), NULL, 10);
  if (watch->columns == 0)
    watch->columns = WATCH_DEFAULT_COLUMNS;
  if (watch->rows == 0)
    watch->rows = WATCH_DEFAULT_ROWS;
}

/* ---- drawing ----------------------------------------------------------- */

/* Appends @text clipped to the columns left on the line. */
static void
put (GString *line, guint *used, guint columns, gboolean color, WctlStyle style, const char *text)
{
  g_autofree char *clipped = NULL;
  guint width;

  if (*used >= columns)
    return;
  clipped = wctl_text_truncate (text, columns - *used);
  width = wctl_text_width (clipped);
  wctl_append_styled (line, color, style, clipped);
  *used += width;
}

static void
put_spaces (GString *line, guint *used, guint columns, guint count)
{
  for (guint i = 0; i < count && *used < columns; i++, (*used)++)
    g_string_append_c (line, ' ');
}

static void
put_padded (GString *line, guint *used, guint columns, gboolean color, WctlStyle style,
            const char *text, guint width)
{
  guint start = *used;

  put (line, used, columns, color, style, text);
  if (*used - start < width)
    put_spaces (line, used, columns, width - (*used - start));
}

static char *
sparkline (const double *samples, guint length, guint width)
{
  GString *out = g_string_new (NULL);
  guint first = length > width ? length - width : 0;
  double low = INFINITY;
  double high = -INFINITY;

  for (guint i = first; i < length; i++)
    {
      low = MIN (low, samples[i]);
      high = MAX (high, samples[i]);
    }
  for (guint i = first; i < length; i++)
    {
      guint level;

      /* A flat history draws at mid height rather than as nothing. */
      if (high - low < 1e-9)
        level = G_N_ELEMENTS (spark_levels) / 2;
      else
        level = (guint)lround ((samples[i] - low) / (high - low)
                               * (double)(G_N_ELEMENTS (spark_levels) - 1));
      g_string_append (out, spark_levels[MIN (level, G_N_ELEMENTS (spark_levels) - 1)]);
    }
  return g_string_free (out, FALSE);
}

static void
end_line (GString *screen, GString *line)
{
  g_string_append (screen, line->str);
  g_string_append (screen, ESC_CLEAR_LINE_END "\r\n");
  g_string_truncate (line, 0);
}

static char *
uptime_text (Watch *watch)
{
  g_autoptr (GDateTime) started = NULL;
  g_autoptr (GDateTime) now = NULL;

  if (watch->started_at == NULL || watch->started_at[0] == '\0')
    return NULL;
  started = g_date_time_new_from_iso8601 (watch->started_at, NULL);
  if (started == NULL)
    return NULL;
  now = g_date_time_new_now_utc ();
  return wctl_format_duration ((double)g_date_time_difference (now, started) / G_USEC_PER_SEC);
}

static void
draw_header (Watch *watch, GString *screen, GString *line)
{
  guint used = 0;
  guint cols = watch->columns;
  g_autofree char *stream = wctl_sanitize (watch->stream_id);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *clock = g_date_time_format (now, "%H:%M:%S");

  put (line, &used, cols, watch->color, WCTL_STYLE_BOLD, " ");
  put (line, &used, cols, watch->color, WCTL_STYLE_BOLD, stream);
  put_spaces (line, &used, cols, 2);
  if (!watch->live_known)
    put (line, &used, cols, watch->color, WCTL_STYLE_DIM, "live?");
  else if (watch->live)
    {
      g_autofree char *uptime = uptime_text (watch);

      put (line, &used, cols, watch->color, WCTL_STYLE_GREEN, "● LIVE");
      if (uptime != NULL)
        {
          g_autofree char *text = g_strdup_printf ("  up %s", uptime);
          put (line, &used, cols, watch->color, WCTL_STYLE_NONE, text);
        }
    }
  else
    {
      put (line, &used, cols, watch->color, WCTL_STYLE_RED, "○ OFFLINE");
      if (watch->ended_duration > 0)
        {
          g_autofree char *duration = wctl_format_duration (watch->ended_duration);
          g_autofree char *text = g_strdup_printf ("  last ran %s", duration);
          put (line, &used, cols, watch->color, WCTL_STYLE_NONE, text);
        }
    }
  if (used + strlen (clock) + 1 < cols)
    {
      put_spaces (line, &used, cols, cols - used - (guint)strlen (clock) - 1);
      put (line, &used, cols, watch->color, WCTL_STYLE_DIM, clock);
    }
  end_line (screen, line);

  used = 0;
  {
    g_autofree char *rtt = wctl_format_rtt (watch->rtt_us);
    g_autofree char *state = wctl_sanitize (wctl_or (watch->upstream_state, "unknown"));
    g_autofree char *rest
        = g_strdup_printf ("  rtt %s  reconnects %" G_GINT64_FORMAT, rtt, watch->reconnects);

    put (line, &used, cols, watch->color, WCTL_STYLE_NONE, " upstream ");
    put (line, &used, cols, watch->color,
         g_strcmp0 (watch->upstream_state, "connected") == 0 ? WCTL_STYLE_GREEN : WCTL_STYLE_YELLOW,
         state);
    put (line, &used, cols, watch->color, WCTL_STYLE_DIM, rest);
  }
  end_line (screen, line);
}

static void
draw_metrics (Watch *watch, GString *screen, GString *line)
{
  guint used = 0;
  guint cols = watch->columns;
  guint spark_width
      = cols > WATCH_LABEL_COLUMNS + WATCH_VALUE_COLUMNS + 2
            ? MIN (cols - WATCH_LABEL_COLUMNS - WATCH_VALUE_COLUMNS - 2, WATCH_HISTORY_SAMPLES)
            : 0;

  /* Viewers. */
  put_padded (line, &used, cols, watch->color, WCTL_STYLE_BOLD, " Viewers", WATCH_LABEL_COLUMNS);
  if (watch->have_analytics)
    {
      g_autofree char *now = wctl_format_count (watch->viewers);
      g_autofree char *peak = wctl_format_count (watch->peak_viewers);
      g_autofree char *total = wctl_format_count (watch->total_views);
      g_autofree char *avg = wctl_format_duration (watch->average_watch_time);
      g_autofree char *text = g_strdup_printf ("%s now   peak %s   total views %s   avg watch %s",
                                               now, peak, total, avg);
      put (line, &used, cols, watch->color, WCTL_STYLE_NONE, text);
    }
  else
    put (line, &used, cols, watch->color, WCTL_STYLE_DIM, "waiting for analytics.update");
  end_line (screen, line);
  end_line (screen, line);

  /* Bitrate and fps with their history. */
  used = 0;
  put_padded (line, &used, cols, watch->color, WCTL_STYLE_BOLD, " Bitrate", WATCH_LABEL_COLUMNS);
  if (watch->have_health)
    {
      g_autofree char *value = g_strdup_printf ("%.0f kbps", watch->bitrate);
      g_autofree char *spark
          = sparkline (watch->bitrate_history, watch->history_length, spark_width);

      put_padded (line, &used, cols, watch->color, WCTL_STYLE_NONE, value, WATCH_VALUE_COLUMNS);
      put_spaces (line, &used, cols, 2);
      put (line, &used, cols, watch->color, WCTL_STYLE_CYAN, spark);
    }
  else
    put (line, &used, cols, watch->color, WCTL_STYLE_DIM, "waiting for stream.health");
  end_line (screen, line);

  used = 0;
  put_padded (line, &used, cols, watch->color, WCTL_STYLE_BOLD, " FPS", WATCH_LABEL_COLUMNS);
  if (watch->have_health)
    {
      g_autofree char *value = g_strdup_printf ("%.1f", watch->fps);
      g_autofree char *spark = sparkline (watch->fps_history, watch->history_length, spark_width);

      put_padded (line, &used, cols, watch->color, WCTL_STYLE_NONE, value, WATCH_VALUE_COLUMNS);
      put_spaces (line, &used, cols, 2);
      put (line, &used, cols, watch->color, WCTL_STYLE_CYAN, spark);
    }
  end_line (screen, line);

  used = 0;
  put_padded (line, &used, cols, watch->color, WCTL_STYLE_BOLD, " Loss", WATCH_LABEL_COLUMNS);
  if (watch->have_health)
    {
      g_autofree char *loss = g_strdup_printf ("%.2f %%", watch->packet_loss * 100.0);
      g_autofree char *latency = g_strdup_printf ("%.0f ms", watch->latency);

      put_padded (line, &used, cols, watch->color,
                  watch->packet_loss >= 0.01 ? WCTL_STYLE_RED : WCTL_STYLE_NONE, loss,
                  WATCH_VALUE_COLUMNS);
      put_spaces (line, &used, cols, 2);
      put (line, &used, cols, watch->color, WCTL_STYLE_BOLD, "Latency ");
      put (line, &used, cols, watch->color, WCTL_STYLE_NONE, latency);
    }
  end_line (screen, line);
  end_line (screen, line);
}

static gint
reaction_compare (gconstpointer a, gconstpointer b)
{
  const Reaction *ra = *(const Reaction *const *)a;
  const Reaction *rb = *(const Reaction *const *)b;

  if (ra->count != rb->count)
    return ra->count > rb->count ? -1 : 1;
  return g_strcmp0 (ra->emoji, rb->emoji);
}

static void
draw_reactions (Watch *watch, GString *screen, GString *line)
{
  guint used = 0;
  guint cols = watch->columns;
  g_autoptr (GPtrArray) sorted = g_ptr_array_copy (watch->reactions, NULL, NULL);

  /* The copy must not free what the original owns. */
  g_ptr_array_set_free_func (sorted, NULL);
  put_padded (line, &used, cols, watch->color, WCTL_STYLE_BOLD, " Reactions",
              WATCH_LABEL_COLUMNS + 1);
  if (sorted->len == 0)
    put (line, &used, cols, watch->color, WCTL_STYLE_DIM, "none yet");
  g_ptr_array_sort (sorted, reaction_compare);
  for (guint i = 0; i < sorted->len && i < WATCH_REACTIONS_SHOWN; i++)
    {
      Reaction *reaction = g_ptr_array_index (sorted, i);
      g_autofree char *text
          = g_strdup_printf ("%s %" G_GUINT64_FORMAT "  ", reaction->emoji, reaction->count);
      put (line, &used, cols, watch->color, WCTL_STYLE_NONE, text);
    }
  end_line (screen, line);
  end_line (screen, line);
}

static void
draw_chat (Watch *watch, GString *screen, GString *line, guint chat_rows)
{
  guint used = 0;
  guint cols = watch->columns;
  guint shown = MIN (chat_rows, g_queue_get_length (&watch->chat));
  guint skip = g_queue_get_length (&watch->chat) - shown;
  guint index = 0;

  put (line, &used, cols, watch->color, WCTL_STYLE_BOLD, " Chat");
  end_line (screen, line);
  for (GList *l = watch->chat.head; l != NULL; l = l->next, index++)
    {
      if (index < skip)
        continue;
      used = 0;
      put_spaces (line, &used, cols, 2);
      put (line, &used, cols, watch->color, WCTL_STYLE_NONE, l->data);
      end_line (screen, line);
    }
  if (shown == 0 && chat_rows > 0)
    {
      used = 0;
      put (line, &used, cols, watch->color, WCTL_STYLE_DIM, "  no chat yet");
      end_line (screen, line);
      shown = 1;
    }
  for (guint i = shown; i < chat_rows; i++)
    end_line (screen, line);
}

static void
draw_footer (Watch *watch, GString *screen, GString *line)
{
  guint used = 0;
  guint cols = watch->columns;

  if (watch->notice != NULL)
    put (line, &used, cols, watch->color, WCTL_STYLE_YELLOW, watch->notice);
  end_line (screen, line);

  used = 0;
  put (line, &used, cols, watch->color, WCTL_STYLE_DIM, " q quit");
  if (!watch->have_events)
    {
      g_autofree char *stream = wctl_sanitize (watch->stream_id);
      g_autofree char *text = g_strdup_printf ("   waiting for events of %s", stream);
      put (line, &used, cols, watch->color, WCTL_STYLE_YELLOW, text);
    }
  else
    {
      gint64 age_us = g_get_monotonic_time () - watch->last_event_monotonic_us;
      g_autofree char *age = wctl_format_duration ((double)age_us / G_USEC_PER_SEC);
      g_autofree char *text = g_strdup_printf ("   last event %s ago", age);
      put (line, &used, cols, watch->color, WCTL_STYLE_DIM, text);
    }
  /* No newline after the last row: it would scroll the screen. */
  g_string_append (screen, line->str);
  g_string_append (screen, ESC_CLEAR_LINE_END);
  g_string_truncate (line, 0);
}

/* Rows above the chat: header 2, blank, viewers + blank, bitrate, fps,
 * loss + blank, reactions + blank, chat title; below: notice, footer. */
#define WATCH_FIXED_ROWS 15

static void
watch_draw (Watch *watch)
{
  g_autoptr (GString) screen = g_string_new (ESC_HOME);
  g_autoptr (GString) line = g_string_new (NULL);

  if (!watch->screen_active)
    return;

  if (watch->columns < WATCH_MIN_COLUMNS || watch->rows < WATCH_MIN_ROWS)
    {
      g_string_append_printf (screen, "terminal too small (%ux%u, need %ux%u); q quits",
                              watch->columns, watch->rows, WATCH_MIN_COLUMNS, WATCH_MIN_ROWS);
      g_string_append (screen, ESC_CLEAR_LINE_END ESC_CLEAR_BELOW);
    }
  else
    {
      draw_header (watch, screen, line);
      end_line (screen, line);
      draw_metrics (watch, screen, line);
      draw_reactions (watch, screen, line);
      draw_chat (watch, screen, line, watch->rows - WATCH_FIXED_ROWS);
      draw_footer (watch, screen, line);
      g_string_append (screen, ESC_CLEAR_BELOW);
    }
  fwrite (screen->str, 1, screen->len, stdout);
  fflush (stdout);
}

static gboolean
watch_redraw_cb (gpointer user_data)
{
  Watch *watch = user_data;

  watch->redraw_source_id = 0;
  watch_draw (watch);
  return G_SOURCE_REMOVE;
}

static void
watch_queue_redraw (Watch *watch)
{
  if (watch->redraw_source_id == 0)
    watch->redraw_source_id = g_timeout_add (WATCH_REDRAW_DELAY_MS, watch_redraw_cb, watch);
}

/* ---- state from messages ----------------------------------------------- */

static void
watch_set_notice (Watch *watch, const char *text)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *clock = g_date_time_format (now, "%H:%M:%S");
  g_autofree char *clean = wctl_sanitize (text);

  g_free (watch->notice);
  watch->notice = g_strdup_printf (" %s %s", clock, clean);
}

static void
watch_add_reaction (Watch *watch, const char *emoji, guint64 count)
{
  g_autofree char *clean = wctl_sanitize (emoji);
  Reaction *reaction;

  for (guint i = 0; i < watch->reactions->len; i++)
    {
      reaction = g_ptr_array_index (watch->reactions, i);
      if (g_str_equal (reaction->emoji, clean))
        {
          reaction->count += count;
          return;
        }
    }
  reaction = g_new0 (Reaction, 1);
  reaction->emoji = g_steal_pointer (&clean);
  reaction->count = count;
  g_ptr_array_add (watch->reactions, reaction);
}

static void
reaction_free (Reaction *reaction)
{
  g_free (reaction->emoji);
  g_free (reaction);
}

static void
watch_add_health (Watch *watch, JsonObject *payload)
{
  watch->have_health = TRUE;
  watch->bitrate = wb_json_get_double (payload, "bitrate", 0);
  watch->fps = wb_json_get_double (payload, "fps", 0);
  watch->packet_loss = wb_json_get_double (payload, "packet_loss", 0);
  watch->latency = wb_json_get_double (payload, "latency", 0);
  if (watch->history_length == WATCH_HISTORY_SAMPLES)
    {
      memmove (watch->bitrate_history, watch->bitrate_history + 1,
               sizeof (double) * (WATCH_HISTORY_SAMPLES - 1));
      memmove (watch->fps_history, watch->fps_history + 1,
               sizeof (double) * (WATCH_HISTORY_SAMPLES - 1));
      watch->history_length--;
    }
  watch->bitrate_history[watch->history_length] = watch->bitrate;
  watch->fps_history[watch->history_length] = watch->fps;
  watch->history_length++;
}

static void
watch_update_from_status (Watch *watch, JsonObject *status)
{
  JsonNode *streams = json_object_get_member (status, "streams");
  const char *state = wb_json_get_string (status, "state", NULL);

  if (state != NULL)
    {
      g_free (watch->upstream_state);
      watch->upstream_state = g_strdup (state);
    }
  watch->rtt_us = wb_json_get_int (status, "upstream_rtt_us", watch->rtt_us);
  watch->reconnects = wb_json_get_int (status, "reconnects", watch->reconnects);

  /* Until events arrive, the bridge's stream table fills the blanks. */
  if (streams == NULL || !JSON_NODE_HOLDS_ARRAY (streams))
    return;
  for (guint i = 0; i < json_array_get_length (json_node_get_array (streams)); i++)
    {
      JsonNode *element = json_array_get_element (json_node_get_array (streams), i);
      JsonObject *stream;

      if (!JSON_NODE_HOLDS_OBJECT (element))
        continue;
      stream = json_node_get_object (element);
      if (g_strcmp0 (wb_json_get_string (stream, "stream_id", NULL), watch->stream_id) != 0)
        continue;
      /* "live":false also means "never saw stream.started": trust it only
       * when the bridge saw the stream start or end. */
      if (!watch->live_known && json_object_has_member (stream, "live")
          && (g_strcmp0 (wb_json_get_string (stream, "started_at", ""), "") != 0
              || g_strcmp0 (wb_json_get_string (stream, "ended_at", ""), "") != 0))
        {
          watch->live_known = TRUE;
          watch->live = json_object_get_boolean_member_with_default (stream, "live", FALSE);
        }
      if (watch->started_at == NULL
          && g_strcmp0 (wb_json_get_string (stream, "started_at", ""), "") != 0)
        watch->started_at = g_strdup (wb_json_get_string (stream, "started_at", NULL));
    }
}

static void
watch_handle_stream_event (Watch *watch, const char *type, JsonObject *payload, gint64 age_ms)
{
  if (g_str_equal (type, "stream.started"))
    {
      watch->live_known = TRUE;
      watch->live = TRUE;
      g_free (watch->started_at);
      watch->started_at = g_strdup (wb_json_get_string (payload, "started_at", NULL));
    }
  else if (g_str_equal (type, "stream.ended"))
    {
      watch->live_known = TRUE;
      watch->live = FALSE;
      watch->ended_duration = wb_json_get_double (payload, "duration", 0);
    }
  else if (g_str_equal (type, "stream.health"))
    {
      /* Only a live stream reports health. */
      if (!watch->live_known)
        watch->live_known = watch->live = TRUE;
      watch_add_health (watch, payload);
    }
  else if (g_str_equal (type, "analytics.update"))
    {
      watch->have_analytics = TRUE;
      watch->viewers = (guint64)MAX (wb_json_get_int (payload, "concurrent_viewers", 0), 0);
      watch->peak_viewers = (guint64)MAX (wb_json_get_int (payload, "peak_viewers", 0), 0);
      watch->total_views = (guint64)MAX (wb_json_get_int (payload, "total_views", 0), 0);
      watch->average_watch_time = wb_json_get_double (payload, "average_watch_time", 0);
    }
  else if (g_str_equal (type, "chat.message"))
    {
      /* History from the bridge (age_ms > 0) shows when it was said. */
      g_autoptr (GDateTime) now = g_date_time_new_now_local ();
      g_autoptr (GDateTime) said = g_date_time_add (now, -age_ms * G_TIME_SPAN_MILLISECOND);
      g_autofree char *clock = g_date_time_format (said != NULL ? said : now, "%H:%M:%S");
      g_autofree char *user = wctl_sanitize (wb_json_get_string (payload, "username", "?"));
      g_autofree char *text = wctl_sanitize (wb_json_get_string (payload, "message", ""));

      g_queue_push_tail (&watch->chat, g_strdup_printf ("%s %s: %s", clock, user, text));
      while (g_queue_get_length (&watch->chat) > WATCH_CHAT_KEEP)
        g_free (g_queue_pop_head (&watch->chat));
    }
  else if (g_str_equal (type, "reaction.received"))
    watch_add_reaction (watch, wb_json_get_string (payload, "reaction", "?"),
                        (guint64)MAX (wb_json_get_int (payload, "count", 1), 0));
}

static void
watch_quit (Watch *watch, int exit_code, const char *message)
{
  if (message != NULL && watch->exit_message == NULL)
    watch->exit_message = g_strdup (message);
  watch->exit_code = exit_code;
  g_main_loop_quit (watch->loop);
}

static void
watch_message_cb (JsonObject *message, const char *line, const GError *error, gpointer user_data)
{
  Watch *watch = user_data;
  const char *type;
  JsonObject *payload;

  if (message == NULL)
    {
      watch_quit (watch, WCTL_EXIT_FAILURE, error != NULL ? error->message : "connection lost");
      return;
    }

  type = wctl_message_type (message);
  payload = wctl_message_payload (message);
  if (type == NULL)
    return;

  if (g_str_equal (type, "bridge.status"))
    watch_update_from_status (watch, payload);
  else if (g_str_equal (type, "bridge.hello") || g_str_equal (type, "bridge.state"))
    {
      const char *state = wb_json_get_string (payload, "state", NULL);

      if (state != NULL)
        {
          g_free (watch->upstream_state);
          watch->upstream_state = g_strdup (state);
        }
      if (g_str_equal (type, "bridge.state"))
        {
          g_autofree char *text = g_strdup_printf ("upstream %s", wctl_or (state, "?"));
          watch_set_notice (watch, text);
          wctl_client_request_status (watch->client);
        }
    }
  else if (g_str_equal (type, "bridge.resync"))
    {
      g_autofree char *text
          = g_strdup_printf ("upstream reconnected: events of the last %.1f s may be missing",
                             (double)wb_json_get_int (payload, "gap_ms", 0) / 1000.0);
      watch_set_notice (watch, text);
    }
  else if (g_str_equal (type, "bridge.dropped"))
    {
      g_autofree char *text
          = g_strdup_printf ("%" G_GINT64_FORMAT " events dropped: this terminal is too slow",
                             wb_json_get_int (payload, "count", 0));
      watch_set_notice (watch, text);
    }
  else if (g_str_equal (type, "error"))
    {
      g_autofree char *text
          = g_strdup_printf ("error %s: %s", wb_json_get_string (payload, "code", "?"),
                             wb_json_get_string (payload, "message", ""));
      watch_set_notice (watch, text);
    }
  else if (wb_message_is_stream_event_name (type)
           && g_strcmp0 (wctl_message_stream_id (message), watch->stream_id) == 0)
    {
      watch->have_events = TRUE;
      watch->last_event_monotonic_us = g_get_monotonic_time ();
      watch_handle_stream_event (
          watch, type, payload,
          json_object_get_boolean_member_with_default (message, "cached", FALSE)
              ? MAX (wb_json_get_int (message, "age_ms", 0), 0)
              : 0);
    }
  else
    return;
  watch_queue_redraw (watch);
}

/* ---- terminal events --------------------------------------------------- */

static gboolean
watch_input_cb (int fd, GIOCondition condition, gpointer user_data)
{
  Watch *watch = user_data;
  char buffer[WATCH_INPUT_BYTES];
  ssize_t n = read (fd, buffer, sizeof (buffer));

  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return G_SOURCE_CONTINUE;
  if (n <= 0)
    {
      /* No keyboard (stdin closed): keep running until a signal. */
      watch->input_source_id = 0;
      return G_SOURCE_REMOVE;
    }
  for (ssize_t i = 0; i < n; i++)
    if (buffer[i] == 'q' || buffer[i] == 'Q')
      {
        watch_quit (watch, WCTL_EXIT_OK, NULL);
        break;
      }
  return G_SOURCE_CONTINUE;
}

static gboolean
watch_quit_signal_cb (gpointer user_data)
{
  watch_quit (user_data, WCTL_EXIT_OK, NULL);
  return G_SOURCE_CONTINUE;
}

static gboolean
watch_winch_cb (gpointer user_data)
{
  Watch *watch = user_data;

  watch_read_size (watch);
  /* Old content may sit outside the new layout. */
  if (watch->screen_active)
    fputs (ESC_HOME ESC_CLEAR_SCREEN, stdout);
  watch_draw (watch);
  return G_SOURCE_CONTINUE;
}

static gboolean
watch_tick_cb (gpointer user_data)
{
  watch_draw (user_data);
  return G_SOURCE_CONTINUE;
}

static gboolean
watch_status_cb (gpointer user_data)
{
  Watch *watch = user_data;

  wctl_client_request_status (watch->client);
  return G_SOURCE_CONTINUE;
}

int
wctl_watch_run (WctlClient *client, const char *stream_id)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonObject) status = NULL;
  Watch watch = {
    .client = client,
    .stream_id = g_strdup (stream_id),
    .loop = loop,
    .exit_code = WCTL_EXIT_OK,
    .color = wctl_stdout_wants_color (),
    .reactions = g_ptr_array_new_with_free_func ((GDestroyNotify)reaction_free),
  };
  int exit_code;

  g_queue_init (&watch.chat);

  /* Fail before taking over the screen, so errors stay readable. */
  status = wctl_client_get_status (client, &error);
  /* The chat pane starts with the bridge's recent chat, not blank. */
  if (status == NULL || !wctl_client_subscribe (client, stream_id, NULL, WATCH_CHAT_KEEP, &error))
    {
      g_autofree char *clean = wctl_sanitize (stream_id);

      g_printerr ("wavectl: cannot watch %s: %s\n", clean, error->message);
      g_ptr_array_unref (watch.reactions);
      g_free (watch.stream_id);
      return WCTL_EXIT_FAILURE;
    }
  watch_update_from_status (&watch, status);

  /* Before the screen is read or drawn: a SIGTERM sent once the dashboard
   * shows must restore the terminal, and a resize must not be lost. */
  watch.signal_source_ids[0] = g_unix_signal_add (SIGINT, watch_quit_signal_cb, &watch);
  watch.signal_source_ids[1] = g_unix_signal_add (SIGTERM, watch_quit_signal_cb, &watch);
  watch.signal_source_ids[2] = g_unix_signal_add (SIGWINCH, watch_winch_cb, &watch);
  watch_read_size (&watch);
  terminal_enter (&watch);
  watch_draw (&watch);

  watch.tick_source_id = g_timeout_add (WATCH_TICK_MS, watch_tick_cb, &watch);
  watch.status_source_id = g_timeout_add (WATCH_STATUS_INTERVAL_MS, watch_status_cb, &watch);
  watch.input_source_id
      = g_unix_fd_add (STDIN_FILENO, G_IO_IN | G_IO_HUP | G_IO_ERR, watch_input_cb, &watch);
  wctl_client_listen (client, watch_message_cb, &watch);

  g_main_loop_run (loop);

  for (gsize i = 0; i < G_N_ELEMENTS (watch.signal_source_ids); i++)
    g_source_remove (watch.signal_source_ids[i]);
  g_clear_handle_id (&watch.tick_source_id, g_source_remove);
  g_clear_handle_id (&watch.status_source_id, g_source_remove);
  g_clear_handle_id (&watch.input_source_id, g_source_remove);
  g_clear_handle_id (&watch.redraw_source_id, g_source_remove);
  watch.screen_active = FALSE;
  terminal_restore ();

  if (watch.exit_message != NULL)
    g_printerr ("wavectl: %s\n", watch.exit_message);
  exit_code = watch.exit_code;

  g_queue_clear_full (&watch.chat, g_free);
  g_ptr_array_unref (watch.reactions);
  g_free (watch.stream_id);
  g_free (watch.started_at);
  g_free (watch.notice);
  g_free (watch.upstream_state);
  g_free (watch.exit_message);
  return exit_code;
}
