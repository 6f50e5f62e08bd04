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
      double earned = (double)(now_us - limit->updated_us) * limit->per_minute
                      / (double)WB_RATE_LIMIT_PERIOD_US;

      limit->tokens = MIN (limit->tokens + earned, (double)limit->per_minute);
      limit->updated_us = now_us;
    }
}

void
wb_rate_limit_init (WbRateLimit *limit, guint per_minute, gint64 now_us)
{
  g_return_if_fail (limit != NULL);

  limit->per_minute = per_minute;
  limit->tokens = per_minute;
  limit->updated_us = now_us;
}

void
wb_rate_limit_set_rate (WbRateLimit *limit, guint per_minute, gint64 now_us)
{
  g_return_if_fail (limit != NULL);

  if (limit->per_minute == per_minute)
    return;
  refill (limit, now_us);
  limit->per_minute = per_minute;
  limit->tokens = MIN (limit->tokens, (double)per_minute);
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

gint64
wb_rate_limit_get_wait_us (WbRateLimit *limit, gint64 now_us)
{
  double wait_us;

  g_return_val_if_fail (limit != NULL, G_MAXINT64);

  refill (limit, now_us);
  if (limit->tokens >= 1.0)
    return 0;
  if (limit->per_minute == 0)
    return G_MAXINT64;
  wait_us = (1.0 - limit->tokens) * (double)WB_RATE_LIMIT_PERIOD_US / limit->per_minute;
  /* Rounded up: waiting the answer must be enough. */
  return (gint64)wait_us + ((double)(gint64)wait_us < wait_us ? 1 : 0);
}
