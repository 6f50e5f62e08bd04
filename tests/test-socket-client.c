/* SPDX-License-Identifier: MIT */
/*
 * One local connection (daemon/socket-client.c) over a real socketpair():
 * line framing, the line limit, the bounded output queue with its
 * bridge.dropped notice, the hard bound for replies, the slow-client
 * timeout, the lingering close and a peer that half-closes.
 */
#define G_LOG_DOMAIN "wave-test-socket-client"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "socket-client.h"
#include "test-util.h"

#define LINE_LIMIT 16
/* The kernel doubles it, and keeps its own floor; small either way, so the
 * client's own queue fills after a few lines. */
#define SMALL_SOCKET_BUFFER 4096
#define EVENT_LINE_BYTES 1000

typedef struct
{
  WbSocketClientGroup *group;
  WbSocketClient *client;
  int client_fd; /* the client's end (it owns it); only inspected */
  int peer_fd;   /* the test's end */
  GPtrArray *lines;
  guint too_long;
  gboolean closed;
  WbSocketClientCloseReason close_reason;
  GString *received; /* what the peer read */
  gboolean peer_eof;
} Fixture;

static void
line_cb (WbSocketClient *client, const char *line, gsize length, gpointer user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->lines, g_strndup (line, length));
}

static void
line_too_long_cb (WbSocketClient *client, gpointer user_data)
{
  Fixture *f = user_data;

  f->too_long++;
}

static void
closed_cb (WbSocketClient *client, WbSocketClientCloseReason reason, gpointer user_data)
{
  Fixture *f = user_data;

  g_assert_false (f->closed);
  f->closed = TRUE;
  f->close_reason = reason;
  /* The owner frees the client from this callback, as socket-frontend does. */
  g_clear_pointer (&f->client, wb_socket_client_free);
}

static const WbSocketClientCallbacks callbacks = {
  .line = line_cb,
  .line_too_long = line_too_long_cb,
  .closed = closed_cb,
};

static WbSocketClientLimits
default_limits (void)
{
  return (WbSocketClientLimits){
    .max_line_bytes = LINE_LIMIT,
    .queue_bytes = 128 * 1024,
    .hard_queue_bytes = 1024 * 1024,
    .slow_timeout_ms = 30 * 1000,
  };
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), ==, 0);
  f->client_fd = fds[0];
  f->peer_fd = fds[1];
  f->group = wb_socket_client_group_new (&error);
  g_assert_no_error (error);
  f->lines = g_ptr_array_new_with_free_func (g_free);
  f->received = g_string_new (NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->client, wb_socket_client_free);
  g_clear_pointer (&f->group, wb_socket_client_group_free);
  if (f->peer_fd >= 0)
    close (f->peer_fd);
  g_ptr_array_unref (f->lines);
  g_string_free (f->received, TRUE);
}

static void
start_client (Fixture *f, const WbSocketClientLimits *limits)
{
  f->client = wb_socket_client_new (f->group, f->client_fd, limits, &callbacks, f);
  g_assert_nonnull (f->client);
}

/* Makes the kernel hold little of the client's output, so what the peer
 * does not read piles up in the client's own queue. */
static void
shrink_client_send_buffer (Fixture *f)
{
  int size = SMALL_SOCKET_BUFFER;

  g_assert_cmpint (setsockopt (f->client_fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), ==, 0);
}

static void
peer_write (Fixture *f, const char *text)
{
  gsize length = strlen (text);

  g_assert_cmpint (send (f->peer_fd, text, length, MSG_NOSIGNAL), ==, (gssize)length);
}

/* Reads whatever is there into f->received; TRUE if anything came. */
static gboolean
peer_read_available (Fixture *f)
{
  char buffer[16 * 1024];
  gboolean got = FALSE;
  ssize_t n;

  while ((n = recv (f->peer_fd, buffer, sizeof buffer, MSG_DONTWAIT)) > 0)
    {
      g_string_append_len (f->received, buffer, n);
      got = TRUE;
    }
  if (n == 0)
    f->peer_eof = TRUE;
  else if (errno != EAGAIN && errno != EWOULDBLOCK)
    g_error ("the peer's read failed: %s", g_strerror (errno));
  return got;
}

static gboolean
peer_received (Fixture *f, const char *needle)
{
  peer_read_available (f);
  return strstr (f->received->str, needle) != NULL;
}

