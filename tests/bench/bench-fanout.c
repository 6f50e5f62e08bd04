/* SPDX-License-Identifier: MIT */
/*
 * bench-fanout: the measuring client of the wave-bridge benchmarks
 * (docs/benchmarks.md; scripts/bench runs it through tests/bench/bench.py).
 *
 * One run = one flood from wave-sim (POST /sim/flood) received by either
 *   --mode=bridge  N plain AF_UNIX clients of wave-bridged, all subscribed to
 *                  one stream, driven by one epoll loop, or
 *   --mode=direct  one libsoup WebSocket client of wave-sim itself (the
 *                  baseline: what the bridge's hop costs is measured against it).
 * Every flood event carries "sim_sent_us" (the simulator's
 * g_get_monotonic_time() at send, CLOCK_MONOTONIC, so comparable across
 * processes); latency = receive time - sim_sent_us. The field is found by a
 * backwards scan from the end of the line (the simulator writes it last), so
 * the client costs a recv() and a few byte compares per line, never a JSON
 * parse: the bridge, not this tool, must be the bottleneck.
 *
 *   --mode=raw     N plain AF_UNIX clients of bench-rawsock (the physical-limit
 *                  baseline: a C writer with the same lines, no upstream);
 *                  instead of a flood the tool sends {"type":"go"} on client 0.
 *
 * --await-go: set up, print {"ready":true}, read one line from stdin, then
 * receive a flood someone else starts (many processes, one flood).
 *
 * --mode=bridge --hold: connect and subscribe, print {"ready":true}, then
 * keep the clients until stdin closes (the memory benchmark samples the
 * daemon's RSS meanwhile).
 *
 * Prints one JSON object on stdout. Exit status 0 also when events were
 * lost (the report says how many); non-zero only when the run could not
 * be made at all.
 */
#define G_LOG_DOMAIN "wave-bench"

#include <errno.h>
#include <glib-unix.h>
#include <libsoup/soup.h>
#include <json-glib/json-glib.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Per-client receive buffer: bounds the longest line, hence --size. */
#define CLIENT_BUFFER_BYTES (64 * 1024)
#define MAX_EVENT_SIZE (32 * 1024)
#define MAX_CLIENTS 4000
#define EPOLL_BATCH 1024
/* Descriptors beyond the clients: epoll, HTTP, stdio, libsoup. */
#define SPARE_FDS 64
#define HTTP_TIMEOUT_S 10
#define HTTP_MAX_ANSWER_BYTES (4 * 1024 * 1024)
/* Setting up (connect, acks, upstream subscription) may take this long. */
#define SETUP_TIMEOUT_US (60 * G_USEC_PER_SEC)
#define UPSTREAM_POLL_INTERVAL_US (20 * 1000)
/* After the flood should have ended: stop once nothing came for this long.
 * Generous: a bridge fanning out a burst may write nothing for seconds. */
#define DEFAULT_QUIET_S 15
#define DEFAULT_GRACE_S 120

static const char SENT_KEY[] = "\"sim_sent_us\":";
static const char SUBSCRIBED_TYPE[] = "\"type\":\"subscribed\"";
static const char DROPPED_TYPE[] = "\"type\":\"bridge.dropped\"";
static const char ERROR_TYPE[] = "\"type\":\"error\"";
static const char GO_LINE[] = "{\"type\":\"go\"}\n";

typedef struct
{
  int fd;
  char *buffer;
  gsize length;
  guint received; /* flood events */
  gboolean subscribed;
  gboolean eof;
} Client;

typedef struct
{
  /* options */
  char *mode;
  char *socket_path;
  char *sim_url;
  char *api_key;
  char *stream_id;
  char *bystander_stream_id;
  guint clients;
  guint bystanders;
  guint rate;
  guint size;
  guint count;
  gint pid;
  guint grace_s;
  guint quiet_s;
  gboolean hold;
  gboolean await_go;

  /* derived */
  char *http_host;
  guint16 http_port;

  /* bridge mode */
  int epoll_fd;
  Client *client_array;
  guint n_client_array; /* clients + bystanders */

  /* direct mode */
  SoupSession *session;
  SoupWebsocketConnection *ws;
  gboolean ws_failed;
  char *ws_error;
  guint direct_received;

  /* results */
  GArray *latencies_us; /* gint32 */
  guint64 received_total;
  guint64 unparsed_lines; /* lines neither flood events nor known controls */
  guint64 dropped_notices;
  guint64 dropped_events;
  guint error_lines;
  gint64 min_sent_us;
  gint64 first_recv_us;
  gint64 last_recv_us;
  gint64 last_activity_us;
  gint64 flood_posted_us;
} Bench;

/* ---- small helpers ---------------------------------------------------- */

static gint64
now_us (void)
{
  return g_get_monotonic_time ();
}

/* The value of "sim_sent_us" in @line, or -1. The simulator writes the
 * member last, so the line ends `"sim_sent_us":123}}`: scan backwards. */
