/* SPDX-License-Identifier: MIT */
/*
 * A token bucket on the monotonic clock: ChatPerMinute / ReactionsPerMinute
 * per local client. Capacity is the per-minute value, refill is continuous,
 * so a client may burst the whole minute's allowance and then sends at the
 * steady rate. A rate of 0 allows nothing.
 *
 * Times are passed in (g_get_monotonic_time () in the daemon) so that tests
 * can drive the clock.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define WB_RATE_LIMIT_PERIOD_US ((gint64)60 * G_USEC_PER_SEC)

typedef struct
{
  guint per_period; /* tokens earned per period, and the bucket's capacity */
  gint64 period_us;
  double tokens;
  gint64 updated_us;
} WbRateLimit;

/* A full bucket of @per_minute tokens (per-client chat and reactions). */
void wb_rate_limit_init (WbRateLimit *limit, guint per_minute, gint64 now_us);
/* A full bucket of @per_second tokens (pacing what is sent upstream). */
void wb_rate_limit_init_per_second (WbRateLimit *limit, guint per_second, gint64 now_us);
/* A new rate per the bucket's period after a reload; tokens already earned
 * are kept up to the new capacity. */
void wb_rate_limit_set_rate (WbRateLimit *limit, guint per_period, gint64 now_us);
/* Takes one token: TRUE if there was one. */
gboolean wb_rate_limit_take (WbRateLimit *limit, gint64 now_us);
/* TRUE if the bucket is full: nothing was taken for a whole refill (the
 * pace uses it to tell a lone change from one of a burst). */
gboolean wb_rate_limit_is_full (WbRateLimit *limit, gint64 now_us);
/* Microseconds until a token is available (0: one is; G_MAXINT64: never). */
gint64 wb_rate_limit_get_wait_us (WbRateLimit *limit, gint64 now_us);

G_END_DECLS
