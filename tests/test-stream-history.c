/* SPDX-License-Identifier: MIT */
/*
 * The per-stream history ring (daemon/stream-history.c) alone: what it
 * keeps, its bounds in events and bytes, chat messages WAVE sends twice,
 * and the cursors that make a replay hand nothing out twice.
 */
#define G_LOG_DOMAIN "wave-test-stream-history"

#include <string.h>

#include "stream-history.h"

#define STREAM "stream_abc123"
#define T0_US ((gint64)1000 * G_USEC_PER_SEC)
#define TYPE_BIT(type) (1u << (type))
#define CHAT_AND_REACTIONS                                                                         \
  (TYPE_BIT (WB_MESSAGE_CHAT_MESSAGE) | TYPE_BIT (WB_MESSAGE_REACTION_RECEIVED))
#define BIG_BUDGET (1024 * 1024)

static WbEvent *
event_of (const char *type, const char *payload_json)
{
  g_autofree char *text = g_strdup_printf ("{\"type\":\"%s\",\"payload\":%s}", type, payload_json);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message
      = wb_message_parse (text, strlen (text), WB_DIRECTION_TO_CLIENT, &error);

  g_assert_no_error (error);
  return wb_event_new_from_message (message);
}

/* chat.message "mN" with text @text (NULL: "hello N"). */
static WbEvent *
chat_event (guint n, const char *text)
{
  g_autofree char *fallback = g_strdup_printf ("hello %u", n);
  g_autofree char *payload = g_strdup_printf (
      "{\"stream_id\":\"" STREAM "\",\"message_id\":\"m%u\",\"user_id\":\"u1\","
      "\"username\":\"ann\",\"message\":\"%s\",\"timestamp\":\"2024-05-01T20:00:00Z\"}",
      n, text != NULL ? text : fallback);

  return event_of ("chat.message", payload);
}

static WbEvent *
reaction_event (guint count)
{
  g_autofree char *payload
      = g_strdup_printf ("{\"stream_id\":\"" STREAM "\",\"reaction\":\"👏\","
                         "\"count\":%u,\"timestamp\":\"2024-05-01T20:00:00Z\"}",
                         count);

  return event_of ("reaction.received", payload);
}

static gboolean
add (WbStreamHistory *history, WbEvent *event, gint64 now_us)
{
  g_autoptr (WbEvent) owned = event;

  return wb_stream_history_add (history, owned, now_us);
}

/* "m3,r7,…": the replay's chat message ids and reaction counts in order;
 * also checks each is marked as a replay. */
static char *
describe (GPtrArray *events)
{
  GString *out = g_string_new ("");

  for (guint i = 0; i < events->len; i++)
    {
      WbEvent *event = g_ptr_array_index (events, i);
      GBytes *line = wb_event_get_line (event);
      g_autofree char *text = g_strndup (g_bytes_get_data (line, NULL), g_bytes_get_size (line));
      JsonObject *payload = wb_event_get_payload (event);

      g_assert_nonnull (strstr (text, "\"cached\":true"));
      g_assert_nonnull (strstr (text, "\"age_ms\":"));
      g_assert_cmpstr (wb_event_get_stream_id (event), ==, STREAM);
      if (i > 0)
        g_string_append_c (out, ',');
      if (wb_event_get_message_type (event) == WB_MESSAGE_CHAT_MESSAGE)
        g_string_append (out, json_object_get_string_member (payload, "message_id"));
      else
        g_string_append_printf (out, "r%" G_GINT64_FORMAT,
                                json_object_get_int_member (payload, "count"));
    }
  return g_string_free (out, FALSE);
}

/* Replays @count to @cursor and compares with @expected. */
#define assert_replay(history, cursor, count, expected)                                            \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_autoptr (GPtrArray) events_                                                                  \
        = wb_stream_history_build_replay (history, cursor, count, T0_US);                          \
    g_autofree char *got_ = describe (events_);                                                    \
    g_assert_cmpstr (got_, ==, expected);                                                          \
  }                                                                                                \
  G_STMT_END