static gint64
scan_sent_us (const char *line, gsize length)
{
  const char *end = line + length;
  const char *p = end;
  const char *digits_end;
  gint64 value = 0;
  gint64 scale = 1;
  const char *hit;

  while (p > line && (p[-1] == '}' || p[-1] == ' ' || p[-1] == '\r'))
    p--;
  digits_end = p;
  while (p > line && g_ascii_isdigit (p[-1]))
    p--;
  if (p < digits_end && (gsize)(p - line) >= sizeof SENT_KEY - 1
      && memcmp (p - (sizeof SENT_KEY - 1), SENT_KEY, sizeof SENT_KEY - 1) == 0)
    {
      for (const char *d = digits_end; d > p; d--)
        {
          value += (d[-1] - '0') * scale;
          scale *= 10;
        }
      return value;
    }
  /* Not last after all (an older simulator, a reordering serializer). */
  hit = memmem (line, length, SENT_KEY, sizeof SENT_KEY - 1);
  if (hit == NULL)
    return -1;
  return g_ascii_strtoll (hit + sizeof SENT_KEY - 1, NULL, 10);
}

static gboolean
contains (const char *line, gsize length, const char *needle)
{
  return memmem (line, length, needle, strlen (needle)) != NULL;
}

static void
record_event (Bench *bench, gint64 sent_us, gint64 recv_us)
{
  gint32 latency = (gint32)CLAMP (recv_us - sent_us, 0, G_MAXINT32);

  g_array_append_val (bench->latencies_us, latency);
  bench->received_total++;
  if (bench->min_sent_us < 0 || sent_us < bench->min_sent_us)
    bench->min_sent_us = sent_us;
  if (bench->first_recv_us < 0)
    bench->first_recv_us = recv_us;
  bench->last_recv_us = recv_us;
}

/* ---- blocking HTTP to the simulator's control API --------------------- */

static gboolean
write_all (int fd, const char *data, gsize length, GError **error)
{
  while (length > 0)
    {
      ssize_t n = write (fd, data, length);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "write: %s",
                       g_strerror (errno));
          return FALSE;
        }
      data += n;
      length -= (gsize)n;
    }
  return TRUE;
}

/* One HTTP/1.1 request with Connection: close; the body of a 200 answer. */
static char *
http_request (Bench *bench, const char *method, const char *path, const char *body, GError **error)
{
  struct sockaddr_in address = { .sin_family = AF_INET };
  struct timeval timeout = { .tv_sec = HTTP_TIMEOUT_S };
  g_autoptr (GString) answer = g_string_new (NULL);
  g_autofree char *request = NULL;
  const char *status_end;
  const char *body_start;
  int fd;
  char chunk[16384];

  address.sin_port = htons (bench->http_port);
  if (inet_pton (AF_INET, bench->http_host, &address.sin_addr) != 1)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not an IPv4 address: %s",
                   bench->http_host);
      return NULL;
    }
  fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "socket: %s",
                   g_strerror (errno));
      return NULL;
    }
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (connect (fd, (struct sockaddr *)&address, sizeof address) < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "connect %s:%u: %s",
                   bench->http_host, bench->http_port, g_strerror (errno));
      close (fd);
      return NULL;
    }
  request = g_strdup_printf ("%s %s HTTP/1.1\r\nHost: %s:%u\r\nConnection: close\r\n"
                             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                             method, path, bench->http_host, bench->http_port,
                             body != NULL ? strlen (body) : 0, body != NULL ? body : "");
  if (!write_all (fd, request, strlen (request), error))
    {
      close (fd);
      return NULL;
    }
  for (;;)
    {
      ssize_t n = read (fd, chunk, sizeof chunk);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "%s %s: %s", method, path,
                       g_strerror (errno));
          close (fd);
          return NULL;
        }
      if (n == 0)
        break;
      g_string_append_len (answer, chunk, n);
      if (answer->len > HTTP_MAX_ANSWER_BYTES)
        break;
    }
  close (fd);

  status_end = strstr (answer->str, "\r\n");
  body_start = strstr (answer->str, "\r\n\r\n");
  if (status_end == NULL || body_start == NULL || strncmp (answer->str, "HTTP/1.1 200", 12) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s %s: %.*s", method, path,
                   status_end != NULL ? (int)(status_end - answer->str) : 80, answer->str);
      return NULL;
    }
  /* libsoup answers Connection: close requests without chunking. */
  return g_strdup (body_start + 4);
}

/* TRUE when the simulator holds a subscription to @stream_id (so a flood
 * reaches whoever asked for it: the bridge's upstream or the direct client). */
