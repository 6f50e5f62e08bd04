/* SPDX-License-Identifier: MIT */
/*
 * bench-dbus: the D-Bus side of the wave-bridge benchmarks
 * (docs/benchmarks.md); tests/bench/bench.py runs many of these, one
 * process per receiver, on a private dbus-daemon.
 *
 *   --role=recv  one sd-bus connection with a match rule for ChatMessage on
 *                --path (and, with --subscribe=STREAM, a Subscribe() call to
 *                the bridge first, as an application would). message_id is
 *                "t" + the sender's CLOCK_MONOTONIC µs (wave-sim's flood
 *                with stamp_message_id, or --role=send), so latency =
 *                receive time - that. Prints {"ready":true}, receives until
 *                --count signals or --quiet seconds without one, prints a
 *                JSON report with a latency histogram (so that many
 *                receivers' percentiles can be merged exactly enough).
 *                --split-us=T: events sent before T and from T on are
 *                counted in two histograms (p99 before / during a stall).
 *   --role=send  baseline (b): a raw sd-bus sender broadcasting the same
 *                ChatMessage signal (same path, interface, member and
 *                argument bytes) at --rate/s, --count of them, once a line
 *                arrives on stdin; stays until stdin closes.
 */
#define G_LOG_DOMAIN "wave-bench-dbus"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#define STREAM_INTERFACE "inc.wave.Bridge1.Stream"
#define MANAGER_NAME "inc.wave.Bridge1"
#define MANAGER_PATH "/inc/wave/Bridge1"
#define MANAGER_INTERFACE "inc.wave.Bridge1"
#define SIGNAL_MEMBER "ChatMessage"
/* Latencies below this are counted per µs, above it in buckets 2 % wide. */
#define HIST_LINEAR_US 100
#define HIST_GROWTH 1.02
#define HIST_BUCKETS 1200
#define DEFAULT_QUIET_S 5
#define DEFAULT_GRACE_S 120
/* The raw sender emits at most this many signals between two flushes. */
#define SEND_BATCH 256

G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus, sd_bus_flush_close_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus_message, sd_bus_message_unref)

typedef struct
{
  guint64 counts[HIST_BUCKETS];
  guint64 total;
} Histogram;

static guint
bucket_of (gint64 latency_us)
{
  double index;

  if (latency_us < HIST_LINEAR_US)
    return (guint)MAX (latency_us, 0);
  index = HIST_LINEAR_US + floor (log ((double)latency_us / HIST_LINEAR_US) / log (HIST_GROWTH));
  return (guint)MIN (index, HIST_BUCKETS - 1);
}

static void
histogram_add (Histogram *histogram, gint64 latency_us)
{
  histogram->counts[bucket_of (latency_us)]++;
  histogram->total++;
}

/* "[[bucket,count],...]" */
static void
histogram_print (const char *name, const Histogram *histogram)
{
  gboolean first = TRUE;

  g_print ("\"%s\":[", name);
  for (guint i = 0; i < HIST_BUCKETS; i++)
    if (histogram->counts[i] > 0)
      {
        g_print ("%s[%u,%" G_GUINT64_FORMAT "]", first ? "" : ",", i, histogram->counts[i]);
        first = FALSE;
      }
  g_print ("]");
}

static guint64
self_sched_ns (void)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents ("/proc/self/schedstat", &text, NULL, NULL))
    return 0;
  return g_ascii_strtoull (text, NULL, 10);
}

static int
connect_bus (const char *address, sd_bus **out_bus)
{
  g_autoptr (sd_bus) bus = NULL;
  int r;

  if ((r = sd_bus_new (&bus)) < 0 || (r = sd_bus_set_address (bus, address)) < 0
      || (r = sd_bus_set_bus_client (bus, 1)) < 0 || (r = sd_bus_start (bus)) < 0)
    return r;
  *out_bus = g_steal_pointer (&bus);
  return 0;
}

/* ---- receiver ------------------------------------------------------------ */

typedef struct
{
  guint count;
  gint64 split_us;
  gint64 split_after_us; /* split_us = the first event's send time + this */
  gint64 warmup_us;      /* events sent this soon after the first are not timed */
  gint64 first_sent_us;
  guint64 received;
  guint64 unstamped;
  gint64 min_sent_us;
  gint64 first_recv_us;
  gint64 last_recv_us;
  gsize arg_bytes; /* of the first signal: the raw sender copies it */
  Histogram before;
  Histogram after;
} Receiver;

