/* SPDX-License-Identifier: MIT */
/*
 * upstream-outbox.c without a server: what it writes, in what order, how
 * fast, and how every held send ends exactly once.
 */
#include <glib.h>
#include <string.h>

#include "message.h"
#include "test-util.h"
#include "upstream-outbox.h"

typedef struct
{
  GError *error;
  guint calls;
} SendOutcome;

typedef struct
{
  WbOutbox *outbox;
  GPtrArray *written; /* JSON text of each write, in order */
  GArray *written_at; /* gint64 monotonic µs of each write */
  guint held_changes;
  GPtrArray *outcomes; /* SendOutcome *, owned */
  GPtrArray *covered;  /* "stream:since_us" of each stream_covered */
  gboolean fail_writes;
} Fixture;

static gboolean
record_write (JsonNode *message, gpointer user_data)
{
  Fixture *f = user_data;
  gint64 now = g_get_monotonic_time ();

  g_ptr_array_add (f->written, wb_json_to_string (message, NULL));
  g_array_append_val (f->written_at, now);
  if (f->fail_writes)
    {
      /* The connection broke while writing, as upstream.c would report it. */
      wb_outbox_connection_closed (f->outbox);
      return FALSE;
    }
  return TRUE;
}

static void
record_send_done (WbSendCallback callback, gpointer callback_data, GError *error,
                  gpointer user_data)
{
  callback (error, callback_data);
  g_clear_error (&error);
}

static void
record_held_changed (gpointer user_data)
{
  ((Fixture *)user_data)->held_changes++;
}

static void
record_covered (const char *stream_id, gint64 since_us, gpointer user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->covered, g_strdup_printf ("%s:%" G_GINT64_FORMAT, stream_id, since_us));
}

static const WbOutboxCallbacks recording_callbacks = {
  .write = record_write,
  .send_done = record_send_done,
  .held_changed = record_held_changed,
  .stream_covered = record_covered,
};

static void
outcome_cb (const GError *error, gpointer user_data)
{
  SendOutcome *outcome = user_data;

  outcome->calls++;
  g_clear_error (&outcome->error);
  outcome->error = error != NULL ? g_error_copy (error) : NULL;
}

static void
outcome_free (SendOutcome *outcome)
{
  g_clear_error (&outcome->error);
  g_free (outcome);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  const WbOutboxLimits *limits = data;

  f->written = g_ptr_array_new_with_free_func (g_free);
  f->written_at = g_array_new (FALSE, FALSE, sizeof (gint64));
  f->outcomes = g_ptr_array_new_with_free_func ((GDestroyNotify)outcome_free);
  f->covered = g_ptr_array_new_with_free_func (g_free);
  f->outbox = wb_outbox_new (limits, &recording_callbacks, f);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->outbox, wb_outbox_free);
  for (guint i = 0; i < f->outcomes->len; i++)
    g_assert_cmpuint (((SendOutcome *)g_ptr_array_index (f->outcomes, i))->calls, ==, 1);
  g_ptr_array_unref (f->outcomes);
  g_ptr_array_unref (f->covered);
  g_ptr_array_unref (f->written);
  g_array_unref (f->written_at);
}

static const char *
written (Fixture *f, guint i)
{
  g_assert_cmpuint (i, <, f->written->len);
  return g_ptr_array_index (f->written, i);
}

static SendOutcome *
send_chat_as (Fixture *f, gint64 owner, const char *stream_id, const char *text)
{
  g_autoptr (JsonNode) chat = wb_message_new_chat (stream_id, text);
  SendOutcome *outcome = g_new0 (SendOutcome, 1);

  g_ptr_array_add (f->outcomes, outcome);
  wb_outbox_send (f->outbox, chat, owner, outcome_cb, outcome);
  return outcome;
}

#define OWNER_A 1000
#define OWNER_B 1001

static SendOutcome *
send_chat (Fixture *f, const char *stream_id, const char *text)
{
  return send_chat_as (f, OWNER_A, stream_id, text);
}

static const char *const health[] = { "stream.health", NULL };
static const char *const health_chat[] = { "chat.message", "stream.health", NULL };

static const WbOutboxLimits fast
    = { .messages_per_second = 1000, .max_held = 4, .held_timeout_ms = 10000 };
static const WbOutboxLimits slow
    = { .messages_per_second = 10, .max_held = 1024, .held_timeout_ms = 10000 };