/* TRUE once the last complete line the peer has read contains @needle. */
static gboolean
peer_last_line_has (Fixture *f, const char *needle)
{
  const char *last;

  peer_read_available (f);
  if (f->received->len == 0 || f->received->str[f->received->len - 1] != '\n')
    return FALSE;
  last = g_strrstr_len (f->received->str, f->received->len - 1, "\n");
  return strstr (last != NULL ? last : f->received->str, needle) != NULL;
}

static GBytes *
bytes_of (const char *text)
{
  return g_bytes_new (text, strlen (text));
}

/* Bytes the peer sent that the client has not read yet. */
static int
unread_by_client (Fixture *f)
{
  int pending = -1;

  g_assert_cmpint (ioctl (f->client_fd, FIONREAD, &pending), ==, 0);
  return pending;
}

static void
wait_client_read_everything (Fixture *f)
{
  WAIT_UNTIL (unread_by_client (f) == 0, WB_TEST_WAIT_MS);
}

/* Runs what is due now, without waiting for anything new. */
static void
dispatch_pending (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* {"type":"chat.message","payload":{"seq":N,"pad":"…"}}\n, EVENT_LINE_BYTES long. */
static GBytes *
event_line (guint seq)
{
  g_autofree char *head = g_strdup_printf ("{\"type\":\"chat.message\",\"payload\":{\"seq\":%u,"
                                           "\"pad\":\"",
                                           seq);
  const char *tail = "\"}}\n";
  GString *line = g_string_new (head);

  while (line->len + strlen (tail) < EVENT_LINE_BYTES)
    g_string_append_c (line, 'x');
  g_string_append (line, tail);
  return g_string_free_to_bytes (line);
}

/* Queues events until the client refuses one; returns how many it took. */
static guint
queue_events_until_refused (Fixture *f)
{
  guint accepted = 0;

  for (;;)
    {
      g_autoptr (GBytes) line = event_line (accepted);

      if (!wb_socket_client_queue_event (f->client, line))
        return accepted;
      accepted++;
      g_assert_cmpuint (accepted, <, 100000);
    }
}

static char **
received_lines (Fixture *f)
{
  g_assert_true (f->received->len > 0);
  g_assert_cmpint (f->received->str[f->received->len - 1], ==, '\n');
  g_string_truncate (f->received, f->received->len - 1);
  return g_strsplit (f->received->str, "\n", -1);
}

static JsonObject *
parse_object (const char *line)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = json_from_string (line, &error);

  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  return json_node_dup_object (node);
}

/* ---- framing --------------------------------------------------------------- */

static void
test_framing (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();

  start_client (f, &limits);
  /* LF and CRLF both end a line; empty lines are skipped; "\r" inside a
   * line is data. */
  peer_write (f, "one\ntwo\r\n\n\r\nx\ry\nthree");
  WAIT_UNTIL (f->lines->len == 3, WB_TEST_WAIT_MS);
  wait_client_read_everything (f);
  dispatch_pending ();
  g_assert_cmpuint (f->lines->len, ==, 3);
  g_assert_cmpstr (g_ptr_array_index (f->lines, 0), ==, "one");
  g_assert_cmpstr (g_ptr_array_index (f->lines, 1), ==, "two");
  g_assert_cmpstr (g_ptr_array_index (f->lines, 2), ==, "x\ry");

  /* The unterminated "three" waits for the rest of its line. */
  peer_write (f, " more\n");
  WAIT_UNTIL (f->lines->len == 4, WB_TEST_WAIT_MS);
  g_assert_cmpstr (g_ptr_array_index (f->lines, 3), ==, "three more");
}

static void
test_partial_lines (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();

  start_client (f, &limits);
  peer_write (f, "hel");
  wait_client_read_everything (f);
  dispatch_pending ();
  g_assert_cmpuint (f->lines->len, ==, 0);

  /* The '\r' of a CRLF arrives in one read, its '\n' in the next. */
  peer_write (f, "lo\r");
  wait_client_read_everything (f);
  dispatch_pending ();
  g_assert_cmpuint (f->lines->len, ==, 0);

  peer_write (f, "\nwor");
  WAIT_UNTIL (f->lines->len == 1, WB_TEST_WAIT_MS);
  g_assert_cmpstr (g_ptr_array_index (f->lines, 0), ==, "hello");

  peer_write (f, "ld\r\n");
  WAIT_UNTIL (f->lines->len == 2, WB_TEST_WAIT_MS);
  g_assert_cmpstr (g_ptr_array_index (f->lines, 1), ==, "world");
}

