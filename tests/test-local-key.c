/* SPDX-License-Identifier: MIT */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "local-key.h"

static char *
make_temp_dir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("wb-local-key-XXXXXX", &error);

  g_assert_no_error (error);
  return dir;
}

static char *
read_text (const char *path)
{
  g_autoptr (GError) error = NULL;
  char *text = NULL;

  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  g_assert_no_error (error);
  return g_strstrip (text);
}

static void
remove_tree (const char *dir, const char *sub, const char *file)
{
  g_autofree char *subdir = g_build_filename (dir, sub, NULL);
  g_autofree char *path = g_build_filename (subdir, file, NULL);

  g_unlink (path);
  g_rmdir (subdir);
  g_rmdir (dir);
}

/* A missing file is created: a random key of the documented shape, mode
 * 0640 in a 0750 directory whatever the umask, the same key read again. */
static void
test_created (void)
{
  g_autofree char *dir = make_temp_dir ();
  g_autofree char *path = g_build_filename (dir, "state", "local-key", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbLocalKey) key = NULL;
  g_autoptr (WbLocalKey) again = NULL;
  g_autofree char *text = NULL;
  g_autofree char *state_dir = g_path_get_dirname (path);
  mode_t old_umask = umask (0077);
  struct stat st;

  g_test_expect_message ("wave-local-key", G_LOG_LEVEL_MESSAGE, "Created a new local key in *");
  key = wb_local_key_load (path, &error);
  g_test_assert_expected_messages ();
  umask (old_umask);
  g_assert_no_error (error);
  g_assert_nonnull (key);
  g_assert_cmpint (stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0640);
  g_assert_cmpint (stat (state_dir, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0750);
  text = read_text (path);
  g_assert_true (g_str_has_prefix (text, WB_LOCAL_KEY_PREFIX));
  g_assert_cmpuint (strlen (text), ==,
                    strlen (WB_LOCAL_KEY_PREFIX) + 2 * WB_LOCAL_KEY_RANDOM_BYTES);
  g_assert_true (wb_local_key_check (key, text));
  g_assert_cmpstr (wb_local_key_get_path (key), ==, path);

  again = wb_local_key_load (path, &error);
  g_assert_no_error (error);
  g_assert_true (wb_local_key_equal (key, again));
  remove_tree (dir, "state", "local-key");
}

/* Two files created apart hold different keys. */
static void
test_random (void)
{
  g_autofree char *dir = make_temp_dir ();
  g_autofree char *path = g_build_filename (dir, "state", "local-key", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbLocalKey) first = NULL;
  g_autoptr (WbLocalKey) second = NULL;

  g_test_expect_message ("wave-local-key", G_LOG_LEVEL_MESSAGE, "Created a new local key in *");
  first = wb_local_key_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_unlink (path), ==, 0);
  g_test_expect_message ("wave-local-key", G_LOG_LEVEL_MESSAGE, "Created a new local key in *");
  second = wb_local_key_load (path, &error);
  g_test_assert_expected_messages ();
  g_assert_no_error (error);
  g_assert_false (wb_local_key_equal (first, second));
  remove_tree (dir, "state", "local-key");
}

static void
test_check (void)
{
  g_autofree char *dir = make_temp_dir ();
  g_autofree char *path = g_build_filename (dir, "local-key", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbLocalKey) key = NULL;

  g_assert_true (g_file_set_contents (path, "  my-local-key_0123.~\n", -1, NULL));
  key = wb_local_key_load (path, &error);
  g_assert_no_error (error);
  g_assert_true (wb_local_key_check (key, "my-local-key_0123.~"));
  g_assert_false (wb_local_key_check (key, NULL));
  g_assert_false (wb_local_key_check (key, ""));
  g_assert_false (wb_local_key_check (key, "my-local-key_0123."));
  g_assert_false (wb_local_key_check (key, "my-local-key_0123.~x"));
  g_assert_false (wb_local_key_check (key, "My-local-key_0123.~"));
  g_unlink (path);
  g_rmdir (dir);
}

/* A key written by hand must be long enough and URL-safe; the message
 * names the file, never the key. */
static void
test_refused (void)
{
  static const char *const bad[]
      = { "short", "has spaces in it here", "percent%20encoded-key", "plus+sign+in+the+key+x", "" };
  g_autofree char *dir = make_temp_dir ();
  g_autofree char *path = g_build_filename (dir, "local-key", NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (WbLocalKey) key = NULL;

      g_assert_true (g_file_set_contents (path, bad[i], -1, NULL));
      key = wb_local_key_load (path, &error);
      g_assert_null (key);
      g_assert_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE);
      g_assert_nonnull (strstr (error->message, path));
      if (bad[i][0] != '\0')
        g_assert_null (strstr (error->message, bad[i]));
    }
  g_unlink (path);
  g_rmdir (dir);
}

static void
test_world_readable_warns (void)
{
  g_autofree char *dir = make_temp_dir ();
  g_autofree char *path = g_build_filename (dir, "local-key", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbLocalKey) key = NULL;

  g_assert_true (g_file_set_contents (path, "readable-by-everyone-key", -1, NULL));
  g_assert_cmpint (g_chmod (path, 0644), ==, 0);
  g_test_expect_message ("wave-local-key", G_LOG_LEVEL_WARNING, "*readable by every user*");
  key = wb_local_key_load (path, &error);
  g_test_assert_expected_messages ();
  g_assert_no_error (error);
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* Files the tests write are not readable by others (that warns). */
  umask (0077);
  g_test_add_func ("/local-key/created", test_created);
  g_test_add_func ("/local-key/random", test_random);
  g_test_add_func ("/local-key/check", test_check);
  g_test_add_func ("/local-key/refused", test_refused);
  g_test_add_func ("/local-key/world-readable-warns", test_world_readable_warns);
  return g_test_run ();
}
