/* SPDX-License-Identifier: MIT */
/*
 * The fuzzing dictionaries name what the daemon knows: every message type
 * of message.c's table is in wave.dict, every group and key of the default
 * configuration file (data/wave-bridge.conf, which lists them all) is in
 * config.dict. A type or key added later without its token would leave
 * libFuzzer to guess it.
 */
#define G_LOG_DOMAIN "wave-test-fuzz-dicts"

#include <string.h>

#include "message.h"

/* The tokens of a libFuzzer dictionary: each quoted line, unescaped (\\,
 * \" and \xNN). */
static GPtrArray *
read_dict (const char *name)
{
  g_autofree char *path
      = g_build_filename (g_getenv ("WB_SOURCE_DIR"), "tests", "fuzz", name, NULL);
  g_autofree char *contents = NULL;
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) lines = NULL;
  GPtrArray *tokens = g_ptr_array_new_with_free_func (g_free);

  g_assert_true (g_file_get_contents (path, &contents, NULL, &error));
  g_assert_no_error (error);
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *line = lines[i];
      GString *token;
      gsize n = strlen (line);

      if (n == 0 || line[0] == '#')
        continue;
      g_assert_true (n >= 2 && line[0] == '"' && line[n - 1] == '"');
      token = g_string_new (NULL);
      for (gsize j = 1; j < n - 1; j++)
        {
          if (line[j] != '\\')
            {
              g_string_append_c (token, line[j]);
              continue;
            }
          j++;
          if (line[j] == 'x')
            {
              g_string_append_c (token, (char)(g_ascii_xdigit_value (line[j + 1]) * 16
                                               + g_ascii_xdigit_value (line[j + 2])));
              j += 2;
            }
          else
            {
              g_assert_true (line[j] == '\\' || line[j] == '"');
              g_string_append_c (token, line[j]);
            }
        }
      g_ptr_array_add (tokens, g_string_free (token, FALSE));
    }
  g_assert_cmpuint (tokens->len, >, 0);
  return tokens;
}

static gboolean
has_token (GPtrArray *tokens, const char *token)
{
  for (guint i = 0; i < tokens->len; i++)
    if (g_str_equal (tokens->pdata[i], token))
      return TRUE;
  return FALSE;
}

static void
test_wave_types (void)
{
  g_autoptr (GPtrArray) tokens = read_dict ("wave.dict");

  for (int t = WB_MESSAGE_TYPE_INVALID + 1; t < WB_MESSAGE_N_TYPES; t++)
    {
      g_autofree char *token
          = g_strdup_printf ("\"%s\"", wb_message_type_to_string ((WbMessageType)t));

      if (!has_token (tokens, token))
        g_error ("wave.dict lacks %s", token);
    }
}

static void
test_config_keys (void)
{
  g_autoptr (GPtrArray) tokens = read_dict ("config.dict");
  g_autofree char *path
      = g_build_filename (g_getenv ("WB_SOURCE_DIR"), "data", "wave-bridge.conf", NULL);
  g_autofree char *contents = NULL;
  g_auto (GStrv) lines = NULL;
  guint keys = 0;

  g_assert_true (g_file_get_contents (path, &contents, NULL, NULL));
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *line = lines[i][0] == '#' ? lines[i] + 1 : lines[i];
      const char *equals = strchr (line, '=');
      g_autofree char *token = NULL;

      if (line[0] == '[')
        token = g_strdup (line);
      else if (equals != NULL && g_ascii_isupper (line[0]) && strchr (line, ' ') == NULL)
        {
          token = g_strndup (line, equals - line + 1);
          keys++;
        }
      if (token != NULL && !has_token (tokens, token))
        g_error ("config.dict lacks %s (data/wave-bridge.conf)", token);
    }
  /* The default file really listed the keys. */
  g_assert_cmpuint (keys, >=, 20);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/fuzz-dicts/wave-types", test_wave_types);
  g_test_add_func ("/fuzz-dicts/config-keys", test_config_keys);
  return g_test_run ();
}
