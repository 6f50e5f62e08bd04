/* SPDX-License-Identifier: MIT */
/*
 * bench-rawsock: baseline (a) of the wave-bridge benchmarks
 * (docs/benchmarks.md): the physical limit of the socket path on this
 * machine. A plain C writer pushes event lines of the same size and shape
 * as the bridge's to N AF_UNIX readers (bench-fanout --mode=raw), with no
 * upstream, no JSON and no main loop:
 *   --write=line   one write() per line per client (a naive forwarder);
 *   --write=batch  every line due since the last write in one write() per
 *                  client (at most BATCH_MAX_BYTES): what a forwarder that
 *                  coalesces can reach.
 * Events are due at --rate per second like wave-sim's flood; each line ends
 * "sim_sent_us":T}} with T stamped when the line is made, so bench-fanout
 * measures latency as for the bridge. Every reader sends a subscribe line
 * first and gets {"type":"subscribed"}; the flood starts when a reader
 * sends {"type":"go"}. Stays until every reader has closed, so that its
 * CPU time can still be read.
 *
 * --upstream=ws://HOST:PORT/PATH --stream=S: an ideal forwarder instead.
 * One plain WebSocket (a minimal client: handshake, unmasked server frames,
 * no extensions) to wave-sim, subscribed to S; every text frame becomes a
 * line, written with one write() per line per reader (line) or, for all
 * frames of one read() from upstream, one write() per reader (batch). The
 * flood is wave-sim's (bench-fanout --mode=bridge posts it), so latency
 * and throughput include the same upstream hop as the bridge's. Ends after
 * --count frames carrying "sim_sent_us".
 */
#define G_LOG_DOMAIN "wave-bench-rawsock"

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 4000
#define LISTEN_BACKLOG 4096
#define BATCH_MAX_BYTES (64 * 1024)
#define MIN_LINE_BYTES 128
#define MAX_LINE_BYTES 16384
#define UPSTREAM_READ_BYTES (256 * 1024)
#define MAX_FRAME_BYTES (1024 * 1024)
#define SUBSCRIBED_LINE "{\"type\":\"subscribed\",\"stream_id\":\"bench_raw\"}\n"

static gboolean
write_all (int fd, const char *data, gsize length)
{
  while (length > 0)
    {
      ssize_t n = write (fd, data, length);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      data += n;
      length -= (gsize)n;
    }
  return TRUE;
}

/* Reads one line (blocking) into @line; FALSE at EOF or error. */
static gboolean
read_line (int fd, char *line, gsize size)
{
  gsize length = 0;

  while (length + 1 < size)
    {
      ssize_t n = read (fd, line + length, 1);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      if (line[length] == '\n')
        break;
      length++;
    }
  line[length] = '\0';
  return TRUE;
}

/* ---- the forwarder's upstream: a minimal WebSocket client ------------------ */

/* A masked client text (0x1) or pong (0xA) frame. */
static gboolean
ws_send (int fd, guint8 opcode, const char *payload, gsize length)
{
  g_autofree guint8 *frame = g_malloc (length + 14);
  const guint8 mask[4] = { 0x12, 0x34, 0x56, 0x78 };
  gsize at = 0;

  frame[at++] = 0x80 | opcode;
  if (length < 126)
    frame[at++] = 0x80 | (guint8)length;
  else
    {
      frame[at++] = 0x80 | 126;
      frame[at++] = (guint8)(length >> 8);
      frame[at++] = (guint8)length;
    }
  memcpy (frame + at, mask, 4);
  at += 4;
  for (gsize i = 0; i < length; i++)
    frame[at++] = (guint8)payload[i] ^ mask[i % 4];
  return write_all (fd, (const char *)frame, at);
}

/* Connects, shakes hands, subscribes to @stream_id; the socket, with any
 * bytes read past the handshake in @out_rest. */