static int
signal_cb (sd_bus_message *message, void *user_data, sd_bus_error *ret_error)
{
  Receiver *receiver = user_data;
  const char *args[5] = { NULL };
  gint64 recv_us = g_get_monotonic_time ();
  gint64 sent_us;

  if (sd_bus_message_read (message, "sssss", &args[0], &args[1], &args[2], &args[3], &args[4]) < 0
      || args[0][0] != 't')
    {
      receiver->unstamped++;
      return 0;
    }
  sent_us = g_ascii_strtoll (args[0] + 1, NULL, 10);
  if (receiver->received == 0)
    for (guint i = 0; i < G_N_ELEMENTS (args); i++)
      receiver->arg_bytes += strlen (args[i]);
  receiver->received++;
  if (receiver->min_sent_us < 0 || sent_us < receiver->min_sent_us)
    receiver->min_sent_us = sent_us;
  if (receiver->first_recv_us < 0)
    receiver->first_recv_us = recv_us;
  if (receiver->first_sent_us < 0)
    receiver->first_sent_us = sent_us;
  if (receiver->split_us <= 0 && receiver->split_after_us > 0)
    receiver->split_us = sent_us + receiver->split_after_us;
  if (sent_us < receiver->first_sent_us + receiver->warmup_us)
    return 0;
  receiver->last_recv_us = recv_us;
  histogram_add (receiver->split_us > 0 && sent_us >= receiver->split_us ? &receiver->after
                                                                         : &receiver->before,
                 recv_us - sent_us);
  return 0;
}

static int
run_recv (const char *address, const char *path, const char *stream_id, guint count,
          gint64 split_us, gint64 split_after_ms, gint64 warmup_ms, guint quiet_s, guint grace_s)
{
  g_autoptr (sd_bus) bus = NULL;
  g_autoptr (sd_bus_message) reply = NULL;
  g_autofree char *match = NULL;
  g_autofree Receiver *receiver = g_new0 (Receiver, 1);
  sd_bus_error bus_error = SD_BUS_ERROR_NULL;
  gint64 started_us, cpu_before;
  int r;

  receiver->count = count;
  receiver->split_us = split_us;
  receiver->split_after_us = split_after_ms * 1000;
  receiver->warmup_us = warmup_ms * 1000;
  receiver->first_sent_us = -1;
  receiver->min_sent_us = receiver->first_recv_us = receiver->last_recv_us = -1;
  if ((r = connect_bus (address, &bus)) < 0)
    {
      g_printerr ("bench-dbus: connect %s: %s\n", address, g_strerror (-r));
      return 1;
    }
  match = g_strdup_printf ("type='signal',interface='%s',member='%s',path='%s'", STREAM_INTERFACE,
                           SIGNAL_MEMBER, path);
  if ((r = sd_bus_add_match (bus, NULL, match, signal_cb, receiver)) < 0)
    {
      g_printerr ("bench-dbus: AddMatch: %s\n", g_strerror (-r));
      return 1;
    }
  if (stream_id != NULL)
    {
      r = sd_bus_call_method (bus, MANAGER_NAME, MANAGER_PATH, MANAGER_INTERFACE, "Subscribe",
                              &bus_error, &reply, "sas", stream_id, 1, "chat.message");
      if (r < 0)
        {
          g_printerr ("bench-dbus: Subscribe: %s\n",
                      bus_error.message != NULL ? bus_error.message : g_strerror (-r));
          sd_bus_error_free (&bus_error);
          return 1;
        }
    }
  g_print ("{\"ready\":true}\n");
  fflush (stdout);

  cpu_before = (gint64)self_sched_ns ();
  started_us = g_get_monotonic_time ();
  while (receiver->received < count)
    {
      gint64 now;

      r = sd_bus_process (bus, NULL);
      if (r < 0)
        {
          g_printerr ("bench-dbus: %s\n", g_strerror (-r));
          break;
        }
      if (r > 0)
        continue; /* a backlog (after SIGSTOP) is read before any timeout counts */
      now = g_get_monotonic_time ();
      if (now - started_us > (gint64)grace_s * G_USEC_PER_SEC)
        break;
      if (receiver->last_recv_us > 0
          && now - receiver->last_recv_us > (gint64)quiet_s * G_USEC_PER_SEC)
        break;
      sd_bus_wait (bus, 100 * 1000);
    }

  g_print ("{\"received\":%" G_GUINT64_FORMAT ",\"count\":%u,\"unstamped\":%" G_GUINT64_FORMAT
           ",\"min_sent_us\":%" G_GINT64_FORMAT ",\"first_recv_us\":%" G_GINT64_FORMAT
           ",\"last_recv_us\":%" G_GINT64_FORMAT ",\"arg_bytes\":%zu,\"self_cpu_s\":%.6f,"
           "\"hist_linear_us\":%d,\"hist_growth\":%.3f,",
           receiver->received, count, receiver->unstamped, receiver->min_sent_us,
           receiver->first_recv_us, receiver->last_recv_us, receiver->arg_bytes,
           (double)((gint64)self_sched_ns () - cpu_before) / 1e9, HIST_LINEAR_US, HIST_GROWTH);
  histogram_print ("hist", &receiver->before);
  g_print (",");
  histogram_print ("hist_after", &receiver->after);
  g_print ("}\n");
  return 0;
}

/* ---- raw sender ------------------------------------------------------------ */