static gboolean
sim_has_subscription (Bench *bench, const char *stream_id, GError **error)
{
  g_autofree char *body = http_request (bench, "GET", "/sim/stats", NULL, error);
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *root;
  JsonArray *subscriptions;

  if (body == NULL || !json_parser_load_from_data (parser, body, -1, error))
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return FALSE;
  root = json_node_get_object (json_parser_get_root (parser));
  if (!json_object_has_member (root, "subscriptions"))
    return FALSE;
  subscriptions = json_object_get_array_member (root, "subscriptions");
  for (guint i = 0; i < json_array_get_length (subscriptions); i++)
    {
      JsonObject *subscription = json_array_get_object_element (subscriptions, i);

      if (g_strcmp0 (json_object_get_string_member_with_default (subscription, "stream_id", ""),
                     stream_id)
          == 0)
        return TRUE;
    }
  return FALSE;
}

static gboolean
post_flood (Bench *bench, GError **error)
{
  g_autofree char *body
      = g_strdup_printf ("{\"stream_id\":\"%s\",\"type\":\"chat.message\",\"rate\":%u,"
                         "\"size\":%u,\"count\":%u}",
                         bench->stream_id, bench->rate, bench->size, bench->count);
  g_autofree char *answer = NULL;

  bench->flood_posted_us = now_us ();
  answer = http_request (bench, "POST", "/sim/flood", body, error);
  return answer != NULL;
}

/* ---- the daemon's CPU time --------------------------------------------- */

typedef struct
{
  gboolean valid;
  guint64 ticks;         /* utime + stime from /proc/PID/stat, all threads */
  guint64 sched_ns;      /* run time summed over /proc/PID/task/N/schedstat, in ns */
  guint64 wakeups;       /* voluntary context switches, all threads: each is a sleep in poll() */
  guint64 main_wakeups;  /* the same for the main thread (the main loop) */
  guint64 self_sched_ns; /* this tool's own run time */
} CpuSample;

static guint64
status_field (const char *path, const char *field)
{
  g_autofree char *text = NULL;
  const char *hit;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  hit = strstr (text, field);
  if (hit == NULL)
    return 0;
  return g_ascii_strtoull (hit + strlen (field), NULL, 10);
}

static guint64
sched_ns_of (const char *task_dir)
{
  g_autoptr (GDir) dir = g_dir_open (task_dir, 0, NULL);
  const char *name;
  guint64 total = 0;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *stat_path = g_build_filename (task_dir, name, "schedstat", NULL);
      g_autofree char *stat_text = NULL;

      if (g_file_get_contents (stat_path, &stat_text, NULL, NULL))
        total += g_ascii_strtoull (stat_text, NULL, 10);
    }
  return total;
}

static CpuSample
sample_cpu (gint pid)
{
  CpuSample sample = { 0 };
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  g_autofree char *task_dir = NULL;
  g_autoptr (GDir) dir = NULL;
  const char *rest;
  g_auto (GStrv) fields = NULL;
  const char *name;

  sample.self_sched_ns = sched_ns_of ("/proc/self/task");
  if (pid <= 0)
    return sample;
  path = g_strdup_printf ("/proc/%d/stat", pid);
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return sample;
  /* The command name may contain spaces: fields start after its ')'. */
  rest = strrchr (text, ')');
  if (rest == NULL)
    return sample;
  fields = g_strsplit (rest + 2, " ", -1);
  /* fields[0] is field 3 (state); utime and stime are fields 14 and 15. */
  if (g_strv_length (fields) < 13)
    return sample;
  sample.ticks = g_ascii_strtoull (fields[11], NULL, 10) + g_ascii_strtoull (fields[12], NULL, 10);

  task_dir = g_strdup_printf ("/proc/%d/task", pid);
  dir = g_dir_open (task_dir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *stat_path = g_build_filename (task_dir, name, "schedstat", NULL);
      g_autofree char *stat_text = NULL;
      g_autofree char *status_path = g_build_filename (task_dir, name, "status", NULL);

      if (g_file_get_contents (stat_path, &stat_text, NULL, NULL))
        sample.sched_ns += g_ascii_strtoull (stat_text, NULL, 10);
      sample.wakeups += status_field (status_path, "\nvoluntary_ctxt_switches:");
      if (g_ascii_strtoll (name, NULL, 10) == pid)
        sample.main_wakeups = status_field (status_path, "\nvoluntary_ctxt_switches:");
    }
  sample.valid = TRUE;
  return sample;
}

/* ---- bridge mode: N socket clients on one epoll ------------------------- */

static void
raise_fd_limit (guint wanted)
{
  struct rlimit limit;

  if (getrlimit (RLIMIT_NOFILE, &limit) < 0 || limit.rlim_cur >= wanted)
    return;
  limit.rlim_cur = MIN ((rlim_t)wanted, limit.rlim_max);
  if (setrlimit (RLIMIT_NOFILE, &limit) < 0)
    g_warning ("cannot raise RLIMIT_NOFILE to %u: %s", wanted, g_strerror (errno));
}