static void
test_line_too_long (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();

  start_client (f, &limits);
  /* Exactly the limit, with CRLF: accepted. */
  peer_write (f, "0123456789abcdef\r\n");
  WAIT_UNTIL (f->lines->len == 1, WB_TEST_WAIT_MS);
  g_assert_cmpstr (g_ptr_array_index (f->lines, 0), ==, "0123456789abcdef");
  g_assert_cmpuint (f->too_long, ==, 0);

  /* One byte more: refused, and the client stops reading. */
  peer_write (f, "0123456789abcdefg\n");
  WAIT_UNTIL (f->too_long == 1, WB_TEST_WAIT_MS);
  peer_write (f, "after\n");
  dispatch_pending ();
  g_assert_cmpuint (f->lines->len, ==, 1);
  g_assert_cmpint (unread_by_client (f), ==, strlen ("after\n"));
  g_assert_cmpuint (f->too_long, ==, 1);
}

static void
test_line_too_long_unterminated (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();

  start_client (f, &limits);
  /* The limit plus a '\r' may still be a line whose '\n' is on its way. */
  peer_write (f, "0123456789abcdef\r");
  wait_client_read_everything (f);
  dispatch_pending ();
  g_assert_cmpuint (f->too_long, ==, 0);
  peer_write (f, "\n");
  WAIT_UNTIL (f->lines->len == 1, WB_TEST_WAIT_MS);

  /* Past that without a newline, it cannot be: refused before it ends. */
  peer_write (f, "0123456789abcdef01");
  WAIT_UNTIL (f->too_long == 1, WB_TEST_WAIT_MS);
  g_assert_cmpuint (f->lines->len, ==, 1);
}

/* ---- the output queue -------------------------------------------------------- */

static void
test_backpressure (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  g_autoptr (GBytes) reply = bytes_of ("{\"type\":\"subscribed\"}\n");
  g_autoptr (GBytes) probe = event_line (999999);
  g_autoptr (JsonObject) notice = NULL;
  g_auto (GStrv) lines = NULL;
  guint accepted;
  guint refused = 1;
  gsize congested_bytes;
  guint n;

  shrink_client_send_buffer (f);
  start_client (f, &limits);
  accepted = queue_events_until_refused (f);
  congested_bytes = wb_socket_client_get_queued_bytes (f->client);
  /* The queue held to its bound, after the kernel took what it would. */
  g_assert_cmpuint (accepted, >, limits.queue_bytes / EVENT_LINE_BYTES);
  g_assert_cmpuint (congested_bytes, <=, limits.queue_bytes);
  g_assert_cmpuint (congested_bytes + EVENT_LINE_BYTES, >, limits.queue_bytes);
  for (guint i = 0; i < 4; i++, refused++)
    {
      g_autoptr (GBytes) line = event_line (accepted + i);

      g_assert_false (wb_socket_client_queue_event (f->client, line));
    }
  /* A reply is never dropped: it joins the queue. */
  wb_socket_client_queue_control (f->client, reply);
  g_assert_cmpuint (wb_socket_client_get_queued_bytes (f->client), ==,
                    congested_bytes + g_bytes_get_size (reply));

  /* The peer reads what the kernel held: the client writes more, and has
   * room again, but stays refusing until its queue is down to half. */
  g_assert_true (peer_read_available (f));
  WAIT_UNTIL (wb_socket_client_get_queued_bytes (f->client) < congested_bytes, WB_TEST_WAIT_MS);
  g_assert_cmpuint (wb_socket_client_get_queued_bytes (f->client), >, limits.queue_bytes / 2);
  g_assert_false (wb_socket_client_queue_event (f->client, probe));
  refused++;
  g_assert_cmpuint (wb_socket_client_get_dropped_total (f->client), ==, refused);

  /* Reading on: everything taken arrives in order, then the reply, then
   * one bridge.dropped counting every refused event. */
  WAIT_UNTIL (peer_last_line_has (f, "bridge.dropped"), WB_TEST_WAIT_MS);
  g_assert_cmpuint (wb_socket_client_get_queued_bytes (f->client), ==, 0);
  lines = received_lines (f);
  g_assert_cmpuint (g_strv_length (lines), ==, accepted + 2);
  for (n = 0; n < accepted; n++)
    {
      g_autoptr (JsonObject) event = parse_object (lines[n]);
      JsonObject *payload = json_object_get_object_member (event, "payload");

      g_assert_cmpint (json_object_get_int_member (payload, "seq"), ==, n);
    }
  g_assert_cmpstr (lines[n], ==, "{\"type\":\"subscribed\"}");
  notice = parse_object (lines[n + 1]);
  g_assert_cmpstr (json_object_get_string_member (notice, "type"), ==, "bridge.dropped");
  g_assert_cmpint (
      json_object_get_int_member (json_object_get_object_member (notice, "payload"), "count"), ==,
      refused);

  /* Drained: events are taken again. */
  g_assert_true (wb_socket_client_queue_event (f->client, probe));
  g_assert_false (f->closed);
}

