/* SPDX-License-Identifier: MIT */
#include "errno-util.h"

#include <gio/gio.h>

gboolean
wb_set_error_from_errno (GError **error, int errnum, const char *format, ...)
{
  g_autofree char *what = NULL;
  va_list args;

  if (error == NULL)
    return FALSE;
  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errnum), "%s: %s", what,
               g_strerror (errnum));
  return FALSE;
}
