/* SPDX-License-Identifier: MIT */
/*
 * errno to GError, one way for the whole daemon: the G_IO_ERROR code
 * g_io_error_from_errno gives, and the message "<what>: <strerror>".
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Sets @error (which may be NULL) to the printf-style message, then ": "
 * and g_strerror (@errnum). @errnum is positive: errno, or -r from sd-bus.
 * Returns FALSE, so a caller can `return wb_set_error_from_errno (…);`. */
gboolean wb_set_error_from_errno (GError **error, int errnum, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

G_END_DECLS
