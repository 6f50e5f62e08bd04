/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-text.h"

#include <string.h>

#include "text.h"

#define REPLACEMENT_CHARACTER 0xFFFD

gboolean
wb_dbus_text_is_carryable (const char *text)
{
  if (text == NULL || !g_utf8_validate (text, -1, NULL))
    return FALSE;
  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    if (wb_unichar_is_noncharacter (g_utf8_get_char (p)))
      return FALSE;
  return TRUE;
}

const char *
wb_dbus_text_carryable (const char *text, GPtrArray *keep)
{
  g_autofree char *valid = NULL;
  GString *copy;
  char *owned;

  g_return_val_if_fail (keep != NULL, "");

  if (text == NULL)
    return "";
  if (wb_dbus_text_is_carryable (text))
    return text;
  valid = g_utf8_make_valid (text, -1);
  copy = g_string_sized_new (strlen (valid));
  for (const char *p = valid; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      g_string_append_unichar (copy, wb_unichar_is_noncharacter (c) ? REPLACEMENT_CHARACTER : c);
    }
  owned = g_string_free (copy, FALSE);
  g_ptr_array_add (keep, owned);
  return owned;
}
