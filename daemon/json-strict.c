/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-json"

#include "json-strict.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Deepest nesting a caller may ask for: the scanner recurses once per level. */
#define MAX_DEPTH_LIMIT 1024
/* Number tokens up to this long are range-checked on the stack. */
#define NUMBER_BUFFER_BYTES 64
/* Member names of one object compared one by one; more go in a hash table. */
#define NAMES_SEARCHED_LINEARLY 16

/* clang-format off */
G_DEFINE_QUARK (wb-json-strict-error-quark, wb_json_strict_error)
/* clang-format on */

typedef struct
{
  const guchar *start;
  const guchar *p;
  const guchar *end;
  guint depth;
  guint max_depth;
  gssize nul_at; /* offset of the first "\u0000", -1: none */
  GError **error;
} Scanner;

static gboolean fail (Scanner *s, WbJsonStrictError code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static gboolean
fail (Scanner *s, WbJsonStrictError code, const char *format, ...)
{
  g_autofree char *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  /* "\u0000" is JSON, only not JSON the bridge can carry. */
  g_set_error (s->error, WB_JSON_STRICT_ERROR, code, "%s at byte %" G_GSIZE_FORMAT ": %s",
               code == WB_JSON_STRICT_ERROR_NUL ? "unsupported JSON" : "invalid JSON",
               (gsize)(s->p - s->start), what);
  return FALSE;
}

/* Names the byte at the cursor without repeating input that may be hostile. */
static gboolean
unexpected (Scanner *s, const char *expected)
{
  guchar c;

  if (s->p >= s->end)
    return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "unexpected end of input, expected %s", expected);
  c = *s->p;
  if (c > 0x20 && c < 0x7F)
    return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "unexpected '%c', expected %s", c, expected);
  return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "unexpected byte 0x%02x, expected %s", c, expected);
}

static gboolean
at (const Scanner *s, char c)
{
  return s->p < s->end && *s->p == (guchar)c;
}

static gboolean
at_digit (const Scanner *s)
{
  return s->p < s->end && g_ascii_isdigit (*s->p);
}

/* RFC 8259 §2: the four whitespace characters, nothing else. */
static void
skip_whitespace (Scanner *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static gboolean
enter (Scanner *s)
{
  if (++s->depth > s->max_depth)
    return fail (s, WB_JSON_STRICT_ERROR_TOO_DEEP, "nested deeper than %u levels", s->max_depth);
  return TRUE;
}

static gboolean
read_hex4 (Scanner *s, gunichar *out_unit)
{
  gunichar unit = 0;

  for (int i = 0; i < 4; i++)
    {
      int digit = s->p + i < s->end ? g_ascii_xdigit_value (s->p[i]) : -1;

      if (digit < 0)
        return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "\\u must be followed by four hex digits");
      unit = unit << 4 | (gunichar)digit;
    }
  s->p += 4;
  *out_unit = unit;
  return TRUE;
}

