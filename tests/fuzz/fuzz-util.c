/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz targets share: failing, quiet logging, an independent
 * strict JSON checker (the oracle for every line the bridge emits), the
 * D-Bus string rule, and the list of known gaps.
 */
#define G_LOG_DOMAIN "wave-fuzz"

#include "fuzz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

void
wb_fuzz_fail (const char *file, int line, const char *format, ...)
{
  va_list args;

  fflush (stdout);
  fprintf (stderr, "%s:%d: ", file, line);
  va_start (args, format);
  vfprintf (stderr, format, args);
  va_end (args);
  fputc ('\n', stderr);
  abort ();
}

/* ---- logging --------------------------------------------------------------- */

static GLogWriterOutput
fuzz_log_writer (GLogLevelFlags log_level, const GLogField *fields, gsize n_fields,
                 gpointer user_data)
{
  gboolean verbose = GPOINTER_TO_INT (user_data);

  if (log_level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    {
      g_log_writer_standard_streams (log_level, fields, n_fields, NULL);
      /* g_error aborts by itself; a critical is a failed precondition. */
      abort ();
    }
  if (verbose)
    return g_log_writer_standard_streams (log_level, fields, n_fields, NULL);
  return G_LOG_WRITER_HANDLED;
}

void
wb_fuzz_init_logging (void)
{
  static gsize done;

  if (g_once_init_enter (&done))
    {
      gboolean verbose = g_strcmp0 (g_getenv ("WB_FUZZ_VERBOSE"), "1") == 0;

      g_log_set_writer_func (fuzz_log_writer, GINT_TO_POINTER (verbose), NULL);
      g_once_init_leave (&done, 1);
    }
}

/* ---- strict JSON ------------------------------------------------------------ */

typedef struct
{
  const char *text;
  gsize length;
  gsize pos;
  WbFuzzJsonResult result;
  gsize error_offset;
} JsonCheck;

static gboolean
check_fail (JsonCheck *c, WbFuzzJsonResult result)
{
  if (c->result == WB_FUZZ_JSON_OK)
    {
      c->result = result;
      c->error_offset = c->pos;
    }
  return FALSE;
}

static gboolean
at_end (const JsonCheck *c)
{
  return c->pos >= c->length;
}

static char
peek (const JsonCheck *c)
{
  return at_end (c) ? '\0' : c->text[c->pos];
}

static void
skip_whitespace (JsonCheck *c)
{
  for (char ch = peek (c); ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; ch = peek (c))
    c->pos++;
}

static int
hex_value (char h)
{
  if (h >= '0' && h <= '9')
    return h - '0';
  if (h >= 'a' && h <= 'f')
    return h - 'a' + 10;
  if (h >= 'A' && h <= 'F')
    return h - 'A' + 10;
  return -1;
}

/* Four hex digits after "\u"; -1 if they are not. */
static int
read_hex4 (JsonCheck *c)
{
  int value = 0;

  if (c->length - c->pos < 4)
    return -1;
  for (int i = 0; i < 4; i++)
    {
      int digit = hex_value (c->text[c->pos + i]);

      if (digit < 0)
        return -1;
      value = value * 16 + digit;
    }
  c->pos += 4;
  return value;
}

/* At '"'. Appends the decoded string to @out (may be NULL). */
static gboolean
check_string (JsonCheck *c, GString *out)
{
  c->pos++;
  while (!at_end (c))
    {
      guchar ch = (guchar)c->text[c->pos];

      if (ch == '"')
        {
          c->pos++;
          return TRUE;
        }
      if (ch < 0x20)
        return check_fail (c, WB_FUZZ_JSON_CONTROL_CHAR);
      if (ch != '\\')
        {
          if (out != NULL)
            g_string_append_c (out, (char)ch);
          c->pos++;
          continue;
        }
      c->pos++;
      switch (peek (c))
        {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          if (out != NULL)
            g_string_append_c (out, peek (c));
          c->pos++;
          break;
        case 'u':
          {
            int unit;

            c->pos++;
            unit = read_hex4 (c);
            if (unit < 0)
              return check_fail (c, WB_FUZZ_JSON_BAD_ESCAPE);
            if (unit >= 0xdc00 && unit <= 0xdfff)
              return check_fail (c, WB_FUZZ_JSON_LONE_SURROGATE);
            if (unit >= 0xd800 && unit <= 0xdbff)
              {
                int low;

                if (c->length - c->pos < 2 || c->text[c->pos] != '\\' || c->text[c->pos + 1] != 'u')
                  return check_fail (c, WB_FUZZ_JSON_LONE_SURROGATE);
                c->pos += 2;
                low = read_hex4 (c);
                if (low < 0)
                  return check_fail (c, WB_FUZZ_JSON_BAD_ESCAPE);
                if (low < 0xdc00 || low > 0xdfff)
                  return check_fail (c, WB_FUZZ_JSON_LONE_SURROGATE);
                unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
              }
            if (out != NULL)
              g_string_append_unichar (out, (gunichar)unit);
            break;
          }
        default:
          return check_fail (c, WB_FUZZ_JSON_BAD_ESCAPE);
        }
    }
  return check_fail (c, WB_FUZZ_JSON_SYNTAX);
}

static gboolean
is_number_char (char ch)
{
  return g_ascii_isalnum (ch) || ch == '.' || ch == '+' || ch == '-';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and nothing number-like after. */
static gboolean
check_number (JsonCheck *c)
{
  if (peek (c) == '-')
    c->pos++;
  if (peek (c) == '0')
    c->pos++;
  else if (peek (c) >= '1' && peek (c) <= '9')
    while (g_ascii_isdigit (peek (c)))
      c->pos++;
  else
    return check_fail (c, WB_FUZZ_JSON_BAD_NUMBER);
  if (peek (c) == '.')
    {
      c->pos++;
      if (!g_ascii_isdigit (peek (c)))
        return check_fail (c, WB_FUZZ_JSON_BAD_NUMBER);
      while (g_ascii_isdigit (peek (c)))
        c->pos++;
    }
  if (peek (c) == 'e' || peek (c) == 'E')
    {
      c->pos++;
      if (peek (c) == '+' || peek (c) == '-')
        c->pos++;
      if (!g_ascii_isdigit (peek (c)))
        return check_fail (c, WB_FUZZ_JSON_BAD_NUMBER);
      while (g_ascii_isdigit (peek (c)))
        c->pos++;
    }
  /* 0x10, 0123, 1.5.5: the grammar stopped early. */
  if (is_number_char (peek (c)))
    return check_fail (c, WB_FUZZ_JSON_BAD_NUMBER);
  return TRUE;
}

static gboolean
check_literal (JsonCheck *c, const char *word)
{
  gsize n = strlen (word);

  if (c->length - c->pos < n || memcmp (c->text + c->pos, word, n) != 0)
    return check_fail (c, WB_FUZZ_JSON_SYNTAX);
  c->pos += n;
  if (g_ascii_isalnum (peek (c)))
    return check_fail (c, WB_FUZZ_JSON_SYNTAX);
  return TRUE;
}

static gboolean check_value (JsonCheck *c, int depth);

static gboolean
check_object (JsonCheck *c, int depth)
{
  g_autoptr (GHashTable) names
      = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, NULL);

  c->pos++;
  skip_whitespace (c);
  if (peek (c) == '}')
    {
      c->pos++;
      return TRUE;
    }
  for (;;)
    {
      g_autoptr (GString) name = g_string_new (NULL);
      GBytes *key;
      gsize name_offset;

      skip_whitespace (c);
      if (peek (c) != '"')
        return check_fail (c, WB_FUZZ_JSON_SYNTAX);
      name_offset = c->pos;
      if (!check_string (c, name))
        return FALSE;
      key = g_bytes_new (name->str, name->len);
      if (!g_hash_table_add (names, key))
        {
          c->pos = name_offset;
          return check_fail (c, WB_FUZZ_JSON_DUPLICATE_KEY);
        }
      skip_whitespace (c);
      if (peek (c) != ':')
        return check_fail (c, WB_FUZZ_JSON_SYNTAX);
      c->pos++;
      if (!check_value (c, depth))
        return FALSE;
      skip_whitespace (c);
      if (peek (c) == '}')
        {
          c->pos++;
          return TRUE;
        }
      if (peek (c) != ',')
        return check_fail (c, WB_FUZZ_JSON_SYNTAX);
      c->pos++;
    }
}

static gboolean
check_array (JsonCheck *c, int depth)
{
  c->pos++;
  skip_whitespace (c);
  if (peek (c) == ']')
    {
      c->pos++;
      return TRUE;
    }
  for (;;)
    {
      if (!check_value (c, depth))
        return FALSE;
      skip_whitespace (c);
      if (peek (c) == ']')
        {
          c->pos++;
          return TRUE;
        }
      if (peek (c) != ',')
        return check_fail (c, WB_FUZZ_JSON_SYNTAX);
      c->pos++;
    }
}

static gboolean
check_value (JsonCheck *c, int depth)
{
  char ch;

  skip_whitespace (c);
  ch = peek (c);
  switch (ch)
    {
    case '{':
    case '[':
      if (depth + 1 > WB_FUZZ_JSON_MAX_DEPTH)
        return check_fail (c, WB_FUZZ_JSON_TOO_DEEP);
      return ch == '{' ? check_object (c, depth + 1) : check_array (c, depth + 1);
    case '"':
      return check_string (c, NULL);
    case 't':
      return check_literal (c, "true");
    case 'f':
      return check_literal (c, "false");
    case 'n':
      return check_literal (c, "null");
    default:
      if (ch == '-' || ch == '+' || ch == '.' || g_ascii_isdigit (ch))
        return check_number (c);
      return check_fail (c, WB_FUZZ_JSON_SYNTAX);
    }
}

WbFuzzJsonResult
wb_fuzz_json_check (const char *text, gsize length, gsize *out_offset)
{
  JsonCheck c = { .text = text, .length = length };
  const char *invalid = NULL;

  if (!g_utf8_validate_len (text, length, &invalid))
    {
      c.result = WB_FUZZ_JSON_BAD_UTF8;
      c.error_offset = (gsize)(invalid - text);
    }
  else if (check_value (&c, 0))
    {
      skip_whitespace (&c);
      if (!at_end (&c))
        check_fail (&c, WB_FUZZ_JSON_SYNTAX);
    }
  if (out_offset != NULL)
    *out_offset = c.error_offset;
  return c.result;
}

const char *
wb_fuzz_json_result_to_string (WbFuzzJsonResult result)
{
  static const char *const names[WB_FUZZ_JSON_N_RESULTS] = {
    [WB_FUZZ_JSON_OK] = "valid",
    [WB_FUZZ_JSON_BAD_UTF8] = "not UTF-8",
    [WB_FUZZ_JSON_SYNTAX] = "not JSON",
    [WB_FUZZ_JSON_CONTROL_CHAR] = "raw control character in a string",
    [WB_FUZZ_JSON_BAD_ESCAPE] = "invalid escape",
    [WB_FUZZ_JSON_LONE_SURROGATE] = "unpaired surrogate escape",
    [WB_FUZZ_JSON_BAD_NUMBER] = "number outside the JSON grammar",
    [WB_FUZZ_JSON_DUPLICATE_KEY] = "duplicate member name",
    [WB_FUZZ_JSON_TOO_DEEP] = "nested too deep",
  };

  g_return_val_if_fail (result < WB_FUZZ_JSON_N_RESULTS, NULL);
  return names[result];
}

/* ---- D-Bus strings ------------------------------------------------------------ */

gboolean
wb_fuzz_dbus_accepts_string (const char *text)
{
  /* Messages can be built on a bus that has started (its handshake need
   * never finish); nothing is ever sent on it. */
  static sd_bus *bus;
  sd_bus_message *message = NULL;
  int r;

  if (bus == NULL)
    {
      int fds[2];

      if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
        wb_fuzz_fail (__FILE__, __LINE__, "socketpair: %s", g_strerror (errno));
      if (sd_bus_new (&bus) < 0 || sd_bus_set_fd (bus, fds[0], fds[0]) < 0
          || sd_bus_start (bus) < 0)
        wb_fuzz_fail (__FILE__, __LINE__, "cannot set up an sd-bus object");
      /* fds[1] stays open for the process's life: the bus is never read. */
    }
  r = sd_bus_message_new_signal (bus, &message, "/inc/wave/Fuzz", "inc.wave.Fuzz", "Text");
  if (r < 0)
    wb_fuzz_fail (__FILE__, __LINE__, "sd_bus_message_new_signal: %s", g_strerror (-r));
  r = sd_bus_message_append_basic (message, 's', text);
  sd_bus_message_unref (message);
  return r >= 0;
}

/* ---- known gaps --------------------------------------------------------------- */

static guint64 gap_counts[WB_FUZZ_N_GAPS];

const char *
wb_fuzz_known_gap_name (WbFuzzGap gap)
{
  static const char *const names[WB_FUZZ_N_GAPS] = {
    [WB_FUZZ_GAP_CONFIG_ERROR_NOT_UTF8]
    = "configuration error text quotes bytes that are not UTF-8 (fix: config.c)",
  };

  g_return_val_if_fail (gap < WB_FUZZ_N_GAPS, NULL);
  return names[gap];
}

guint64
wb_fuzz_known_gap_count (WbFuzzGap gap)
{
  g_return_val_if_fail (gap < WB_FUZZ_N_GAPS, 0);
  return gap_counts[gap];
}

void
wb_fuzz_known_gap (const char *file, int line, WbFuzzGap gap, const char *format, ...)
{
  g_autofree char *what = NULL;
  va_list args;

  g_return_if_fail (gap < WB_FUZZ_N_GAPS);
  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  if (g_strcmp0 (g_getenv ("WB_FUZZ_NO_KNOWN_GAPS"), "1") == 0)
    wb_fuzz_fail (file, line, "%s [known gap: %s]", what, wb_fuzz_known_gap_name (gap));
  if (gap_counts[gap]++ == 0)
    fprintf (stderr, "%s:%d: tolerated, known gap (%s): %s\n", file, line,
             wb_fuzz_known_gap_name (gap), what);
}

void
wb_fuzz_check_serialized (const char *text, gsize length, const char *what)
{
  gsize offset = 0;
  WbFuzzJsonResult strict = wb_fuzz_json_check (text, length, &offset);

  if (strict != WB_FUZZ_JSON_OK)
    wb_fuzz_fail (__FILE__, __LINE__, "%s is %s at byte %" G_GSIZE_FORMAT ": %.*s", what,
                  wb_fuzz_json_result_to_string (strict), offset, (int)MIN (length, 400), text);
}
