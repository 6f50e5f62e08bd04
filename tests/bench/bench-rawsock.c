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
 */
#define G_LOG_DOMAIN "wave-bench-rawsock"

#include <errno.h>
#include <glib.h>
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
  gint clients = 1, rate = 1000, count = 1000, size = 256;
  GOptionEntry entries[] = {
    { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path, "path to listen on", "PATH" },
    { "clients", 0, 0, G_OPTION_ARG_INT, &clients, "readers to accept", "N" },
    { "rate", 0, 0, G_OPTION_ARG_INT, &rate, "events per second", "N" },
    { "count", 0, 0, G_OPTION_ARG_INT, &count, "events", "N" },
    { "size", 0, 0, G_OPTION_ARG_INT, &size, "line size, bytes", "B" },
    { "write", 0, 0, G_OPTION_ARG_STRING, &write_mode, "line or batch", "MODE" },
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
