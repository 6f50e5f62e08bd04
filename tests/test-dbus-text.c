/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for daemon/dbus-text.c, against sd-bus itself: for every
 * Unicode scalar value, sd-bus accepts it in a D-Bus string exactly when
 * wb_dbus_text_is_carryable() says so, and whatever
 * wb_dbus_text_carryable() returns, sd-bus accepts. Also: every
 * identifier text.h allows makes a valid object path that decodes back.
 */
#define G_LOG_DOMAIN "wave-test-dbus-text"

#include "dbus-text.h"
#include "message.h"
#include "text.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#define CODE_POINTS_PER_MESSAGE 65536
#define RANDOM_ROUNDS 3000
#define RANDOM_MAX_BYTES 40

G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus_message, sd_bus_message_unref)

typedef struct
{
  sd_bus *bus;
  int peer_fd;
} Fixture;

/* A bus on one end of a socketpair: enough for sd-bus to build messages
 * (it refuses on a bus never started); nothing is ever sent. */
static void
fixture_set_up (Fixture *fixture, gconstpointer data)
{
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  fixture->peer_fd = fds[1];
  g_assert_cmpint (sd_bus_new (&fixture->bus), >=, 0);
  g_assert_cmpint (sd_bus_set_fd (fixture->bus, fds[0], fds[0]), >=, 0);
  g_assert_cmpint (sd_bus_start (fixture->bus), >=, 0);
}

static void
fixture_tear_down (Fixture *fixture, gconstpointer data)
{
  fixture->bus = sd_bus_close_unref (fixture->bus);
  close (fixture->peer_fd);
}

static sd_bus_message *
new_signal (Fixture *fixture)
{
  sd_bus_message *message = NULL;

  g_assert_cmpint (sd_bus_message_new_signal (fixture->bus, &message, "/inc/wave/Bridge1",
                                              "inc.wave.Bridge1.Test", "Text"),
                   >=, 0);
  return message;
}

/* Whether sd-bus takes @text as a string argument. */
static gboolean
sd_bus_accepts (Fixture *fixture, const char *text)
{
  g_autoptr (sd_bus_message) message = new_signal (fixture);

  return sd_bus_message_append_basic (message, 's', text) >= 0;
}

static void
test_every_code_point (Fixture *fixture, gconstpointer data)
{
  g_autoptr (sd_bus_message) message = NULL;
  guint refused = 0;
  guint in_message = 0;

  for (gunichar c = 1; c <= 0x10FFFF; c++)
    {
      char text[8] = { 0 };
      gboolean carryable;
      int r;

      if (c >= 0xD800 && c <= 0xDFFF)
        continue;
      g_unichar_to_utf8 (c, text);
      carryable = wb_dbus_text_is_carryable (text);
      /* Many strings per message; a refused one spoils its message. */
      if (message == NULL)
        {
          message = new_signal (fixture);
          g_assert_cmpint (sd_bus_message_open_container (message, 'a', "s"), >=, 0);
          in_message = 0;
        }
      r = sd_bus_message_append_basic (message, 's', text);
      if ((r >= 0) != carryable)
        g_error ("U+%04X: sd-bus says %d, wb_dbus_text_is_carryable %d", c, r, carryable);
      if (r < 0)
        {
          refused++;
          g_clear_pointer (&message, sd_bus_message_unref);
          continue;
        }
      if (++in_message == CODE_POINTS_PER_MESSAGE)
        g_clear_pointer (&message, sd_bus_message_unref);
    }
  /* The 66 noncharacters, nothing else. */
  g_assert_cmpuint (refused, ==, 66);
}

static void
test_carryable_copies (Fixture *fixture, gconstpointer data)
{
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GString) random = g_string_new (NULL);
  const char *plain = "héllo ✓";

  /* Carryable text is returned as is, nothing kept. */
  g_assert_true (wb_dbus_text_carryable (plain, keep) == plain);
  g_assert_cmpstr (wb_dbus_text_carryable (NULL, keep), ==, "");
  g_assert_cmpuint (keep->len, ==, 0);
  /* Chat with U+FFFE: the noncharacter becomes U+FFFD, the rest stays. */
  g_assert_cmpstr (wb_dbus_text_carryable ("bad\xef\xbf\xbe chat \xef\xb7\x90!", keep), ==,
                   "bad\xef\xbf\xbd chat \xef\xbf\xbd!");
  g_assert_cmpstr (wb_dbus_text_carryable ("a\xff"
                                           "b",
                                           keep),
                   ==,
                   "a\xef\xbf\xbd"
                   "b");
  /* Controls are fine on D-Bus (the socket JSON escapes them). */
  g_assert_true (sd_bus_accepts (fixture, "a\x01\n\x7f"));
  g_assert_true (wb_dbus_text_is_carryable ("a\x01\n\x7f"));

  for (guint round = 0; round < RANDOM_ROUNDS; round++)
    {
      guint n = (guint)g_test_rand_int_range (0, RANDOM_MAX_BYTES);

      g_string_truncate (random, 0);
      for (guint i = 0; i < n; i++)
        g_string_append_c (random, (char)g_test_rand_int_range (1, 256));
      g_assert_true (sd_bus_accepts (fixture, wb_dbus_text_carryable (random->str, keep)));
    }
}

static void
test_identifier_paths (Fixture *fixture, gconstpointer data)
{
  static const char *const ids[] = {
    "stream_abc123", "s", "ström 😀", "a/b", "_2f", "..", "-", "with space", "\xe2\x82\xac",
  };
  g_autofree char *longest = g_strnfill (WB_MESSAGE_MAX_STREAM_ID_BYTES, '\xc3');

  /* 256 bytes of "é" would need pairs; make it valid: "é" * 128. */
  for (gsize i = 1; i < WB_MESSAGE_MAX_STREAM_ID_BYTES; i += 2)
    longest[i] = '\xa9';

  for (gsize i = 0; i <= G_N_ELEMENTS (ids); i++)
    {
      const char *id = i < G_N_ELEMENTS (ids) ? ids[i] : longest;
      char *path = NULL;
      char *decoded = NULL;

      g_assert_true (wb_text_check_identifier (id, WB_MESSAGE_MAX_STREAM_ID_BYTES, NULL));
      g_assert_true (wb_dbus_text_is_carryable (id));
      g_assert_true (sd_bus_accepts (fixture, id));
      g_assert_cmpint (sd_bus_path_encode ("/inc/wave/Bridge1/stream", id, &path), >=, 0);
      g_assert_true (sd_bus_object_path_is_valid (path));
      g_assert_cmpint (sd_bus_path_decode (path, "/inc/wave/Bridge1/stream", &decoded), >, 0);
      g_assert_cmpstr (decoded, ==, id);
      free (path);
      free (decoded);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/dbus-text/every-code-point", Fixture, NULL, fixture_set_up, test_every_code_point,
              fixture_tear_down);
  g_test_add ("/dbus-text/carryable-copies", Fixture, NULL, fixture_set_up, test_carryable_copies,
              fixture_tear_down);
  g_test_add ("/dbus-text/identifier-paths", Fixture, NULL, fixture_set_up, test_identifier_paths,
              fixture_tear_down);
  return g_test_run ();
}