static int
run_send (const char *address, const char *path, guint rate, guint count, guint arg_bytes)
{
  g_autoptr (sd_bus) bus = NULL;
  g_autofree char *message_text = NULL;
  char message_id[32];
  char line[64];
  gint64 started_us;
  guint sent = 0;
  guint64 dropped = 0;
  int r;
  /* Fixed arguments like a chat message's; "message" takes the rest. */
  const char *user_id = "user_42";
  const char *username = "viewer42";
  const char *timestamp = "2026-01-01T00:00:00Z";
  gsize fixed = 17 + strlen (user_id) + strlen (username) + strlen (timestamp);

  if ((r = connect_bus (address, &bus)) < 0)
    {
      g_printerr ("bench-dbus: connect %s: %s\n", address, g_strerror (-r));
      return 1;
    }
  message_text = g_strnfill (arg_bytes > fixed ? arg_bytes - fixed : 1, 'm');
  g_print ("{\"ready\":true}\n");
  fflush (stdout);
  if (fgets (line, sizeof line, stdin) == NULL)
    return 1;

  started_us = g_get_monotonic_time ();
  while (sent < count)
    {
      double elapsed_s = (double)(g_get_monotonic_time () - started_us) / G_USEC_PER_SEC;
      guint due = (guint)MIN ((double)count, elapsed_s * rate + 1.0);

      if (due <= sent)
        {
          gint64 wait_us
              = started_us + (gint64)sent * G_USEC_PER_SEC / rate - g_get_monotonic_time ();

          if (wait_us > 0)
            g_usleep ((gulong)wait_us);
          continue;
        }
      for (guint n = 0; sent < due && n < SEND_BATCH; n++, sent++)
        {
          g_snprintf (message_id, sizeof message_id, "t%016" G_GINT64_FORMAT,
                      g_get_monotonic_time ());
          r = sd_bus_emit_signal (bus, path, STREAM_INTERFACE, SIGNAL_MEMBER, "sssss", message_id,
                                  user_id, username, message_text, timestamp);
          if (r < 0)
            dropped++;
        }
      /* Written before the next batch is made, like a sender that keeps up. */
      sd_bus_flush (bus);
    }
  g_print ("{\"sent\":%u,\"dropped\":%" G_GUINT64_FORMAT "}\n", sent, dropped);
  fflush (stdout);
  while (fgets (line, sizeof line, stdin) != NULL)
    ;
  return 0;
}

int
main (int argc, char **argv)
{
  g_autofree char *role = NULL;
  g_autofree char *address = NULL;
  g_autofree char *path = NULL;
  g_autofree char *stream_id = NULL;
  gint rate = 1000, count = 1000, arg_bytes = 120, quiet = DEFAULT_QUIET_S, grace = DEFAULT_GRACE_S;
  gint64 split_us = 0, split_after_ms = 0, warmup_ms = 0;
  GOptionEntry entries[] = {
    { "role", 0, 0, G_OPTION_ARG_STRING, &role, "recv or send", "ROLE" },
    { "address", 0, 0, G_OPTION_ARG_STRING, &address, "bus address", "ADDR" },
    { "path", 0, 0, G_OPTION_ARG_STRING, &path, "object path of the signals", "PATH" },
    { "subscribe", 0, 0, G_OPTION_ARG_STRING, &stream_id, "recv: call Subscribe(STREAM) first",
      "STREAM" },
    { "rate", 0, 0, G_OPTION_ARG_INT, &rate, "send: signals per second", "N" },
    { "count", 0, 0, G_OPTION_ARG_INT, &count, "signals to send / to wait for", "N" },
    { "arg-bytes", 0, 0, G_OPTION_ARG_INT, &arg_bytes, "send: bytes of the five arguments", "B" },
    { "split-us", 0, 0, G_OPTION_ARG_INT64, &split_us,
      "recv: a second histogram for events sent from this CLOCK_MONOTONIC µs on", "T" },
    { "split-after-ms", 0, 0, G_OPTION_ARG_INT64, &split_after_ms,
      "recv: the same, from the first event's send time + MS on", "MS" },
    { "warmup-ms", 0, 0, G_OPTION_ARG_INT64, &warmup_ms,
      "recv: do not time events sent within MS of the first one", "MS" },
    { "quiet", 0, 0, G_OPTION_ARG_INT, &quiet, "recv: stop after S s without a signal", "S" },
    { "grace", 0, 0, G_OPTION_ARG_INT, &grace, "recv: stop after S s in any case", "S" },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- D-Bus benchmark peer");
  g_autoptr (GError) error = NULL;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bench-dbus: %s\n", error->message);
      return 2;
    }
  if (address == NULL || path == NULL || !sd_bus_object_path_is_valid (path) || rate < 1
      || count < 1 || arg_bytes < 1 || quiet < 1 || grace < 1
      || (g_strcmp0 (role, "recv") != 0 && g_strcmp0 (role, "send") != 0))
    {
      g_printerr ("bench-dbus: need --role=recv|send, --address, --path (an object path)\n");
      return 2;
    }
  if (g_str_equal (role, "recv"))
    return run_recv (address, path, stream_id, (guint)count, split_us, split_after_ms, warmup_ms,
                     (guint)quiet, (guint)grace);
  return run_send (address, path, (guint)rate, (guint)count, (guint)arg_bytes);
}