/* The escape after a backslash at s->p; the code point goes to @out_char. */
static gboolean
read_escape (Scanner *s, gunichar *out_char)
{
  const guchar *backslash = s->p;
  gunichar high = 0; /* set by read_hex4(); -O2 cannot see that it fails otherwise */
  gunichar low = 0;

  s->p++;
  if (s->p >= s->end)
    return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "unterminated string");
  switch (*s->p)
    {
    case '"':
    case '\\':
    case '/':
      *out_char = *s->p++;
      return TRUE;
    case 'b':
      s->p++;
      *out_char = '\b';
      return TRUE;
    case 'f':
      s->p++;
      *out_char = '\f';
      return TRUE;
    case 'n':
      s->p++;
      *out_char = '\n';
      return TRUE;
    case 'r':
      s->p++;
      *out_char = '\r';
      return TRUE;
    case 't':
      s->p++;
      *out_char = '\t';
      return TRUE;
    case 'u':
      s->p++;
      if (!read_hex4 (s, &high))
        return FALSE;
      if (high >= 0xDC00 && high <= 0xDFFF)
        {
          s->p = backslash;
          return fail (s, WB_JSON_STRICT_ERROR_ENCODING, "escaped low surrogate without its pair");
        }
      if (high < 0xD800 || high > 0xDBFF)
        {
          if (high == 0 && s->nul_at < 0)
            s->nul_at = backslash - s->start;
          *out_char = high;
          return TRUE;
        }
      if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
        {
          s->p = backslash;
          return fail (s, WB_JSON_STRICT_ERROR_ENCODING, "escaped high surrogate without its pair");
        }
      s->p += 2;
      if (!read_hex4 (s, &low))
        return FALSE;
      if (low < 0xDC00 || low > 0xDFFF)
        {
          s->p = backslash;
          return fail (s, WB_JSON_STRICT_ERROR_ENCODING, "escaped high surrogate without its pair");
        }
      *out_char = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
      return TRUE;
    default:
      s->p = backslash;
      return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "invalid escape in a string");
    }
}

/* A string at s->p (the opening quote); its decoded text is appended to
 * @decoded when not NULL. The input is valid UTF-8 (checked first). */
static gboolean
scan_string (Scanner *s, GString *decoded)
{
  s->p++;
  for (;;)
    {
      guchar c;

      if (s->p >= s->end)
        return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "unterminated string");
      c = *s->p;
      if (c == '"')
        {
          s->p++;
          return TRUE;
        }
      if (c < 0x20)
        return fail (s, WB_JSON_STRICT_ERROR_SYNTAX,
                     "raw control character U+%04X in a string (it must be escaped)", c);
      if (c == '\\')
        {
          gunichar escaped = 0;

          if (!read_escape (s, &escaped))
            return FALSE;
          if (decoded != NULL)
            g_string_append_unichar (decoded, escaped);
          continue;
        }
      {
        gsize length = (gsize)g_utf8_skip[c];

        if (decoded != NULL)
          g_string_append_len (decoded, (const char *)s->p, (gssize)length);
        s->p += length;
      }
    }
}

static gboolean
check_number_range (Scanner *s, const guchar *begin, gboolean integer)
{
  gsize length = (gsize)(s->p - begin);
  char stack_buffer[NUMBER_BUFFER_BYTES + 1];
  g_autofree char *heap_buffer = NULL;
  char *token = stack_buffer;
  gboolean in_range;

  if (length > NUMBER_BUFFER_BYTES)
    token = heap_buffer = g_malloc (length + 1);
  memcpy (token, begin, length);
  token[length] = '\0';
  errno = 0;
  if (integer)
    {
      (void)g_ascii_strtoll (token, NULL, 10);
      in_range = errno != ERANGE;
    }
  else
    in_range = isfinite (g_ascii_strtod (token, NULL));
  if (in_range)
    return TRUE;
  s->p = begin;
  return fail (s, WB_JSON_STRICT_ERROR_RANGE, "%s",
               integer ? "integer outside the signed 64-bit range"
                       : "number too large for a double");
}

/* RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static gboolean
scan_number (Scanner *s)
{
  const guchar *begin = s->p;
  gboolean integer = TRUE;

  if (at (s, '-'))
    s->p++;
  if (!at_digit (s))
    return unexpected (s, "a digit");
  if (at (s, '0'))
    {
      s->p++;
      if (at_digit (s))
        {
          s->p = begin;
          return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "a number must not start with 0");
        }
    }
  else
    while (at_digit (s))
      s->p++;
  if (at (s, '.'))
    {
      integer = FALSE;
      s->p++;
      if (!at_digit (s))
        return unexpected (s, "a digit after '.'");
      while (at_digit (s))
        s->p++;
    }
  if (at (s, 'e') || at (s, 'E'))
    {
      integer = FALSE;
      s->p++;
      if (at (s, '+') || at (s, '-'))
        s->p++;
      if (!at_digit (s))
        return unexpected (s, "a digit in the exponent");
      while (at_digit (s))
        s->p++;
    }
  /* 0x10, 0b101, 1.2.3, 12abc: a number glued to more. */
  if (s->p < s->end && (g_ascii_isalnum (*s->p) || *s->p == '.' || *s->p == '_' || *s->p == '$'))
    {
      s->p = begin;
      return fail (s, WB_JSON_STRICT_ERROR_SYNTAX, "not a JSON number");
    }
  return check_number_range (s, begin, integer);
}