/* A cursor of a subscriber that arrives after everything was added. */
static WbHistoryCursor
late_cursor (WbStreamHistory *history, guint32 mask)
{
  WbHistoryCursor cursor = { { 0 } };

  wb_stream_history_cursor_update (history, &cursor, NULL, mask);
  return cursor;
}

static void
test_keeps_chat_and_reactions (void)
{
  g_autoptr (WbStreamHistory) history = wb_stream_history_new (50, BIG_BUDGET);
  WbHistoryCursor cursor;

  g_assert_true (add (history, chat_event (1, NULL), T0_US));
  g_assert_true (add (history, reaction_event (7), T0_US));
  g_assert_false (add (history,
                       event_of ("stream.health", "{\"stream_id\":\"" STREAM "\",\"bitrate\":1,"
                                                  "\"fps\":30,\"packet_loss\":0,\"latency\":1}"),
                       T0_US));
  g_assert_true (add (history, chat_event (2, NULL), T0_US));
  g_assert_cmpuint (wb_stream_history_get_length (history), ==, 3);

  /* Oldest first; a short count takes the newest. */
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  assert_replay (history, &cursor, 2, "r7,m2");
  /* Asked again for more: only the older one it has not had. */
  assert_replay (history, &cursor, 50, "m1");
  assert_replay (history, &cursor, 50, "");

  /* Only the kinds of the cursor. */
  cursor = late_cursor (history, TYPE_BIT (WB_MESSAGE_CHAT_MESSAGE));
  assert_replay (history, &cursor, 50, "m1,m2");
  cursor = late_cursor (history, TYPE_BIT (WB_MESSAGE_REACTION_RECEIVED)
                                     | TYPE_BIT (WB_MESSAGE_STREAM_HEALTH));
  assert_replay (history, &cursor, 50, "r7");
  cursor = late_cursor (history, TYPE_BIT (WB_MESSAGE_STREAM_HEALTH));
  assert_replay (history, &cursor, 50, "");
  /* Count 0: nothing, and the cursor does not move. */
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  assert_replay (history, &cursor, 0, "");
  assert_replay (history, &cursor, 1, "m2");
}

static void
test_count_bound (void)
{
  g_autoptr (WbStreamHistory) history = wb_stream_history_new (3, BIG_BUDGET);
  WbHistoryCursor cursor;

  for (guint i = 1; i <= 10; i++)
    g_assert_true (add (history, chat_event (i, NULL), T0_US));
  g_assert_cmpuint (wb_stream_history_get_length (history), ==, 3);
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  assert_replay (history, &cursor, 100, "m8,m9,m10");

  /* A reload to fewer drops the oldest; to 0 keeps nothing more. */
  wb_stream_history_set_limits (history, 1, BIG_BUDGET);
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  assert_replay (history, &cursor, 100, "m10");
  wb_stream_history_set_limits (history, 0, BIG_BUDGET);
  g_assert_cmpuint (wb_stream_history_get_length (history), ==, 0);
  g_assert_cmpuint (wb_stream_history_get_bytes (history), ==, 0);
  g_assert_false (add (history, chat_event (11, NULL), T0_US));

  /* The ceiling holds whatever is asked. */
  wb_stream_history_set_limits (history, G_MAXUINT, BIG_BUDGET * 1024);
  for (guint i = 0; i < WB_STREAM_HISTORY_MAX_EVENTS + 5; i++)
    g_assert_true (add (history, chat_event (100 + i, NULL), T0_US));
  g_assert_cmpuint (wb_stream_history_get_length (history), ==, WB_STREAM_HISTORY_MAX_EVENTS);
}

static void
test_byte_bound (void)
{
  g_autofree char *big = g_strnfill (3000, 'x');
  g_autofree char *huge = g_strnfill (9000, 'y');
  g_autoptr (WbStreamHistory) history = wb_stream_history_new (50, 8 * 1024);
  WbHistoryCursor cursor;
  gsize one;

  g_assert_true (add (history, chat_event (1, big), T0_US));
  one = wb_stream_history_get_bytes (history);
  g_assert_cmpuint (one, >, 3000);
  g_assert_cmpuint (one, <, 3600); /* the line and the bookkeeping */
  g_assert_true (add (history, chat_event (2, big), T0_US));
  g_assert_cmpuint (wb_stream_history_get_bytes (history), ==, 2 * one);
  /* The third passes 8 KiB: the oldest goes. */
  g_assert_true (add (history, chat_event (3, big), T0_US));
  g_assert_cmpuint (wb_stream_history_get_length (history), ==, 2);
  g_assert_cmpuint (wb_stream_history_get_bytes (history), <=, 8 * 1024);
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  assert_replay (history, &cursor, 50, "m2,m3");

  /* One bigger than the whole budget is not kept and evicts nothing. */
  g_assert_false (add (history, chat_event (4, huge), T0_US));
  g_assert_cmpuint (wb_stream_history_get_length (history), ==, 2);
}