static void
test_hard_bound (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  g_autoptr (GBytes) reply = event_line (0);
  gsize queued;

  limits.queue_bytes = 8 * 1024;
  limits.hard_queue_bytes = 32 * 1024;
  shrink_client_send_buffer (f);
  start_client (f, &limits);
  queue_events_until_refused (f);

  /* Replies past queue_bytes are kept, up to the hard bound... */
  while (wb_socket_client_get_queued_bytes (f->client) + g_bytes_get_size (reply)
         <= limits.hard_queue_bytes)
    {
      queued = wb_socket_client_get_queued_bytes (f->client);
      wb_socket_client_queue_control (f->client, reply);
      g_assert_cmpuint (wb_socket_client_get_queued_bytes (f->client), ==,
                        queued + g_bytes_get_size (reply));
    }
  dispatch_pending ();
  g_assert_false (f->closed);

  /* ...and the one that crosses it ends the connection. */
  wb_socket_client_queue_control (f->client, reply);
  WAIT_UNTIL (f->closed, WB_TEST_WAIT_MS);
  g_assert_cmpint (f->close_reason, ==, WB_SOCKET_CLIENT_CLOSED_OVERFLOW);
}

static void
test_slow_client (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  gint64 before_congestion_us;

  limits.queue_bytes = 8 * 1024;
  limits.slow_timeout_ms = 100;
  shrink_client_send_buffer (f);
  start_client (f, &limits);
  before_congestion_us = g_get_monotonic_time ();
  queue_events_until_refused (f);

  WAIT_UNTIL (f->closed, WB_TEST_WAIT_MS);
  g_assert_cmpint (f->close_reason, ==, WB_SOCKET_CLIENT_CLOSED_SLOW);
  /* Not before its time: the deadline counts from the first refusal. */
  g_assert_cmpint (g_get_monotonic_time () - before_congestion_us, >=,
                   (gint64)limits.slow_timeout_ms * 1000);
}

/* ---- closing ------------------------------------------------------------------ */

static void
test_close_after_flush (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  g_autoptr (GBytes) goodbye = bytes_of ("{\"type\":\"error\"}\n");

  start_client (f, &limits);
  wb_socket_client_queue_control (f->client, goodbye);
  wb_socket_client_close_after_flush (f->client);
  /* The peer, still sending, gets the last reply and then EOF... */
  peer_write (f, "still talking\n");
  WAIT_UNTIL ((peer_read_available (f), f->peer_eof), WB_TEST_WAIT_MS);
  g_assert_cmpstr (f->received->str, ==, "{\"type\":\"error\"}\n");
  /* ...while the client discards what it sends until it closes too. */
  peer_write (f, "more\n");
  wait_client_read_everything (f);
  dispatch_pending ();
  g_assert_false (f->closed);
  g_assert_cmpuint (f->lines->len, ==, 0);

  close (f->peer_fd);
  f->peer_fd = -1;
  WAIT_UNTIL (f->closed, WB_TEST_WAIT_MS);
  g_assert_cmpint (f->close_reason, ==, WB_SOCKET_CLIENT_CLOSED_DONE);
}

