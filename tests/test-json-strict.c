/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the RFC 8259 checker (daemon/json-strict.c): a table of
 * texts it must accept and refuse (the lenient forms json-glib 1.6 reads,
 * each with the error class), and a property test that whatever the checker
 * accepts, json-glib reads too, and writes back (wb_json_to_string) as text
 * the checker accepts again with the same meaning. And the tree the daemon
 * builds itself (daemon/json-tree.c) is json-glib's, node types included.
 */
#define G_LOG_DOMAIN "wave-test-json-strict"

#include "json-strict.h"
#include "json-tree.h"
#include "message.h"

#include <string.h>

#define DEPTH 32
#define PROPERTY_ROUNDS 20000
#define PROPERTY_MAX_TOKENS 24

typedef struct
{
  const char *text;
  gsize length; /* 0: strlen */
} Input;

static gboolean
check (const char *text, gsize length, GError **error)
{
  return wb_json_strict_check (text, length != 0 ? length : strlen (text), DEPTH, error);
}

/* Exactly the same tree: kinds, value types (an int is not a double of the
 * same value), values bit for bit, member names and order. */
static gboolean
same_tree (JsonNode *a, JsonNode *b)
{
  if (json_node_get_node_type (a) != json_node_get_node_type (b))
    return FALSE;
  switch (json_node_get_node_type (a))
    {
    case JSON_NODE_OBJECT:
      {
        g_autoptr (GList) names_a = json_object_get_members (json_node_get_object (a));
        g_autoptr (GList) names_b = json_object_get_members (json_node_get_object (b));
        GList *l = names_a;
        GList *m = names_b;

        for (; l != NULL && m != NULL; l = l->next, m = m->next)
          if (g_strcmp0 (l->data, m->data) != 0
              || !same_tree (json_object_get_member (json_node_get_object (a), l->data),
                             json_object_get_member (json_node_get_object (b), m->data)))
            return FALSE;
        return l == NULL && m == NULL;
      }
    case JSON_NODE_ARRAY:
      {
        JsonArray *x = json_node_get_array (a);
        JsonArray *y = json_node_get_array (b);

        if (json_array_get_length (x) != json_array_get_length (y))
          return FALSE;
        for (guint i = 0; i < json_array_get_length (x); i++)
          if (!same_tree (json_array_get_element (x, i), json_array_get_element (y, i)))
            return FALSE;
        return TRUE;
      }
    case JSON_NODE_VALUE:
      if (json_node_get_value_type (a) != json_node_get_value_type (b))
        return FALSE;
      if (json_node_get_value_type (a) == G_TYPE_INT64)
        return json_node_get_int (a) == json_node_get_int (b);
      if (json_node_get_value_type (a) == G_TYPE_DOUBLE)
        {
          double x = json_node_get_double (a);
          double y = json_node_get_double (b);

          return memcmp (&x, &y, sizeof x) == 0;
        }
      if (json_node_get_value_type (a) == G_TYPE_BOOLEAN)
        return json_node_get_boolean (a) == json_node_get_boolean (b);
      return g_strcmp0 (json_node_get_string (a), json_node_get_string (b)) == 0;
    case JSON_NODE_NULL:
    default:
      return TRUE;
    }
}

/* @text passed the checker: the daemon's own tree is json-glib's. */
static void
assert_tree_agrees (const char *text, gsize length, JsonNode *json_glib_root)
{
  g_autoptr (JsonNode) ours = wb_json_tree_new (text, length);

  if (!same_tree (ours, json_glib_root))
    g_error ("json-tree.c and json-glib read %s differently", text);
  g_assert_true (json_node_is_immutable (ours));
}