static gboolean
client_connect (Bench *bench, Client *client, const char *stream_id, GError **error)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  struct epoll_event event = { .events = EPOLLIN };
  g_autofree char *line
      = g_strdup_printf ("{\"type\":\"subscribe\",\"stream_id\":\"%s\"}\n", stream_id);
  int fd;

  g_strlcpy (address.sun_path, bench->socket_path, sizeof address.sun_path);
  /* Blocking connect and first write: a full accept backlog just waits. */
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect (fd, (struct sockaddr *)&address, sizeof address) < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "connect %s: %s",
                   bench->socket_path, g_strerror (errno));
      if (fd >= 0)
        close (fd);
      return FALSE;
    }
  client->fd = fd;
  client->buffer = g_malloc (CLIENT_BUFFER_BYTES);
  if (!write_all (fd, line, strlen (line), error))
    return FALSE;
  g_unix_set_fd_nonblocking (fd, TRUE, NULL);
  event.data.ptr = client;
  if (epoll_ctl (bench->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "epoll_ctl: %s",
                   g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

static void
client_line (Bench *bench, Client *client, const char *line, gsize length, gint64 recv_us)
{
  gint64 sent_us = scan_sent_us (line, length);

  if (sent_us >= 0)
    {
      client->received++;
      record_event (bench, sent_us, recv_us);
      return;
    }
  if (contains (line, length, SUBSCRIBED_TYPE))
    client->subscribed = TRUE;
  else if (contains (line, length, DROPPED_TYPE))
    {
      const char *count = memmem (line, length, "\"count\":", 8);

      bench->dropped_notices++;
      if (count != NULL)
        bench->dropped_events += g_ascii_strtoull (count + 8, NULL, 10);
    }
  else if (contains (line, length, ERROR_TYPE))
    {
      bench->error_lines++;
      if (bench->error_lines <= 3)
        g_printerr ("bench-fanout: the bridge said: %.*s\n", (int)MIN (length, 300), line);
    }
  else
    bench->unparsed_lines++;
}

static void
client_read (Bench *bench, Client *client)
{
  ssize_t n;
  gint64 recv_us;
  gsize start = 0;

  do
    n = recv (client->fd, client->buffer + client->length, CLIENT_BUFFER_BYTES - client->length,
              MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  /* One timestamp per read: what a real client pays for its wake-up. */
  recv_us = now_us ();
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return;
  if (n <= 0)
    {
      client->eof = TRUE;
      epoll_ctl (bench->epoll_fd, EPOLL_CTL_DEL, client->fd, NULL);
      return;
    }
  bench->last_activity_us = recv_us;
  client->length += (gsize)n;
  for (;;)
    {
      const char *newline = memchr (client->buffer + start, '\n', client->length - start);

      if (newline == NULL)
        break;
      client_line (bench, client, client->buffer + start,
                   (gsize)(newline - (client->buffer + start)), recv_us);
      start = (gsize)(newline - client->buffer) + 1;
    }
  if (start > 0)
    {
      memmove (client->buffer, client->buffer + start, client->length - start);
      client->length -= start;
    }
  else if (client->length == CLIENT_BUFFER_BYTES)
    {
      g_printerr ("bench-fanout: a line longer than %d bytes\n", CLIENT_BUFFER_BYTES);
      client->length = 0;
    }
}

static void
pump (Bench *bench, gint64 timeout_us)
{
  struct epoll_event events[EPOLL_BATCH];
  int n
      = epoll_wait (bench->epoll_fd, events, EPOLL_BATCH, (int)MAX (0, (timeout_us + 999) / 1000));

  for (int i = 0; i < n; i++)
    client_read (bench, events[i].data.ptr);
}

static gboolean
all_subscribed (Bench *bench)
{
  for (guint i = 0; i < bench->n_client_array; i++)
    if (!bench->client_array[i].subscribed)
      return FALSE;
  return TRUE;
}

static gboolean
all_received (Bench *bench)
{
  for (guint i = 0; i < bench->clients; i++)
    if (bench->client_array[i].received < bench->count && !bench->client_array[i].eof)
      return FALSE;
  return TRUE;
}

/* Until the simulator holds @stream_id, keeping the clients read. */
static gboolean
wait_upstream (Bench *bench, const char *stream_id, void (*spin) (Bench *, gint64), GError **error)
{
  gint64 deadline = now_us () + SETUP_TIMEOUT_US;

  while (now_us () < deadline)
    {
      g_autoptr (GError) local_error = NULL;

      if (sim_has_subscription (bench, stream_id, &local_error))
        return TRUE;
      if (local_error != NULL)
        {
          g_propagate_error (error, g_steal_pointer (&local_error));
          return FALSE;
        }
      spin (bench, UPSTREAM_POLL_INTERVAL_US);
    }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "wave-sim never saw a subscription to %s",
               stream_id);
  return FALSE;
}

/* Receives until every client has the whole flood, or the flood should long
 * be over and nothing arrives any more. */
static void
receive_flood (Bench *bench, gboolean (*done) (Bench *), void (*spin) (Bench *, gint64))
{
  gint64 expected_end
      = bench->flood_posted_us + (gint64)bench->count * G_USEC_PER_SEC / MAX (bench->rate, 1);
  gint64 deadline = expected_end + (gint64)bench->grace_s * G_USEC_PER_SEC;

  bench->last_activity_us = now_us ();
  while (!done (bench))
    {
      gint64 now = now_us ();

      if (now >= deadline
          || (now >= expected_end
              && now - bench->last_activity_us >= (gint64)bench->quiet_s * G_USEC_PER_SEC))
        break;
      spin (bench, MIN (deadline - now, 100 * 1000));
    }
}

/* --await-go: whoever runs many of us starts the flood once all are ready. */
static gboolean
await_go (Bench *bench, GError **error)
{
  char byte = 0;

  g_print ("{\"ready\":true}\n");
  fflush (stdout);
  while (byte != '\n')
    if (read (STDIN_FILENO, &byte, 1) != 1)
      {
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED, "stdin closed before the go");
        return FALSE;
      }
  bench->flood_posted_us = now_us ();
  return TRUE;
}

static gboolean
run_bridge (Bench *bench, CpuSample *out_before, CpuSample *out_after, GError **error)
{
  gboolean raw = g_str_equal (bench->mode, "raw");
  gint64 deadline;

  bench->epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
  bench->n_client_array = bench->clients + bench->bystanders;
  bench->client_array = g_new0 (Client, bench->n_client_array);
  raise_fd_limit (bench->n_client_array + SPARE_FDS);
  for (guint i = 0; i < bench->n_client_array; i++)
    bench->client_array[i].fd = -1;

  for (guint i = 0; i < bench->n_client_array; i++)
    {
      const char *stream = i < bench->clients ? bench->stream_id : bench->bystander_stream_id;

      if (!client_connect (bench, &bench->client_array[i], stream, error))
        {
          g_prefix_error (error, "client %u: ", i);
          return FALSE;
        }
      /* Keep the greetings flowing so the daemon never sees us as slow. */
      if (i % 64 == 63)
        pump (bench, 0);
    }
  deadline = now_us () + SETUP_TIMEOUT_US;
  while (!all_subscribed (bench) && now_us () < deadline)
    pump (bench, 100 * 1000);
  if (!all_subscribed (bench))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "not every client was subscribed");
      return FALSE;
    }
  if (raw)
    ; /* no upstream: bench-rawsock answers the subscription itself */
  else if (!wait_upstream (bench, bench->stream_id, pump, error))
    return FALSE;
  if (bench->bystanders > 0 && !wait_upstream (bench, bench->bystander_stream_id, pump, error))
    return FALSE;

  if (bench->hold)
    {
      char byte;

      g_print ("{\"ready\":true,\"clients\":%u}\n", bench->n_client_array);
      fflush (stdout);
      /* Idle clients need no reading; EOF on stdin ends the hold. */
      while (read (STDIN_FILENO, &byte, 1) > 0)
        ;
      return TRUE;
    }

  *out_before = sample_cpu (bench->pid);
  if (bench->await_go && !await_go (bench, error))
    return FALSE;
  else if (raw)
    {
      bench->flood_posted_us = now_us ();
      if (!write_all (bench->client_array[0].fd, GO_LINE, strlen (GO_LINE), error))
        return FALSE;
    }
  else if (!bench->await_go && !post_flood (bench, error))
    return FALSE;
  receive_flood (bench, all_received, pump);
  *out_after = sample_cpu (bench->pid);
  return TRUE;
}

