/* SPDX-License-Identifier: MIT */
/*
 * What the hub remembers about one stream while anyone is subscribed: the
 * WbStreamState published on D-Bus and in bridge.status, and the last
 * stream.started/ended, stream.health and analytics.update events, replayed
 * to a new subscriber with "cached":true,"age_ms":N.
 */
#pragma once

#include <glib.h>

#include "event.h"

G_BEGIN_DECLS

typedef enum
{
  WB_STREAM_FIELD_LIVE = 1 << 0,
  WB_STREAM_FIELD_STARTED = 1 << 1,   /* started_at, protocol, ingest_endpoint */
  WB_STREAM_FIELD_ENDED = 1 << 2,     /* ended_at, duration, recording_id */
  WB_STREAM_FIELD_HEALTH = 1 << 3,    /* bitrate, fps, packet_loss, latency */
  WB_STREAM_FIELD_ANALYTICS = 1 << 4, /* viewers, views, peak, watch time */
} WbStreamFields;

typedef struct
{
  const char *stream_id;
  gboolean live;
  const char *started_at; /* "" if unknown, likewise the other strings */
  const char *protocol;
  const char *ingest_endpoint;
  const char *ended_at;
  double duration;
  const char *recording_id;
  double bitrate;
  double fps;
  double packet_loss;
  double latency;
  guint concurrent_viewers;
  guint64 total_views;
  guint peak_viewers;
  double average_watch_time;
  guint subscribers; /* local clients subscribed */
} WbStreamState;

typedef struct _WbStreamCache WbStreamCache;

WbStreamCache *wb_stream_cache_new (const char *stream_id);
void wb_stream_cache_free (WbStreamCache *cache);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbStreamCache, wb_stream_cache_free)

/* The strings point into the cache: valid until the next update or free.
 * `subscribers` is the hub's to keep current. */
WbStreamState *wb_stream_cache_get_state (WbStreamCache *cache);

/* Applies a stream event of this stream received at @now_us (monotonic);
 * returns the state fields whose values changed. Events that carry no
 * state (viewers, chat, reactions) change nothing. */
WbStreamFields wb_stream_cache_update (WbStreamCache *cache, WbEvent *event, gint64 now_us);

/* New events for a subscriber, oldest kind first: the newer of
 * stream.started/ended, then stream.health, then analytics.update, each with
 * "cached":true and its age at @now_us. Only types in @type_mask
 * (1 << WbMessageType) are included. Free with g_ptr_array_unref. */
GPtrArray *wb_stream_cache_build_replay (WbStreamCache *cache, guint32 type_mask, gint64 now_us);

G_END_DECLS