static const WbOutboxLimits short_hold
    = { .messages_per_second = 1000, .max_held = 64, .held_timeout_ms = 100 };
static const WbOutboxLimits shared
    = { .messages_per_second = 1000, .max_held = 64, .held_timeout_ms = 10000 };

/* Nothing is written without a connection; the union is remembered. */
static void
test_union_waits_for_connection (Fixture *f, gconstpointer data)
{
  g_assert_true (wb_outbox_set_stream_events (f->outbox, "b", health, OWNER_A));
  g_assert_true (wb_outbox_set_stream_events (f->outbox, "a", health_chat, OWNER_A));
  g_assert_false (wb_outbox_set_stream_events (f->outbox, "a", health_chat, OWNER_A));
  g_assert_cmpuint (wb_outbox_get_n_streams (f->outbox), ==, 2);
  g_assert_cmpuint (f->written->len, ==, 0);

  wb_outbox_connection_opened (f->outbox);
  /* Sorted, so the wire is deterministic. */
  g_assert_cmpuint (f->written->len, ==, 2);
  g_assert_cmpstr (written (f, 0), ==,
                   "{\"type\":\"subscribe\",\"stream_id\":\"a\","
                   "\"events\":[\"chat.message\",\"stream.health\"]}");
  g_assert_cmpstr (written (f, 1), ==,
                   "{\"type\":\"subscribe\",\"stream_id\":\"b\",\"events\":[\"stream.health\"]}");

  /* A removal on an open connection is an unsubscribe (at once, or one pace
   * interval later if the two subscribes' tokens are not earned back yet). */
  g_assert_true (wb_outbox_set_stream_events (f->outbox, "b", NULL, OWNER_A));
  WAIT_UNTIL (f->written->len == 3, 2000);
  g_assert_cmpstr (written (f, 2), ==, "{\"type\":\"unsubscribe\",\"stream_id\":\"b\"}");
  g_assert_false (wb_outbox_set_stream_events (f->outbox, "b", NULL, OWNER_A));
  g_assert_cmpuint (wb_outbox_get_n_streams (f->outbox), ==, 1);
}

/* Each new connection is told the whole union again; a closed one nothing. */
static void
test_union_resent_per_connection (Fixture *f, gconstpointer data)
{
  wb_outbox_set_stream_events (f->outbox, "a", health, OWNER_A);
  wb_outbox_connection_opened (f->outbox);
  g_assert_cmpuint (f->written->len, ==, 1);
  wb_outbox_connection_closed (f->outbox);
  wb_outbox_set_stream_events (f->outbox, "b", health, OWNER_A);
  g_assert_cmpuint (f->written->len, ==, 1);
  wb_outbox_connection_opened (f->outbox);
  g_assert_cmpuint (f->written->len, ==, 3);
  g_assert_nonnull (strstr (written (f, 1), "\"a\""));
  g_assert_nonnull (strstr (written (f, 2), "\"b\""));
}

/* Changes to one stream made while waiting for a token cost one message,
 * and a subscribe undone before its turn costs none. */
static void
test_changes_merge_while_paced (Fixture *f, gconstpointer data)
{
  wb_outbox_connection_opened (f->outbox);
  /* The burst allowance (10) is used up by ten other streams. */
  for (guint i = 0; i < 10; i++)
    {
      g_autofree char *id = g_strdup_printf ("s%u", i);

      wb_outbox_set_stream_events (f->outbox, id, health, OWNER_A);
    }
  WAIT_UNTIL (f->written->len == 10, 2000);
  wb_outbox_set_stream_events (f->outbox, "x", health, OWNER_A);
  wb_outbox_set_stream_events (f->outbox, "x", health_chat, OWNER_A);
  wb_outbox_set_stream_events (f->outbox, "y", health, OWNER_A);
  wb_outbox_set_stream_events (f->outbox, "y", NULL, OWNER_A);
  g_assert_cmpuint (f->written->len, ==, 10);

  WAIT_UNTIL (f->written->len >= 11, 2000);
  wb_test_run_for_ms (300);
  g_assert_cmpuint (f->written->len, ==, 11);
  g_assert_cmpstr (written (f, 10), ==,
                   "{\"type\":\"subscribe\",\"stream_id\":\"x\","
                   "\"events\":[\"chat.message\",\"stream.health\"]}");
}

