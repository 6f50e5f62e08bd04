/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the WAVE message model: every input goes through
 * wb_message_parse() in both directions, and whatever is accepted must
 * serialize to one line that parses back to the same message.
 *
 * Standalone (the default build): main() below replays every file of the
 * corpus directories given as arguments (default:
 * $WB_SOURCE_DIR/tests/corpus/message), each whole and cut at a few
 * lengths, and prints TAP. meson runs it as the 'fuzz-message' test of the
 * 'unit' suite, so a build with -Db_sanitize=address,undefined replays the
 * hostile corpus under ASan/UBSan.
 *
 * Coverage-guided with libFuzzer (clang only): leave main() out with
 * -DWB_FUZZ_LIBFUZZER and build message.c with the same instrumentation:
 *
 *   clang -g -O1 -DWB_FUZZ_LIBFUZZER -fsanitize=fuzzer,address,undefined \
 *     -Idaemon tests/fuzz-message.c daemon/message.c \
 *     $(pkg-config --cflags --libs glib-2.0 json-glib-1.0) -o fuzz-message
 *   ./fuzz-message -max_len=70000 NEW_INPUTS/ tests/corpus/message/
 *
 * (libFuzzer writes new inputs to the first directory; copy crashers into
 * tests/corpus/message so the standalone run keeps replaying them.)
 */
#define G_LOG_DOMAIN "wave-fuzz-message"

#include "message.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Inputs up to this size are also replayed cut at every length. */
#define ALL_PREFIXES_MAX_BYTES 2048

#define FUZZ_CHECK(condition)                                                                      \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (!(condition))                                                                              \
      g_error ("%s:%d: invariant failed: %s", __FILE__, __LINE__, #condition);                     \
  }                                                                                                \
  G_STMT_END

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_rejection (const GError *error)
{
  FUZZ_CHECK (error != NULL);
  FUZZ_CHECK (error->domain == WB_MESSAGE_ERROR_DOMAIN);
  FUZZ_CHECK (error->code >= WB_MESSAGE_ERROR_INVALID_UTF8
              && error->code <= WB_MESSAGE_ERROR_NUL_CHARACTER);
  /* Error texts are sent back to clients inside JSON. */
  FUZZ_CHECK (g_utf8_validate (error->message, -1, NULL));
}

/* Reads every member through the typed accessors: none may misbehave on
 * values of another type. */
static void
touch_members (const WbMessage *message)
{
  JsonObjectIter iter;
  const char *name;
  JsonNode *member;

  json_object_iter_init (&iter, message->body);
  while (json_object_iter_next (&iter, &name, &member))
    {
      const char *text = wb_message_get_string (message, name);

      FUZZ_CHECK (text == NULL || g_utf8_validate (text, -1, NULL));
      (void)wb_message_get_int (message, name);
      (void)wb_message_get_double (message, name);
    }
}

static void
check_events (const WbMessage *message)
{
  g_auto (GStrv) events = wb_message_dup_events (message);
  guint n = 0;

  FUZZ_CHECK (events != NULL);
  for (; events[n] != NULL; n++)
    {
      FUZZ_CHECK (wb_message_is_stream_event_name (events[n]));
      FUZZ_CHECK (n == 0 || strcmp (events[n - 1], events[n]) < 0);
    }
  FUZZ_CHECK (n >= 1 && n <= g_strv_length ((char **)wb_message_stream_event_names ()));
}

static void
check_round_trip (const WbMessage *message, WbDirection direction)
{
  g_autoptr (GBytes) line = wb_json_to_line (message->root);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) again = NULL;
  gsize length = 0;
  const char *text = g_bytes_get_data (line, &length);

  /* Exactly one line, whatever the strings held. */
  FUZZ_CHECK (length >= 1 && text[length - 1] == '\n');
  FUZZ_CHECK (memchr (text, '\n', length - 1) == NULL);
  FUZZ_CHECK (g_utf8_validate_len (text, length, NULL));

  again = wb_message_parse (text, length - 1, direction, &error);
  if (again == NULL)
    g_error ("accepted input serialized to a rejected line (%s): %.*s", error->message,
             (int)MIN (length, 400), text);
  FUZZ_CHECK (again->type == message->type);
  FUZZ_CHECK (g_strcmp0 (again->stream_id, message->stream_id) == 0);
  FUZZ_CHECK (json_node_equal (again->root, message->root));
}

