/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-sim-event-log"

#include "sim-event-log.h"

#include <errno.h>
#include <stdio.h>

#include <gio/gio.h>

/* The checker reads the log after the run; the flush only bounds what a
 * crash of the sim would lose. */
#define SIM_EVENT_LOG_FLUSH_MS 200

struct _SimEventLog
{
  FILE *file;
  guint flush_id;
  gboolean failed; /* one warning, not one per line */
};

static gboolean
flush_cb (gpointer user_data)
{
  SimEventLog *log = user_data;

  if (fflush (log->file) != 0 && !log->failed)
    {
      log->failed = TRUE;
      g_warning ("event log: %s", g_strerror (errno));
    }
  return G_SOURCE_CONTINUE;
}

SimEventLog *
sim_event_log_new (const char *path, GError **error)
{
  SimEventLog *log;
  FILE *file;

  g_return_val_if_fail (path != NULL, NULL);
  file = fopen (path, "we");
  if (file == NULL)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create %s: %s", path,
                   g_strerror (saved));
      return NULL;
    }
  log = g_new0 (SimEventLog, 1);
  log->file = file;
  log->flush_id = g_timeout_add (SIM_EVENT_LOG_FLUSH_MS, flush_cb, log);
  return log;
}

void
sim_event_log_free (SimEventLog *log)
{
  if (log == NULL)
    return;
  g_clear_handle_id (&log->flush_id, g_source_remove);
  if (fclose (log->file) != 0)
    g_warning ("event log: %s", g_strerror (errno));
  g_free (log);
}

/* Stream ids and event names reach the log only once the message model has
 * accepted them (identifiers, no quotes or controls), but escape anyway: the
 * log must stay JSON whatever a control call named. */
static void
append_string (GString *line, const char *text)
{
  g_string_append_c (line, '"');
  for (const char *p = text; *p != '\0'; p++)
    {
      guchar c = (guchar)*p;

      if (c == '"' || c == '\\')
        g_string_append_printf (line, "\\%c", c);
      else if (c < 0x20)
        g_string_append_printf (line, "\\u%04x", c);
      else
        g_string_append_c (line, (char)c);
    }
  g_string_append_c (line, '"');
}

static GString *
line_new_at (gint64 at_us, const char *kind)
{
  GString *line = g_string_new (NULL);

  g_string_append_printf (line, "{\"t\":%" G_GINT64_FORMAT ",\"kind\":\"%s\"", at_us, kind);
  return line;
}

static GString *
line_new (const char *kind)
{
  return line_new_at (g_get_monotonic_time (), kind);
}

static void
line_write (SimEventLog *log, GString *line)
{
  g_string_append (line, "}\n");
  fwrite (line->str, 1, line->len, log->file);
  g_string_free (line, TRUE);
}

void
sim_event_log_open (SimEventLog *log, guint64 conn)
{
  GString *line;

  if (log == NULL)
    return;
  line = line_new ("open");
  g_string_append_printf (line, ",\"conn\":%" G_GUINT64_FORMAT, conn);
  line_write (log, line);
}

void
sim_event_log_subscribe (SimEventLog *log, guint64 conn, const char *stream_id,
                         const char *const *events)
{
  GString *line;

  if (log == NULL)
    return;
  line = line_new ("subscribe");
  g_string_append_printf (line, ",\"conn\":%" G_GUINT64_FORMAT ",\"stream_id\":", conn);
  append_string (line, stream_id);
  g_string_append (line, ",\"events\":[");
  for (guint i = 0; events[i] != NULL; i++)
    {
      if (i > 0)
        g_string_append_c (line, ',');
      append_string (line, events[i]);
    }
  g_string_append_c (line, ']');
  line_write (log, line);
}

void
sim_event_log_unsubscribe (SimEventLog *log, guint64 conn, const char *stream_id)
{
  GString *line;

  if (log == NULL)
    return;
  line = line_new ("unsubscribe");
  g_string_append_printf (line, ",\"conn\":%" G_GUINT64_FORMAT ",\"stream_id\":", conn);
  append_string (line, stream_id);
  line_write (log, line);
}

void
sim_event_log_close (SimEventLog *log, guint64 conn, guint code, const char *initiator)
{
  GString *line;

  if (log == NULL)
    return;
  line = line_new ("close");
  g_string_append_printf (line, ",\"conn\":%" G_GUINT64_FORMAT ",\"code\":%u,\"initiator\":", conn,
                          code);
  append_string (line, initiator);
  line_write (log, line);
}

void
sim_event_log_event (SimEventLog *log, gint64 at_us, const char *message, const guint64 *conns,
                     guint n_conns)
{
  GString *line;

  if (log == NULL)
    return;
  line = line_new_at (at_us, "event");
  g_string_append (line, ",\"conns\":[");
  for (guint i = 0; i < n_conns; i++)
    g_string_append_printf (line, "%s%" G_GUINT64_FORMAT, i > 0 ? "," : "", conns[i]);
  /* @message is the compact JSON the sim wrote: embedded as it is. */
  g_string_append_printf (line, "],\"message\":%s", message);
  line_write (log, line);
}