/* ---- direct mode: one WebSocket client of wave-sim ---------------------- */

static void
ws_message_cb (SoupWebsocketConnection *ws, gint type, GBytes *message, gpointer user_data)
{
  Bench *bench = user_data;
  gsize length = 0;
  const char *data = g_bytes_get_data (message, &length);
  gint64 recv_us = now_us ();
  gint64 sent_us;

  bench->last_activity_us = recv_us;
  if (data == NULL)
    return;
  sent_us = scan_sent_us (data, length);
  if (sent_us < 0)
    {
      bench->unparsed_lines++;
      return;
    }
  bench->direct_received++;
  record_event (bench, sent_us, recv_us);
}

static void
ws_closed_cb (SoupWebsocketConnection *ws, gpointer user_data)
{
  Bench *bench = user_data;

  bench->ws_failed = TRUE;
  if (bench->ws_error == NULL)
    bench->ws_error
        = g_strdup_printf ("closed with code %u", soup_websocket_connection_get_close_code (ws));
}

static void
ws_connected_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Bench *bench = user_data;
  g_autoptr (GError) error = NULL;

  bench->ws = soup_session_websocket_connect_finish (SOUP_SESSION (source), result, &error);
  if (bench->ws == NULL)
    {
      bench->ws_failed = TRUE;
      bench->ws_error = g_strdup (error->message);
      return;
    }
  soup_websocket_connection_set_max_incoming_payload_size (bench->ws, CLIENT_BUFFER_BYTES);
  g_signal_connect (bench->ws, "message", G_CALLBACK (ws_message_cb), bench);
  g_signal_connect (bench->ws, "closed", G_CALLBACK (ws_closed_cb), bench);
}