static void
check_one (const uint8_t *data, size_t size, WbDirection direction)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message = wb_message_parse ((const char *)data, size, direction, &error);

  if (message == NULL)
    {
      check_rejection (error);
      return;
    }
  FUZZ_CHECK (error == NULL);
  FUZZ_CHECK (message->type > WB_MESSAGE_TYPE_INVALID && message->type < WB_MESSAGE_N_TYPES);
  FUZZ_CHECK (wb_message_type_to_string (message->type) != NULL);
  FUZZ_CHECK (message->root != NULL && JSON_NODE_HOLDS_OBJECT (message->root));
  FUZZ_CHECK (message->body != NULL);
  FUZZ_CHECK (message->stream_id == NULL
              || (message->stream_id[0] != '\0'
                  && strlen (message->stream_id) <= WB_MESSAGE_MAX_STREAM_ID_BYTES));
  FUZZ_CHECK (message->request_id == NULL || JSON_NODE_HOLDS_VALUE (message->request_id)
              || JSON_NODE_HOLDS_NULL (message->request_id));
  if (direction == WB_DIRECTION_TO_SERVER && message->type == WB_MESSAGE_CHAT_MESSAGE)
    {
      const char *text = wb_message_get_string (message, "message");

      FUZZ_CHECK (text != NULL && text[0] != '\0' && strlen (text) <= WB_MESSAGE_MAX_TEXT_BYTES);
    }
  touch_members (message);
  if (message->type == WB_MESSAGE_SUBSCRIBE)
    check_events (message);
  check_round_trip (message, direction);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  check_one (data, size, WB_DIRECTION_TO_SERVER);
  check_one (data, size, WB_DIRECTION_TO_CLIENT);
  return 0;
}

#ifndef WB_FUZZ_LIBFUZZER

static void
replay (const char *contents, gsize length)
{
  /* Through a fresh heap copy, so ASan sees any read past the end. */
  g_autofree uint8_t *copy = g_memdup2 (contents, length);

  LLVMFuzzerTestOneInput (copy, length);
  if (length <= ALL_PREFIXES_MAX_BYTES)
    {
      for (gsize cut = 0; cut < length; cut++)
        {
          g_autofree uint8_t *prefix = g_memdup2 (contents, cut);

          LLVMFuzzerTestOneInput (prefix, cut);
        }
    }
  else
    {
      const gsize cuts[] = { 0, 1, length / 2, length - 1 };

      for (gsize i = 0; i < G_N_ELEMENTS (cuts); i++)
        {
          g_autofree uint8_t *prefix = g_memdup2 (contents, cuts[i]);

          LLVMFuzzerTestOneInput (prefix, cuts[i]);
        }
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

  if (argc > 1)
    {
      for (int i = 1; i < argc; i++)
        if (!collect (argv[i], files, &error))
          break;
    }
  else
    {
      const char *source_dir = g_getenv ("WB_SOURCE_DIR");
      g_autofree char *corpus = NULL;

      if (source_dir == NULL)
        {
          g_printerr ("usage: %s CORPUS_DIR_OR_FILE... (or set WB_SOURCE_DIR)\n", argv[0]);
          return 2;
        }
      corpus = g_build_filename (source_dir, "tests", "corpus", "message", NULL);
      collect (corpus, files, &error);
    }
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
      /* A failed invariant aborts the run: the last line names the file. */
      g_print ("# %s (%" G_GSIZE_FORMAT " bytes)\n", base, length);
      fflush (stdout);
      replay (contents, length);
      g_print ("ok %u - %s\n", i + 1, base);
    }
  return 0;
}

#endif /* !WB_FUZZ_LIBFUZZER */
