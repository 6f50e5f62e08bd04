/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for text from outside (daemon/text.c): which characters are
 * unsafe (checked against GLib's Unicode tables for every code point),
 * sanitizing server text, and the identifier rule.
 */
#define G_LOG_DOMAIN "wave-test-text"

#include "text.h"

#include <string.h>

#define RANDOM_ROUNDS 5000
#define RANDOM_MAX_BYTES 200
#define SMALL_BOUND 16

#define REPLACEMENT "\xef\xbf\xbd"
#define ELLIPSIS "\xe2\x80\xa6"

static void
test_classification (void)
{
  guint noncharacters = 0;

  for (gunichar c = 0; c <= 0x10FFFF; c++)
    {
      GUnicodeType type;
      gboolean expected;

      if (c >= 0xD800 && c <= 0xDFFF)
        continue; /* not characters; UTF-8 cannot hold them */
      type = g_unichar_type (c);
      /* Unicode: 66 noncharacters, U+FDD0..U+FDEF and the last two of each plane. */
      if (wb_unichar_is_noncharacter (c))
        {
          noncharacters++;
          g_assert_cmpint (type, ==, G_UNICODE_UNASSIGNED);
        }
      expected = type == G_UNICODE_CONTROL || type == G_UNICODE_LINE_SEPARATOR
                 || type == G_UNICODE_PARAGRAPH_SEPARATOR || wb_unichar_is_noncharacter (c);
      if (wb_unichar_is_unsafe (c) != expected)
        g_error ("U+%04X: unsafe %d, expected %d", c, wb_unichar_is_unsafe (c), expected);
    }
  g_assert_cmpuint (noncharacters, ==, 66);
  g_assert_true (wb_unichar_is_noncharacter (0xFFFE));
  g_assert_true (wb_unichar_is_noncharacter (0x10FFFF));
  g_assert_false (wb_unichar_is_noncharacter (0xFFFD));
}

static void
expect_sanitized (const char *input, gssize length, gsize max_bytes, const char *expected)
{
  g_autofree char *out = wb_text_sanitize (input, length, max_bytes);

  g_assert_cmpstr (out, ==, expected);
}

static void
test_sanitize (void)
{
  expect_sanitized (NULL, -1, 64, "");
  expect_sanitized ("", -1, 64, "");
  expect_sanitized ("Service Unavailable", -1, 64, "Service Unavailable");
  expect_sanitized ("héllo ✓ 😀", -1, 64, "héllo ✓ 😀");
  /* Not UTF-8 (a captive portal's Latin-1 reason phrase). */
  expect_sanitized ("Acc\xe8s refus\xe9", -1, 64, "Acc" REPLACEMENT "s refus" REPLACEMENT);
  expect_sanitized ("\xc0\xaf", -1, 64, REPLACEMENT REPLACEMENT);
  expect_sanitized ("\xed\xa0\x80", -1, 64, REPLACEMENT REPLACEMENT REPLACEMENT);
  /* A NUL inside the given length. */
  expect_sanitized ("a\0b", 3, 64, "a" REPLACEMENT "b");
  expect_sanitized ("ab", 1, 64, "a");
  /* Lines and controls cannot start a new log line or sd_notify assignment. */
  expect_sanitized ("a\nWATCHDOG=trigger", -1, 64, "a" REPLACEMENT "WATCHDOG=trigger");
  expect_sanitized ("\r\t\x1b[31m\x7f", -1, 64,
                    REPLACEMENT REPLACEMENT REPLACEMENT "[31m" REPLACEMENT);
  expect_sanitized ("\xc2\x85|\xe2\x80\xa8|\xe2\x80\xa9", -1, 64,
                    REPLACEMENT "|" REPLACEMENT "|" REPLACEMENT);
  /* What sd-bus refuses. */
  expect_sanitized ("bad\xef\xbf\xbeid\xef\xb7\x90", -1, 64, "bad" REPLACEMENT "id" REPLACEMENT);
  /* The bound: fits exactly, or is cut at a character with an ellipsis. */
  expect_sanitized ("0123456789abcdef", -1, SMALL_BOUND, "0123456789abcdef");
  expect_sanitized ("0123456789abcdefg", -1, SMALL_BOUND, "0123456789abc" ELLIPSIS);
  expect_sanitized ("0123456789ab€€", -1, SMALL_BOUND, "0123456789ab" ELLIPSIS);
  expect_sanitized ("0123456789a€€", -1, SMALL_BOUND, "0123456789a" ELLIPSIS);
  expect_sanitized ("😀😀😀😀😀", -1, SMALL_BOUND, "😀😀😀" ELLIPSIS);
  expect_sanitized ("\n\n\n\n\n\n", -1, SMALL_BOUND,
                    REPLACEMENT REPLACEMENT REPLACEMENT REPLACEMENT ELLIPSIS);
}

static void
test_sanitize_property (void)
{
  g_autoptr (GString) input = g_string_new (NULL);

  for (guint round = 0; round < RANDOM_ROUNDS; round++)
    {
      gsize bound = (gsize)g_test_rand_int_range (4, 80);
      g_autofree char *out = NULL;
      guint n = (guint)g_test_rand_int_range (0, RANDOM_MAX_BYTES);

      g_string_truncate (input, 0);
      for (guint i = 0; i < n; i++)
        g_string_append_c (input, (char)g_test_rand_int_range (0, 256));
      out = wb_text_sanitize (input->str, (gssize)input->len, bound);
      g_assert_cmpuint (strlen (out), <=, bound);
      g_assert_true (g_utf8_validate (out, -1, NULL));
      for (const char *p = out; *p != '\0'; p = g_utf8_next_char (p))
        g_assert_false (wb_unichar_is_unsafe (g_utf8_get_char (p)));
      /* Valid, safe, short text comes out unchanged. */
      {
        g_autofree char *again = wb_text_sanitize (out, -1, bound);

        g_assert_cmpstr (again, ==, out);
      }
    }
}

static void
test_identifier (void)
{
  g_autofree char *longest = g_strnfill (256, 'x');
  g_autofree char *too_long = g_strnfill (257, 'x');
  static const struct
  {
    const char *text;
    const char *problem;
  } refused[] = {
    { "", "is empty" },
    { "bad\xef\xbf\xbeid", "contains a Unicode noncharacter" },
    { "\xef\xb7\x90", "contains a Unicode noncharacter" },
    { "\xf4\x8f\xbf\xbf", "contains a Unicode noncharacter" },
    { "a\nb", "contains a control character or line separator" },
    { "a\tb", "contains a control character or line separator" },
    { "a\x7f", "contains a control character or line separator" },
    { "a\xc2\x85", "contains a control character or line separator" },
    { "a\xe2\x80\xa8", "contains a control character or line separator" },
    { "rtl\xe2\x80\xae"
      "evil",
      "contains an invisible format character" },
    { "zw\xe2\x80\x8bsp", "contains an invisible format character" },
    { "\xef\xbb\xbf"
      "bom",
      "contains an invisible format character" },
    { "a\xff", "is not valid UTF-8" },
    { "a\xed\xa0\x80", "is not valid UTF-8" },
  };
  const char *problem = NULL;

  g_assert_true (wb_text_check_identifier ("stream_abc123", 256, &problem));
  g_assert_true (wb_text_check_identifier ("ström 😀 with spaces/and:punct", 256, NULL));
  g_assert_true (wb_text_check_identifier (longest, 256, NULL));
  g_assert_false (wb_text_check_identifier (too_long, 256, &problem));
  g_assert_cmpstr (problem, ==, "is too long");
  g_assert_false (wb_text_check_identifier (NULL, 256, &problem));
  g_assert_cmpstr (problem, ==, "is empty");
  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      problem = NULL;
      g_assert_false (wb_text_check_identifier (refused[i].text, 256, &problem));
      g_assert_cmpstr (problem, ==, refused[i].problem);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/text/classification", test_classification);
  g_test_add_func ("/text/sanitize", test_sanitize);
  g_test_add_func ("/text/sanitize-property", test_sanitize_property);
  g_test_add_func ("/text/identifier", test_identifier);
  return g_test_run ();
}