static void
spin_glib (Bench *bench, gint64 timeout_us)
{
  gint64 deadline = now_us () + timeout_us;

  do
    g_main_context_iteration (NULL, FALSE);
  while (now_us () < deadline && !g_main_context_pending (NULL) && (g_usleep (200), TRUE));
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
}

static gboolean
wake_cb (gpointer user_data)
{
  return G_SOURCE_CONTINUE;
}

static gboolean
direct_done (Bench *bench)
{
  return bench->ws_failed || bench->direct_received >= bench->count;
}

static gboolean
run_direct (Bench *bench, CpuSample *out_before, CpuSample *out_after, GError **error)
{
  g_autofree char *url = g_strdup_printf ("%s?api_key=%s", bench->sim_url, bench->api_key);
  g_autofree char *subscribe
      = g_strdup_printf ("{\"type\":\"subscribe\",\"stream_id\":\"%s\"}", bench->stream_id);
  g_autoptr (SoupMessage) message = soup_message_new ("GET", url);
  gint64 deadline = now_us () + SETUP_TIMEOUT_US;

  if (message == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad URL %s", bench->sim_url);
      return FALSE;
    }
  bench->session = soup_session_new ();
  soup_session_websocket_connect_async (bench->session, message, NULL, NULL, G_PRIORITY_DEFAULT,
                                        NULL, ws_connected_cb, bench);
  while (bench->ws == NULL && !bench->ws_failed && now_us () < deadline)
    g_main_context_iteration (NULL, TRUE);
  if (bench->ws == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "WebSocket to %s: %s", bench->sim_url,
                   bench->ws_error != NULL ? bench->ws_error : "timed out");
      return FALSE;
    }
  soup_websocket_connection_send_text (bench->ws, subscribe);
  if (!wait_upstream (bench, bench->stream_id, spin_glib, error))
    return FALSE;

  *out_before = sample_cpu (bench->pid);
  if (bench->await_go ? !await_go (bench, error) : !post_flood (bench, error))
    return FALSE;
  /* A blocking loop iteration: libsoup reads as soon as a frame arrives. */
  {
    gint64 expected_end
        = bench->flood_posted_us + (gint64)bench->count * G_USEC_PER_SEC / MAX (bench->rate, 1);
    gint64 flood_deadline = expected_end + (gint64)bench->grace_s * G_USEC_PER_SEC;
    guint quiet_timer = 0;

    bench->last_activity_us = now_us ();
    while (!direct_done (bench))
      {
        gint64 now = now_us ();

        if (now >= flood_deadline
            || (now >= expected_end
                && now - bench->last_activity_us >= (gint64)bench->quiet_s * G_USEC_PER_SEC))
          break;
        /* Wakes the blocking iteration so the deadlines are checked. */
        if (quiet_timer == 0)
          quiet_timer = g_timeout_add (100, wake_cb, NULL);
        g_main_context_iteration (NULL, TRUE);
      }
    if (quiet_timer != 0)
      g_source_remove (quiet_timer);
  }
  *out_after = sample_cpu (bench->pid);
  if (bench->ws_failed && bench->ws_error != NULL)
    g_printerr ("bench-fanout: WebSocket %s\n", bench->ws_error);
  soup_websocket_connection_close (bench->ws, SOUP_WEBSOCKET_CLOSE_NORMAL, NULL);
  return TRUE;
}

/* ---- report ------------------------------------------------------------- */

static int
compare_gint32 (gconstpointer a, gconstpointer b)
{
  gint32 x = *(const gint32 *)a;
  gint32 y = *(const gint32 *)b;

  return (x > y) - (x < y);
}

static gint32
percentile (GArray *sorted, double fraction)
{
  guint index;

  if (sorted->len == 0)
    return -1;
  index = (guint)MIN ((double)(sorted->len - 1), fraction * (double)(sorted->len - 1) + 0.5);
  return g_array_index (sorted, gint32, index);
}