static gboolean
scan_literal (Scanner *s, const char *word)
{
  gsize length = strlen (word);

  if ((gsize)(s->end - s->p) < length || memcmp (s->p, word, length) != 0
      || (s->p + length < s->end && g_ascii_isalnum (s->p[length])))
    return unexpected (s, "a value");
  s->p += length;
  return TRUE;
}

static gboolean scan_value (Scanner *s);

/* The member names of one object, to find a repeated one. Names are
 * compared decoded ("a" and "\u0061" are the same name); most have no
 * escape and are compared where they are in the input. A few are checked
 * by a linear search without allocating; a hostile object with thousands of
 * members goes through a hash table. */
typedef struct
{
  const char *bytes;
  gsize length;
} Name;

typedef struct
{
  Name few[NAMES_SEARCHED_LINEARLY];
  guint n_few;
  GHashTable *many;   /* GBytes (static, on the names) → itself */
  GPtrArray *decoded; /* owns the decoded copies of escaped names */
} NameSet;

static void
name_set_clear (NameSet *set)
{
  g_clear_pointer (&set->many, g_hash_table_unref);
  g_clear_pointer (&set->decoded, g_ptr_array_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (NameSet, name_set_clear)

/* FALSE if @name is already in @set. */
static gboolean
name_set_add (NameSet *set, Name name)
{
  if (set->many == NULL && set->n_few < NAMES_SEARCHED_LINEARLY)
    {
      for (guint i = 0; i < set->n_few; i++)
        if (set->few[i].length == name.length
            && memcmp (set->few[i].bytes, name.bytes, name.length) == 0)
          return FALSE;
      set->few[set->n_few++] = name;
      return TRUE;
    }
  if (set->many == NULL)
    {
      set->many = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref,
                                         NULL);
      for (guint i = 0; i < set->n_few; i++)
        g_hash_table_add (set->many, g_bytes_new_static (set->few[i].bytes, set->few[i].length));
    }
  {
    GBytes *key = g_bytes_new_static (name.bytes, name.length);

    if (g_hash_table_contains (set->many, key))
      {
        g_bytes_unref (key);
        return FALSE;
      }
    g_hash_table_add (set->many, key);
    return TRUE;
  }
}

/* The member name starting at s->p (its opening quote), decoded. */
static gboolean
scan_name (Scanner *s, NameSet *set, Name *out_name)
{
  const guchar *name_at = s->p;
  g_autoptr (GString) decoded = NULL;

  if (!scan_string (s, NULL))
    return FALSE;
  out_name->bytes = (const char *)name_at + 1;
  out_name->length = (gsize)(s->p - name_at) - 2;
  if (memchr (out_name->bytes, '\\', out_name->length) == NULL)
    return TRUE;
  /* Escaped: read it again, decoding (it is valid: it was just read). */
  decoded = g_string_new (NULL);
  s->p = name_at;
  if (!scan_string (s, decoded))
    return FALSE;
  if (set->decoded == NULL)
    set->decoded = g_ptr_array_new_with_free_func (g_free);
  out_name->length = decoded->len;
  out_name->bytes = g_string_free (g_steal_pointer (&decoded), FALSE);
  g_ptr_array_add (set->decoded, (gpointer)out_name->bytes);
  return TRUE;
}

static gboolean
scan_object (Scanner *s)
{
  g_auto (NameSet) names = { 0 };

  if (!enter (s))
    return FALSE;
  s->p++;
  skip_whitespace (s);
  if (at (s, '}'))
    {
      s->p++;
      s->depth--;
      return TRUE;
    }
  for (;;)
    {
      const guchar *name_at;
      Name name;

      skip_whitespace (s);
      if (!at (s, '"'))
        return unexpected (s, "a member name");
      name_at = s->p;
      if (!scan_name (s, &names, &name))
        return FALSE;
      if (!name_set_add (&names, name))
        {
          s->p = name_at;
          return fail (s, WB_JSON_STRICT_ERROR_DUPLICATE, "a member name repeated in one object");
        }
      skip_whitespace (s);
      if (!at (s, ':'))
        return unexpected (s, "':'");
      s->p++;
      skip_whitespace (s);
      if (!scan_value (s))
        return FALSE;
      skip_whitespace (s);
      if (at (s, ','))
        {
          s->p++;
          continue;
        }
      if (at (s, '}'))
        {
          s->p++;
          s->depth--;
          return TRUE;
        }
      return unexpected (s, "',' or '}'");
    }
}

static gboolean
scan_array (Scanner *s)
{
  if (!enter (s))
    return FALSE;
  s->p++;
  skip_whitespace (s);
  if (at (s, ']'))
    {
      s->p++;
      s->depth--;
      return TRUE;
    }
  for (;;)
    {
      skip_whitespace (s);
      if (!scan_value (s))
        return FALSE;
      skip_whitespace (s);
      if (at (s, ','))
        {
          s->p++;
          continue;
        }
      if (at (s, ']'))
        {
          s->p++;
          s->depth--;
          return TRUE;
        }
      return unexpected (s, "',' or ']'");
    }
}

static gboolean
scan_value (Scanner *s)
{
  if (s->p >= s->end)
    return unexpected (s, "a value");
  switch (*s->p)
    {
    case '{':
      return scan_object (s);
    case '[':
      return scan_array (s);
    case '"':
      return scan_string (s, NULL);
    case 't':
      return scan_literal (s, "true");
    case 'f':
      return scan_literal (s, "false");
    case 'n':
      return scan_literal (s, "null");
    case '-':
      return scan_number (s);
    default:
      if (g_ascii_isdigit (*s->p))
        return scan_number (s);
      return unexpected (s, "a value");
    }
}

gboolean
wb_json_strict_check (const char *data, gsize length, guint max_depth, GError **error)
{
  Scanner s = { 0 };
  const char *invalid = NULL;

  g_return_val_if_fail (data != NULL || length == 0, FALSE);
  g_return_val_if_fail (max_depth <= MAX_DEPTH_LIMIT, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (data == NULL)
    data = "";
  s.start = s.p = (const guchar *)data;
  s.end = s.start + length;
  s.max_depth = max_depth;
  s.nul_at = -1;
  s.error = error;

  if (!g_utf8_validate_len (data, length, &invalid))
    {
      s.p = (const guchar *)invalid;
      /* GLib counts a NUL byte as invalid UTF-8; JSON has no place for one. */
      return fail (&s, WB_JSON_STRICT_ERROR_ENCODING,
                   *invalid == '\0' ? "NUL byte" : "not valid UTF-8");
    }
  skip_whitespace (&s);
  if (!scan_value (&s))
    return FALSE;
  skip_whitespace (&s);
  if (s.p < s.end)
    return fail (&s, WB_JSON_STRICT_ERROR_SYNTAX, "more data after the JSON value");
  if (s.nul_at >= 0)
    {
      s.p = s.start + s.nul_at;
      return fail (&s, WB_JSON_STRICT_ERROR_NUL,
                   "a string contains \\u0000, which the bridge cannot carry");
    }
  return TRUE;
}
