/* SPDX-License-Identifier: MIT */
/*
 * The life of the simulated streams: each stream id is a channel that goes
 * live, produces health, analytics, viewers, chat and reactions, ends, rests
 * and goes live again. All of it runs on a simulated clock (real time ×
 * speed) and draws from GRands seeded by the run's seed, in due-time order,
 * so one seed replays the same event sequence.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define SIM_STREAMS_MAX 1000
#define SIM_STREAMS_MAX_SPEED 10000.0

typedef struct _SimStreams SimStreams;

/* Called for every event a stream produces; @payload is borrowed. */
typedef void (*SimPublishFunc) (const char *type, JsonObject *payload, gpointer user_data);

SimStreams *sim_streams_new (guint n_streams, guint32 seed, double speed);
void sim_streams_free (SimStreams *streams);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SimStreams, sim_streams_free)

void sim_streams_set_publish_func (SimStreams *streams, SimPublishFunc func, gpointer user_data);
/* Starts the clock and the event schedule on the thread-default main context. */
void sim_streams_start (SimStreams *streams);

guint sim_streams_get_n (SimStreams *streams);
const char *sim_streams_get_id (SimStreams *streams, guint index);
gboolean sim_streams_has (SimStreams *streams, const char *stream_id);

/* Starts (live) or ends a stream now, emitting stream.started / stream.ended.
 * @out_changed is FALSE when the stream already was in that state. */
gboolean sim_streams_set_live (SimStreams *streams, const char *stream_id, gboolean live,
                               gboolean *out_changed, GError **error);

/* A client's reaction.sent: counted into the stream's next reaction.received. */
void sim_streams_add_reaction (SimStreams *streams, const char *stream_id, const char *reaction);

/* A realistic payload of @type for @stream_id (any id), drawn from a
 * separate GRand so it never disturbs the streams' own sequence. NULL when
 * @type is not a stream event. */
JsonObject *sim_streams_sample_payload (SimStreams *streams, const char *type,
                                        const char *stream_id);

/* The simulated wall clock as an ISO 8601 UTC timestamp. */
char *sim_streams_dup_timestamp (SimStreams *streams);

/* [{"stream_id","live","viewers","recording_id"}…] for /sim/stats. */
JsonArray *sim_streams_to_json (SimStreams *streams);

G_END_DECLS
