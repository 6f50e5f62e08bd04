/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-sim-streams"

#include "sim-streams.h"

#include <gio/gio.h>
#include <math.h>
#include <string.h>

/* Simulated seconds; --speed divides them in real time. */
#define SIM_HEALTH_INTERVAL_S 5.0
#define SIM_ANALYTICS_INTERVAL_S 10.0
#define SIM_JOIN_MEAN_S 3.0
#define SIM_WATCH_MEAN_S 90.0
#define SIM_CHAT_MEAN_S 4.0
#define SIM_REACTION_MEAN_S 6.0
#define SIM_LIVE_MIN_S 300.0
#define SIM_LIVE_MAX_S 1200.0
#define SIM_OFFLINE_MIN_S 30.0
#define SIM_OFFLINE_MAX_S 120.0
/* At start-up every stream is already live, joined a while ago. */
#define SIM_INITIAL_AGE_MIN_S 30.0
#define SIM_INITIAL_AGE_MAX_S 600.0
#define SIM_INITIAL_VIEWERS_MAX 25

#define SIM_MAX_VIEWERS_PER_STREAM 2000
#define SIM_MAX_PENDING_REACTIONS 16
#define SIM_MAX_REACTION_TEXT_BYTES 64
/* Bounds the work of one dispatch when --speed is huge. */
#define SIM_MAX_EVENTS_PER_DISPATCH 10000
#define SIM_RECORDING_NULL_PERCENT 10
#define SIM_BITRATE_DIP_PERCENT 5

#define SIM_NEVER G_MAXINT64

typedef enum
{
  EV_HEALTH,
  EV_ANALYTICS,
  EV_JOIN,
  EV_LEAVE,
  EV_CHAT,
  EV_REACTION,
  EV_TRANSITION, /* live → ended or ended → live */
  N_EV
} EventKind;

typedef struct
{
  char *id;
  gint64 joined_us; /* simulated clock */
  const char *country;
  const char *device;
} Viewer;

typedef struct
{
  SimStreams *owner;
  char *id;
  GRand *rand;
  gboolean live;
  gint64 due[N_EV];

  /* the current (or last) broadcast */
  gint64 started_us;
  char *recording_id; /* NULL: not recorded */
  const char *protocol;
  char *ingest_endpoint;
  double target_kbps;
  double nominal_fps;
  double base_latency_ms;

  GPtrArray *viewers; /* Viewer */
  guint64 total_views;
  guint peak_viewers;
  double finished_watch_s; /* watch time of viewers that left */

  GHashTable *pending_reactions; /* emoji → count, from clients */
} SimStream;

struct _SimStreams
{
  GPtrArray *streams; /* SimStream */
  double speed;
  gint64 start_monotonic_us;
  gint64 start_wall_us;
  gboolean started;
  guint timer_id;
  GRand *sample_rand;
  SimPublishFunc publish;
  gpointer publish_data;
};

static const char *const countries[] = {
  "US", "US", "US", "GB", "DE", "FR", "BR", "IN", "JP", "CA", "ES",
  "NL", "SE", "AU", "MX", "KR", "IT", "PL", "NG", "ZA", "AR", NULL,
};
/* Repeated entries weight the draw: desktop 45 %, mobile 35 %, tv 10 %, tablet 10 %. */
static const char *const devices[] = {
  "desktop", "desktop", "desktop", "desktop", "desktop", "desktop", "desktop",
  "desktop", "desktop", "mobile",  "mobile",  "mobile",  "mobile",  "mobile",
  "mobile",  "mobile",  "tv",      "tv",      "tablet",  "tablet",  NULL,
};
static const char *const protocols[] = { "rtmp", "rtmp", "srt", "webrtc", NULL };
static const char *const usernames[] = {
  "pixelpilot", "lunawaves", "dj_kofi",    "mariasings", "frame_rate", "tobi.codes",  "nightowl42",
  "sam_k",      "reneé",     "coffeecat",  "bytebeat",   "aiko_m",     "grumpybear",  "zoe.live",
  "mr_lag",     "vhs_kid",   "ola_nordic", "chef_rui",   "quietstorm", "snackattack",
};
static const char *const chat_lines[] = {
  "hello from Berlin!",
  "first time here, loving the vibe",
  "audio is a bit quiet on my end",
  "that transition was smooth",
  "can you show the settings again?",
  "lol",
  "gg",
  "this is so good 🔥",
  "what camera are you using?",
  "stream looks crisp today",
  "brb grabbing coffee",
  "hi chat 👋",
  "is this live or a replay?",
  "the drop at 2:10 was insane",
  "can't believe it's already been an hour",
  "greetings from São Paulo",
  "lag on mobile for anyone else?",
  "fixed now, thanks",
  "please do the Q&A after",
  "subscribed!",
  "W stream",
  "how long have you been doing this?",
  "my cat is watching too",
  "that's a great question",
  "love this song",
  "same time next week?",
  "chat is moving fast today",
  "👏👏👏",
  "wait what happened?",
  "thanks for streaming!",
};
static const char *const reactions[] = { "🔥", "❤️", "👏", "😂", "😮", "🎉", "👍", "💯", NULL };

