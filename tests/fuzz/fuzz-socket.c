/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the local socket as a client sees it. A real socket frontend
 * (socket-frontend.c, socket-client.c) on a real listening socket, with a
 * real hub behind it, takes one connection per input; the input's bytes are
 * written in chunks cut at points the input chooses, then the client shuts
 * its sending side and reads everything back. Whatever the bytes and the
 * cuts:
 *  - the first line is bridge.hello, and every line is strict JSON;
 *  - every non-empty line up to MaxLineBytes gets exactly one reply, and
 *    a longer one ends the connection with one line_too_long error;
 *  - error codes are those docs/protocol.md lists;
 *  - the connection is gone from the hub once the client closes.
 *
 * Input: byte 0: bits 0-3 the number of cut points N, bit 4 upstream fails
 * every send, bit 5 the client reads nothing before it is done writing;
 * then N cut points (2 bytes each, little endian, modulo the stream's
 * length); the rest is the byte stream.
 */
#define G_LOG_DOMAIN "wave-fuzz-socket"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "hub.h"
#include "socket-frontend.h"

/* The smallest MaxLineBytes the configuration allows: long lines are
 * within reach of short inputs. */
#define MAX_LINE_BYTES 1024
#define OPTION_CUTS_MASK 0x0f
#define OPTION_SENDS_FAIL (1 << 4)
#define OPTION_READ_AT_END (1 << 5)
/* Main-context iterations that dispatch nothing before it counts as idle;
 * and the most spent waiting for anything. */
#define IDLE_ROUNDS 2
#define MAX_ROUNDS 100000

typedef struct
{
  char *dir;
  char *path;
  WbConfig *config;
  WbHub *hub;
  WbSocketFrontend *frontend;
  WbLinkStatus link;
  gboolean sends_fail;
  guint sends_pending;
} Fuzz;

static Fuzz fuzz;

/* ---- upstream: every send ends from the main loop, written or failed ---- */

typedef struct
{
  WbSendCallback callback;
  gpointer user_data;
} PendingSend;

static gboolean
send_done_cb (gpointer data)
{
  PendingSend *pending = data;
  g_autoptr (GError) error = NULL;

  if (fuzz.sends_fail)
    error = g_error_new_literal (WB_SEND_ERROR, WB_SEND_ERROR_FAILED, "upstream is down (fuzz)");
  fuzz.sends_pending--;
  pending->callback (error, pending->user_data);
  g_free (pending);
  return G_SOURCE_REMOVE;
}

static void
ops_send (gpointer upstream, JsonNode *message, gint64 owner, WbSendCallback callback,
          gpointer user_data)
{
  JsonObject *object = json_node_get_object (message);
  const char *type = wb_json_get_string (object, "type", "");
  const char *text = wb_json_get_string (
      object, g_str_equal (type, "chat.message") ? "message" : "reaction", NULL);
  PendingSend *pending = g_new0 (PendingSend, 1);

  /* What goes upstream: a send of known type with its text in bounds. */
  FUZZ_CHECK (g_str_equal (type, "chat.message") || g_str_equal (type, "reaction.sent"));
  FUZZ_CHECK (text != NULL && text[0] != '\0' && strlen (text) <= WB_MESSAGE_MAX_TEXT_BYTES);
  pending->callback = callback;
  pending->user_data = user_data;
  fuzz.sends_pending++;
  g_idle_add (send_done_cb, pending);
}

static void
ops_set_stream_events (gpointer upstream, const char *stream_id, const char *const *events,
                       gint64 owner)
{
  FUZZ_CHECK (stream_id != NULL && stream_id[0] != '\0');
}

static const WbLinkStatus *
ops_get_status (gpointer upstream)
{
  return &fuzz.link;
}

static gboolean
ops_reconnect (gpointer upstream, GError **error)
{
  return TRUE;
}

static void
ops_demand (gpointer upstream)
{
}

