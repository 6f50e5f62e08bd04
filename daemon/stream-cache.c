/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-stream-cache"

#include "stream-cache.h"

#include <string.h>

typedef struct
{
  WbEvent *event;
  gint64 received_us;
} CachedEvent;

/* Replay order: what the stream is, how it is doing, who watches. */
typedef enum
{
  SLOT_LIFECYCLE, /* the newer of stream.started / stream.ended */
  SLOT_HEALTH,
  SLOT_ANALYTICS,
  N_SLOTS
} Slot;

struct _WbStreamCache
{
  WbStreamState state;
  char *stream_id;
  char *started_at;
  char *protocol;
  char *ingest_endpoint;
  char *ended_at;
  char *recording_id;
  CachedEvent slots[N_SLOTS];
};

WbStreamCache *
wb_stream_cache_new (const char *stream_id)
{
  WbStreamCache *cache;

  g_return_val_if_fail (stream_id != NULL, NULL);

  cache = g_new0 (WbStreamCache, 1);
  cache->stream_id = g_strdup (stream_id);
  cache->started_at = g_strdup ("");
  cache->protocol = g_strdup ("");
  cache->ingest_endpoint = g_strdup ("");
  cache->ended_at = g_strdup ("");
  cache->recording_id = g_strdup ("");
  return cache;
}

void
wb_stream_cache_free (WbStreamCache *cache)
{
  if (cache == NULL)
    return;
  for (guint i = 0; i < N_SLOTS; i++)
    g_clear_pointer (&cache->slots[i].event, wb_event_unref);
  g_free (cache->stream_id);
  g_free (cache->started_at);
  g_free (cache->protocol);
  g_free (cache->ingest_endpoint);
  g_free (cache->ended_at);
  g_free (cache->recording_id);
  g_free (cache);
}

WbStreamState *
wb_stream_cache_get_state (WbStreamCache *cache)
{
  g_return_val_if_fail (cache != NULL, NULL);

  cache->state.stream_id = cache->stream_id;
  cache->state.started_at = cache->started_at;
  cache->state.protocol = cache->protocol;
  cache->state.ingest_endpoint = cache->ingest_endpoint;
  cache->state.ended_at = cache->ended_at;
  cache->state.recording_id = cache->recording_id;
  return &cache->state;
}

static gboolean
set_string (char **field, const char *value)
{
  if (strcmp (*field, value) == 0)
    return FALSE;
  g_free (*field);
  *field = g_strdup (value);
  return TRUE;
}

static gboolean
set_double (double *field, double value)
{
  if (*field == value)
    return FALSE;
  *field = value;
  return TRUE;
}

/* The update_* functions read payloads the parser validated: required
 * fields have their types; optional ones (and recording_id, which may be
 * null) fall back to "" / 0. Counts are clamped, never wrapped, as they are
 * published as D-Bus u / t. */

static WbStreamFields
update_started (WbStreamCache *cache, JsonObject *payload)
{
  WbStreamFields changed = 0;
  gboolean ended_changed = FALSE;

  if (!cache->state.live)
    changed |= WB_STREAM_FIELD_LIVE;
  cache->state.live = TRUE;
  if (set_string (&cache->started_at, wb_json_get_string (payload, "started_at", ""))
      | set_string (&cache->protocol, wb_json_get_string (payload, "protocol", ""))
      | set_string (&cache->ingest_endpoint, wb_json_get_string (payload, "ingest_endpoint", "")))
    changed |= WB_STREAM_FIELD_STARTED;
  /* A new session: the last one's end no longer describes the stream. */
  ended_changed |= set_string (&cache->ended_at, "");
  ended_changed |= set_double (&cache->state.duration, 0.0);
  ended_changed |= set_string (&cache->recording_id, "");
  if (ended_changed)
    changed |= WB_STREAM_FIELD_ENDED;
  return changed;
}

