/* SPDX-License-Identifier: MIT */
/* wb_set_error_from_errno: the code and message every errno error gets. */
#define G_LOG_DOMAIN "wave-test-errno-util"

#include <errno.h>
#include <gio/gio.h>

#include "errno-util.h"

static void
test_code_and_message (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *expected
      = g_strdup_printf ("Cannot bind /run/x.sock: %s", g_strerror (EADDRINUSE));

  g_assert_false (wb_set_error_from_errno (&error, EADDRINUSE, "Cannot bind %s", "/run/x.sock"));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
  g_assert_cmpstr (error->message, ==, expected);
}

static void
test_sd_bus_style (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *expected
      = g_strdup_printf ("Cannot add the object manager: %s", g_strerror (EPERM));
  int r = -EPERM; /* how sd-bus reports failure */

  g_assert_false (wb_set_error_from_errno (&error, -r, "Cannot add the object manager"));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_assert_cmpstr (error->message, ==, expected);
}

static void
test_unmapped_errno (void)
{
  g_autoptr (GError) error = NULL;

  /* errnos GIO has no code for still give an error, G_IO_ERROR_FAILED. */
  g_assert_false (wb_set_error_from_errno (&error, ENOTBLK, "Mount"));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_true (g_str_has_prefix (error->message, "Mount: "));
}

static void
test_null_error (void)
{
  /* Callers that ignore the reason pass NULL. */
  g_assert_false (wb_set_error_from_errno (NULL, ENOENT, "Cannot open %s", "x"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/errno-util/code-and-message", test_code_and_message);
  g_test_add_func ("/errno-util/sd-bus-style", test_sd_bus_style);
  g_test_add_func ("/errno-util/unmapped-errno", test_unmapped_errno);
  g_test_add_func ("/errno-util/null-error", test_null_error);
  return g_test_run ();
}