static void
test_same_message_twice (void)
{
  g_autoptr (WbStreamHistory) history = wb_stream_history_new (3, BIG_BUDGET);
  WbHistoryCursor cursor;

  g_assert_true (add (history, chat_event (1, NULL), T0_US));
  g_assert_true (add (history, chat_event (2, NULL), T0_US));
  /* WAVE sends m1 again (say, after a reconnect): kept once. */
  g_assert_false (add (history, chat_event (1, NULL), T0_US));
  /* Reactions have no id: each is its own. */
  g_assert_true (add (history, reaction_event (1), T0_US));
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  assert_replay (history, &cursor, 50, "m1,m2,r1");

  /* Once m1 has left the ring, it is a new event again. */
  g_assert_true (add (history, reaction_event (2), T0_US));
  g_assert_true (add (history, chat_event (1, NULL), T0_US));
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  assert_replay (history, &cursor, 50, "r1,r2,m1");
}

static void
test_cursor (void)
{
  g_autoptr (WbStreamHistory) history = wb_stream_history_new (50, BIG_BUDGET);
  WbHistoryCursor live = { { 0 } };
  WbHistoryCursor late;

  g_assert_true (add (history, chat_event (1, NULL), T0_US));
  g_assert_true (add (history, reaction_event (1), T0_US));
  /* A subscriber taking chat live from here on. */
  wb_stream_history_cursor_update (history, &live, NULL, TYPE_BIT (WB_MESSAGE_CHAT_MESSAGE));
  g_assert_true (add (history, chat_event (2, NULL), T0_US));
  g_assert_true (add (history, reaction_event (2), T0_US));
  g_assert_true (add (history, chat_event (3, NULL), T0_US));

  /* It has m2 and m3 live: only m1 is news. */
  late = live;
  assert_replay (history, &late, 50, "m1");

  /* It adds reactions: the reactions it never had are news, the chat it
   * had keeps its place. */
  wb_stream_history_cursor_update (history, &live, &live, CHAT_AND_REACTIONS);
  assert_replay (history, &live, 1, "r2");
  assert_replay (history, &live, 50, "m1,r1");
  assert_replay (history, &live, 50, "");
  /* Later events are taken live. */
  g_assert_true (add (history, chat_event (4, NULL), T0_US));
  assert_replay (history, &live, 50, "");

  /* It drops chat and takes it again: the chat in between is news (it
   * did not get it), the chat it had before is not (never twice: the
   * chaos soak found m1…m4 handed out again here). */
  wb_stream_history_cursor_update (history, &live, &live, TYPE_BIT (WB_MESSAGE_REACTION_RECEIVED));
  g_assert_cmpuint (live.seen_from[WB_HISTORY_KIND_CHAT], ==, 0);
  g_assert_true (add (history, chat_event (5, NULL), T0_US));
  wb_stream_history_cursor_update (history, &live, &live, CHAT_AND_REACTIONS);
  assert_replay (history, &live, 1, "m5");
  g_assert_true (add (history, chat_event (6, NULL), T0_US));
  assert_replay (history, &live, 50, "");
  /* Reactions it kept taking meanwhile were untouched. */
  g_assert_true (add (history, reaction_event (3), T0_US));
  assert_replay (history, &live, 50, "");
}

/* Dropping and taking a kind again, twice, with replays in between:
 * nothing it ever had comes back (the soak's scenario: subscribe to all,
 * take reactions live, re-subscribe without them, then with them and
 * "history"). */