static void
print_report (Bench *bench, const CpuSample *before, const CpuSample *after)
{
  GArray *sorted = bench->latencies_us;
  guint64 expected
      = (guint64)bench->count * (g_str_equal (bench->mode, "direct") ? 1 : bench->clients);
  double span_s = bench->last_recv_us > bench->min_sent_us && bench->min_sent_us >= 0
                      ? (double)(bench->last_recv_us - bench->min_sent_us) / G_USEC_PER_SEC
                      : 0.0;
  guint min_client = G_MAXUINT;
  double sum = 0;
  long ticks_per_s = sysconf (_SC_CLK_TCK);

  g_array_sort (sorted, compare_gint32);
  for (guint i = 0; i < sorted->len; i++)
    sum += g_array_index (sorted, gint32, i);
  for (guint i = 0; i < bench->clients && bench->client_array != NULL; i++)
    min_client = MIN (min_client, bench->client_array[i].received);
  if (bench->client_array == NULL)
    min_client = bench->direct_received;

  g_print ("{\"mode\":\"%s\",\"clients\":%u,\"bystanders\":%u,\"rate\":%u,\"size\":%u,"
           "\"count\":%u,",
           bench->mode, g_str_equal (bench->mode, "direct") ? 1 : bench->clients, bench->bystanders,
           bench->rate, bench->size, bench->count);
  g_print ("\"expected\":%" G_GUINT64_FORMAT ",\"received\":%" G_GUINT64_FORMAT
           ",\"lost\":%" G_GINT64_FORMAT ",\"min_client_received\":%u,",
           expected, bench->received_total, (gint64)expected - (gint64)bench->received_total,
           min_client);
  g_print ("\"dropped_notices\":%" G_GUINT64_FORMAT ",\"dropped_events\":%" G_GUINT64_FORMAT
           ",\"error_lines\":%u,\"other_lines\":%" G_GUINT64_FORMAT ",",
           bench->dropped_notices, bench->dropped_events, bench->error_lines,
           bench->unparsed_lines);
  g_print ("\"lat_mean_us\":%.1f,\"lat_p50_us\":%d,\"lat_p90_us\":%d,\"lat_p99_us\":%d,"
           "\"lat_max_us\":%d,",
           sorted->len > 0 ? sum / sorted->len : -1.0, percentile (sorted, 0.5),
           percentile (sorted, 0.9), percentile (sorted, 0.99), percentile (sorted, 1.0));
  g_print ("\"span_s\":%.6f,\"deliveries_per_s\":%.1f,\"upstream_events_per_s\":%.1f,"
           "\"us_per_upstream_event\":%.3f,",
           span_s, span_s > 0 ? (double)bench->received_total / span_s : 0.0,
           span_s > 0 ? (double)bench->count / span_s : 0.0,
           bench->count > 0 ? span_s * G_USEC_PER_SEC / bench->count : 0.0);
  g_print ("\"self_cpu_sched_s\":%.6f,",
           (double)(after->self_sched_ns - before->self_sched_ns) / 1e9);
  if (before->valid && after->valid && bench->pid > 0)
    g_print ("\"cpu_ticks\":%" G_GUINT64_FORMAT ",\"cpu_s\":%.4f,\"cpu_sched_s\":%.6f,"
             "\"wakeups\":%" G_GUINT64_FORMAT ",\"main_wakeups\":%" G_GUINT64_FORMAT "}\n",
             after->ticks - before->ticks, (double)(after->ticks - before->ticks) / ticks_per_s,
             (double)(after->sched_ns - before->sched_ns) / 1e9, after->wakeups - before->wakeups,
             after->main_wakeups - before->main_wakeups);
  else
    g_print ("\"cpu_ticks\":null,\"cpu_s\":null,\"cpu_sched_s\":null,\"wakeups\":null,"
             "\"main_wakeups\":null}\n");
}

/* ---- main --------------------------------------------------------------- */

static gboolean
parse_http_base (Bench *bench, GError **error)
{
  g_autoptr (GUri) uri = g_uri_parse (bench->sim_url, G_URI_FLAGS_NONE, error);

  if (uri == NULL)
    return FALSE;
  if (g_strcmp0 (g_uri_get_scheme (uri), "ws") != 0 || g_uri_get_port (uri) <= 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "--sim-url must be ws://HOST:PORT/... (plain wave-sim): %s", bench->sim_url);
      return FALSE;
    }
  bench->http_host = g_strdup (g_uri_get_host (uri));
  bench->http_port = (guint16)g_uri_get_port (uri);
  return TRUE;
}

