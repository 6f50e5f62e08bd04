/* SPDX-License-Identifier: MIT */
/*
 * Reconnect delays: exponential backoff (initial, doubling, capped) and the
 * jitter that spreads reconnecting bridges apart. Jitter only ever adds
 * time, so no wait is ever shorter than DESIGN.md's close table allows.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Jitter adds up to this fraction of the base delay (0.2 = up to +20 %). */
#define WB_BACKOFF_JITTER_FRACTION 0.2

typedef struct
{
  guint initial_ms;
  guint max_ms;
  guint next_ms;  /* base delay of the next failure, before jitter */
  guint failures; /* since the last reset */
} WbBackoff;

void wb_backoff_init (WbBackoff *backoff, guint initial_ms, guint max_ms);
/* New limits after a reload, keeping how far the sequence has come (the
 * next delay is capped by the new maximum, and never below the new initial). */
void wb_backoff_set_limits (WbBackoff *backoff, guint initial_ms, guint max_ms);
/* After a healthy connection (a pong received): the next delay is the initial one. */
void wb_backoff_reset (WbBackoff *backoff);
/* The base delay for this failure (initial, 2×, 4×, … capped at max_ms), then
 * doubles for the next one. Without jitter. */
guint wb_backoff_next_base_ms (WbBackoff *backoff);
/* wb_backoff_next_base_ms() with jitter from @rand. */
guint wb_backoff_next_ms (WbBackoff *backoff, GRand *rand);

/* @base_ms lengthened by a random amount in [0, base × WB_BACKOFF_JITTER_FRACTION]. */
guint wb_jitter_lengthen_ms (guint base_ms, GRand *rand);

G_END_DECLS