static void
test_accepts (void)
{
  static const char *const valid[] = {
    "{}",
    "[]",
    "0",
    "-0",
    "-0.0",
    "1.5e+10",
    "1E-2",
    "0e0",
    "123456789",
    "true",
    "false",
    "null",
    "\"\"",
    " \t\r\n{ \"a\" : [ 1 , 2 ] }\r\n ",
    "[1,[2,[3,{\"k\":[]}]]]",
    "{\"a\":{\"b\":[true,false,null]}}",
    "\"\\/\\\\\\\"\\b\\f\\n\\r\\t\"",
    /* Escapes of every kind, a surrogate pair, U+001F escaped. */
    "\"\\u00e9\\u20AC\\ud83d\\ude00\\u001f\\uFFFE\"",
    /* Raw UTF-8, DEL, a noncharacter and U+2028: valid JSON (others' concern). */
    "\"é€😀\x7f\xef\xbf\xbe\xe2\x80\xa8\"",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-1.7976931348623157e308",
    /* Underflow is not an error: the value reads as 0 or a denormal. */
    "1e-400",
    /* Distinct names, also when they differ only after an escape. */
    "{\"a\":1,\"b\":2,\"A\":3,\"a\\u0062\":4,\"ab \":5}",
    /* The same name in different objects. */
    "{\"a\":{\"a\":1},\"b\":{\"a\":2},\"c\":[{\"a\":1},{\"a\":1}]}",
    "{\"type\":\"stream.health\",\"payload\":{\"stream_id\":\"s\",\"bitrate\":4500.5}}",
    NULL,
  };

  for (const char *const *text = valid; *text != NULL; text++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (JsonParser) parser = json_parser_new ();

      g_autofree char *shown = g_strescape (*text, NULL);

      g_test_message ("accept: %s", shown);
      check (*text, 0, &error);
      g_assert_no_error (error);
      /* And json-glib agrees, and so does the tree the daemon builds. */
      g_assert_true (json_parser_load_from_data (parser, *text, -1, NULL));
      assert_tree_agrees (*text, strlen (*text), json_parser_get_root (parser));
    }
}

typedef struct
{
  const char *text;
  WbJsonStrictError code;
} Refusal;

#define SYNTAX WB_JSON_STRICT_ERROR_SYNTAX
#define ENCODING WB_JSON_STRICT_ERROR_ENCODING
#define RANGE WB_JSON_STRICT_ERROR_RANGE
#define DUPLICATE WB_JSON_STRICT_ERROR_DUPLICATE
#define NUL WB_JSON_STRICT_ERROR_NUL

static const Refusal refusals[] = {
  /* The lenient numbers of issue 12, and friends. */
  { "{\"bitrate\":0x10}", SYNTAX },
  { "{\"bitrate\":$ff}", SYNTAX },
  { "{\"bitrate\":0b101}", SYNTAX },
  { "{\"bitrate\":017}", SYNTAX },
  { "{\"bitrate\":01.5}", SYNTAX },
  { "{\"bitrate\":-017}", SYNTAX },
  { "{\"bitrate\":00}", SYNTAX },
  { "{\"bitrate\":.5}", SYNTAX },
  { "{\"bitrate\":1.}", SYNTAX },
  { "{\"bitrate\":+1}", SYNTAX },
  { "{\"bitrate\":1.2.3}", SYNTAX },
  { "{\"bitrate\":12abc}", SYNTAX },
  { "{\"bitrate\":1e}", SYNTAX },
  { "{\"bitrate\":1e+}", SYNTAX },
  { "{\"bitrate\":-}", SYNTAX },
  { "{\"bitrate\":--1}", SYNTAX },
  { "{\"bitrate\":NaN}", SYNTAX },
  { "{\"bitrate\":Infinity}", SYNTAX },
  { "{\"bitrate\":-Infinity}", SYNTAX },
  /* Raw control characters in strings, unknown escapes. */
  { "{\"m\":\"a\x01z\"}", SYNTAX },
  { "{\"m\":\"a\x1fz\"}", SYNTAX },
  { "{\"m\":\"a\tz\"}", SYNTAX },
  { "{\"m\":\"a\nz\"}", SYNTAX },
  { "{\"m\":\"\\x41\"}", SYNTAX },
  { "{\"m\":\"\\'\"}", SYNTAX },
  { "{\"m\":\"\\U0041\"}", SYNTAX },
  { "{\"m\":\"\\u12\"}", SYNTAX },
  { "{\"m\":\"\\u12g4\"}", SYNTAX },
  { "{\"m\":\"\\", SYNTAX },
  { "{\"m\":\"unterminated", SYNTAX },
  /* Structure json-glib or others forgive. */
  { "{\"a\":[1,]}", SYNTAX },
  { "{\"a\":1,}", SYNTAX },
  { "[,1]", SYNTAX },
  { "{a:1}", SYNTAX },
  { "{'a':1}", SYNTAX },
  { "{\"a\":'b'}", SYNTAX },
  { "/*c*/{}", SYNTAX },
  { "{}//c", SYNTAX },
  { "{\"a\" 1}", SYNTAX },
  { "{\"a\":}", SYNTAX },
  { "[1 2]", SYNTAX },
  { "{\"a\":1 \"b\":2}", SYNTAX },
  { "{} {}", SYNTAX },
  { "{}x", SYNTAX },
  { "{}\v", SYNTAX },
  { "\f{}", SYNTAX },
  { "\xef\xbb\xbf{}", SYNTAX },
  { "tru", SYNTAX },
  { "truex", SYNTAX },
  { "nul", SYNTAX },
  { "True", SYNTAX },
  { "", SYNTAX },
  { "   ", SYNTAX },
  { "}", SYNTAX },
  { "{", SYNTAX },
  { "[", SYNTAX },
  /* Not UTF-8, or not Unicode once unescaped. */
  { "{\"m\":\"\xff\"}", ENCODING },
  { "{\"m\":\"\xc0\xaf\"}", ENCODING },
  { "{\"m\":\"\xed\xa0\x80\"}", ENCODING },
  { "{\"m\":\"\xf4\x90\x80\x80\"}", ENCODING },
  { "{\"m\":\"\\udc00\"}", ENCODING },
  { "{\"m\":\"\\ud800\"}", ENCODING },
  { "{\"m\":\"\\ud800x\"}", ENCODING },
  { "{\"m\":\"\\ud800\\u0041\"}", ENCODING },
  { "{\"m\":\"\\ud800\\ud800\"}", ENCODING },
  { "{\"\\udfff\":1}", ENCODING },
  /* What json-glib cannot hold. */
  { "9223372036854775808", RANGE },
  { "-9223372036854775809", RANGE },
  { "{\"total_views\":99999999999999999999}", RANGE },
  { "1e400", RANGE },
  { "-1e400", RANGE },
  { "{\"a\":1,\"a\":2}", DUPLICATE },
  { "{\"a\":1,\"\\u0061\":2}", DUPLICATE },
  { "{\"x\":{\"b\":1,\"c\":2,\"b\":3}}", DUPLICATE },
  { "{\"m\":\"s\\u0000x\"}", NUL },
  { "{\"\\u0000\":1}", NUL },
  /* Anything else wrong wins over U+0000. */
  { "{\"m\":\"\\u0000\",\"n\":0x1}", SYNTAX },
  { "{\"m\":\"\\u0000\",\"n\":1e999}", RANGE },
};