static void
test_cursor_drop_and_take_again (void)
{
  g_autoptr (WbStreamHistory) history = wb_stream_history_new (50, BIG_BUDGET);
  WbHistoryCursor c = { { 0 } };
  guint32 chat_only = TYPE_BIT (WB_MESSAGE_CHAT_MESSAGE);

  g_assert_true (add (history, reaction_event (1), T0_US));
  wb_stream_history_cursor_update (history, &c, NULL, CHAT_AND_REACTIONS);
  g_assert_true (add (history, reaction_event (2), T0_US)); /* live */
  g_assert_true (add (history, reaction_event (3), T0_US)); /* live */
  wb_stream_history_cursor_update (history, &c, &c, chat_only);
  g_assert_true (add (history, reaction_event (4), T0_US)); /* missed */
  wb_stream_history_cursor_update (history, &c, &c, CHAT_AND_REACTIONS);
  g_assert_true (add (history, reaction_event (5), T0_US)); /* live */
  assert_replay (history, &c, 1, "r4");
  assert_replay (history, &c, 50, "r1");
  assert_replay (history, &c, 50, "");

  /* Again: everything up to now it has (r1 … r5), r6 it misses. */
  wb_stream_history_cursor_update (history, &c, &c, chat_only);
  g_assert_true (add (history, reaction_event (6), T0_US));
  wb_stream_history_cursor_update (history, &c, &c, CHAT_AND_REACTIONS);
  assert_replay (history, &c, 50, "r6");
  assert_replay (history, &c, 50, "");

  /* A new subscriber, stopping twice before any replay: the run before
   * the first stop, the gap and the run after count as one range it had;
   * nothing is repeated (the gap, r8, is not offered: the price of one
   * range). Older events (r1 … r6) and the last gap (r10) are news. */
  wb_stream_history_cursor_update (history, &c, NULL, CHAT_AND_REACTIONS);
  g_assert_true (add (history, reaction_event (7), T0_US)); /* live */
  wb_stream_history_cursor_update (history, &c, &c, chat_only);
  g_assert_true (add (history, reaction_event (8), T0_US)); /* missed */
  wb_stream_history_cursor_update (history, &c, &c, CHAT_AND_REACTIONS);
  g_assert_true (add (history, reaction_event (9), T0_US)); /* live */
  wb_stream_history_cursor_update (history, &c, &c, chat_only);
  g_assert_true (add (history, reaction_event (10), T0_US)); /* missed */
  wb_stream_history_cursor_update (history, &c, &c, CHAT_AND_REACTIONS);
  assert_replay (history, &c, 50, "r1,r2,r3,r4,r5,r6,r10");
}

static void
test_age (void)
{
  g_autoptr (WbStreamHistory) history = wb_stream_history_new (50, BIG_BUDGET);
  WbHistoryCursor cursor;
  g_autoptr (GPtrArray) events = NULL;
  GBytes *line;
  g_autofree char *text = NULL;

  g_assert_true (add (history, chat_event (1, NULL), T0_US));
  cursor = late_cursor (history, CHAT_AND_REACTIONS);
  events = wb_stream_history_build_replay (history, &cursor, 1, T0_US + 2500 * 1000);
  g_assert_cmpuint (events->len, ==, 1);
  line = wb_event_get_line (g_ptr_array_index (events, 0));
  text = g_strndup (g_bytes_get_data (line, NULL), g_bytes_get_size (line));
  g_assert_nonnull (strstr (text, "\"age_ms\":2500"));
  g_assert_cmpint (wb_event_get_message_type (g_ptr_array_index (events, 0)), ==,
                   WB_MESSAGE_CHAT_MESSAGE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/stream-history/keeps", test_keeps_chat_and_reactions);
  g_test_add_func ("/stream-history/count-bound", test_count_bound);
  g_test_add_func ("/stream-history/byte-bound", test_byte_bound);
  g_test_add_func ("/stream-history/same-message-twice", test_same_message_twice);
  g_test_add_func ("/stream-history/cursor", test_cursor);
  g_test_add_func ("/stream-history/cursor-drop-and-take-again", test_cursor_drop_and_take_again);
  g_test_add_func ("/stream-history/age", test_age);
  return g_test_run ();
}