/* MessagesPerSecond is kept: past the burst, writes are spaced 1/rate apart. */
static void
test_pace (Fixture *f, gconstpointer data)
{
  gint64 span_us;

  wb_outbox_connection_opened (f->outbox);
  for (guint i = 0; i < 15; i++)
    {
      g_autofree char *id = g_strdup_printf ("s%02u", i);

      wb_outbox_set_stream_events (f->outbox, id, health, OWNER_A);
    }
  /* The first change found the bucket full and went at once; the others
   * wait one pace interval (an undone change costs nothing), then take
   * the refilled burst. */
  g_assert_cmpuint (f->written->len, ==, 1);
  WAIT_UNTIL (f->written->len == 11, 2000);
  WAIT_UNTIL (f->written->len == 15, 3000);
  span_us = g_array_index (f->written_at, gint64, 14) - g_array_index (f->written_at, gint64, 10);
  /* Four more tokens at 10/s take at least 400 ms (timers never fire early). */
  g_test_message ("4 paced writes took %" G_GINT64_FORMAT " ms", span_us / 1000);
  g_assert_cmpint (span_us, >=, 350 * 1000);
  /* In the order the streams changed. */
  for (guint i = 0; i < 15; i++)
    {
      g_autofree char *needle = g_strdup_printf ("\"s%02u\"", i);

      g_assert_nonnull (strstr (written (f, i), needle));
    }
}

/* The union owed to a new connection goes at once, from the first token:
 * the bucket starts full at the configured rate. */
static void
test_resync_at_once (Fixture *f, gconstpointer data)
{
  for (guint i = 0; i < 12; i++)
    {
      g_autofree char *id = g_strdup_printf ("s%02u", i);

      wb_outbox_set_stream_events (f->outbox, id, health, OWNER_A);
    }
  wb_outbox_connection_opened (f->outbox);
  g_assert_cmpuint (f->written->len, ==, 10);
  WAIT_UNTIL (f->written->len == 12, 2000);
}

/* After a lost connection each stream of the union is reported covered
 * again once its subscribe went out on a connection that answered a ping,
 * with the time it was lost; a stream nobody wants any more is not. */
static void
test_coverage_after_loss (Fixture *f, gconstpointer data)
{
  gint64 closed_us;
  g_autofree char *expected = NULL;

  wb_outbox_set_stream_events (f->outbox, "a", health, OWNER_A);
  wb_outbox_set_stream_events (f->outbox, "b", health, OWNER_A);
  wb_outbox_set_stream_events (f->outbox, "c", health, OWNER_A);
  wb_outbox_connection_opened (f->outbox);
  wb_outbox_connection_healthy (f->outbox);
  /* The first connection: nothing was lost, nothing to report. */
  g_assert_cmpuint (f->covered->len, ==, 0);

  closed_us = g_get_monotonic_time ();
  wb_outbox_connection_closed (f->outbox);
  wb_outbox_set_stream_events (f->outbox, "c", NULL, OWNER_A);
  /* An attempt that opens and fails before answering reports nothing. */
  wb_outbox_connection_opened (f->outbox);
  g_assert_cmpuint (f->written->len, ==, 5);
  wb_outbox_connection_closed (f->outbox);
  g_assert_cmpuint (f->covered->len, ==, 0);

  wb_outbox_connection_opened (f->outbox);
  g_assert_cmpuint (f->covered->len, ==, 0);
  wb_outbox_connection_healthy (f->outbox);
  g_assert_cmpuint (f->covered->len, ==, 2);
  /* Since the first loss, not the failed attempt's. */
  g_assert_true (g_str_has_prefix (g_ptr_array_index (f->covered, 0), "a:"));
  g_assert_true (g_str_has_prefix (g_ptr_array_index (f->covered, 1), "b:"));
  g_assert_cmpint (g_ascii_strtoll (strchr (g_ptr_array_index (f->covered, 0), ':') + 1, NULL, 10),
                   <=, closed_us + 1000);
  g_assert_cmpint (g_ascii_strtoll (strchr (g_ptr_array_index (f->covered, 0), ':') + 1, NULL, 10),
                   >=, closed_us);
  expected = g_strdup (g_ptr_array_index (f->covered, 0));
  /* Reported once. */
  wb_outbox_connection_closed (f->outbox);
  wb_outbox_connection_opened (f->outbox);
  wb_outbox_connection_healthy (f->outbox);
  g_assert_cmpuint (f->covered->len, ==, 4);
  g_assert_cmpstr (g_ptr_array_index (f->covered, 2), !=, expected);
}