static const WbHubUpstreamOps ops = {
  .set_stream_events = ops_set_stream_events,
  .send = ops_send,
  .get_status = ops_get_status,
  .reconnect = ops_reconnect,
  .demand = ops_demand,
};

/* ---- the main loop and the client's end ------------------------------------ */

/* Runs the default context until nothing is ready to dispatch. */
static void
pump (void)
{
  guint idle = 0;

  for (guint i = 0; i < MAX_ROUNDS && idle < IDLE_ROUNDS; i++)
    idle = g_main_context_iteration (NULL, FALSE) ? 0 : idle + 1;
  FUZZ_CHECK (idle >= IDLE_ROUNDS);
}

/* Reads what is there; TRUE at end of file. */
static gboolean
read_available (int fd, GByteArray *received)
{
  char buffer[16 * 1024];

  for (;;)
    {
      ssize_t n = recv (fd, buffer, sizeof buffer, MSG_DONTWAIT);

      if (n > 0)
        {
          g_byte_array_append (received, (const guint8 *)buffer, (guint)n);
          continue;
        }
      if (n == 0)
        return TRUE;
      if (errno == EINTR)
        continue;
      /* ECONNRESET: the bridge closed with our bytes unread (too long). */
      FUZZ_CHECK (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNRESET);
      return errno == ECONNRESET;
    }
}

/* Writes @length bytes; FALSE if the bridge closed the connection. */
static gboolean
write_all (int fd, const guint8 *data, gsize length, gboolean read_along, GByteArray *received)
{
  while (length > 0)
    {
      ssize_t n = send (fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);

      if (n > 0)
        {
          data += n;
          length -= (gsize)n;
          continue;
        }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
        return FALSE;
      FUZZ_CHECK (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
      /* The bridge reads 64 KiB per wake-up; our buffer is full for now. */
      pump ();
      if (read_along)
        read_available (fd, received);
    }
  return TRUE;
}

/* ---- what the bridge must have answered ------------------------------------ */

typedef struct
{
  guint requests;    /* non-empty lines within the limit, before any too long */
  gboolean too_long; /* a line past MAX_LINE_BYTES ends it */
} Expected;

static Expected
expected_from_stream (const guint8 *data, gsize length)
{
  Expected expected = { 0 };
  gsize start = 0;

  while (start < length)
    {
      const guint8 *newline = memchr (data + start, '\n', length - start);
      gsize end = newline != NULL ? (gsize)(newline - data) : length;
      gsize line_length = end - start;

      /* socket-client.c: "\r\n" counts as "\n"; an unterminated last line
       * is read at end of file. */
      if (line_length > 0 && data[end - 1] == '\r')
        line_length--;
      if (line_length > MAX_LINE_BYTES)
        {
          expected.too_long = TRUE;
          break;
        }
      if (line_length > 0)
        expected.requests++;
      start = end + 1;
    }
  return expected;
}

static const char *const error_codes[] = {
  "invalid_json",  "unknown_type",     "invalid_message", "too_many_subscriptions",
  "line_too_long", "rate_limited",     "forbidden",       "not_connected",
  "send_failed",   "too_many_clients", "shutting_down",   NULL,
};

static const char *const reply_types[] = {
  "subscribed", "unsubscribed", "sent", "pong", "bridge.status", "error", NULL,
};

/* Checks one line the bridge wrote; returns its type. */
static char *
check_reply (const char *line, gsize length, guint index)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *root;
  JsonObject *payload;
  JsonNode *id;
  const char *type;

  wb_fuzz_check_serialized (line, length, "reply");
  FUZZ_CHECK (json_parser_load_from_data (parser, line, (gssize)length, NULL));
  FUZZ_CHECK (JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)));
  root = json_node_get_object (json_parser_get_root (parser));
  type = wb_json_get_string (root, "type", NULL);
  FUZZ_CHECK (type != NULL);
  FUZZ_CHECK (json_object_has_member (root, "payload"));
  payload = json_object_get_object_member (root, "payload");
  FUZZ_CHECK (payload != NULL);
  id = json_object_get_member (root, "id");
  FUZZ_CHECK (id == NULL || JSON_NODE_HOLDS_VALUE (id) || JSON_NODE_HOLDS_NULL (id));
  if (index == 0)
    {
      FUZZ_CHECK (g_str_equal (type, "bridge.hello"));
      return g_strdup (type);
    }
  FUZZ_CHECK (g_strv_contains (reply_types, type) || g_str_equal (type, "bridge.dropped"));
  if (g_str_equal (type, "error"))
    {
      FUZZ_CHECK (g_strv_contains (error_codes, wb_json_get_string (payload, "code", "")));
      FUZZ_CHECK (wb_json_get_string (payload, "message", NULL) != NULL);
      FUZZ_CHECK (json_object_get_member (payload, "details") != NULL
                  && JSON_NODE_HOLDS_OBJECT (json_object_get_member (payload, "details")));
    }
  if (g_str_equal (type, "sent") || g_str_equal (type, "subscribed")
      || g_str_equal (type, "unsubscribed"))
    FUZZ_CHECK (wb_json_get_string (payload, "stream_id", NULL) != NULL);
  return g_strdup (type);
}

