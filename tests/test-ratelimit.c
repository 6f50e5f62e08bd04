/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-test-ratelimit"

#include "ratelimit.h"

#define MINUTE WB_RATE_LIMIT_PERIOD_US
#define START_US ((gint64)1000 * G_USEC_PER_SEC)

static guint
take_all (WbRateLimit *limit, gint64 now_us)
{
  guint taken = 0;

  while (wb_rate_limit_take (limit, now_us))
    taken++;
  return taken;
}

static void
test_burst (void)
{
  WbRateLimit limit;

  wb_rate_limit_init (&limit, 20, START_US);
  g_assert_cmpuint (take_all (&limit, START_US), ==, 20);
  g_assert_false (wb_rate_limit_take (&limit, START_US));
}

static void
test_refill_continuous (void)
{
  WbRateLimit limit;

  wb_rate_limit_init (&limit, 60, START_US);
  g_assert_cmpuint (take_all (&limit, START_US), ==, 60);

  /* 60/min = one a second: not yet at 0.999 s, yes at 1 s. */
  g_assert_false (wb_rate_limit_take (&limit, START_US + G_USEC_PER_SEC - 1000));
  g_assert_true (wb_rate_limit_take (&limit, START_US + G_USEC_PER_SEC));
  g_assert_false (wb_rate_limit_take (&limit, START_US + G_USEC_PER_SEC));

  /* Half a minute later: 30 more. */
  g_assert_cmpuint (take_all (&limit, START_US + G_USEC_PER_SEC + MINUTE / 2), ==, 30);
}

static void
test_capacity_capped (void)
{
  WbRateLimit limit;

  wb_rate_limit_init (&limit, 5, START_US);
  g_assert_cmpuint (take_all (&limit, START_US), ==, 5);
  /* An hour of silence earns one minute's worth, not sixty. */
  g_assert_cmpuint (take_all (&limit, START_US + 60 * MINUTE), ==, 5);
}

static void
test_wait (void)
{
  WbRateLimit limit;
  gint64 wait_us;

  wb_rate_limit_init (&limit, 2, START_US);
  g_assert_cmpint (wb_rate_limit_get_wait_us (&limit, START_US), ==, 0);
  g_assert_cmpuint (take_all (&limit, START_US), ==, 2);

  wait_us = wb_rate_limit_get_wait_us (&limit, START_US);
  g_assert_cmpint (wait_us, ==, MINUTE / 2);
  g_assert_false (wb_rate_limit_take (&limit, START_US + wait_us - 1));
  g_assert_true (wb_rate_limit_take (&limit, START_US + wait_us));
}

static void
test_zero_rate (void)
{
  WbRateLimit limit;

  wb_rate_limit_init (&limit, 0, START_US);
  g_assert_false (wb_rate_limit_take (&limit, START_US));
  g_assert_false (wb_rate_limit_take (&limit, START_US + 60 * MINUTE));
  g_assert_cmpint (wb_rate_limit_get_wait_us (&limit, START_US), ==, G_MAXINT64);
}

static void
test_set_rate (void)
{
  WbRateLimit limit;

  wb_rate_limit_init (&limit, 100, START_US);
  g_assert_true (wb_rate_limit_take (&limit, START_US));

  /* Lowered: what is left is capped at the new capacity. */
  wb_rate_limit_set_rate (&limit, 3, START_US);
  g_assert_cmpuint (take_all (&limit, START_US), ==, 3);

  /* Raised: no free refill, but the new rate applies from now. */
  wb_rate_limit_set_rate (&limit, 120, START_US);
  g_assert_false (wb_rate_limit_take (&limit, START_US));
  g_assert_cmpuint (take_all (&limit, START_US + G_USEC_PER_SEC), ==, 2);
}

static void
test_clock_backwards (void)
{
  WbRateLimit limit;

  wb_rate_limit_init (&limit, 60, START_US);
  g_assert_cmpuint (take_all (&limit, START_US), ==, 60);
  g_assert_false (wb_rate_limit_take (&limit, START_US - MINUTE));
  /* The earlier call earned nothing; time counts from the latest. */
  g_assert_cmpuint (take_all (&limit, START_US + G_USEC_PER_SEC), ==, 1);
}

/* The upstream pace: N per second, a burst of N, waits in fractions of a second. */
static void
test_per_second (void)
{
  WbRateLimit limit;

  wb_rate_limit_init_per_second (&limit, 20, START_US);
  g_assert_cmpuint (take_all (&limit, START_US), ==, 20);
  /* One token every 50 ms. */
  g_assert_cmpint (wb_rate_limit_get_wait_us (&limit, START_US), ==, 50000);
  g_assert_false (wb_rate_limit_take (&limit, START_US + 49000));
  g_assert_true (wb_rate_limit_take (&limit, START_US + 50000));
  /* A full second refills the whole burst, and no more. */
  g_assert_cmpuint (take_all (&limit, START_US + 10 * G_USEC_PER_SEC), ==, 20);
}

/* Full only once every token taken was earned back. */
static void
test_is_full (void)
{
  WbRateLimit limit;

  wb_rate_limit_init_per_second (&limit, 20, START_US);
  g_assert_true (wb_rate_limit_is_full (&limit, START_US));
  g_assert_true (wb_rate_limit_take (&limit, START_US));
  g_assert_false (wb_rate_limit_is_full (&limit, START_US));
  g_assert_false (wb_rate_limit_is_full (&limit, START_US + 49000));
  g_assert_true (wb_rate_limit_is_full (&limit, START_US + 50000));
  g_assert_cmpuint (take_all (&limit, START_US + 50000), ==, 20);
  g_assert_false (wb_rate_limit_is_full (&limit, START_US + 950000));
  g_assert_true (wb_rate_limit_is_full (&limit, START_US + 1050000));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/ratelimit/burst", test_burst);
  g_test_add_func ("/ratelimit/refill-continuous", test_refill_continuous);
  g_test_add_func ("/ratelimit/capacity-capped", test_capacity_capped);
  g_test_add_func ("/ratelimit/wait", test_wait);
  g_test_add_func ("/ratelimit/zero-rate", test_zero_rate);
  g_test_add_func ("/ratelimit/set-rate", test_set_rate);
  g_test_add_func ("/ratelimit/clock-backwards", test_clock_backwards);
  g_test_add_func ("/ratelimit/per-second", test_per_second);
  g_test_add_func ("/ratelimit/is-full", test_is_full);
  return g_test_run ();
}