static void
test_refuses (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (refusals); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *shown = g_strescape (refusals[i].text, NULL);

      g_test_message ("refuse: %s", shown);
      g_assert_false (check (refusals[i].text, strlen (refusals[i].text), &error));
      g_assert_error (error, WB_JSON_STRICT_ERROR, (int)refusals[i].code);
      g_assert_true (g_str_has_prefix (error->message, refusals[i].code == NUL
                                                           ? "unsupported JSON at byte "
                                                           : "invalid JSON at byte "));
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
    }
}

static void
test_raw_nul_and_length (void)
{
  g_autoptr (GError) error = NULL;

  /* A NUL byte is no JSON; the length, not the terminator, is the end. */
  g_assert_false (check ("{\"a\":\"b\0\"}", 10, &error));
  g_assert_error (error, WB_JSON_STRICT_ERROR, WB_JSON_STRICT_ERROR_ENCODING);
  g_clear_error (&error);
  g_assert_false (check ("{}\0", 3, &error));
  g_assert_error (error, WB_JSON_STRICT_ERROR, WB_JSON_STRICT_ERROR_ENCODING);
  g_clear_error (&error);
  /* Not NUL-terminated: only @length bytes are read. */
  g_assert_true (check ("{\"a\":1}garbage", 7, NULL));
  g_assert_true (wb_json_strict_check (NULL, 0, DEPTH, NULL) == FALSE);
}