static void
check_replies (const GByteArray *received, const Expected *expected, gboolean closed_by_bridge)
{
  const char *data = (const char *)received->data;
  gsize length = received->len;
  g_autofree char *last_type = NULL;
  g_autofree char *last_code = NULL;
  guint replies = 0;
  guint lines = 0;
  gsize start = 0;

  /* Whole lines only. */
  FUZZ_CHECK (length > 0 && data[length - 1] == '\n');
  while (start < length)
    {
      const char *newline = memchr (data + start, '\n', length - start);
      gsize end = (gsize)(newline - data);

      g_clear_pointer (&last_type, g_free);
      last_type = check_reply (data + start, end - start, lines);
      if (lines > 0 && !g_str_equal (last_type, "bridge.dropped"))
        replies++;
      if (g_str_equal (last_type, "error"))
        {
          g_autoptr (JsonParser) parser = json_parser_new ();

          FUZZ_CHECK (
              json_parser_load_from_data (parser, data + start, (gssize)(end - start), NULL));
          g_clear_pointer (&last_code, g_free);
          last_code = g_strdup (wb_json_get_string (
              json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                             "payload"),
              "code", ""));
        }
      lines++;
      start = end + 1;
    }

  if (replies != expected->requests + (expected->too_long ? 1 : 0))
    wb_fuzz_fail (__FILE__, __LINE__, "%u replies to %u requests%s", replies, expected->requests,
                  expected->too_long ? " and a line too long" : "");
  /* A line too long is answered last, then the bridge closes; nothing
   * else makes it close while the client still listens. */
  FUZZ_CHECK (closed_by_bridge == expected->too_long);
  if (expected->too_long)
    FUZZ_CHECK (g_strcmp0 (last_code, "line_too_long") == 0);
}

/* ---- one input ------------------------------------------------------------------ */

static void
cleanup (void)
{
  g_clear_pointer (&fuzz.frontend, wb_socket_frontend_free);
  g_clear_pointer (&fuzz.hub, wb_hub_free);
  g_clear_pointer (&fuzz.config, wb_config_free);
  if (fuzz.dir != NULL)
    g_rmdir (fuzz.dir);
  g_clear_pointer (&fuzz.path, g_free);
  g_clear_pointer (&fuzz.dir, g_free);
}