static void
test_peer_half_close (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  g_autoptr (GBytes) event = bytes_of ("{\"type\":\"stream.health\"}\n");

  start_client (f, &limits);
  /* `printf 'x\ny' | socat …`: the unterminated last line counts at EOF. */
  peer_write (f, "x\ny");
  g_assert_cmpint (shutdown (f->peer_fd, SHUT_WR), ==, 0);
  WAIT_UNTIL (f->lines->len == 2, WB_TEST_WAIT_MS);
  g_assert_cmpstr (g_ptr_array_index (f->lines, 0), ==, "x");
  g_assert_cmpstr (g_ptr_array_index (f->lines, 1), ==, "y");

  /* Having said everything, it may still listen. */
  dispatch_pending ();
  g_assert_false (f->closed);
  g_assert_true (wb_socket_client_queue_event (f->client, event));
  WAIT_UNTIL (peer_received (f, "stream.health"), WB_TEST_WAIT_MS);

  close (f->peer_fd);
  f->peer_fd = -1;
  WAIT_UNTIL (f->closed, WB_TEST_WAIT_MS);
  g_assert_cmpint (f->close_reason, ==, WB_SOCKET_CLIENT_CLOSED_BY_PEER);
}

/* A user's request lines are taken a budget per dispatch of the group: the
 * rest waits (in order, none lost) for the next dispatch, so one user's busy
 * connections cannot make an iteration, and everyone's latency, grow. */
static void
test_line_budget (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  WbSocketAccount account
      = { .limit = G_MAXSIZE / 4, .hard_limit = G_MAXSIZE / 2, .lines_per_dispatch = 3 };
  GString *burst = g_string_new (NULL);

  start_client (f, &limits);
  wb_socket_client_set_account (f->client, &account);
  for (guint i = 0; i < 10; i++)
    g_string_append_printf (burst, "l%u\n", i);
  peer_write (f, burst->str);
  g_string_free (burst, TRUE);

  /* One dispatch of the group takes three lines, not ten. */
  WAIT_UNTIL (f->lines->len > 0, WB_TEST_WAIT_MS);
  g_assert_cmpuint (f->lines->len, ==, 3);
  WAIT_UNTIL (f->lines->len == 10, WB_TEST_WAIT_MS);
  for (guint i = 0; i < 10; i++)
    {
      g_autofree char *expected = g_strdup_printf ("l%u", i);

      g_assert_cmpstr (g_ptr_array_index (f->lines, i), ==, expected);
    }
  /* And the connection reads again afterwards. */
  peer_write (f, "after\n");
  WAIT_UNTIL (f->lines->len == 11, WB_TEST_WAIT_MS);
  /* Before the account on this stack goes. */
  g_clear_pointer (&f->client, wb_socket_client_free);
}

/* A user's connections share an account: past its limit, events to any of
 * them are refused (counted, then announced before the next event that
 * fits), and a reply past its hard limit ends that connection. */
static void
test_account (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  WbSocketAccount account = { .limit = 3 * EVENT_LINE_BYTES, .hard_limit = 6 * EVENT_LINE_BYTES };
  g_autofree char *fill = g_strnfill (EVENT_LINE_BYTES - 1, 'e');
  g_autofree char *text = g_strconcat (fill, "\n", NULL);
  g_autoptr (GBytes) event = bytes_of (text);
  g_autoptr (GBytes) reply = NULL;

  shrink_client_send_buffer (f);
  start_client (f, &limits);
  wb_socket_client_set_account (f->client, &account);
  /* Someone else of the same user has 2 lines queued already. */
  account.queued = 2 * EVENT_LINE_BYTES;

  g_assert_true (wb_socket_client_queue_event (f->client, event));
  g_assert_cmpuint (account.queued, ==, 3 * EVENT_LINE_BYTES);
  /* The client's own queue is far from its bound (128 KiB); the user's is at it. */
  g_assert_false (wb_socket_client_queue_event (f->client, event));
  g_assert_cmpuint (wb_socket_client_get_dropped_total (f->client), ==, 1);

  /* What the peer reads leaves the account; the next event that fits
   * comes after a bridge.dropped. */
  account.queued -= 2 * EVENT_LINE_BYTES;
  WAIT_UNTIL ((peer_read_available (f), account.queued == 0), WB_TEST_WAIT_MS);
  g_assert_true (wb_socket_client_queue_event (f->client, event));
  WAIT_UNTIL (peer_received (f, "bridge.dropped"), WB_TEST_WAIT_MS);
  g_assert_nonnull (
      strstr (f->received->str, "{\"type\":\"bridge.dropped\",\"payload\":{\"count\":"));

  /* Replies are never refused, but past the hard limit (what remains once
   * the kernel took what it could) the connection ends. */
  WAIT_UNTIL ((peer_read_available (f), account.queued == 0), WB_TEST_WAIT_MS);
  account.queued = 7 * EVENT_LINE_BYTES;
  reply = bytes_of ("{\"type\":\"pong\"}\n");
  wb_socket_client_queue_control (f->client, reply);
  WAIT_UNTIL (f->closed, WB_TEST_WAIT_MS);
  g_assert_cmpint (f->close_reason, ==, WB_SOCKET_CLIENT_CLOSED_OVERFLOW);
  /* Freeing the client took its bytes out of the account. */
  g_assert_cmpuint (account.queued, <=, 7 * EVENT_LINE_BYTES);
}

