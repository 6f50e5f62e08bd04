/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-ratelimit"

#include "ratelimit.h"

static void
refill (WbRateLimit *limit, gint64 now_us)
{
  /* A clock that seems to go backwards (it should not: monotonic) must not
   * take tokens away nor let a later call earn them twice. */
  if (now_us > limit->updated_us)
    {
      double earned
          = (double)(now_us - limit->updated_us) * limit->per_period / (double)limit->period_us;

      limit->tokens = MIN (limit->tokens + earned, (double)limit->per_period);
      limit->updated_us = now_us;
    }
}

static void
init_with_period (WbRateLimit *limit, guint per_period, gint64 period_us, gint64 now_us)
{
  g_return_if_fail (limit != NULL);

  limit->per_period = per_period;
  limit->period_us = period_us;
  limit->tokens = per_period;
  limit->updated_us = now_us;
}

void
wb_rate_limit_init (WbRateLimit *limit, guint per_minute, gint64 now_us)
{
  init_with_period (limit, per_minute, WB_RATE_LIMIT_PERIOD_US, now_us);
}

void
wb_rate_limit_init_per_second (WbRateLimit *limit, guint per_second, gint64 now_us)
{
  init_with_period (limit, per_second, G_USEC_PER_SEC, now_us);
}

void
wb_rate_limit_set_rate (WbRateLimit *limit, guint per_period, gint64 now_us)
{
  g_return_if_fail (limit != NULL);

  if (limit->per_period == per_period)
    return;
  refill (limit, now_us);
  limit->per_period = per_period;
  limit->tokens = MIN (limit->tokens, (double)per_period);
}

gboolean
wb_rate_limit_take (WbRateLimit *limit, gint64 now_us)
{
  g_return_val_if_fail (limit != NULL, FALSE);

  refill (limit, now_us);
  if (limit->tokens < 1.0)
    return FALSE;
  limit->tokens -= 1.0;
  return TRUE;
}

gboolean
wb_rate_limit_is_full (WbRateLimit *limit, gint64 now_us)
{
  g_return_val_if_fail (limit != NULL, FALSE);

  refill (limit, now_us);
  return limit->tokens >= (double)limit->per_period;
}

gint64
wb_rate_limit_get_wait_us (WbRateLimit *limit, gint64 now_us)
{
  double wait_us;

  g_return_val_if_fail (limit != NULL, G_MAXINT64);

  refill (limit, now_us);
  if (limit->tokens >= 1.0)
    return 0;
  if (limit->per_period == 0)
    return G_MAXINT64;
  wait_us = (1.0 - limit->tokens) * (double)limit->period_us / limit->per_period;
  /* Rounded up: waiting the answer must be enough. */
  return (gint64)wait_us + ((double)(gint64)wait_us < wait_us ? 1 : 0);
}