static void
setup_once (void)
{
  g_autoptr (GError) error = NULL;

  wb_fuzz_init_logging ();
  fuzz.dir = g_dir_make_tmp ("wb-fuzz-socket-XXXXXX", &error);
  FUZZ_CHECK (fuzz.dir != NULL);
  fuzz.path = g_build_filename (fuzz.dir, "wave.sock", NULL);
  fuzz.config = wb_config_new_defaults (FALSE);
  g_free (fuzz.config->socket_path);
  fuzz.config->socket_path = g_strdup (fuzz.path);
  fuzz.config->max_line_bytes = MAX_LINE_BYTES;
  fuzz.link.url = "wss://ws.wave.inc/v1/streams?api_key=REDACTED";
  fuzz.link.last_close_reason = "";
  fuzz.link.last_error = "";
  fuzz.hub = wb_hub_new (fuzz.config, &ops, NULL);
  fuzz.frontend = wb_socket_frontend_new (fuzz.hub, fuzz.config, &error);
  if (fuzz.frontend == NULL)
    wb_fuzz_fail (__FILE__, __LINE__, "cannot listen on %s: %s", fuzz.path, error->message);
  atexit (cleanup);
}

static int
compare_offsets (const void *a, const void *b)
{
  gsize x = *(const gsize *)a;
  gsize y = *(const gsize *)b;

  return x < y ? -1 : x > y;
}

static guint
clients (void)
{
  return wb_hub_get_status (fuzz.hub)->clients;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static gboolean set_up;
  g_autoptr (GByteArray) received = g_byte_array_new ();
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  gsize cuts[OPTION_CUTS_MASK + 2];
  const guint8 *stream;
  gsize stream_length;
  gboolean read_along;
  gboolean closed_by_bridge = FALSE;
  gboolean writing = TRUE;
  gsize from = 0;
  Expected expected;
  guint n_cuts;
  int fd;

  if (!set_up)
    {
      setup_once ();
      set_up = TRUE;
    }
  if (size < 1)
    return 0;
  n_cuts = data[0] & OPTION_CUTS_MASK;
  if (size < 1 + 2 * (gsize)n_cuts)
    return 0;
  fuzz.sends_fail = (data[0] & OPTION_SENDS_FAIL) != 0;
  read_along = (data[0] & OPTION_READ_AT_END) == 0;
  stream = data + 1 + 2 * n_cuts;
  stream_length = size - 1 - 2 * n_cuts;
  for (guint i = 0; i < n_cuts; i++)
    {
      guint cut = data[1 + 2 * i] | (guint)data[2 + 2 * i] << 8;

      cuts[i] = stream_length > 0 ? cut % (stream_length + 1) : 0;
    }
  cuts[n_cuts] = stream_length;
  qsort (cuts, n_cuts + 1, sizeof cuts[0], compare_offsets);
  expected = expected_from_stream (stream, stream_length);

  FUZZ_CHECK (clients () == 0);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  FUZZ_CHECK (fd >= 0);
  g_strlcpy (address.sun_path, fuzz.path, sizeof address.sun_path);
  FUZZ_CHECK (connect (fd, (struct sockaddr *)&address, sizeof address) == 0);
  pump ();
  FUZZ_CHECK (clients () == 1);

  for (guint i = 0; i <= n_cuts && writing; i++)
    {
      writing = write_all (fd, stream + from, cuts[i] - from, read_along, received);
      from = cuts[i];
      pump ();
      if (read_along)
        closed_by_bridge |= read_available (fd, received);
    }
  shutdown (fd, SHUT_WR);
  /* Until the bridge has said everything: sends complete from the loop. */
  for (guint i = 0; i < MAX_ROUNDS; i++)
    {
      guint before = received->len;

      pump ();
      closed_by_bridge |= read_available (fd, received);
      if (received->len == before && fuzz.sends_pending == 0)
        break;
    }
  FUZZ_CHECK (fuzz.sends_pending == 0);
  check_replies (received, &expected, closed_by_bridge);

  close (fd);
  for (guint i = 0; i < MAX_ROUNDS && clients () > 0; i++)
    pump ();
  FUZZ_CHECK (clients () == 0);
  return 0;
}