static WbStreamFields
update_ended (WbStreamCache *cache, JsonObject *payload)
{
  WbStreamFields changed = 0;

  if (cache->state.live)
    changed |= WB_STREAM_FIELD_LIVE;
  cache->state.live = FALSE;
  if (set_string (&cache->ended_at, wb_json_get_string (payload, "ended_at", ""))
      | set_double (&cache->state.duration, wb_json_get_double (payload, "duration", 0.0))
      | set_string (&cache->recording_id, wb_json_get_string (payload, "recording_id", "")))
    changed |= WB_STREAM_FIELD_ENDED;
  return changed;
}

static WbStreamFields
update_health (WbStreamCache *cache, JsonObject *payload)
{
  WbStreamState *state = &cache->state;
  WbStreamFields changed = 0;

  /* WAVE sends health only for a live stream. A bridge that subscribed after
   * stream.started never saw it, so health is its first sign of life; after
   * a seen stream.ended, only a new stream.started makes it live again. */
  if (!state->live && cache->ended_at[0] == '\0')
    {
      state->live = TRUE;
      changed |= WB_STREAM_FIELD_LIVE;
    }
  if (set_double (&state->bitrate, wb_json_get_double (payload, "bitrate", 0.0))
      | set_double (&state->fps, wb_json_get_double (payload, "fps", 0.0))
      | set_double (&state->packet_loss, wb_json_get_double (payload, "packet_loss", 0.0))
      | set_double (&state->latency, wb_json_get_double (payload, "latency", 0.0)))
    changed |= WB_STREAM_FIELD_HEALTH;
  return changed;
}

static WbStreamFields
update_analytics (WbStreamCache *cache, JsonObject *payload)
{
  WbStreamState *state = &cache->state;
  guint concurrent = (guint)wb_json_get_count (payload, "concurrent_viewers", G_MAXUINT);
  guint64 total = wb_json_get_count (payload, "total_views", G_MAXUINT64);
  guint peak = (guint)wb_json_get_count (payload, "peak_viewers", G_MAXUINT);
  gboolean changed = FALSE;

  changed = concurrent != state->concurrent_viewers || total != state->total_views
            || peak != state->peak_viewers;
  state->concurrent_viewers = concurrent;
  state->total_views = total;
  state->peak_viewers = peak;
  changed |= set_double (&state->average_watch_time,
                         wb_json_get_double (payload, "average_watch_time", 0.0));
  return changed ? WB_STREAM_FIELD_ANALYTICS : 0;
}

static void
remember (WbStreamCache *cache, Slot slot, WbEvent *event, gint64 now_us)
{
  g_clear_pointer (&cache->slots[slot].event, wb_event_unref);
  cache->slots[slot].event = wb_event_ref (event);
  cache->slots[slot].received_us = now_us;
}

WbStreamFields
wb_stream_cache_update (WbStreamCache *cache, WbEvent *event, gint64 now_us)
{
  JsonObject *payload;

  g_return_val_if_fail (cache != NULL && event != NULL, 0);

  payload = wb_event_get_payload (event);
  switch (wb_event_get_message_type (event))
    {
    case WB_MESSAGE_STREAM_STARTED:
      remember (cache, SLOT_LIFECYCLE, event, now_us);
      return update_started (cache, payload);
    case WB_MESSAGE_STREAM_ENDED:
      remember (cache, SLOT_LIFECYCLE, event, now_us);
      return update_ended (cache, payload);
    case WB_MESSAGE_STREAM_HEALTH:
      remember (cache, SLOT_HEALTH, event, now_us);
      return update_health (cache, payload);
    case WB_MESSAGE_ANALYTICS_UPDATE:
      remember (cache, SLOT_ANALYTICS, event, now_us);
      return update_analytics (cache, payload);
    default:
      return 0;
    }
}

GPtrArray *
wb_stream_cache_build_replay (WbStreamCache *cache, guint32 type_mask, gint64 now_us)
{
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify)wb_event_unref);

  g_return_val_if_fail (cache != NULL, events);

  for (guint i = 0; i < N_SLOTS; i++)
    {
      const CachedEvent *cached = &cache->slots[i];

      if (cached->event == NULL
          || (type_mask & (1u << wb_event_get_message_type (cached->event))) == 0)
        continue;
      g_ptr_array_add (events,
                       wb_event_new_cached (cached->event, (now_us - cached->received_us) / 1000));
    }
  return events;
}
