/* SPDX-License-Identifier: MIT */
/*
 * wave-sim's event log (--event-log FILE): one JSON line per thing a soak's
 * checker must know about the upstream side, in the order it happened —
 * connections opened and closed, subscriptions as the sim applied them, and
 * every numbered stream event with the connections it was written to. The
 * times are g_get_monotonic_time () (CLOCK_MONOTONIC, µs), the clock every
 * process on the machine shares. Format: docs/wave-sim.md "Event log".
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _SimEventLog SimEventLog;

/* Creates (truncates) @path; lines are flushed at least every 200 ms. */
SimEventLog *sim_event_log_new (const char *path, GError **error);
void sim_event_log_free (SimEventLog *log);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SimEventLog, sim_event_log_free)

void sim_event_log_open (SimEventLog *log, guint64 conn);
/* @events: the sorted event types now in effect for @stream_id on @conn. */
void sim_event_log_subscribe (SimEventLog *log, guint64 conn, const char *stream_id,
                              const char *const *events);
void sim_event_log_unsubscribe (SimEventLog *log, guint64 conn, const char *stream_id);
void sim_event_log_close (SimEventLog *log, guint64 conn, guint code, const char *initiator);
/* @message: the enveloped event exactly as written (compact JSON);
 * @conns: the connections it was written to; @at_us: the monotonic time
 * taken just before the first write (so no reader can have it earlier). */
void sim_event_log_event (SimEventLog *log, gint64 at_us, const char *message, const guint64 *conns,
                          guint n_conns);

G_END_DECLS