static void schedule_dispatch (SimStreams *self);

static guint
strv_len (const char *const *strv)
{
  return g_strv_length ((char **)strv);
}

static const char *
pick (GRand *rand, const char *const *strv)
{
  return strv[g_rand_int_range (rand, 0, (gint32)strv_len (strv))];
}

static double
exponential (GRand *rand, double mean)
{
  /* 1 - U is in (0, 1], so the log is finite. */
  return -mean * log (1.0 - g_rand_double (rand));
}

static double
gaussian (GRand *rand)
{
  double u1 = 1.0 - g_rand_double (rand);
  double u2 = g_rand_double (rand);

  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

static double
round_to (double value, double step)
{
  /* Divide by a power of ten (exact) rather than multiply by an inexact
   * step: 26018 * 0.1 is 2601.8000000000002, 26018 / 10.0 is 2601.8. */
  double scale;

  if (step >= 1.0)
    return round (value / step) * step;
  scale = round (1.0 / step);
  return round (value * scale) / scale;
}

static gint64
seconds_to_us (double seconds)
{
  return (gint64)(seconds * G_USEC_PER_SEC);
}

static char *
random_token (GRand *rand, const char *prefix, guint length)
{
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  GString *token = g_string_new (prefix);

  for (guint i = 0; i < length; i++)
    g_string_append_c (token, alphabet[g_rand_int_range (rand, 0, sizeof alphabet - 1)]);
  return g_string_free (token, FALSE);
}

static gint64
sim_now_us (SimStreams *self)
{
  if (!self->started)
    return 0;
  return (gint64)((double)(g_get_monotonic_time () - self->start_monotonic_us) * self->speed);
}

static char *
timestamp_at (SimStreams *self, gint64 sim_us)
{
  gint64 wall_us = self->start_wall_us + sim_us;
  g_autoptr (GDateTime) seconds = g_date_time_new_from_unix_utc (wall_us / G_USEC_PER_SEC);
  g_autoptr (GDateTime) exact = g_date_time_add (seconds, wall_us % G_USEC_PER_SEC);

  return g_date_time_format_iso8601 (exact);
}

static void
viewer_free (gpointer data)
{
  Viewer *viewer = data;

  g_free (viewer->id);
  g_free (viewer);
}

static void
sim_stream_free (gpointer data)
{
  SimStream *stream = data;

  g_free (stream->id);
  g_rand_free (stream->rand);
  g_free (stream->recording_id);
  g_free (stream->ingest_endpoint);
  g_ptr_array_unref (stream->viewers);
  g_hash_table_unref (stream->pending_reactions);
  g_free (stream);
}

static SimStream *
find_stream (SimStreams *self, const char *stream_id)
{
  for (guint i = 0; i < self->streams->len; i++)
    {
      SimStream *stream = g_ptr_array_index (self->streams, i);

      if (g_strcmp0 (stream->id, stream_id) == 0)
        return stream;
    }
  return NULL;
}

static void
publish (SimStreams *self, const char *type, JsonObject *payload)
{
  g_autoptr (JsonObject) owned = payload;

  if (self->publish != NULL)
    self->publish (type, owned, self->publish_data);
}

static JsonObject *
payload_new (const char *stream_id)
{
  JsonObject *payload = json_object_new ();

  json_object_set_string_member (payload, "stream_id", stream_id);
  return payload;
}

/* ---- payload builders, shared by the streams and the samples ---- */

static JsonObject *
health_payload (GRand *rand, const char *stream_id, double target_kbps, double nominal_fps,
                double base_latency_ms)
{
  JsonObject *payload = payload_new (stream_id);
  gboolean dip = g_rand_int_range (rand, 0, 100) < SIM_BITRATE_DIP_PERCENT;
  double bitrate
      = target_kbps * (dip ? g_rand_double_range (rand, 0.55, 0.8) : 1.0 + 0.04 * gaussian (rand));
  double fps = nominal_fps - (dip ? g_rand_double_range (rand, 1.0, nominal_fps / 6.0) : 0.0);
  double loss = pow (g_rand_double (rand), 4.0) * (dip ? 0.05 : 0.01);
  double latency = MAX (base_latency_ms + 8.0 * gaussian (rand) + (dip ? 60.0 : 0.0), 5.0);

  json_object_set_double_member (payload, "bitrate", round_to (MAX (bitrate, 100.0), 0.1));
  json_object_set_double_member (payload, "fps", round_to (MAX (fps, 1.0), 0.01));
  json_object_set_double_member (payload, "packet_loss", round_to (MIN (loss, 0.05), 0.0001));
  json_object_set_int_member (payload, "latency", (gint64)round (latency));
  return payload;
}

static JsonObject *
chat_payload (GRand *rand, const char *stream_id, const char *timestamp)
{
  JsonObject *payload = payload_new (stream_id);
  const char *username = usernames[g_rand_int_range (rand, 0, G_N_ELEMENTS (usernames))];
  g_autofree char *message_id = random_token (rand, "msg_", 12);
  g_autofree char *user_id = g_strdup_printf ("user_%08x", g_str_hash (username));

  json_object_set_string_member (payload, "message_id", message_id);
  json_object_set_string_member (payload, "user_id", user_id);
  json_object_set_string_member (payload, "username", username);
  json_object_set_string_member (payload, "message",
                                 chat_lines[g_rand_int_range (rand, 0, G_N_ELEMENTS (chat_lines))]);
  json_object_set_string_member (payload, "timestamp", timestamp);
  return payload;
}

static JsonObject *
reaction_payload (const char *stream_id, const char *reaction, guint64 count, const char *timestamp)
{
  JsonObject *payload = payload_new (stream_id);

  json_object_set_string_member (payload, "reaction", reaction);
  json_object_set_int_member (payload, "count", (gint64)count);
  json_object_set_string_member (payload, "timestamp", timestamp);
  return payload;
}

static JsonObject *
joined_payload (const char *stream_id, const Viewer *viewer, const char *timestamp)
{
  JsonObject *payload = payload_new (stream_id);

  json_object_set_string_member (payload, "viewer_id", viewer->id);
  json_object_set_string_member (payload, "country", viewer->country);
  json_object_set_string_member (payload, "device", viewer->device);
  json_object_set_string_member (payload, "joined_at", timestamp);
  return payload;
}

static JsonObject *
left_payload (const char *stream_id, const char *viewer_id, double watch_time_s,
              const char *timestamp)
{
  JsonObject *payload = payload_new (stream_id);

  json_object_set_string_member (payload, "viewer_id", viewer_id);
  json_object_set_int_member (payload, "watch_time", (gint64)round (watch_time_s));
  json_object_set_string_member (payload, "left_at", timestamp);
  return payload;
}

static JsonObject *
analytics_payload (const char *stream_id, guint concurrent, guint64 total, guint peak,
                   double average_watch_s)
{
  JsonObject *payload = payload_new (stream_id);

  json_object_set_int_member (payload, "concurrent_viewers", concurrent);
  json_object_set_int_member (payload, "total_views", (gint64)total);
  json_object_set_int_member (payload, "peak_viewers", peak);
  json_object_set_double_member (payload, "average_watch_time", round_to (average_watch_s, 0.1));
  return payload;
}

static JsonObject *
started_payload (const char *stream_id, const char *timestamp, const char *protocol,
                 const char *ingest_endpoint)
{
  JsonObject *payload = payload_new (stream_id);

  json_object_set_string_member (payload, "started_at", timestamp);
  json_object_set_string_member (payload, "protocol", protocol);
  json_object_set_string_member (payload, "ingest_endpoint", ingest_endpoint);
  return payload;
}

static JsonObject *
ended_payload (const char *stream_id, const char *timestamp, double duration_s,
               const char *recording_id)
{
  JsonObject *payload = payload_new (stream_id);

  json_object_set_string_member (payload, "ended_at", timestamp);
  json_object_set_int_member (payload, "duration", (gint64)round (duration_s));
  if (recording_id != NULL)
    json_object_set_string_member (payload, "recording_id", recording_id);
  else
    json_object_set_null_member (payload, "recording_id");
  return payload;
}

static char *
ingest_endpoint_new (GRand *rand, const char *protocol, const char *stream_id)
{
  static const char *const regions[] = { "us-east-1", "eu-west-1", "ap-southeast-1", NULL };
  const char *region = pick (rand, regions);

  if (g_str_equal (protocol, "srt"))
    return g_strdup_printf ("srt://ingest.%s.wave.inc:9000?streamid=%s", region, stream_id);
  if (g_str_equal (protocol, "webrtc"))
    return g_strdup_printf ("https://ingest.%s.wave.inc/whip/%s", region, stream_id);
  return g_strdup_printf ("rtmp://ingest.%s.wave.inc/live/%s", region, stream_id);
}

static Viewer *
viewer_new (GRand *rand, gint64 joined_us)
{
  Viewer *viewer = g_new0 (Viewer, 1);

  viewer->id = random_token (rand, "viewer_", 10);
  viewer->country = pick (rand, countries);
  viewer->device = pick (rand, devices);
  viewer->joined_us = joined_us;
  return viewer;
}

/* ---- the life of one stream ---- */

static double
watch_time_s (const Viewer *viewer, gint64 at)
{
  return (double)(at - viewer->joined_us) / G_USEC_PER_SEC;
}

static void
schedule_leave (SimStream *stream, gint64 at)
{
  stream->due[EV_LEAVE] = stream->viewers->len == 0
                              ? SIM_NEVER
                              : at
                                    + seconds_to_us (exponential (
                                        stream->rand, SIM_WATCH_MEAN_S / stream->viewers->len));
}

/* Fresh broadcast parameters; no event (used at start-up and by go_live). */
static void
begin_broadcast (SimStream *stream, gint64 started_us)
{
  GRand *rand = stream->rand;

  stream->live = TRUE;
  stream->started_us = started_us;
  g_free (stream->recording_id);
  stream->recording_id = g_rand_int_range (rand, 0, 100) < SIM_RECORDING_NULL_PERCENT
                             ? NULL
                             : random_token (rand, "rec_", 10);
  stream->protocol = pick (rand, protocols);
  g_free (stream->ingest_endpoint);
  stream->ingest_endpoint = ingest_endpoint_new (rand, stream->protocol, stream->id);
  stream->target_kbps = round_to (g_rand_double_range (rand, 2500.0, 8000.0), 100.0);
  stream->nominal_fps = g_rand_boolean (rand) ? 30.0 : 60.0;
  stream->base_latency_ms = g_rand_double_range (rand, 40.0, 180.0);
  g_ptr_array_set_size (stream->viewers, 0);
  stream->total_views = 0;
  stream->peak_viewers = 0;
  stream->finished_watch_s = 0.0;
}

static void
schedule_live (SimStream *stream, gint64 at)
{
  GRand *rand = stream->rand;

  stream->due[EV_HEALTH]
      = at + seconds_to_us (g_rand_double_range (rand, 0.1, 1.0) * SIM_HEALTH_INTERVAL_S);
  stream->due[EV_ANALYTICS]
      = at + seconds_to_us (g_rand_double_range (rand, 0.1, 1.0) * SIM_ANALYTICS_INTERVAL_S);
  stream->due[EV_JOIN] = at + seconds_to_us (exponential (rand, SIM_JOIN_MEAN_S));
  schedule_leave (stream, at);
  stream->due[EV_CHAT] = at + seconds_to_us (exponential (rand, SIM_CHAT_MEAN_S));
  stream->due[EV_REACTION] = at + seconds_to_us (exponential (rand, SIM_REACTION_MEAN_S));
  stream->due[EV_TRANSITION]
      = at + seconds_to_us (g_rand_double_range (rand, SIM_LIVE_MIN_S, SIM_LIVE_MAX_S));
}

static void
go_live (SimStream *stream, gint64 at)
{
  SimStreams *self = stream->owner;
  g_autofree char *timestamp = timestamp_at (self, at);

  begin_broadcast (stream, at);
  schedule_live (stream, at);
  g_message ("%s went live (%s, recording %s)", stream->id, stream->protocol,
             stream->recording_id != NULL ? stream->recording_id : "none");
  publish (self, "stream.started",
           started_payload (stream->id, timestamp, stream->protocol, stream->ingest_endpoint));
}

static void
go_offline (SimStream *stream, gint64 at)
{
  SimStreams *self = stream->owner;
  g_autofree char *timestamp = timestamp_at (self, at);
  g_autoptr (GPtrArray) leaving = g_steal_pointer (&stream->viewers);

  stream->viewers = g_ptr_array_new_with_free_func (viewer_free);
  /* The audience leaves with the broadcast. */
  for (guint i = 0; i < leaving->len; i++)
    {
      Viewer *viewer = g_ptr_array_index (leaving, i);
      double watched = watch_time_s (viewer, at);

      stream->finished_watch_s += watched;
      publish (self, "viewer.left", left_payload (stream->id, viewer->id, watched, timestamp));
    }
  stream->live = FALSE;
  for (int kind = 0; kind < N_EV; kind++)
    stream->due[kind] = SIM_NEVER;
  stream->due[EV_TRANSITION]
      = at
        + seconds_to_us (g_rand_double_range (stream->rand, SIM_OFFLINE_MIN_S, SIM_OFFLINE_MAX_S));
  g_message ("%s ended after %.0f s", stream->id,
             (double)(at - stream->started_us) / G_USEC_PER_SEC);
  publish (self, "stream.ended",
           ended_payload (stream->id, timestamp, (double)(at - stream->started_us) / G_USEC_PER_SEC,
                          stream->recording_id));
}

static double
average_watch_s (SimStream *stream, gint64 at)
{
  double total = stream->finished_watch_s;

  if (stream->total_views == 0)
    return 0.0;
  for (guint i = 0; i < stream->viewers->len; i++)
    total += watch_time_s (g_ptr_array_index (stream->viewers, i), at);
  return total / (double)stream->total_views;
}

static void
add_viewer (SimStream *stream, Viewer *viewer)
{
  g_ptr_array_add (stream->viewers, viewer);
  stream->total_views++;
  stream->peak_viewers = MAX (stream->peak_viewers, stream->viewers->len);
}

static void
emit_reactions (SimStream *stream, gint64 at)
{
  SimStreams *self = stream->owner;
  g_autofree char *timestamp = timestamp_at (self, at);
  guint64 crowd = 1 + (guint64)g_rand_int_range (stream->rand, 0, stream->viewers->len / 4 + 3);
  GHashTableIter iter;
  gpointer key, value;

  if (g_hash_table_size (stream->pending_reactions) == 0)
    {
      publish (self, "reaction.received",
               reaction_payload (stream->id, pick (stream->rand, reactions), crowd, timestamp));
      return;
    }
  g_hash_table_iter_init (&iter, stream->pending_reactions);
  while (g_hash_table_iter_next (&iter, &key, &value))
    publish (self, "reaction.received",
             reaction_payload (stream->id, key, crowd + GPOINTER_TO_UINT (value), timestamp));
  g_hash_table_remove_all (stream->pending_reactions);
}

static void
run_event (SimStream *stream, EventKind kind, gint64 at)
{
  SimStreams *self = stream->owner;
  GRand *rand = stream->rand;

  switch (kind)
    {
    case EV_HEALTH:
      stream->due[kind] = at + seconds_to_us (SIM_HEALTH_INTERVAL_S);
      publish (self, "stream.health",
               health_payload (rand, stream->id, stream->target_kbps, stream->nominal_fps,
                               stream->base_latency_ms));
      break;
    case EV_ANALYTICS:
      stream->due[kind] = at + seconds_to_us (SIM_ANALYTICS_INTERVAL_S);
      publish (self, "analytics.update",
               analytics_payload (stream->id, stream->viewers->len, stream->total_views,
                                  stream->peak_viewers, average_watch_s (stream, at)));
      break;
    case EV_JOIN:
      {
        g_autofree char *timestamp = timestamp_at (self, at);

        stream->due[kind] = at + seconds_to_us (exponential (rand, SIM_JOIN_MEAN_S));
        if (stream->viewers->len >= SIM_MAX_VIEWERS_PER_STREAM)
          break;
        add_viewer (stream, viewer_new (rand, at));
        schedule_leave (stream, at);
        publish (self, "viewer.joined",
                 joined_payload (stream->id,
                                 g_ptr_array_index (stream->viewers, stream->viewers->len - 1),
                                 timestamp));
        break;
      }
    case EV_LEAVE:
      {
        g_autofree char *timestamp = timestamp_at (self, at);
        guint index = (guint)g_rand_int_range (rand, 0, (gint32)stream->viewers->len);
        Viewer *viewer = g_ptr_array_steal_index_fast (stream->viewers, index);
        double watched = watch_time_s (viewer, at);

        stream->finished_watch_s += watched;
        schedule_leave (stream, at);
        publish (self, "viewer.left", left_payload (stream->id, viewer->id, watched, timestamp));
        viewer_free (viewer);
        break;
      }
    case EV_CHAT:
      {
        g_autofree char *timestamp = timestamp_at (self, at);

        stream->due[kind] = at + seconds_to_us (exponential (rand, SIM_CHAT_MEAN_S));
        publish (self, "chat.message", chat_payload (rand, stream->id, timestamp));
        break;
      }
    case EV_REACTION:
      stream->due[kind] = at + seconds_to_us (exponential (rand, SIM_REACTION_MEAN_S));
      emit_reactions (stream, at);
      break;
    case EV_TRANSITION:
      if (stream->live)
        go_offline (stream, at);
      else
        go_live (stream, at);
      break;
    case N_EV:
      g_assert_not_reached ();
    }
}

/* The earliest scheduled event over all streams; ties go to the lower index. */
static gboolean
next_due (SimStreams *self, SimStream **out_stream, EventKind *out_kind)
{
  gint64 best = SIM_NEVER;

  for (guint i = 0; i < self->streams->len; i++)
    {
      SimStream *stream = g_ptr_array_index (self->streams, i);

      for (int kind = 0; kind < N_EV; kind++)
        if (stream->due[kind] < best)
          {
            best = stream->due[kind];
            *out_stream = stream;
            *out_kind = (EventKind)kind;
          }
    }
  return best != SIM_NEVER;
}

static gboolean
dispatch_cb (gpointer user_data)
{
  SimStreams *self = user_data;
  gint64 now = sim_now_us (self);
  SimStream *stream = NULL;
  EventKind kind = EV_HEALTH;

  self->timer_id = 0;
  for (guint n = 0; n < SIM_MAX_EVENTS_PER_DISPATCH && next_due (self, &stream, &kind); n++)
    {
      gint64 at = stream->due[kind];

      if (at > now)
        break;
      run_event (stream, kind, at);
    }
  schedule_dispatch (self);
  return G_SOURCE_REMOVE;
}

/* One timer for the whole simulation, set to the next due event: an idle
 * simulator does not wake up for nothing. */
static void
schedule_dispatch (SimStreams *self)
{
  SimStream *stream = NULL;
  EventKind kind = EV_HEALTH;
  gint64 wait_us;

  g_clear_handle_id (&self->timer_id, g_source_remove);
  if (!self->started || !next_due (self, &stream, &kind))
    return;
  wait_us = (gint64)((double)(stream->due[kind] - sim_now_us (self)) / self->speed);
  self->timer_id
      = g_timeout_add ((guint)CLAMP ((wait_us + 999) / 1000, 0, G_MAXINT32), dispatch_cb, self);
}

/* ---- public API ---- */

SimStreams *
sim_streams_new (guint n_streams, guint32 seed, double speed)
{
  SimStreams *self;
  g_autoptr (GRand) id_rand = g_rand_new_with_seed (seed);

  g_return_val_if_fail (n_streams <= SIM_STREAMS_MAX, NULL);
  g_return_val_if_fail (speed > 0.0 && speed <= SIM_STREAMS_MAX_SPEED, NULL);

  self = g_new0 (SimStreams, 1);
  self->speed = speed;
  self->streams = g_ptr_array_new_with_free_func (sim_stream_free);
  self->start_wall_us = g_get_real_time ();
  {
    guint32 sample_seed[] = { seed, G_MAXUINT32 };

    self->sample_rand = g_rand_new_with_seed_array (sample_seed, G_N_ELEMENTS (sample_seed));
  }

  while (self->streams->len < n_streams)
    {
      g_autofree char *id = NULL;
      SimStream *stream;
      guint32 stream_seed[2];

      /* The doc's shape: stream_ + 3 lowercase letters + 3 digits. */
      id = g_strdup_printf ("stream_%c%c%c%03d", 'a' + g_rand_int_range (id_rand, 0, 26),
                            'a' + g_rand_int_range (id_rand, 0, 26),
                            'a' + g_rand_int_range (id_rand, 0, 26),
                            g_rand_int_range (id_rand, 0, 1000));
      if (find_stream (self, id) != NULL)
        continue;

      stream = g_new0 (SimStream, 1);
      stream->owner = self;
      stream->id = g_steal_pointer (&id);
      stream_seed[0] = seed;
      stream_seed[1] = self->streams->len;
      stream->rand = g_rand_new_with_seed_array (stream_seed, G_N_ELEMENTS (stream_seed));
      stream->viewers = g_ptr_array_new_with_free_func (viewer_free);
      stream->pending_reactions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
      for (int kind = 0; kind < N_EV; kind++)
        stream->due[kind] = SIM_NEVER;
      g_ptr_array_add (self->streams, stream);
    }
  return self;
}

void
sim_streams_free (SimStreams *self)
{
  if (self == NULL)
    return;
  g_clear_handle_id (&self->timer_id, g_source_remove);
  g_ptr_array_unref (self->streams);
  g_rand_free (self->sample_rand);
  g_free (self);
}

void
sim_streams_set_publish_func (SimStreams *self, SimPublishFunc func, gpointer user_data)
{
  g_return_if_fail (self != NULL);
  self->publish = func;
  self->publish_data = user_data;
}

void
sim_streams_start (SimStreams *self)
{
  g_return_if_fail (self != NULL && !self->started);

  self->started = TRUE;
  self->start_monotonic_us = g_get_monotonic_time ();
  self->start_wall_us = g_get_real_time ();
  /* Already live, mid-broadcast, with an audience: demos see events at once. */
  for (guint i = 0; i < self->streams->len; i++)
    {
      SimStream *stream = g_ptr_array_index (self->streams, i);
      GRand *rand = stream->rand;
      gint64 age_us = seconds_to_us (
          g_rand_double_range (rand, SIM_INITIAL_AGE_MIN_S, SIM_INITIAL_AGE_MAX_S));
      guint n_viewers = (guint)g_rand_int_range (rand, 3, SIM_INITIAL_VIEWERS_MAX + 1);
      guint n_gone = (guint)g_rand_int_range (rand, 0, (gint32)n_viewers + 1);

      begin_broadcast (stream, -age_us);
      for (guint v = 0; v < n_viewers; v++)
        add_viewer (stream, viewer_new (rand, -(gint64)(g_rand_double (rand) * (double)age_us)));
      for (guint v = 0; v < n_gone; v++)
        {
          stream->total_views++;
          stream->finished_watch_s += g_rand_double_range (rand, 5.0, SIM_WATCH_MEAN_S);
        }
      stream->peak_viewers = n_viewers + n_gone / 2;
      schedule_live (stream, 0);
    }
  schedule_dispatch (self);
}

guint
sim_streams_get_n (SimStreams *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->streams->len;
}

const char *
sim_streams_get_id (SimStreams *self, guint index)
{
  g_return_val_if_fail (self != NULL && index < self->streams->len, NULL);
  return ((SimStream *)g_ptr_array_index (self->streams, index))->id;
}

gboolean
sim_streams_has (SimStreams *self, const char *stream_id)
{
  g_return_val_if_fail (self != NULL, FALSE);
  return find_stream (self, stream_id) != NULL;
}

gboolean
sim_streams_set_live (SimStreams *self, const char *stream_id, gboolean live, gboolean *out_changed,
                      GError **error)
{
  SimStream *stream;

  g_return_val_if_fail (self != NULL && stream_id != NULL, FALSE);

  stream = find_stream (self, stream_id);
  if (stream == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no simulated stream '%s'", stream_id);
      return FALSE;
    }
  if (out_changed != NULL)
    *out_changed = stream->live != live;
  if (stream->live == live)
    return TRUE;
  if (live)
    go_live (stream, sim_now_us (self));
  else
    go_offline (stream, sim_now_us (self));
  schedule_dispatch (self);
  return TRUE;
}

void
sim_streams_add_reaction (SimStreams *self, const char *stream_id, const char *reaction)
{
  SimStream *stream;
  gpointer count;

  g_return_if_fail (self != NULL && stream_id != NULL && reaction != NULL);

  stream = find_stream (self, stream_id);
  if (stream == NULL || !stream->live || strlen (reaction) > SIM_MAX_REACTION_TEXT_BYTES)
    return;
  count = g_hash_table_lookup (stream->pending_reactions, reaction);
  if (count == NULL && g_hash_table_size (stream->pending_reactions) >= SIM_MAX_PENDING_REACTIONS)
    return;
  g_hash_table_insert (stream->pending_reactions, g_strdup (reaction),
                       GUINT_TO_POINTER (GPOINTER_TO_UINT (count) + 1));
}

JsonObject *
sim_streams_sample_payload (SimStreams *self, const char *type, const char *stream_id)
{
  GRand *rand;
  g_autofree char *timestamp = NULL;

  g_return_val_if_fail (self != NULL && type != NULL && stream_id != NULL, NULL);

  rand = self->sample_rand;
  timestamp = sim_streams_dup_timestamp (self);
  if (g_str_equal (type, "stream.health"))
    return health_payload (rand, stream_id, 4500.0, 30.0, 80.0);
  if (g_str_equal (type, "chat.message"))
    return chat_payload (rand, stream_id, timestamp);
  if (g_str_equal (type, "reaction.received"))
    return reaction_payload (stream_id, pick (rand, reactions),
                             (guint64)g_rand_int_range (rand, 1, 50), timestamp);
  if (g_str_equal (type, "viewer.joined"))
    {
      Viewer *viewer = viewer_new (rand, 0);
      JsonObject *payload = joined_payload (stream_id, viewer, timestamp);

      viewer_free (viewer);
      return payload;
    }
  if (g_str_equal (type, "viewer.left"))
    {
      g_autofree char *viewer_id = random_token (rand, "viewer_", 10);

      return left_payload (stream_id, viewer_id, exponential (rand, SIM_WATCH_MEAN_S), timestamp);
    }
  if (g_str_equal (type, "analytics.update"))
    {
      guint concurrent = (guint)g_rand_int_range (rand, 10, 500);

      return analytics_payload (stream_id, concurrent, concurrent * 3, concurrent + 20,
                                g_rand_double_range (rand, 30.0, 300.0));
    }
  if (g_str_equal (type, "stream.started"))
    {
      g_autofree char *endpoint = ingest_endpoint_new (rand, "rtmp", stream_id);

      return started_payload (stream_id, timestamp, "rtmp", endpoint);
    }
  if (g_str_equal (type, "stream.ended"))
    {
      g_autofree char *recording_id = random_token (rand, "rec_", 10);

      return ended_payload (stream_id, timestamp, g_rand_double_range (rand, 60.0, 3600.0),
                            recording_id);
    }
  return NULL;
}

char *
sim_streams_dup_timestamp (SimStreams *self)
{
  g_return_val_if_fail (self != NULL, NULL);
  return timestamp_at (self, sim_now_us (self));
}

JsonArray *
sim_streams_to_json (SimStreams *self)
{
  JsonArray *array = json_array_new ();

  g_return_val_if_fail (self != NULL, array);
  for (guint i = 0; i < self->streams->len; i++)
    {
      SimStream *stream = g_ptr_array_index (self->streams, i);
      JsonObject *object = json_object_new ();

      json_object_set_string_member (object, "stream_id", stream->id);
      json_object_set_boolean_member (object, "live", stream->live);
      json_object_set_int_member (object, "viewers", stream->viewers->len);
      json_object_set_int_member (object, "total_views", (gint64)stream->total_views);
      if (stream->recording_id != NULL)
        json_object_set_string_member (object, "recording_id", stream->recording_id);
      else
        json_object_set_null_member (object, "recording_id");
      json_array_add_object_element (array, object);
    }
  return array;
}
