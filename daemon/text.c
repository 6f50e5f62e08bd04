/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-text"

#include "text.h"

#include <string.h>

#define REPLACEMENT_CHARACTER 0xFFFD
#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */

gboolean
wb_unichar_is_noncharacter (gunichar c)
{
  return (c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE;
}

gboolean
wb_unichar_is_unsafe (gunichar c)
{
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x2028 || c == 0x2029
         || wb_unichar_is_noncharacter (c);
}

char *
wb_text_sanitize (const char *text, gssize length, gsize max_bytes)
{
  g_autofree char *valid = NULL;
  GString *out;
  gsize keep;

  g_return_val_if_fail (max_bytes >= strlen (ELLIPSIS) + 1, NULL);

  if (text == NULL)
    {
      text = "";
      length = 0;
    }
  /* Invalid sequences, and NUL bytes inside @length, become U+FFFD. */
  valid = g_utf8_make_valid (text, length);
  out = g_string_sized_new (MIN (strlen (valid), max_bytes) + 1);
  for (const char *p = valid; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (wb_unichar_is_unsafe (c))
        g_string_append_unichar (out, REPLACEMENT_CHARACTER);
      else
        g_string_append_len (out, p, g_utf8_next_char (p) - p);
      /* Past the bound: it will be cut, the rest does not matter. */
      if (out->len > max_bytes)
        break;
    }
  if (out->len <= max_bytes)
    return g_string_free (out, FALSE);

  /* Cut at a character boundary so that the ellipsis fits. */
  keep = max_bytes - strlen (ELLIPSIS);
  while (keep > 0 && (out->str[keep] & 0xC0) == 0x80)
    keep--;
  g_string_truncate (out, keep);
  g_string_append (out, ELLIPSIS);
  return g_string_free (out, FALSE);
}

static gboolean
set_problem (const char **out_problem, const char *problem)
{
  if (out_problem != NULL)
    *out_problem = problem;
  return FALSE;
}

gboolean
wb_text_check_identifier (const char *text, gsize max_bytes, const char **out_problem)
{
  gsize length = text != NULL ? strlen (text) : 0;

  if (length == 0)
    return set_problem (out_problem, "is empty");
  if (length > max_bytes)
    return set_problem (out_problem, "is too long");
  if (!g_utf8_validate_len (text, length, NULL))
    return set_problem (out_problem, "is not valid UTF-8");
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (wb_unichar_is_noncharacter (c))
        return set_problem (out_problem, "contains a Unicode noncharacter");
      if (wb_unichar_is_unsafe (c))
        return set_problem (out_problem, "contains a control character or line separator");
      /* Invisible: a bidi override or a zero-width space makes an id that
       * reads as another one in logs and `busctl tree`. */
      if (g_unichar_type (c) == G_UNICODE_FORMAT)
        return set_problem (out_problem, "contains an invisible format character");
    }
  return TRUE;
}
