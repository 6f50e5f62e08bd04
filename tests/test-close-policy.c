/* SPDX-License-Identifier: MIT */
/* Unit tests: DESIGN.md's close table as implemented by close-policy.c, and
 * the backoff/jitter rules of backoff.c. */
#define G_LOG_DOMAIN "wave-test"

#include <glib.h>

#include "backoff.h"
#include "close-policy.h"
#include "config.h"

#define JITTER_SAMPLES 2000

typedef struct
{
  guint value;
  WbCloseAction action;
  WbCloseWait wait;
  WbLinkState state;
} Expectation;

static void
check_row (const WbClosePolicy *policy, const Expectation *expected, const char *what)
{
  g_test_message ("%s %u → %s", what, expected->value, wb_close_action_to_string (policy->action));
  g_assert_nonnull (policy);
  g_assert_cmpint (policy->action, ==, expected->action);
  g_assert_cmpint (policy->wait, ==, expected->wait);
  g_assert_cmpint (policy->state, ==, expected->state);
  g_assert_nonnull (policy->description);
}

static void
test_close_codes (void)
{
  static const Expectation rows[] = {
    { 1000, WB_CLOSE_ACTION_NO_RETRY_UNTIL_DEMAND, WB_CLOSE_WAIT_NONE, WB_LINK_CLOSED },
    { 1001, WB_CLOSE_ACTION_FIXED_WAIT, WB_CLOSE_WAIT_GOING_AWAY, WB_LINK_WAITING },
    { 1006, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 4401, WB_CLOSE_ACTION_PARK_UNTIL_RELOAD, WB_CLOSE_WAIT_NONE, WB_LINK_AUTH_FAILED },
    { 4429, WB_CLOSE_ACTION_FIXED_WAIT, WB_CLOSE_WAIT_RATE_LIMITED, WB_LINK_RATE_LIMITED },
    { 4500, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    /* "any other code" */
    { 0, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 1002, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 1005, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 1011, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 4000, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 4400, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 4402, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 4999, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { G_MAXUINT16, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (rows); i++)
    check_row (wb_close_policy_for_close_code ((guint16)rows[i].value), &rows[i], "close code");
}

static void
test_http_statuses (void)
{
  static const Expectation rows[] = {
    { 401, WB_CLOSE_ACTION_PARK_UNTIL_RELOAD, WB_CLOSE_WAIT_NONE, WB_LINK_AUTH_FAILED },
    { 403, WB_CLOSE_ACTION_PARK_UNTIL_RELOAD, WB_CLOSE_WAIT_NONE, WB_LINK_AUTH_FAILED },
    { 429, WB_CLOSE_ACTION_FIXED_WAIT, WB_CLOSE_WAIT_RATE_LIMITED, WB_LINK_RATE_LIMITED },
    { 500, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 502, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 503, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 599, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    /* Other refusals (404, 400, a proxy's 407…) are not the key's fault. */
    { 400, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 404, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
    { 200, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (rows); i++)
    check_row (wb_close_policy_for_http_status (rows[i].value), &rows[i], "HTTP status");
}

static void
test_local_failures (void)
{
  /* DESIGN.md: every failure of the bridge's own is retried with backoff;
   * it must never talk itself into a permanent silence. */
  for (guint kind = 0; kind < WB_LOCAL_FAILURE_N_KINDS; kind++)
    {
      const WbClosePolicy *policy = wb_close_policy_for_local_failure (kind);
      Expectation expected = { kind, WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING };

      check_row (policy, &expected, wb_local_failure_to_string (kind));
    }
  /* A teardown by the bridge counts as 1006: the same action. */
  g_assert_cmpint (wb_close_policy_for_close_code (WB_CLOSE_CODE_ABNORMAL)->action, ==,
                   wb_close_policy_for_local_failure (WB_LOCAL_FAILURE_PONG_TIMEOUT)->action);
}

static void
test_fixed_waits (void)
{
  g_autoptr (WbConfig) config = wb_config_new_defaults (TRUE);

  /* The WAVE doc's numbers are the defaults. */
  g_assert_cmpuint (wb_close_policy_fixed_wait_ms (wb_close_policy_for_close_code (1001), config),
                    ==, 5000);
  g_assert_cmpuint (wb_close_policy_fixed_wait_ms (wb_close_policy_for_close_code (4429), config),
                    ==, 60000);
  g_assert_cmpuint (wb_close_policy_fixed_wait_ms (wb_close_policy_for_http_status (429), config),
                    ==, 60000);
  g_assert_cmpuint (config->backoff_initial_ms, ==, 1000);
  g_assert_cmpuint (config->backoff_max_ms, ==, 30000);

  config->going_away_wait_ms = 300;
  config->rate_limited_wait_ms = 600;
  g_assert_cmpuint (wb_close_policy_fixed_wait_ms (wb_close_policy_for_close_code (1001), config),
                    ==, 300);
  g_assert_cmpuint (wb_close_policy_fixed_wait_ms (wb_close_policy_for_close_code (4429), config),
                    ==, 600);
  g_assert_cmpuint (wb_close_policy_fixed_wait_ms (wb_close_policy_for_close_code (4500), config),
                    ==, 0);
  g_assert_cmpuint (wb_close_policy_fixed_wait_ms (wb_close_policy_for_close_code (1000), config),
                    ==, 0);
}

static void
test_backoff_sequence (void)
{
  static const guint expected[] = { 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000 };
  WbBackoff backoff;

  wb_backoff_init (&backoff, 1000, 30000);
  for (gsize i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, expected[i]);
  g_assert_cmpuint (backoff.failures, ==, G_N_ELEMENTS (expected));
}

static void
test_backoff_reset (void)
{
  WbBackoff backoff;

  wb_backoff_init (&backoff, 100, 1000);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, 100);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, 200);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, 400);
  /* Nothing but a reset (a healthy connection) brings it back. */
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, 800);
  wb_backoff_reset (&backoff);
  g_assert_cmpuint (backoff.failures, ==, 0);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, 100);
}

static void
test_backoff_saturates (void)
{
  WbBackoff backoff;

  wb_backoff_init (&backoff, G_MAXUINT / 3, G_MAXUINT);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, G_MAXUINT / 3);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, (G_MAXUINT / 3) * 2);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, G_MAXUINT);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), ==, G_MAXUINT);

  /* Degenerate settings still make progress. */
  wb_backoff_init (&backoff, 0, 0);
  g_assert_cmpuint (wb_backoff_next_base_ms (&backoff), >=, 1);
}