static void
test_depth (void)
{
  g_autoptr (GString) at_limit = g_string_new (NULL);
  g_autoptr (GString) over = g_string_new (NULL);
  g_autoptr (GError) error = NULL;

  for (int i = 0; i < DEPTH; i++)
    g_string_append (at_limit, i % 2 ? "[" : "{\"a\":");
  for (int i = DEPTH - 1; i >= 0; i--)
    g_string_append (at_limit, i % 2 ? "]" : "}");
  g_string_printf (over, "[%s]", at_limit->str);
  g_assert_true (check (at_limit->str, at_limit->len, NULL));
  g_assert_false (check (over->str, over->len, &error));
  g_assert_error (error, WB_JSON_STRICT_ERROR, WB_JSON_STRICT_ERROR_TOO_DEEP);
  g_clear_error (&error);
  /* Brackets inside strings are text. */
  g_assert_true (check ("[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"]", 0, NULL));
  /* A stack-breaking depth is refused without recursing through it. */
  {
    g_autofree char *deep = g_strnfill (1000000, '[');

    g_assert_false (check (deep, 1000000, &error));
    g_assert_error (error, WB_JSON_STRICT_ERROR, WB_JSON_STRICT_ERROR_TOO_DEEP);
  }
}

/* Past a few names the set is a hash table: duplicates are found there too,
 * escaped or not, and a large object costs no more than linear time. */
static void
test_many_members (void)
{
  for (guint n = 1; n <= 40; n++)
    {
      g_autoptr (GString) distinct = g_string_new ("{");
      g_autoptr (GError) error = NULL;

      for (guint i = 0; i < n; i++)
        g_string_append_printf (distinct, "%s\"k%u\":%u", i > 0 ? "," : "", i, i);
      g_string_append_c (distinct, '}');
      g_assert_true (check (distinct->str, distinct->len, NULL));

      for (guint dup = 0; dup < n; dup++)
        {
          g_autoptr (GString) repeated = g_string_new_len (distinct->str, distinct->len - 1);

          /* "k<dup>" once more at the end: plainly, or with "k" escaped. */
          if (dup % 2 != 0)
            g_string_append_printf (repeated, ",\"k%u\":0}", dup);
          else
            g_string_append_printf (repeated, ",\"\\u006b%u\":0}", dup);
          g_assert_false (check (repeated->str, repeated->len, &error));
          g_assert_error (error, WB_JSON_STRICT_ERROR, WB_JSON_STRICT_ERROR_DUPLICATE);
          g_clear_error (&error);
        }
    }
  {
    /* 100 000 members, all distinct. */
    g_autoptr (GString) large = g_string_new ("{");

    for (guint i = 0; i < 100000; i++)
      g_string_append_printf (large, "%s\"m%u\":0", i > 0 ? "," : "", i);
    g_string_append_c (large, '}');
    g_assert_true (check (large->str, large->len, NULL));
  }
}

static void
test_offsets (void)
{
  g_autoptr (GError) error = NULL;

  g_assert_false (check ("{\"bitrate\":0x10}", 0, &error));
  g_assert_cmpstr (error->message, ==, "invalid JSON at byte 11: not a JSON number");
  g_clear_error (&error);
  g_assert_false (check ("{\"m\":\"ab\x01\"}", 0, &error));
  g_assert_cmpstr (error->message, ==,
                   "invalid JSON at byte 8: raw control character U+0001 in a string (it must be "
                   "escaped)");
  g_clear_error (&error);
  /* Hostile bytes are named, not repeated. */
  g_assert_false (check ("{\"a\":\xef\xbf\xbe}", 0, &error));
  g_assert_cmpstr (error->message, ==,
                   "invalid JSON at byte 5: unexpected byte 0xef, expected a value");
  g_clear_error (&error);
  g_assert_false (check ("{\"a\":1,\"a\":2}", 0, &error));
  g_assert_cmpstr (error->message, ==,
                   "invalid JSON at byte 7: a member name repeated in one object");
}

/* ---- property: strict-accepted text reads the same in json-glib -------- */

/* Fragments the generator strings together: most are JSON tokens, some are
 * the lenient forms json-glib reads, some are plain broken. */
static const char *const fragments[] = {
  "{",
  "}",
  "[",
  "]",
  ",",
  ":",
  " ",
  "\n",
  "\"a\"",
  "\"b\"",
  "\"a\"",
  "\"\\u0061\"",
  "0",
  "-0",
  "17",
  "017",
  "0x10",
  "$ff",
  "0b1",
  "1.5",
  "1.",
  ".5",
  "1e5",
  "1e400",
  "-9223372036854775809",
  "99999999999999999999",
  "9223372036854775807",
  "true",
  "false",
  "null",
  "tru",
  "NaN",
  "\"\\u0000\"",
  "\"\\ud83d\\ude00\"",
  "\"\\ud800\"",
  "\"\\udc00\"",
  "\"\\u001f\"",
  "\"\x1f\"",
  "\"\x01\"",
  "\"\\x41\"",
  "\"\xef\xbf\xbe\"",
  "\"\xe2\x80\xa8\"",
  "\"\xc0\xaf\"",
  "'s'",
  "/**/",
  "\xef\xbb\xbf",
  "\"\\\"\"",
  "\"\\\\\"",
  "\"é\"",
  "\t",
  "\r",
};

static const char *
pick (void)
{
  return fragments[g_test_rand_int_range (0, G_N_ELEMENTS (fragments))];
}

/* A value shaped like JSON, with fragments as leaves and names. */
static void
generate_value (GString *out, int depth)
{
  int kind = depth > 0 ? g_test_rand_int_range (0, 4) : 0;
  int n = g_test_rand_int_range (0, 4);

  if (kind == 0 || kind == 1)
    {
      g_string_append (out, pick ());
      return;
    }
  g_string_append_c (out, kind == 2 ? '[' : '{');
  for (int i = 0; i < n; i++)
    {
      if (i > 0)
        g_string_append_c (out, ',');
      if (kind == 3)
        g_string_append_printf (out, "%s:", g_test_rand_bit () ? pick () : "\"k\"");
      generate_value (out, depth - 1);
    }
  g_string_append_c (out, kind == 2 ? ']' : '}');
}

/* Half of the texts are fragments strung together, half shaped like JSON. */
static void
generate (GString *out)
{
  g_string_truncate (out, 0);
  if (g_test_rand_bit ())
    {
      generate_value (out, 4);
      return;
    }
  for (guint n = (guint)g_test_rand_int_range (1, PROPERTY_MAX_TOKENS); n > 0; n--)
    g_string_append (out, pick ());
}

static void
test_property_agrees_with_json_glib (void)
{
  g_autoptr (GString) text = g_string_new (NULL);
  guint accepted = 0;

  for (guint round = 0; round < PROPERTY_ROUNDS; round++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (JsonParser) again = json_parser_new ();
      g_autofree char *written = NULL;
      gsize written_length = 0;

      generate (text);
      if (!check (text->str, text->len, NULL))
        continue;
      accepted++;
      /* json-glib reads it... */
      if (!json_parser_load_from_data (parser, text->str, (gssize)text->len, NULL))
        g_error ("json-glib refuses what the checker accepted: %s", text->str);
      /* ...as the daemon's own reader does... */
      assert_tree_agrees (text->str, text->len, json_parser_get_root (parser));
      /* ...and what the bridge writes from it is strict JSON meaning the same. */
      written = wb_json_to_string (json_parser_get_root (parser), &written_length);
      if (!check (written, written_length, NULL))
        g_error ("the bridge wrote non-strict JSON %s from %s", written, text->str);
      g_assert_true (json_parser_load_from_data (again, written, (gssize)written_length, NULL));
      g_assert_true (json_node_equal (json_parser_get_root (parser), json_parser_get_root (again)));
    }
  g_test_message ("%u of %u generated texts were strict JSON", accepted, PROPERTY_ROUNDS);
  /* The generator must reach both sides, or this proves nothing. */
  g_assert_cmpuint (accepted, >, PROPERTY_ROUNDS / 20);
  g_assert_cmpuint (accepted, <, PROPERTY_ROUNDS);
}

/* json-tree.c reads only what the checker accepted; should the checker ever
 * be wrong, the reader still stays inside the buffer (exactly sized here,
 * so the sanitizer build sees any overrun) and ends. */
static void
test_tree_stays_in_bounds (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (refusals); i++)
    {
      gsize length = strlen (refusals[i].text);
      g_autofree char *exact = g_memdup2 (refusals[i].text, length);

      if (length > 0)
        json_node_unref (wb_json_tree_new (exact, length));
      for (gsize cut = 1; cut < length; cut++)
        json_node_unref (wb_json_tree_new (exact, cut));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/json-strict/accepts", test_accepts);
  g_test_add_func ("/json-strict/refuses", test_refuses);
  g_test_add_func ("/json-strict/raw-nul-and-length", test_raw_nul_and_length);
  g_test_add_func ("/json-strict/depth", test_depth);
  g_test_add_func ("/json-strict/offsets", test_offsets);
  g_test_add_func ("/json-strict/many-members", test_many_members);
  g_test_add_func ("/json-strict/tree-stays-in-bounds", test_tree_stays_in_bounds);
  g_test_add_func ("/json-strict/property/agrees-with-json-glib",
                   test_property_agrees_with_json_glib);
  return g_test_run ();
}
