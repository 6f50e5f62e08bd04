/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-upstream"

#include "backoff.h"

void
wb_backoff_init (WbBackoff *backoff, guint initial_ms, guint max_ms)
{
  g_return_if_fail (backoff != NULL);

  backoff->initial_ms = MAX (initial_ms, 1);
  backoff->max_ms = MAX (max_ms, backoff->initial_ms);
  wb_backoff_reset (backoff);
}

void
wb_backoff_set_limits (WbBackoff *backoff, guint initial_ms, guint max_ms)
{
  g_return_if_fail (backoff != NULL);

  backoff->initial_ms = MAX (initial_ms, 1);
  backoff->max_ms = MAX (max_ms, backoff->initial_ms);
  backoff->next_ms = CLAMP (backoff->next_ms, backoff->initial_ms, backoff->max_ms);
}

void
wb_backoff_reset (WbBackoff *backoff)
{
  g_return_if_fail (backoff != NULL);

  backoff->next_ms = backoff->initial_ms;
  backoff->failures = 0;
}

guint
wb_backoff_next_base_ms (WbBackoff *backoff)
{
  guint base;

  g_return_val_if_fail (backoff != NULL, 0);

  base = MIN (backoff->next_ms, backoff->max_ms);
  /* Saturate instead of overflowing; the cap keeps it small anyway. */
  backoff->next_ms = base > backoff->max_ms / 2 ? backoff->max_ms : base * 2;
  backoff->failures++;
  return base;
}

guint
wb_backoff_next_ms (WbBackoff *backoff, GRand *rand)
{
  return wb_jitter_lengthen_ms (wb_backoff_next_base_ms (backoff), rand);
}

guint
wb_jitter_lengthen_ms (guint base_ms, GRand *rand)
{
  double extra;

  g_return_val_if_fail (rand != NULL, base_ms);

  extra = g_rand_double (rand) * (double)base_ms * WB_BACKOFF_JITTER_FRACTION;
  if ((double)base_ms + extra >= (double)G_MAXUINT)
    return G_MAXUINT;
  return base_ms + (guint)extra;
}