/* A subscribe and unsubscribe inside one pace interval send nothing;
 * a stream flapping on an idle connection costs its first subscribe (a
 * lone change goes at once) and the unsubscribe it ends with. */
static void
test_undone_within_interval_costs_nothing (Fixture *f, gconstpointer data)
{
  wb_outbox_connection_opened (f->outbox);
  wb_outbox_set_stream_events (f->outbox, "other", health, OWNER_A);
  g_assert_cmpuint (f->written->len, ==, 1);
  for (guint i = 0; i < 50; i++)
    {
      wb_outbox_set_stream_events (f->outbox, "flap", health, OWNER_A);
      wb_outbox_set_stream_events (f->outbox, "flap", NULL, OWNER_A);
    }
  wb_test_run_for_ms (300);
  g_assert_cmpuint (f->written->len, ==, 1);

  wb_test_run_for_ms (1100); /* the bucket is full again */
  for (guint i = 0; i < 50; i++)
    {
      wb_outbox_set_stream_events (f->outbox, "flap2", health, OWNER_A);
      wb_outbox_set_stream_events (f->outbox, "flap2", NULL, OWNER_A);
    }
  wb_test_run_for_ms (300);
  g_assert_cmpuint (f->written->len, ==, 3);
  g_assert_cmpstr (
      written (f, 1), ==,
      "{\"type\":\"subscribe\",\"stream_id\":\"flap2\",\"events\":[\"stream.health\"]}");
  g_assert_cmpstr (written (f, 2), ==, "{\"type\":\"unsubscribe\",\"stream_id\":\"flap2\"}");
}

/* A lone change on an idle connection goes at once: the pace's bucket is
 * full, and a client subscribing to its stream must not wait for it. */
static void
test_lone_change_at_once (Fixture *f, gconstpointer data)
{
  wb_outbox_connection_opened (f->outbox);
  wb_outbox_set_stream_events (f->outbox, "a", health, OWNER_A);
  g_assert_cmpuint (f->written->len, ==, 1);
  g_assert_cmpstr (written (f, 0), ==,
                   "{\"type\":\"subscribe\",\"stream_id\":\"a\",\"events\":[\"stream.health\"]}");
}

/* A user flooding subscribes does not hold back another user's: owners
 * take turns, so B's one stream goes within two tokens of B's change. */
static void
test_churn_owners_take_turns (Fixture *f, gconstpointer data)
{
  guint b_index = G_MAXUINT;

  wb_outbox_connection_opened (f->outbox);
  for (guint i = 0; i < 40; i++)
    {
      g_autofree char *id = g_strdup_printf ("a%02u", i);

      wb_outbox_set_stream_events (f->outbox, id, health, OWNER_A);
    }
  /* The first at once (a lone change), then the refilled burst of ten. */
  WAIT_UNTIL (f->written->len == 11, 2000);
  wb_outbox_set_stream_events (f->outbox, "b-stream", health, OWNER_B);
  WAIT_UNTIL (f->written->len >= 14, 3000);
  for (guint i = 0; i < f->written->len; i++)
    if (strstr (written (f, i), "b-stream") != NULL)
      b_index = i;
  g_test_message ("B's subscribe was write #%u", b_index);
  g_assert_cmpuint (b_index, <=, 12);
}

/* Held sends are never starved by subscription work: when both wait, they
 * take turns; and a user with many held sends does not hold back another's. */
static void
test_sends_not_starved (Fixture *f, gconstpointer data)
{
  SendOutcome *b_chat;
  guint b_index = G_MAXUINT;
  guint first_send = G_MAXUINT;
  guint before;

  wb_outbox_connection_opened (f->outbox);
  wb_outbox_connection_healthy (f->outbox);
  for (guint i = 0; i < 40; i++)
    {
      g_autofree char *id = g_strdup_printf ("a%02u", i);

      wb_outbox_set_stream_events (f->outbox, id, health, OWNER_A);
    }
  for (guint i = 0; i < 20; i++)
    send_chat_as (f, OWNER_A, "a00", "flood");
  /* A's burst took the bucket's tokens; from here B competes. */
  before = f->written->len;
  b_chat = send_chat_as (f, OWNER_B, "b", "hello");
  WAIT_UNTIL (b_chat->calls == 1, 3000);
  g_assert_no_error (b_chat->error);
  for (guint i = 0; i < f->written->len; i++)
    {
      if (first_send == G_MAXUINT && strstr (written (f, i), "chat.message") != NULL)
        first_send = i;
      if (strstr (written (f, i), "\"hello\"") != NULL)
        b_index = i;
    }
  g_test_message ("first send #%u; B's chat queued after #%u, written as #%u of %u", first_send,
                  before, b_index, f->written->len);
  /* A's first send went at once (after the first subscribe, a lone change
   * that went at once too). B's went within four writes of its arrival
   * (A's turn and B's in the send lane, a subscribe between each): not
   * behind A's 10 other held sends or 40 subscribes. */
  g_assert_cmpuint (first_send, ==, 1);
  g_assert_cmpuint (b_index, <, before + 4);
}