/* A second connection in @f's group, for tests of a user's account. */
static void
other_setup (Fixture *f, Fixture *other, const WbSocketClientLimits *limits)
{
  int fds[2];

  memset (other, 0, sizeof *other);
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), ==, 0);
  other->client_fd = fds[0];
  other->peer_fd = fds[1];
  other->group = f->group;
  other->lines = g_ptr_array_new_with_free_func (g_free);
  other->received = g_string_new (NULL);
  other->client = wb_socket_client_new (f->group, other->client_fd, limits, &callbacks, other);
  g_assert_nonnull (other->client);
}

static void
other_teardown (Fixture *other)
{
  g_clear_pointer (&other->client, wb_socket_client_free);
  if (other->peer_fd >= 0)
    close (other->peer_fd);
  g_ptr_array_unref (other->lines);
  g_string_free (other->received, TRUE);
}

/* Events a connection missed because of its user's total are announced as
 * soon as the total is under its limit again, not only before the next
 * event: the last event of a stream (stream.ended) may have been the one
 * lost, and nothing may follow it. */
static void
test_account_drops_announced_without_next_event (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  WbSocketAccount account = { .limit = 8 * EVENT_LINE_BYTES, .hard_limit = G_MAXSIZE / 2 };
  g_autoptr (GBytes) event = event_line (0);
  Fixture hog;
  guint refused = 0;

  /* The hog does not read: its queue holds more than the user's allowance. */
  other_setup (f, &hog, &limits);
  g_assert_cmpint (setsockopt (hog.client_fd, SOL_SOCKET, SO_SNDBUF, &(int){ SMALL_SOCKET_BUFFER },
                               sizeof (int)),
                   ==, 0);
  while (wb_socket_client_queue_event (hog.client, event))
    ;
  wb_socket_client_set_account (hog.client, &account);
  g_assert_cmpuint (account.queued, >, account.limit);
  start_client (f, &limits);
  wb_socket_client_set_account (f->client, &account);

  /* The reader's events go while the user is over, and then no more come. */
  for (guint i = 0; i < 5; i++)
    refused += !wb_socket_client_queue_event (f->client, event);
  g_assert_cmpuint (refused, ==, 5);
  dispatch_pending ();
  peer_read_available (f);
  g_assert_null (strstr (f->received->str, "bridge.dropped"));

  /* The hog reads at last: the reader is told, without another event. */
  WAIT_UNTIL ((peer_read_available (&hog), peer_received (f, "bridge.dropped")), WB_TEST_WAIT_MS);
  g_assert_nonnull (
      strstr (f->received->str, "{\"type\":\"bridge.dropped\",\"payload\":{\"count\":5}}"));
  other_teardown (&hog);
  g_clear_pointer (&f->client, wb_socket_client_free);
}

/* Replies are written once per loop iteration: large replies to requests
 * several connections of one user made at the same moment are written to
 * the kernel before the user's hard limit judges them, so a user who reads
 * everything is not cut off for asking. */
static void
test_account_replies_written_before_judging (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  WbSocketAccount account = { .limit = 2 * EVENT_LINE_BYTES, .hard_limit = 3 * EVENT_LINE_BYTES };
  g_autoptr (GBytes) reply = event_line (1);
  Fixture others[4];

  start_client (f, &limits);
  wb_socket_client_set_account (f->client, &account);
  for (guint i = 0; i < G_N_ELEMENTS (others); i++)
    {
      other_setup (f, &others[i], &limits);
      wb_socket_client_set_account (others[i].client, &account);
    }
  /* Each asked for something: five replies, more than the hard limit. */
  wb_socket_client_queue_control (f->client, reply);
  for (guint i = 0; i < G_N_ELEMENTS (others); i++)
    wb_socket_client_queue_control (others[i].client, reply);
  dispatch_pending ();
  g_assert_false (f->closed);
  WAIT_UNTIL (peer_received (f, "\"seq\":1"), WB_TEST_WAIT_MS);
  for (guint i = 0; i < G_N_ELEMENTS (others); i++)
    {
      g_assert_false (others[i].closed);
      WAIT_UNTIL (peer_received (&others[i], "\"seq\":1"), WB_TEST_WAIT_MS);
      other_teardown (&others[i]);
    }
  g_clear_pointer (&f->client, wb_socket_client_free);
}