static int
ws_connect (const char *url, const char *api_key, const char *stream_id, GByteArray *out_rest)
{
  g_autoptr (GUri) uri = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);
  struct sockaddr_in address = { .sin_family = AF_INET };
  g_autofree char *request = NULL;
  g_autofree char *subscribe = NULL;
  g_autoptr (GString) answer = g_string_new (NULL);
  const char *end;
  int fd, one = 1;

  if (uri == NULL || g_uri_get_port (uri) <= 0
      || inet_pton (AF_INET, g_uri_get_host (uri), &address.sin_addr) != 1)
    return -1;
  address.sin_port = htons ((guint16)g_uri_get_port (uri));
  fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect (fd, (struct sockaddr *)&address, sizeof address) < 0)
    return -1;
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  request
      = g_strdup_printf ("GET %s?api_key=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         g_uri_get_path (uri)[0] != '\0' ? g_uri_get_path (uri) : "/", api_key,
                         g_uri_get_host (uri), g_uri_get_port (uri));
  if (!write_all (fd, request, strlen (request)))
    return -1;
  while ((end = strstr (answer->str, "\r\n\r\n")) == NULL)
    {
      char chunk[4096];
      ssize_t n = read (fd, chunk, sizeof chunk);

      if (n <= 0)
        return -1;
      g_string_append_len (answer, chunk, n);
    }
  if (strncmp (answer->str, "HTTP/1.1 101", 12) != 0)
    {
      g_printerr ("bench-rawsock: upstream answered %.40s\n", answer->str);
      return -1;
    }
  g_byte_array_append (out_rest, (const guint8 *)end + 4,
                       (guint)(answer->len - (gsize)(end + 4 - answer->str)));
  subscribe = g_strdup_printf ("{\"type\":\"subscribe\",\"stream_id\":\"%s\"}", stream_id);
  if (!ws_send (fd, 0x1, subscribe, strlen (subscribe)))
    return -1;
  return fd;
}

typedef struct
{
  int *fds;
  gint clients;
  gboolean batched;
  GByteArray *lines; /* batch: everything of one upstream read */
  guint64 writes;
  guint events;
} Forwarder;

static gboolean
forward_line (Forwarder *fw, const guint8 *payload, gsize length)
{
  if (memmem (payload, length, "\"sim_sent_us\"", 13) != NULL)
    fw->events++;
  if (fw->batched)
    {
      g_byte_array_append (fw->lines, payload, (guint)length);
      g_byte_array_append (fw->lines, (const guint8 *)"\n", 1);
      return TRUE;
    }
  g_byte_array_set_size (fw->lines, 0);
  g_byte_array_append (fw->lines, payload, (guint)length);
  g_byte_array_append (fw->lines, (const guint8 *)"\n", 1);
  for (gint i = 0; i < fw->clients; i++, fw->writes++)
    if (!write_all (fw->fds[i], (const char *)fw->lines->data, fw->lines->len))
      return FALSE;
  g_byte_array_set_size (fw->lines, 0);
  return TRUE;
}

/* Forwards until @count flood events went out; FALSE on an error. */
static gboolean
forward (int upstream, GByteArray *input, Forwarder *fw, guint count)
{
  while (fw->events < count)
    {
      gsize at = 0;

      for (;;)
        {
          const guint8 *p = input->data + at;
          gsize avail = input->len - at, header = 2;
          guint64 length;

          if (avail < 2)
            break;
          length = p[1] & 0x7f;
          if (length == 126)
            {
              header = 4;
              if (avail < header)
                break;
              length = ((guint64)p[2] << 8) | p[3];
            }
          else if (length == 127)
            {
              header = 10;
              if (avail < header)
                break;
              length = 0;
              for (int i = 0; i < 8; i++)
                length = (length << 8) | p[2 + i];
            }
          if (length > MAX_FRAME_BYTES)
            return FALSE;
          if (avail < header + length)
            break;
          switch (p[0] & 0x0f)
            {
            case 0x1:
              if (!forward_line (fw, p + header, (gsize)length))
                return FALSE;
              break;
            case 0x8:
              return FALSE;
            case 0x9:
              if (!ws_send (upstream, 0xA, (const char *)p + header, (gsize)length))
                return FALSE;
              break;
            default:
              break;
            }
          at += header + (gsize)length;
        }
      g_byte_array_remove_range (input, 0, (guint)at);
      if (fw->batched && fw->lines->len > 0)
        {
          for (gint i = 0; i < fw->clients; i++, fw->writes++)
            if (!write_all (fw->fds[i], (const char *)fw->lines->data, fw->lines->len))
              return FALSE;
          g_byte_array_set_size (fw->lines, 0);
        }
      if (fw->events >= count)
        break;
      {
        guint old = input->len;
        ssize_t n;

        g_byte_array_set_size (input, old + UPSTREAM_READ_BYTES);
        do
          n = read (upstream, input->data + old, UPSTREAM_READ_BYTES);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
          return FALSE;
        g_byte_array_set_size (input, old + (guint)n);
      }
    }
  return TRUE;
}