int
main (int argc, char **argv)
{
  Bench bench = {
    .epoll_fd = -1,
    .clients = 1,
    .rate = 1000,
    .count = 1000,
    .grace_s = DEFAULT_GRACE_S,
    .quiet_s = DEFAULT_QUIET_S,
    .min_sent_us = -1,
    .first_recv_us = -1,
    .last_recv_us = -1,
  };
  gint clients = 1, bystanders = 0, rate = 1000, size = 0, count = 1000, grace = DEFAULT_GRACE_S,
       quiet = DEFAULT_QUIET_S;
  GOptionEntry entries[] = {
    { "mode", 0, 0, G_OPTION_ARG_STRING, &bench.mode,
      "bridge (socket clients) or direct (WebSocket to wave-sim)", "MODE" },
    { "socket", 0, 0, G_OPTION_ARG_FILENAME, &bench.socket_path, "the bridge's Unix socket",
      "PATH" },
    { "sim-url", 0, 0, G_OPTION_ARG_STRING, &bench.sim_url,
      "wave-sim's ws:// URL (its control API is on the same port)", "URL" },
    { "api-key", 0, 0, G_OPTION_ARG_STRING, &bench.api_key,
      "key for --mode=direct (default wave_test_key)", "KEY" },
    { "stream", 0, 0, G_OPTION_ARG_STRING, &bench.stream_id, "stream id to subscribe and flood",
      "ID" },
    { "clients", 0, 0, G_OPTION_ARG_INT, &clients, "socket clients on --stream", "N" },
    { "bystanders", 0, 0, G_OPTION_ARG_INT, &bystanders,
      "extra socket clients on --bystander-stream (not flooded)", "N" },
    { "bystander-stream", 0, 0, G_OPTION_ARG_STRING, &bench.bystander_stream_id, "their stream",
      "ID" },
    { "rate", 0, 0, G_OPTION_ARG_INT, &rate, "flood events per second", "N" },
    { "size", 0, 0, G_OPTION_ARG_INT, &size, "flood event size, bytes", "B" },
    { "count", 0, 0, G_OPTION_ARG_INT, &count, "flood events", "N" },
    { "pid", 0, 0, G_OPTION_ARG_INT, &bench.pid,
      "process whose CPU time to sample around the flood", "PID" },
    { "grace", 0, 0, G_OPTION_ARG_INT, &grace, "seconds to wait past the flood's end", "S" },
    { "quiet", 0, 0, G_OPTION_ARG_INT, &quiet,
      "after the flood's end, stop when nothing came for S seconds", "S" },
    { "hold", 0, 0, G_OPTION_ARG_NONE, &bench.hold,
      "connect, subscribe, print ready, wait for stdin EOF", NULL },
    { "await-go", 0, 0, G_OPTION_ARG_NONE, &bench.await_go,
      "set up, print ready, wait for a line on stdin, receive a flood started by others", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) context
      = g_option_context_new ("- wave-bridge fan-out benchmark client");
  g_autoptr (GError) error = NULL;
  CpuSample before = { 0 }, after = { 0 };
  gboolean ok;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bench-fanout: %s\n", error->message);
      return 2;
    }
  if (bench.mode != NULL && g_str_equal (bench.mode, "raw") && bench.sim_url == NULL)
    bench.sim_url = g_strdup ("ws://127.0.0.1:1/"); /* never used: no upstream */
  if (bench.mode == NULL || bench.sim_url == NULL || bench.stream_id == NULL
      || (!g_str_equal (bench.mode, "direct") && bench.socket_path == NULL)
      || (!g_str_equal (bench.mode, "bridge") && !g_str_equal (bench.mode, "direct")
          && !g_str_equal (bench.mode, "raw"))
      || clients < 1 || clients > MAX_CLIENTS || bystanders < 0 || bystanders > MAX_CLIENTS
      || (bystanders > 0 && bench.bystander_stream_id == NULL) || rate < 1 || count < 1 || size < 0
      || size > MAX_EVENT_SIZE || grace < 1)
    {
      g_printerr ("bench-fanout: need --mode=bridge|direct|raw, --sim-url, --stream, --socket "
                  "(bridge, raw); "
                  "1 <= --clients <= %d, --size <= %d\n",
                  MAX_CLIENTS, MAX_EVENT_SIZE);
      return 2;
    }
  bench.clients = (guint)clients;
  bench.bystanders = (guint)bystanders;
  bench.rate = (guint)rate;
  bench.size = (guint)size;
  bench.count = (guint)count;
  bench.grace_s = (guint)grace;
  bench.quiet_s = (guint)quiet;
  if (bench.api_key == NULL)
    bench.api_key = g_strdup ("wave_test_key");
  if (!parse_http_base (&bench, &error))
    {
      g_printerr ("bench-fanout: %s\n", error->message);
      return 2;
    }
  bench.latencies_us = g_array_sized_new (FALSE, FALSE, sizeof (gint32),
                                          MIN ((guint64)bench.count * bench.clients, 1u << 24));

  if (!g_str_equal (bench.mode, "direct"))
    ok = run_bridge (&bench, &before, &after, &error);
  else
    ok = run_direct (&bench, &before, &after, &error);
  if (!ok)
    {
      g_printerr ("bench-fanout: %s\n", error->message);
      return 1;
    }
  if (!bench.hold)
    print_report (&bench, &before, &after);

  for (guint i = 0; i < bench.n_client_array; i++)
    {
      if (bench.client_array[i].fd >= 0)
        close (bench.client_array[i].fd);
      g_free (bench.client_array[i].buffer);
    }
  g_free (bench.client_array);
  if (bench.epoll_fd >= 0)
    close (bench.epoll_fd);
  g_clear_object (&bench.ws);
  g_clear_object (&bench.session);
  g_array_unref (bench.latencies_us);
  g_free (bench.mode);
  g_free (bench.socket_path);
  g_free (bench.sim_url);
  g_free (bench.api_key);
  g_free (bench.stream_id);
  g_free (bench.bystander_stream_id);
  g_free (bench.http_host);
  return 0;
}