static void
test_jitter_only_lengthens (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (42);
  guint min_seen = G_MAXUINT;
  guint max_seen = 0;
  WbBackoff backoff;

  for (guint i = 0; i < JITTER_SAMPLES; i++)
    {
      guint value = wb_jitter_lengthen_ms (5000, rand);

      g_assert_cmpuint (value, >=, 5000);
      g_assert_cmpuint (value, <=, 5000 + 5000 * WB_BACKOFF_JITTER_FRACTION);
      min_seen = MIN (min_seen, value);
      max_seen = MAX (max_seen, value);
    }
  /* It actually spreads (else it is no jitter at all). */
  g_assert_cmpuint (max_seen - min_seen, >, 500);

  wb_backoff_init (&backoff, 1000, 30000);
  for (guint i = 0; i < 10; i++)
    {
      guint base = MIN (1000u << MIN (i, 5u), 30000u);
      guint value = wb_backoff_next_ms (&backoff, rand);

      g_assert_cmpuint (value, >=, base);
      g_assert_cmpuint (value, <=, base + base * WB_BACKOFF_JITTER_FRACTION);
    }
  g_assert_cmpuint (wb_jitter_lengthen_ms (0, rand), ==, 0);
  g_assert_cmpuint (wb_jitter_lengthen_ms (G_MAXUINT, rand), ==, G_MAXUINT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/close-policy/close-codes", test_close_codes);
  g_test_add_func ("/close-policy/http-statuses", test_http_statuses);
  g_test_add_func ("/close-policy/local-failures", test_local_failures);
  g_test_add_func ("/close-policy/fixed-waits", test_fixed_waits);
  g_test_add_func ("/backoff/sequence", test_backoff_sequence);
  g_test_add_func ("/backoff/reset", test_backoff_reset);
  g_test_add_func ("/backoff/saturates", test_backoff_saturates);
  g_test_add_func ("/backoff/jitter-only-lengthens", test_jitter_only_lengthens);
  return g_test_run ();
}
