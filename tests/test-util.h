/* SPDX-License-Identifier: MIT */
/*
 * Waiting in tests without sleeping and without spinning: the default main
 * context runs blocking iterations, woken by the test's own sources and a
 * deadline timer, until a condition holds.
 *
 *   WAIT_UNTIL (client->closed, WB_TEST_WAIT_MS);
 *   POLL_UNTIL (stats_connections (sim) == 0, WB_TEST_WAIT_MS);
 *   wb_test_run_for_ms (200);   (for "nothing else arrives" checks)
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* What most waits allow: generous, so a loaded CI machine does not fail a
 * test that is merely slow; a wait that times out is a bug, not a flake. */
#define WB_TEST_WAIT_MS (20 * 1000)

/* How often POLL_UNTIL re-checks a condition nothing in this process
 * announces (wave-sim's /sim/stats, read with a blocking request). */
#define WB_TEST_POLL_MS 10

typedef struct
{
  gboolean expired;
  guint deadline_id;
  guint poll_id;
} WbTestWait;

static inline gboolean
wb_test_wait_expired_cb (gpointer user_data)
{
  WbTestWait *wait = user_data;

  wait->expired = TRUE;
  wait->deadline_id = 0;
  return G_SOURCE_REMOVE;
}

static inline gboolean
wb_test_wait_poll_cb (gpointer user_data)
{
  /* Only here to wake the loop so the condition is evaluated again. */
  return G_SOURCE_CONTINUE;
}

/* Arms a deadline @timeout_ms from now and, if @poll_ms > 0, a timer that
 * wakes the loop every @poll_ms. Iterate with g_main_context_iteration
 * (NULL, TRUE) until wait->expired; then call wb_test_wait_end(). */
static inline void
wb_test_wait_begin (WbTestWait *wait, guint timeout_ms, guint poll_ms)
{
  wait->expired = FALSE;
  wait->deadline_id = g_timeout_add (timeout_ms, wb_test_wait_expired_cb, wait);
  wait->poll_id = poll_ms > 0 ? g_timeout_add (poll_ms, wb_test_wait_poll_cb, NULL) : 0;
}

static inline void
wb_test_wait_end (WbTestWait *wait)
{
  g_clear_handle_id (&wait->deadline_id, g_source_remove);
  g_clear_handle_id (&wait->poll_id, g_source_remove);
}

/* Runs the default main context for @ms: events keep being delivered, and
 * the loop sleeps whenever nothing is due. */
static inline void
wb_test_run_for_ms (guint ms)
{
  WbTestWait wait;

  wb_test_wait_begin (&wait, ms, 0);
  while (!wait.expired)
    g_main_context_iteration (NULL, TRUE);
  wb_test_wait_end (&wait);
}

/* @cond is evaluated once per iteration and never again after the loop (so
 * it may have side effects); on timeout the test fails, naming it. */
#define WB_TEST_WAIT_FULL(cond, timeout_ms, poll_ms)                                               \
  G_STMT_START                                                                                     \
  {                                                                                                \
    WbTestWait wait_;                                                                              \
    gboolean wait_met_;                                                                            \
    wb_test_wait_begin (&wait_, (timeout_ms), (poll_ms));                                          \
    while (!(wait_met_ = !!(cond)) && !wait_.expired)                                              \
      g_main_context_iteration (NULL, TRUE);                                                       \
    wb_test_wait_end (&wait_);                                                                     \
    if (!wait_met_)                                                                                \
      {                                                                                            \
        g_autofree char *wait_message_ = g_strdup_printf ("timed out after %u ms waiting for: %s", \
                                                          (guint)(timeout_ms), #cond);             \
        g_assertion_message (G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, wait_message_);          \
      }                                                                                            \
  }                                                                                                \
  G_STMT_END

/* Waits for a condition that a main-loop event makes true (a callback the
 * test registered, a source dispatching). Nothing but those events and the
 * deadline wakes the loop, so a source that forgets to wake it fails here
 * instead of being rescued by a poll. */
#define WAIT_UNTIL(cond, timeout_ms) WB_TEST_WAIT_FULL (cond, timeout_ms, 0)

/* Waits for a condition read from outside this process's main loop (such
 * as a blocking HTTP request to wave-sim's /sim/stats): re-checked every
 * WB_TEST_POLL_MS as well as after every event. */
#define POLL_UNTIL(cond, timeout_ms) WB_TEST_WAIT_FULL (cond, timeout_ms, WB_TEST_POLL_MS)

G_END_DECLS