/* Queued events are written at the end of the loop iteration that queued
 * them, before the loop sleeps (the group's prepare), with no dispatch of
 * the group; and in a long iteration (an upstream burst) already in the
 * middle of it, without waiting for its end. */
static void
test_written_before_the_loop_sleeps (Fixture *f, gconstpointer data)
{
  WbSocketClientLimits limits = default_limits ();
  guint n = 0;

  start_client (f, &limits);
  dispatch_pending ();
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr (GBytes) line = event_line (n++);

      g_assert_true (wb_socket_client_queue_event (f->client, line));
    }
  /* A short iteration: nothing written yet... */
  g_assert_false (peer_read_available (f));
  /* ...and all of it by the next prepare, whether or not anything is
   * dispatched then. */
  g_main_context_iteration (NULL, FALSE);
  g_assert_true (peer_read_available (f));
  g_assert_cmpuint (f->received->len, ==, 3 * EVENT_LINE_BYTES);

  /* A long iteration: ~6 ms of queueing with no loop iteration at all. */
  for (guint i = 0; i < 64; i++)
    {
      g_autoptr (GBytes) line = event_line (n++);

      g_assert_true (wb_socket_client_queue_event (f->client, line));
      g_usleep (100);
    }
  g_assert_true (peer_read_available (f));
  g_assert_cmpuint (f->received->len, >, 3 * EVENT_LINE_BYTES);
  g_assert_cmpuint (f->received->len, <, 67 * EVENT_LINE_BYTES);
  dispatch_pending ();
  peer_read_available (f);
  g_assert_cmpuint (f->received->len, ==, 67 * EVENT_LINE_BYTES);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/socket-client/framing", Fixture, NULL, fixture_setup, test_framing,
              fixture_teardown);
  g_test_add ("/socket-client/partial-lines", Fixture, NULL, fixture_setup, test_partial_lines,
              fixture_teardown);
  g_test_add ("/socket-client/line-too-long", Fixture, NULL, fixture_setup, test_line_too_long,
              fixture_teardown);
  g_test_add ("/socket-client/line-too-long-unterminated", Fixture, NULL, fixture_setup,
              test_line_too_long_unterminated, fixture_teardown);
  g_test_add ("/socket-client/backpressure", Fixture, NULL, fixture_setup, test_backpressure,
              fixture_teardown);
  g_test_add ("/socket-client/hard-bound", Fixture, NULL, fixture_setup, test_hard_bound,
              fixture_teardown);
  g_test_add ("/socket-client/slow-client", Fixture, NULL, fixture_setup, test_slow_client,
              fixture_teardown);
  g_test_add ("/socket-client/close-after-flush", Fixture, NULL, fixture_setup,
              test_close_after_flush, fixture_teardown);
  g_test_add ("/socket-client/account", Fixture, NULL, fixture_setup, test_account,
              fixture_teardown);
  g_test_add ("/socket-client/account-drops-announced-without-next-event", Fixture, NULL,
              fixture_setup, test_account_drops_announced_without_next_event, fixture_teardown);
  g_test_add ("/socket-client/account-replies-written-before-judging", Fixture, NULL, fixture_setup,
              test_account_replies_written_before_judging, fixture_teardown);
  g_test_add ("/socket-client/line-budget", Fixture, NULL, fixture_setup, test_line_budget,
              fixture_teardown);
  g_test_add ("/socket-client/written-before-the-loop-sleeps", Fixture, NULL, fixture_setup,
              test_written_before_the_loop_sleeps, fixture_teardown);
  g_test_add ("/socket-client/peer-half-close", Fixture, NULL, fixture_setup, test_peer_half_close,
              fixture_teardown);
  return g_test_run ();
}
