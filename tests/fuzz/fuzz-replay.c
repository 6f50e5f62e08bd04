/* SPDX-License-Identifier: MIT */
/*
 * The corpus replayer that stands in for libFuzzer in the default build:
 * every file of the directories (or the files) given runs through the
 * target's LLVMFuzzerTestOneInput, whole and cut short, and the result is
 * printed as TAP. A failed invariant aborts the run; the last "# FILE"
 * line names the input.
 *
 *   fuzz-NAME [--prefixes=N] CORPUS_DIR_OR_FILE...
 *
 * Every input is also replayed cut at 0, 1, half and all but one bytes;
 * with --prefixes=N, inputs up to N bytes are cut at every length.
 */
#define G_LOG_DOMAIN "wave-fuzz-replay"

#include "fuzz.h"

#include <stdio.h>
#include <string.h>

static void
run_copy (const char *contents, gsize length)
{
  /* A fresh heap block of exactly @length bytes, so ASan and valgrind see
   * any read past the end. */
  g_autofree uint8_t *copy = g_memdup2 (contents, length);

  LLVMFuzzerTestOneInput (copy, length);
}

static void
replay (const char *contents, gsize length, gsize all_prefixes_max)
{
  run_copy (contents, length);
  if (length <= all_prefixes_max)
    {
      for (gsize cut = 0; cut < length; cut++)
        run_copy (contents, cut);
    }
  else if (length > 0)
    {
      const gsize cuts[] = { 0, 1, length / 2, length - 1 };

      for (gsize i = 0; i < G_N_ELEMENTS (cuts); i++)
        run_copy (contents, cuts[i]);
    }
}

static gboolean
collect (const char *path, GPtrArray *files, GError **error)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;

  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_ptr_array_add (files, g_strdup (path));
      return TRUE;
    }
  dir = g_dir_open (path, 0, error);
  if (dir == NULL)
    return FALSE;
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (files, g_build_filename (path, name, NULL));
  return TRUE;
}

static int
compare_paths (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

int
main (int argc, char **argv)
{
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  gint64 all_prefixes_max = 0;
  int first = 1;

  if (argc > 1 && g_str_has_prefix (argv[1], "--prefixes="))
    {
      all_prefixes_max = g_ascii_strtoll (argv[1] + strlen ("--prefixes="), NULL, 10);
      first = 2;
    }
  if (first >= argc)
    {
      g_printerr ("usage: %s [--prefixes=N] CORPUS_DIR_OR_FILE...\n", argv[0]);
      return 2;
    }
  for (int i = first; i < argc && error == NULL; i++)
    collect (argv[i], files, &error);
  if (error != NULL)
    {
      g_print ("Bail out! %s\n", error->message);
      return 1;
    }
  /* An empty corpus would pass without testing anything. */
  if (files->len == 0)
    {
      g_print ("Bail out! empty corpus\n");
      return 1;
    }

  g_ptr_array_sort (files, compare_paths);
  g_print ("1..%u\n", files->len);
  for (guint i = 0; i < files->len; i++)
    {
      const char *path = files->pdata[i];
      g_autofree char *contents = NULL;
      g_autofree char *base = g_path_get_basename (path);
      gsize length = 0;

      if (!g_file_get_contents (path, &contents, &length, &error))
        {
          g_print ("not ok %u - %s # %s\n", i + 1, base, error->message);
          g_clear_error (&error);
          continue;
        }
      g_print ("# %s (%" G_GSIZE_FORMAT " bytes)\n", base, length);
      fflush (stdout);
      replay (contents, length, (gsize)MAX (all_prefixes_max, 0));
      g_print ("ok %u - %s\n", i + 1, base);
    }
  for (WbFuzzGap gap = 0; gap < WB_FUZZ_N_GAPS; gap++)
    if (wb_fuzz_known_gap_count (gap) > 0)
      g_print ("# known gap met %" G_GUINT64_FORMAT " times: %s\n", wb_fuzz_known_gap_count (gap),
               wb_fuzz_known_gap_name (gap));
  return 0;
}