/* Held sends go only on a healthy connection, after the union, in order. */
static void
test_sends_after_union_when_healthy (Fixture *f, gconstpointer data)
{
  SendOutcome *one;
  SendOutcome *two;

  wb_outbox_set_stream_events (f->outbox, "a", health, OWNER_A);
  one = send_chat (f, "a", "one");
  two = send_chat (f, "a", "two");
  g_assert_cmpuint (wb_outbox_get_n_held (f->outbox), ==, 2);
  wb_outbox_connection_opened (f->outbox);
  g_assert_cmpuint (f->written->len, ==, 1);
  g_assert_cmpuint (one->calls, ==, 0);

  wb_outbox_connection_healthy (f->outbox);
  g_assert_cmpuint (f->written->len, ==, 3);
  g_assert_nonnull (strstr (written (f, 0), "subscribe"));
  g_assert_nonnull (strstr (written (f, 1), "\"one\""));
  g_assert_nonnull (strstr (written (f, 2), "\"two\""));
  g_assert_cmpuint (one->calls, ==, 1);
  g_assert_no_error (one->error);
  g_assert_cmpuint (two->calls, ==, 1);
  g_assert_cmpuint (wb_outbox_get_n_held (f->outbox), ==, 0);
  g_assert_cmpuint (f->held_changes, >=, 3);
}

/* Past max_held a send is refused at once, as not connected. */
static void
test_held_bound (Fixture *f, gconstpointer data)
{
  SendOutcome *refused;

  for (guint i = 0; i < 4; i++)
    send_chat_as (f, OWNER_A + i, "a", "held");
  refused = send_chat_as (f, OWNER_B + 10, "a", "one too many");
  g_assert_cmpuint (refused->calls, ==, 1);
  g_assert_error (refused->error, WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED);
  g_assert_cmpuint (wb_outbox_get_n_held (f->outbox), ==, 4);
}

/* One user holds at most its share (max_held / 16): two users cannot fill
 * the queue for everyone while upstream is down. */
static void
test_held_share (Fixture *f, gconstpointer data)
{
  SendOutcome *refused;
  SendOutcome *other;

  for (guint i = 0; i < 4; i++)
    send_chat_as (f, OWNER_A, "a", "held");
  refused = send_chat_as (f, OWNER_A, "a", "over my share");
  g_assert_error (refused->error, WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED);
  g_assert_nonnull (strstr (refused->error->message, "of this user"));
  other = send_chat_as (f, OWNER_B, "a", "mine");
  g_assert_cmpuint (other->calls, ==, 0);
  g_assert_cmpuint (wb_outbox_get_n_held (f->outbox), ==, 5);
}

/* Churn takes turns with a resync: a union re-sent after a reconnect does
 * not keep another user's new stream out until it is done. */
static void
test_churn_during_resync (Fixture *f, gconstpointer data)
{
  guint b_index = G_MAXUINT;
  guint before;

  for (guint i = 0; i < 60; i++)
    {
      g_autofree char *id = g_strdup_printf ("a%02u", i);

      wb_outbox_set_stream_events (f->outbox, id, health, OWNER_A);
    }
  wb_outbox_connection_opened (f->outbox);
  before = f->written->len;
  wb_outbox_set_stream_events (f->outbox, "zz-b", health, OWNER_B);
  WAIT_UNTIL (f->written->len >= before + 6, 3000);
  for (guint i = 0; i < f->written->len; i++)
    if (strstr (written (f, i), "zz-b") != NULL)
      b_index = i;
  g_test_message ("B's stream written as #%u, the resync had %u before it", b_index, before);
  g_assert_cmpuint (b_index, <=, before + 4);
}