/* One event line of exactly @size bytes (newline included) for event @seq,
 * shaped like the bridge's chat.message lines; returns its length. */
static gsize
format_line (char *out, guint size, guint seq)
{
  static const char head[]
      = "{\"type\":\"chat.message\",\"payload\":{\"stream_id\":\"bench_raw\",\"message_id\":"
        "\"msg_0123456789ab\",\"user_id\":\"user_42\",\"username\":\"viewer42\",\"message\":"
        "\"hello from the benchmark\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"sim_padding\":\"";
  char tail[96];
  gint64 sent_us = g_get_monotonic_time ();
  int tail_length
      = g_snprintf (tail, sizeof tail,
                    "\",\"sim_seq\":%u,\"sim_sent_us\":%016" G_GINT64_FORMAT "}}\n", seq, sent_us);
  gsize fixed = sizeof head - 1 + (gsize)tail_length;
  gsize padding = size > fixed ? size - fixed : 0;

  memcpy (out, head, sizeof head - 1);
  memset (out + sizeof head - 1, 'x', padding);
  memcpy (out + sizeof head - 1 + padding, tail, (gsize)tail_length);
  return fixed + padding;
}

static void
sleep_until_us (gint64 when_us)
{
  gint64 now = g_get_monotonic_time ();
  struct timespec delay;

  if (when_us <= now)
    return;
  delay.tv_sec = (when_us - now) / G_USEC_PER_SEC;
  delay.tv_nsec = ((when_us - now) % G_USEC_PER_SEC) * 1000;
  nanosleep (&delay, NULL);
}