/* A send held past held_timeout_ms fails; a later one still waits. */
static void
test_held_expiry (Fixture *f, gconstpointer data)
{
  SendOutcome *old = send_chat (f, "a", "old");
  SendOutcome *young;

  wb_test_run_for_ms (60);
  young = send_chat (f, "a", "young");
  WAIT_UNTIL (old->calls == 1, 2000);
  g_assert_error (old->error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
  g_assert_cmpuint (young->calls, ==, 0);
  WAIT_UNTIL (young->calls == 1, 2000);
  g_assert_error (young->error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
  g_assert_cmpuint (f->written->len, ==, 0);
}

/* A send whose write breaks the connection is reported failed, not sent;
 * the next one waits for the next connection. */
static void
test_failed_write (Fixture *f, gconstpointer data)
{
  SendOutcome *lost;
  SendOutcome *next;

  wb_outbox_connection_opened (f->outbox);
  wb_outbox_connection_healthy (f->outbox);
  f->fail_writes = TRUE;
  lost = send_chat (f, "a", "lost");
  next = send_chat (f, "a", "next");
  g_assert_cmpuint (lost->calls, ==, 1);
  g_assert_error (lost->error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
  g_assert_cmpuint (next->calls, ==, 0);
  f->fail_writes = FALSE;
  wb_outbox_connection_opened (f->outbox);
  wb_outbox_connection_healthy (f->outbox);
  g_assert_cmpuint (next->calls, ==, 1);
  g_assert_no_error (next->error);
}

/* fail_held and free end every held send, once. */
static void
test_fail_and_free (Fixture *f, gconstpointer data)
{
  SendOutcome *a = send_chat (f, "a", "a");
  SendOutcome *b;

  wb_outbox_fail_held (f->outbox, WB_SEND_ERROR_NOT_CONNECTED, "key rejected");
  g_assert_cmpuint (a->calls, ==, 1);
  g_assert_error (a->error, WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED);
  b = send_chat (f, "a", "b");
  g_clear_pointer (&f->outbox, wb_outbox_free);
  g_assert_cmpuint (b->calls, ==, 1);
  g_assert_error (b->error, WB_SEND_ERROR, WB_SEND_ERROR_FAILED);
}

/* A closed connection stops the pace timer: nothing is written until the
 * next one opens, which starts with the union again. */
static void
test_close_while_paced (Fixture *f, gconstpointer data)
{
  wb_outbox_connection_opened (f->outbox);
  for (guint i = 0; i < 12; i++)
    {
      g_autofree char *id = g_strdup_printf ("s%02u", i);

      wb_outbox_set_stream_events (f->outbox, id, health, OWNER_A);
    }
  /* The first at once (a lone change), ten with the refilled burst; one waits. */
  WAIT_UNTIL (f->written->len == 11, 2000);
  wb_outbox_connection_closed (f->outbox);
  wb_test_run_for_ms (400);
  g_assert_cmpuint (f->written->len, ==, 11);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, limits, func)                                                                    \
  g_test_add ("/upstream-outbox/" path, Fixture, limits, fixture_setup, func, fixture_teardown)
  ADD ("union-waits-for-connection", &fast, test_union_waits_for_connection);
  ADD ("union-resent-per-connection", &fast, test_union_resent_per_connection);
  ADD ("changes-merge-while-paced", &slow, test_changes_merge_while_paced);
  ADD ("pace", &slow, test_pace);
  ADD ("sends-after-union-when-healthy", &shared, test_sends_after_union_when_healthy);
  ADD ("held-bound", &fast, test_held_bound);
  ADD ("held-share", &shared, test_held_share);
  ADD ("churn-during-resync", &slow, test_churn_during_resync);
  ADD ("held-expiry", &short_hold, test_held_expiry);
  ADD ("fail-and-free", &shared, test_fail_and_free);
  ADD ("failed-write", &shared, test_failed_write);
  ADD ("close-while-paced", &slow, test_close_while_paced);
  ADD ("resync-at-once", &slow, test_resync_at_once);
  ADD ("coverage-after-loss", &fast, test_coverage_after_loss);
  ADD ("undone-within-interval-costs-nothing", &slow, test_undone_within_interval_costs_nothing);
  ADD ("lone-change-at-once", &slow, test_lone_change_at_once);
  ADD ("churn-owners-take-turns", &slow, test_churn_owners_take_turns);
  ADD ("sends-not-starved", &slow, test_sends_not_starved);
#undef ADD
  return g_test_run ();
}