int
main (int argc, char **argv)
{
  g_autofree char *socket_path = NULL;
  g_autofree char *write_mode = NULL;
  g_autofree char *upstream_url = NULL;
  g_autofree char *api_key = NULL;
  g_autofree char *stream_id = NULL;
  int upstream = -1;
  g_autoptr (GByteArray) input = g_byte_array_new ();
  gint clients = 1, rate = 1000, count = 1000, size = 256;
  GOptionEntry entries[] = {
    { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path, "path to listen on", "PATH" },
    { "clients", 0, 0, G_OPTION_ARG_INT, &clients, "readers to accept", "N" },
    { "rate", 0, 0, G_OPTION_ARG_INT, &rate, "events per second", "N" },
    { "count", 0, 0, G_OPTION_ARG_INT, &count, "events", "N" },
    { "size", 0, 0, G_OPTION_ARG_INT, &size, "line size, bytes", "B" },
    { "write", 0, 0, G_OPTION_ARG_STRING, &write_mode, "line or batch", "MODE" },
    { "upstream", 0, 0, G_OPTION_ARG_STRING, &upstream_url,
      "forward wave-sim's frames instead (ws://HOST:PORT/PATH)", "URL" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &api_key, "for --upstream", "KEY" },
    { "stream", 0, 0, G_OPTION_ARG_STRING, &stream_id, "stream to subscribe upstream", "ID" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- raw socket writer baseline");
  g_autoptr (GError) error = NULL;
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  g_autofree int *fds = NULL;
  g_autofree struct pollfd *polls = NULL;
  g_autofree char *batch = NULL;
  gboolean batched;
  gboolean go = FALSE;
  gint64 started_us;
  guint made = 0;
  guint64 writes = 0;
  int listener;
  char line[512];

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bench-rawsock: %s\n", error->message);
      return 2;
    }
  if (socket_path == NULL || clients < 1 || clients > MAX_CLIENTS || rate < 1 || count < 1
      || size < MIN_LINE_BYTES || size > MAX_LINE_BYTES
      || (g_strcmp0 (write_mode, "line") != 0 && g_strcmp0 (write_mode, "batch") != 0))
    {
      g_printerr ("bench-rawsock: need --socket, --write=line|batch, 1 <= --clients <= %d, "
                  "%d <= --size <= %d\n",
                  MAX_CLIENTS, MIN_LINE_BYTES, MAX_LINE_BYTES);
      return 2;
    }
  batched = g_str_equal (write_mode, "batch");
  if (upstream_url != NULL)
    {
      upstream = ws_connect (upstream_url, api_key != NULL ? api_key : "wave_test_key",
                             stream_id != NULL ? stream_id : "bench_raw", input);
      if (upstream < 0)
        {
          g_printerr ("bench-rawsock: cannot connect to %s\n", upstream_url);
          return 1;
        }
    }

  listener = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_strlcpy (address.sun_path, socket_path, sizeof address.sun_path);
  unlink (socket_path);
  if (listener < 0 || bind (listener, (struct sockaddr *)&address, sizeof address) < 0
      || listen (listener, LISTEN_BACKLOG) < 0)
    {
      g_printerr ("bench-rawsock: %s: %s\n", socket_path, g_strerror (errno));
      return 1;
    }
  g_print ("{\"listening\":true}\n");
  fflush (stdout);

  fds = g_new (int, clients);
  polls = g_new0 (struct pollfd, clients);
  for (gint i = 0; i < clients; i++)
    {
      fds[i] = accept (listener, NULL, NULL);
      if (fds[i] < 0 || !read_line (fds[i], line, sizeof line)
          || !write_all (fds[i], SUBSCRIBED_LINE, strlen (SUBSCRIBED_LINE)))
        {
          g_printerr ("bench-rawsock: reader %d: %s\n", i, g_strerror (errno));
          return 1;
        }
      polls[i].fd = fds[i];
      polls[i].events = POLLIN;
    }
  close (listener);
  unlink (socket_path);

  if (upstream >= 0)
    {
      Forwarder fw = { .fds = fds, .clients = clients, .batched = batched };

      fw.lines = g_byte_array_new ();
      if (!forward (upstream, input, &fw, (guint)count))
        g_printerr ("bench-rawsock: upstream ended after %u events\n", fw.events);
      g_byte_array_unref (fw.lines);
      writes = fw.writes;
      close (upstream);
      goto drain;
    }

  /* The go line may come from any reader. */
  while (!go)
    {
      if (poll (polls, (nfds_t)clients, -1) < 0 && errno != EINTR)
        return 1;
      for (gint i = 0; i < clients && !go; i++)
        if (polls[i].revents & POLLIN)
          go = read_line (fds[i], line, sizeof line) && strstr (line, "\"go\"") != NULL;
    }

  batch = g_malloc (BATCH_MAX_BYTES + MAX_LINE_BYTES);
  started_us = g_get_monotonic_time ();
  while (made < (guint)count)
    {
      double elapsed_s = (double)(g_get_monotonic_time () - started_us) / G_USEC_PER_SEC;
      guint due = (guint)MIN ((double)count, elapsed_s * rate + 1.0);

      if (due <= made)
        {
          sleep_until_us (started_us + (gint64)made * G_USEC_PER_SEC / rate);
          continue;
        }
      if (batched)
        {
          gsize length = 0;

          while (made < due && length < BATCH_MAX_BYTES)
            length += format_line (batch + length, (guint)size, made++);
          for (gint i = 0; i < clients; i++, writes++)
            if (!write_all (fds[i], batch, length))
              return 1;
        }
      else
        {
          gsize length = format_line (batch, (guint)size, made++);

          for (gint i = 0; i < clients; i++, writes++)
            if (!write_all (fds[i], batch, length))
              return 1;
        }
    }

drain:
  /* Until every reader is gone: the CPU time must stay readable. */
  for (gint i = 0; i < clients; i++)
    {
      char sink[4096];

      while (read (fds[i], sink, sizeof sink) > 0)
        ;
      close (fds[i]);
    }
  g_print ("{\"events\":%d,\"writes\":%" G_GUINT64_FORMAT "}\n", count, writes);
  return 0;
}
