/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-upstream"

#include "upstream.h"

#include <libsoup/soup.h>
#include <math.h>
#include <string.h>

#include "backoff.h"
#include "close-policy.h"
#include "ratelimit.h"
#include "wb-build-config.h"

/* WAVE events are small JSON objects; anything this big is a broken or
 * hostile server, and libsoup's 128 KiB default is too tight for chat bursts. */
#define WB_UPSTREAM_MAX_INCOMING_PAYLOAD_BYTES (1024 * 1024)
/* Invalid server messages are logged at most this often per window. */
#define WB_UPSTREAM_INVALID_LOG_BURST 5
#define WB_UPSTREAM_INVALID_LOG_WINDOW_US (60 * G_USEC_PER_SEC)
/* Close codes the bridge sends itself. */
#define WB_UPSTREAM_CLOSE_NORMAL 1000
#define WB_UPSTREAM_CLOSE_GOING_AWAY 1001

/* clang-format off */
G_DEFINE_QUARK (wb-upstream-error-quark, wb_upstream_error)
/* clang-format on */

typedef struct
{
  JsonNode *message;
  WbUpstreamSendCallback callback;
  gpointer user_data;
  gint64 deadline_us; /* monotonic */
} QueuedSend;

typedef struct
{
  WbUpstreamSendCallback callback;
  gpointer user_data;
  GError *error; /* NULL: written */
} Completion;

/* One handshake in flight. Shared with the async operation, so a callback
 * that arrives after the upstream abandoned it (reconnect, free) finds
 * @upstream NULL instead of a dangling pointer. */
typedef struct
{
  gint ref_count;
  WbUpstream *upstream;
  GCancellable *cancellable;
  SoupMessage *msg;
  guint timeout_id;
  gboolean timed_out;
} ConnectAttempt;

struct _WbUpstream
{
  /* Scalars copied; only url and ca_file of the strings are kept. */
  WbConfig config;
  char *api_key;
  char *full_url;
  char *redacted_url;
  GTlsDatabase *extra_ca; /* from config.ca_file, NULL: system trust only */

  WbUpstreamCallbacks callbacks;
  gpointer user_data;

  SoupSession *session;
  ConnectAttempt *attempt;
  SoupWebsocketConnection *ws;
  gboolean healthy;  /* a pong arrived on this connection */
  gboolean io_error; /* libsoup reported an error on this connection */

  /* stream id -> sorted event strv: the union the hub asked for. */
  GHashTable *streams;
  /* stream id -> event strv last sent on the current connection. */
  GHashTable *sent;
  /* stream ids whose union differs from what was sent: written by the pump
   * as the pace allows, so many changes to one stream cost one message. */
  GHashTable *unsynced;

  /* Client → server pacing: config.messages_per_second, the same as burst. */
  WbRateLimit pace;
  guint pace_id;

  GQueue send_queue;  /* QueuedSend */
  GQueue completions; /* Completion, delivered from an idle source */

  WbBackoff backoff;
  GRand *rand;
  gboolean retry_is_backoff;

  gboolean ping_outstanding;
  gint64 ping_sent_us;

  gboolean was_connected;   /* any connection so far (for resynced) */
  gint64 lost_monotonic_us; /* when the last connection was lost; 0: no gap to report */

  guint retry_id;
  guint ping_id;
  guint pong_timeout_id;
  guint idle_id;
  guint expiry_id;
  guint completion_id;

  gint64 invalid_window_start_us;
  guint invalid_logged_in_window;
  guint64 invalid_suppressed;

  char *last_close_reason;
  char *last_error;
  WbUpstreamStatus status;
};

static void start_connect (WbUpstream *self);
static void connection_failed (WbUpstream *self, const WbClosePolicy *policy, guint16 code,
                               const char *reason);
static void update_idle_timer (WbUpstream *self);

/* ---- small helpers ------------------------------------------------------ */

const char *
wb_upstream_state_to_string (WbUpstreamState state)
{
  switch (state)
    {
    case WB_UPSTREAM_IDLE:
      return "idle";
    case WB_UPSTREAM_CONNECTING:
      return "connecting";
    case WB_UPSTREAM_CONNECTED:
      return "connected";
    case WB_UPSTREAM_WAITING:
      return "waiting";
    case WB_UPSTREAM_RATE_LIMITED:
      return "rate-limited";
    case WB_UPSTREAM_AUTH_FAILED:
      return "auth-failed";
    case WB_UPSTREAM_CLOSED:
      return "closed";
    default:
      return "unknown";
    }
}

static void
clear_source (guint *id)
{
  if (*id != 0)
    {
      g_source_remove (*id);
      *id = 0;
    }
}

static gboolean
have_demand (WbUpstream *self)
{
  return g_hash_table_size (self->streams) > 0 || self->send_queue.length > 0;
}

static gboolean
is_connected (WbUpstream *self)
{
  return self->ws != NULL
         && soup_websocket_connection_get_state (self->ws) == SOUP_WEBSOCKET_STATE_OPEN;
}

static void
notify_status (WbUpstream *self)
{
  self->status.send_queue_length = self->send_queue.length;
  if (self->callbacks.status_changed != NULL)
    self->callbacks.status_changed (self->user_data);
}

static void
set_last_error (WbUpstream *self, const char *text)
{
  g_free (self->last_error);
  self->last_error = g_strdup (text != NULL ? text : "");
  self->status.last_error = self->last_error;
}

static void
set_state (WbUpstream *self, WbUpstreamState state)
{
  WbUpstreamState old = self->status.state;

  if (state != WB_UPSTREAM_WAITING && state != WB_UPSTREAM_RATE_LIMITED)
    self->status.next_attempt_monotonic_us = 0;
  if (state != WB_UPSTREAM_CONNECTED)
    self->status.connected_since_realtime_us = 0;
  /* Nobody was subscribed across an idle period: no gap to tell anyone of. */
  if (state == WB_UPSTREAM_IDLE)
    self->lost_monotonic_us = 0;
  if (old == state)
    return;

  self->status.state = state;
  self->status.state_since_realtime_us = g_get_real_time ();
  if (state == WB_UPSTREAM_CONNECTED)
    self->status.connected_since_realtime_us = self->status.state_since_realtime_us;
  g_debug ("state %s -> %s", wb_upstream_state_to_string (old),
           wb_upstream_state_to_string (state));
  if (self->callbacks.state_changed != NULL)
    self->callbacks.state_changed (old, state, self->user_data);
}

static gboolean
strv_equal0 (char **a, char **b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return g_strv_equal ((const char *const *)a, (const char *const *)b);
}

/* ---- send completions (always from an idle source) ---------------------- */

static gboolean
completion_dispatch_cb (gpointer user_data)
{
  WbUpstream *self = user_data;
  Completion *completion;

  self->completion_id = 0;
  while ((completion = g_queue_pop_head (&self->completions)) != NULL)
    {
      completion->callback (completion->error, completion->user_data);
      g_clear_error (&completion->error);
      g_free (completion);
    }
  return G_SOURCE_REMOVE;
}

/* Takes @error (NULL = success). */
static void
complete_send (WbUpstream *self, WbUpstreamSendCallback callback, gpointer user_data, GError *error)
{
  Completion *completion;

  if (callback == NULL)
    {
      g_clear_error (&error);
      return;
    }
  completion = g_new0 (Completion, 1);
  completion->callback = callback;
  completion->user_data = user_data;
  completion->error = error;
  g_queue_push_tail (&self->completions, completion);
  if (self->completion_id == 0)
    /* Default priority: under steady traffic an idle-priority source could
     * postpone every sender's reply indefinitely. */
    self->completion_id = g_idle_add_full (G_PRIORITY_DEFAULT, completion_dispatch_cb, self, NULL);
}

static void
queued_send_free (QueuedSend *entry)
{
  json_node_unref (entry->message);
  g_free (entry);
}

static void
fail_queued_sends (WbUpstream *self, WbUpstreamError code, const char *reason)
{
  QueuedSend *entry;

  if (self->send_queue.length == 0)
    return;
  g_debug ("failing %u queued sends: %s", self->send_queue.length, reason);
  while ((entry = g_queue_pop_head (&self->send_queue)) != NULL)
    {
      complete_send (self, entry->callback, entry->user_data,
                     g_error_new_literal (WB_UPSTREAM_ERROR, code, reason));
      queued_send_free (entry);
    }
  clear_source (&self->expiry_id);
  notify_status (self);
}

static gboolean expiry_cb (gpointer user_data);

static void
schedule_expiry (WbUpstream *self)
{
  gint64 earliest = G_MAXINT64;
  gint64 now = g_get_monotonic_time ();

  clear_source (&self->expiry_id);
  for (GList *l = self->send_queue.head; l != NULL; l = l->next)
    earliest = MIN (earliest, ((QueuedSend *)l->data)->deadline_us);
  if (earliest == G_MAXINT64)
    return;
  /* Round up so the entry is due when the timer fires. */
  self->expiry_id
      = g_timeout_add ((guint)((MAX (earliest - now, 0) + 999) / 1000), expiry_cb, self);
}

static gboolean
expiry_cb (gpointer user_data)
{
  WbUpstream *self = user_data;
  gint64 now = g_get_monotonic_time ();
  GList *l = self->send_queue.head;
  guint expired = 0;

  self->expiry_id = 0;
  while (l != NULL)
    {
      GList *next = l->next;
      QueuedSend *entry = l->data;

      if (entry->deadline_us <= now)
        {
          g_queue_delete_link (&self->send_queue, l);
          complete_send (self, entry->callback, entry->user_data,
                         g_error_new (WB_UPSTREAM_ERROR, WB_UPSTREAM_ERROR_SEND_FAILED,
                                      "upstream not connected within %u ms",
                                      self->config.send_queue_timeout_ms));
          queued_send_free (entry);
          expired++;
        }
      l = next;
    }
  if (expired > 0)
    {
      g_message ("%u held message(s) expired before upstream was back", expired);
      notify_status (self);
    }
  schedule_expiry (self);
  update_idle_timer (self);
  return G_SOURCE_REMOVE;
}

/* ---- writing ------------------------------------------------------------- */

static void
write_json (WbUpstream *self, JsonNode *node)
{
  g_autofree char *text = NULL;

  g_return_if_fail (is_connected (self));
  text = wb_json_to_string (node, NULL);
  soup_websocket_connection_send_text (self->ws, text);
}

/* The service closes a client that sends too fast (4429, then a minute of
 * silence for everyone here): a burst of subscribes after a reconnect, or
 * many clients' chat at once, must be spread out. Pings bypass this. */
static gboolean
pace_take (WbUpstream *self)
{
  return wb_rate_limit_take (&self->pace, g_get_monotonic_time ());
}

static void pump (WbUpstream *self);

static gboolean
pace_cb (gpointer user_data)
{
  WbUpstream *self = user_data;

  self->pace_id = 0;
  pump (self);
  return G_SOURCE_REMOVE;
}

static void
pace_wait (WbUpstream *self)
{
  gint64 wait_us = wb_rate_limit_get_wait_us (&self->pace, g_get_monotonic_time ());

  if (self->pace_id == 0)
    self->pace_id = g_timeout_add (MAX ((guint)((wait_us + 999) / 1000), 1), pace_cb, self);
}

static void
flush_send_queue (WbUpstream *self)
{
  QueuedSend *entry;

  if (self->send_queue.length == 0)
    return;
  g_debug ("flushing %u held message(s)", self->send_queue.length);
  while (is_connected (self) && self->send_queue.length > 0)
    {
      if (!pace_take (self))
        {
          pace_wait (self);
          break;
        }
      entry = g_queue_pop_head (&self->send_queue);
      write_json (self, entry->message);
      complete_send (self, entry->callback, entry->user_data, NULL);
      queued_send_free (entry);
    }
  schedule_expiry (self);
  notify_status (self);
}

/* ---- subscriptions -------------------------------------------------------- */

/* Tells the server about @stream_id if what it was last told differs.
 * FALSE if the pace allows no message now. */
static gboolean
write_stream_sync (WbUpstream *self, const char *stream_id)
{
  char **wanted = g_hash_table_lookup (self->streams, stream_id);
  char **told = g_hash_table_lookup (self->sent, stream_id);
  g_autoptr (JsonNode) node = NULL;

  if (!is_connected (self) || strv_equal0 (wanted, told))
    return TRUE;
  if (!pace_take (self))
    return FALSE;
  if (wanted != NULL)
    {
      node = wb_message_new_subscribe (stream_id, (const char *const *)wanted);
      g_hash_table_replace (self->sent, g_strdup (stream_id), g_strdupv (wanted));
    }
  else
    {
      node = wb_message_new_unsubscribe (stream_id);
      g_hash_table_remove (self->sent, stream_id);
    }
  write_json (self, node);
  return TRUE;
}

/* Writes what the pace allows: the union first, then (on a connection that
 * proved healthy) the held sends. */
static void
pump (WbUpstream *self)
{
  if (!is_connected (self))
    return;
  while (g_hash_table_size (self->unsynced) > 0)
    {
      GHashTableIter iter;
      gpointer stream_id;

      g_hash_table_iter_init (&iter, self->unsynced);
      g_hash_table_iter_next (&iter, &stream_id, NULL);
      if (!write_stream_sync (self, stream_id))
        {
          pace_wait (self);
          return;
        }
      g_hash_table_iter_remove (&iter);
    }
  if (self->healthy)
    flush_send_queue (self);
}

static void
sync_stream (WbUpstream *self, const char *stream_id)
{
  if (!is_connected (self))
    return;
  g_hash_table_add (self->unsynced, g_strdup (stream_id));
  pump (self);
}

static gint
compare_string_ptrs (gconstpointer a, gconstpointer b, gpointer user_data)
{
  return g_strcmp0 (*(const char *const *)a, *(const char *const *)b);
}

static void
resend_union (WbUpstream *self)
{
  g_autofree const char **ids = NULL;
  guint n = 0;

  g_hash_table_remove_all (self->sent);
  ids = (const char **)g_hash_table_get_keys_as_array (self->streams, &n);
  /* A stable order keeps the wire (and the tests) deterministic. */
  g_qsort_with_data (ids, (gint)n, sizeof (char *), compare_string_ptrs, NULL);
  for (guint i = 0; i < n; i++)
    g_hash_table_add (self->unsynced, g_strdup (ids[i]));
  pump (self);
}

/* ---- heartbeat ------------------------------------------------------------ */

static gboolean
pong_timeout_cb (gpointer user_data)
{
  WbUpstream *self = user_data;

  self->pong_timeout_id = 0;
  g_message ("no pong within %u ms, reconnecting", self->config.pong_timeout_ms);
  set_last_error (self, "pong timeout");
  connection_failed (self, wb_close_policy_for_local_failure (WB_LOCAL_FAILURE_PONG_TIMEOUT),
                     WB_CLOSE_CODE_ABNORMAL, "pong timeout");
  return G_SOURCE_REMOVE;
}

static void
send_ping (WbUpstream *self)
{
  g_autoptr (JsonNode) ping = NULL;

  if (!is_connected (self) || self->ping_outstanding)
    return;
  ping = wb_message_new_ping (g_get_real_time () / 1000);
  write_json (self, ping);
  self->ping_outstanding = TRUE;
  self->ping_sent_us = g_get_monotonic_time ();
  clear_source (&self->pong_timeout_id);
  self->pong_timeout_id = g_timeout_add (self->config.pong_timeout_ms, pong_timeout_cb, self);
}

static gboolean
ping_interval_cb (gpointer user_data)
{
  send_ping (user_data);
  return G_SOURCE_CONTINUE;
}

static void
handle_pong (WbUpstream *self)
{
  if (!self->ping_outstanding)
    {
      g_debug ("unsolicited pong ignored");
      return;
    }
  self->ping_outstanding = FALSE;
  clear_source (&self->pong_timeout_id);
  self->status.rtt_us = (guint64)MAX (g_get_monotonic_time () - self->ping_sent_us, 0);
  if (!self->healthy)
    {
      self->healthy = TRUE;
      /* Only a connection that proved healthy earns a fresh backoff. */
      wb_backoff_reset (&self->backoff);
      g_debug ("connection healthy, rtt %" G_GUINT64_FORMAT " us", self->status.rtt_us);
      pump (self);
      update_idle_timer (self);
    }
  notify_status (self);
}

/* ---- incoming messages ---------------------------------------------------- */

static void
note_invalid (WbUpstream *self, const char *what)
{
  gint64 now = g_get_monotonic_time ();

  self->status.invalid_messages++;
  if (now - self->invalid_window_start_us >= WB_UPSTREAM_INVALID_LOG_WINDOW_US)
    {
      if (self->invalid_suppressed > 0)
        g_warning ("%" G_GUINT64_FORMAT " more invalid upstream message(s) were not logged",
                   self->invalid_suppressed);
      self->invalid_window_start_us = now;
      self->invalid_logged_in_window = 0;
      self->invalid_suppressed = 0;
    }
  /* A hostile server must not be able to flood the journal. */
  if (self->invalid_logged_in_window < WB_UPSTREAM_INVALID_LOG_BURST)
    {
      self->invalid_logged_in_window++;
      g_warning ("ignoring invalid upstream message: %s", what);
    }
  else
    self->invalid_suppressed++;
  notify_status (self);
}

static void
handle_error_message (WbUpstream *self, const WbMessage *message)
{
  g_autofree char *text = g_strdup_printf ("%s: %s", wb_message_get_string (message, "code"),
                                           wb_message_get_string (message, "message"));

  g_message ("upstream error: %s", text);
  set_last_error (self, text);
}

static void
ws_message_cb (SoupWebsocketConnection *ws, gint type, GBytes *bytes, gpointer user_data)
{
  WbUpstream *self = user_data;
  g_autoptr (WbMessage) message = NULL;
  g_autoptr (GError) error = NULL;
  gsize length = 0;
  const char *data;

  if (type != SOUP_WEBSOCKET_DATA_TEXT)
    {
      note_invalid (self, "binary frame");
      return;
    }
  data = g_bytes_get_data (bytes, &length);
  message = wb_message_parse (data, length, WB_DIRECTION_TO_CLIENT, &error);
  if (message == NULL)
    {
      note_invalid (self, error->message);
      return;
    }
  if (message->type == WB_MESSAGE_PONG)
    {
      handle_pong (self);
      return;
    }
  if (message->type == WB_MESSAGE_PING)
    {
      /* The server checks on us: answer at once, outside the pace. */
      g_autoptr (JsonNode) pong = wb_message_new_pong (wb_message_get_int (message, "timestamp"));

      write_json (self, pong);
      return;
    }
  if (message->type == WB_MESSAGE_ERROR)
    handle_error_message (self, message);
  self->status.events_received++;
  if (self->callbacks.message != NULL)
    self->callbacks.message (message, self->user_data);
  notify_status (self);
}

/* ---- connection teardown ------------------------------------------------- */

static void
closing_ws_closed_cb (SoupWebsocketConnection *ws, gpointer user_data)
{
  g_object_unref (ws);
}

static void
stop_heartbeat (WbUpstream *self)
{
  clear_source (&self->ping_id);
  clear_source (&self->pong_timeout_id);
  self->ping_outstanding = FALSE;
}

/* Forgets the current connection; if it is still open, closes it with
 * @code and lets it finish the closing handshake on its own. */
static void
detach_ws (WbUpstream *self, gushort code, const char *reason)
{
  SoupWebsocketConnection *ws = g_steal_pointer (&self->ws);

  stop_heartbeat (self);
  clear_source (&self->idle_id);
  g_hash_table_remove_all (self->sent);
  g_hash_table_remove_all (self->unsynced);
  clear_source (&self->pace_id);
  self->healthy = FALSE;
  self->io_error = FALSE;
  self->status.rtt_us = 0;
  if (ws == NULL)
    return;
  g_signal_handlers_disconnect_by_data (ws, self);
  if (soup_websocket_connection_get_state (ws) == SOUP_WEBSOCKET_STATE_CLOSED)
    {
      g_object_unref (ws);
      return;
    }
  g_signal_connect (ws, "closed", G_CALLBACK (closing_ws_closed_cb), NULL);
  if (soup_websocket_connection_get_state (ws) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close (ws, code, reason);
}

static void
connect_attempt_unref (ConnectAttempt *attempt)
{
  if (!g_atomic_int_dec_and_test (&attempt->ref_count))
    return;
  g_clear_handle_id (&attempt->timeout_id, g_source_remove);
  g_clear_object (&attempt->cancellable);
  g_clear_object (&attempt->msg);
  g_free (attempt);
}

static void
abandon_attempt (WbUpstream *self)
{
  ConnectAttempt *attempt = g_steal_pointer (&self->attempt);

  if (attempt == NULL)
    return;
  attempt->upstream = NULL;
  g_clear_handle_id (&attempt->timeout_id, g_source_remove);
  g_cancellable_cancel (attempt->cancellable);
  connect_attempt_unref (attempt);
}

static gboolean
retry_cb (gpointer user_data)
{
  WbUpstream *self = user_data;

  self->retry_id = 0;
  if (have_demand (self))
    start_connect (self);
  else
    set_state (self, WB_UPSTREAM_IDLE);
  return G_SOURCE_REMOVE;
}

static void
schedule_retry (WbUpstream *self, guint delay_ms, WbUpstreamState state, gboolean is_backoff)
{
  clear_source (&self->retry_id);
  self->retry_is_backoff = is_backoff;
  self->status.next_attempt_monotonic_us = g_get_monotonic_time () + (gint64)delay_ms * 1000;
  g_message ("next upstream attempt in %u ms", delay_ms);
  set_state (self, state);
  /* Armed after the state change so that nobody observing the change can
   * measure a wait shorter than @delay_ms; skipped if a callback already
   * moved on (reconnect, reload). */
  if (self->status.state == state && self->ws == NULL && self->attempt == NULL)
    self->retry_id = g_timeout_add (delay_ms, retry_cb, self);
}

static void
apply_policy (WbUpstream *self, const WbClosePolicy *policy)
{
  guint delay_ms;

  g_debug ("close policy: %s (%s)", wb_close_action_to_string (policy->action),
           policy->description);
  switch (policy->action)
    {
    case WB_CLOSE_ACTION_NO_RETRY_UNTIL_DEMAND:
      set_state (self, policy->state);
      break;
    case WB_CLOSE_ACTION_PARK_UNTIL_RELOAD:
      fail_queued_sends (self, WB_UPSTREAM_ERROR_NOT_CONNECTED, "upstream rejected the API key");
      set_state (self, policy->state);
      update_idle_timer (self);
      break;
    case WB_CLOSE_ACTION_FIXED_WAIT:
      delay_ms = wb_jitter_lengthen_ms (wb_close_policy_fixed_wait_ms (policy, &self->config),
                                        self->rand);
      schedule_retry (self, delay_ms, policy->state, FALSE);
      break;
    case WB_CLOSE_ACTION_BACKOFF:
    default:
      delay_ms = wb_backoff_next_ms (&self->backoff, self->rand);
      schedule_retry (self, delay_ms, policy->state, TRUE);
      break;
    }
}

static void
record_close (WbUpstream *self, guint16 code, const char *reason)
{
  self->status.last_close_code = code;
  g_free (self->last_close_reason);
  self->last_close_reason = g_strdup (reason != NULL ? reason : "");
  self->status.last_close_reason = self->last_close_reason;
}

/* The connection (or the attempt) is gone for a reason @policy covers. */
static void
connection_failed (WbUpstream *self, const WbClosePolicy *policy, guint16 code, const char *reason)
{
  if (self->ws != NULL)
    self->lost_monotonic_us = g_get_monotonic_time ();
  abandon_attempt (self);
  /* A close by the bridge itself: tell the server politely, count it as 1006. */
  detach_ws (self, WB_UPSTREAM_CLOSE_GOING_AWAY, reason);
  if (code != 0)
    record_close (self, code, reason);
  if (code != 0 && reason != NULL && reason[0] != '\0')
    g_message ("upstream %s lost: %s (close code %u: %s)", self->redacted_url, policy->description,
               code, reason);
  else if (code != 0)
    g_message ("upstream %s lost: %s (close code %u)", self->redacted_url, policy->description,
               code);
  else
    g_message ("upstream %s lost: %s (%s)", self->redacted_url, policy->description,
               reason != NULL ? reason : "no reason given");
  apply_policy (self, policy);
  notify_status (self);
}

static void
ws_closed_cb (SoupWebsocketConnection *ws, gpointer user_data)
{
  WbUpstream *self = user_data;
  guint16 code = soup_websocket_connection_get_close_code (ws);
  const char *reason = soup_websocket_connection_get_close_data (ws);
  g_autofree char *reason_copy = g_strdup (reason);
  const WbClosePolicy *policy;

  if (code == 0 && self->io_error)
    {
      policy = wb_close_policy_for_local_failure (WB_LOCAL_FAILURE_WRITE_ERROR);
      code = WB_CLOSE_CODE_ABNORMAL;
    }
  else
    {
      g_autofree char *text = NULL;

      /* No close frame at all is an abnormal closure. */
      if (code == 0)
        code = WB_CLOSE_CODE_ABNORMAL;
      policy = wb_close_policy_for_close_code (code);
      /* What `status` shows: why the server closed (e.g. 4401 after a bad key). */
      text = reason_copy != NULL && reason_copy[0] != '\0'
                 ? g_strdup_printf ("closed by the server with %u: %s", code, reason_copy)
                 : g_strdup_printf ("closed with %u (%s)", code, policy->description);
      set_last_error (self, text);
    }
  connection_failed (self, policy, code, reason_copy);
}

static void
ws_error_cb (SoupWebsocketConnection *ws, GError *error, gpointer user_data)
{
  WbUpstream *self = user_data;

  g_message ("upstream connection error: %s", error->message);
  self->io_error = TRUE;
  set_last_error (self, error->message);
}

/* ---- idle close ----------------------------------------------------------- */

static gboolean
idle_timeout_cb (gpointer user_data)
{
  WbUpstream *self = user_data;

  self->idle_id = 0;
  g_message ("no subscriptions for %u ms, closing upstream", self->config.idle_timeout_ms);
  detach_ws (self, WB_UPSTREAM_CLOSE_NORMAL, "idle");
  /* Nobody was subscribed, so nobody has a gap to be told about. */
  self->lost_monotonic_us = 0;
  record_close (self, WB_UPSTREAM_CLOSE_NORMAL, "idle");
  set_state (self, WB_UPSTREAM_IDLE);
  notify_status (self);
  return G_SOURCE_REMOVE;
}

static void
update_idle_timer (WbUpstream *self)
{
  gboolean want = self->ws != NULL && !have_demand (self);

  if (!want)
    clear_source (&self->idle_id);
  else if (self->idle_id == 0)
    self->idle_id = g_timeout_add (self->config.idle_timeout_ms, idle_timeout_cb, self);
}

/* ---- connecting ----------------------------------------------------------- */

static gboolean
accept_certificate_cb (SoupMessage *msg, GTlsCertificate *certificate, GTlsCertificateFlags errors,
                       gpointer user_data)
{
  GTlsDatabase *database = user_data;
  g_autoptr (GSocketConnectable) identity = NULL;
  g_autoptr (GError) error = NULL;
  GUri *uri = soup_message_get_uri (msg);
  GTlsCertificateFlags flags;

  /* System trust failed; the configured CA is the only other anchor. */
  identity = g_network_address_new (g_uri_get_host (uri), (guint16)g_uri_get_port (uri));
  flags = g_tls_database_verify_chain (database, certificate,
                                       G_TLS_DATABASE_PURPOSE_AUTHENTICATE_SERVER, identity, NULL,
                                       G_TLS_DATABASE_VERIFY_NONE, NULL, &error);
  if (error != NULL)
    g_message ("certificate check against CAFile failed: %s", error->message);
  else if (flags != 0)
    g_message ("upstream certificate not trusted by CAFile (flags 0x%x)", flags);
  return error == NULL && flags == 0;
}

static WbLocalFailure
classify_error (const GError *error)
{
  if (error->domain == G_RESOLVER_ERROR)
    return WB_LOCAL_FAILURE_DNS;
  if (error->domain == G_TLS_ERROR)
    return WB_LOCAL_FAILURE_TLS;
  if (error->domain == SOUP_WEBSOCKET_ERROR)
    return WB_LOCAL_FAILURE_PROTOCOL;
  return WB_LOCAL_FAILURE_NETWORK;
}

static void
on_connected (WbUpstream *self, SoupWebsocketConnection *ws)
{
  gboolean reconnect = self->was_connected;
  gint64 gap_ms = 0;

  self->ws = ws;
  self->healthy = FALSE;
  /* The round trip of this connection; 0 until its first pong. */
  self->status.rtt_us = 0;
  self->io_error = FALSE;
  soup_websocket_connection_set_max_incoming_payload_size (ws,
                                                           WB_UPSTREAM_MAX_INCOMING_PAYLOAD_BYTES);
  /* Our own app-level ping is the heartbeat. */
  soup_websocket_connection_set_keepalive_interval (ws, 0);
  g_signal_connect (ws, "message", G_CALLBACK (ws_message_cb), self);
  g_signal_connect (ws, "closed", G_CALLBACK (ws_closed_cb), self);
  g_signal_connect (ws, "error", G_CALLBACK (ws_error_cb), self);

  /* Ping first, then the whole union, before anything else. */
  send_ping (self);
  resend_union (self);
  self->ping_id = g_timeout_add (self->config.ping_interval_ms, ping_interval_cb, self);

  if (reconnect)
    self->status.reconnects++;
  if (reconnect && self->lost_monotonic_us != 0)
    gap_ms = (g_get_monotonic_time () - self->lost_monotonic_us) / 1000;
  self->was_connected = TRUE;
  g_message ("connected to %s", self->redacted_url);
  update_idle_timer (self);
  set_state (self, WB_UPSTREAM_CONNECTED);
  if (reconnect && self->lost_monotonic_us != 0 && self->ws == ws
      && self->callbacks.resynced != NULL)
    self->callbacks.resynced (gap_ms, self->user_data);
  self->lost_monotonic_us = 0;
  notify_status (self);
}

static void
connect_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ConnectAttempt *attempt = user_data;
  WbUpstream *self = attempt->upstream;
  g_autoptr (GError) error = NULL;
  SoupWebsocketConnection *ws;
  guint status;

  ws = soup_session_websocket_connect_finish (SOUP_SESSION (source), result, &error);
  if (self == NULL)
    {
      /* Abandoned (reconnect, reload, free) while the handshake ran. */
      if (ws != NULL)
        {
          g_signal_connect (ws, "closed", G_CALLBACK (closing_ws_closed_cb), NULL);
          soup_websocket_connection_close (ws, WB_UPSTREAM_CLOSE_NORMAL, NULL);
        }
      connect_attempt_unref (attempt);
      return;
    }

  g_assert (self->attempt == attempt);
  self->attempt = NULL;
  connect_attempt_unref (attempt); /* self->attempt's; the operation's ref remains */
  g_clear_handle_id (&attempt->timeout_id, g_source_remove);
  status = soup_message_get_status (attempt->msg);

  if (ws != NULL)
    {
      on_connected (self, ws);
    }
  else if (attempt->timed_out)
    {
      set_last_error (self, "connect timeout");
      connection_failed (self, wb_close_policy_for_local_failure (WB_LOCAL_FAILURE_CONNECT_TIMEOUT),
                         0, NULL);
    }
  else if (status != SOUP_STATUS_NONE && status != SOUP_STATUS_SWITCHING_PROTOCOLS)
    {
      g_autofree char *text = g_strdup_printf ("handshake failed: HTTP %u %s", status,
                                               soup_message_get_reason_phrase (attempt->msg) != NULL
                                                   ? soup_message_get_reason_phrase (attempt->msg)
                                                   : "");

      set_last_error (self, text);
      connection_failed (self, wb_close_policy_for_http_status (status), 0, text);
    }
  else
    {
      WbLocalFailure kind = classify_error (error);

      set_last_error (self, error->message);
      connection_failed (self, wb_close_policy_for_local_failure (kind), 0, error->message);
    }
  connect_attempt_unref (attempt);
}

static guint
connect_timeout_ms (WbUpstream *self)
{
  return self->config.ping_interval_ms + self->config.pong_timeout_ms;
}

static gboolean
connect_timeout_cb (gpointer user_data)
{
  ConnectAttempt *attempt = user_data;

  attempt->timeout_id = 0;
  attempt->timed_out = TRUE;
  g_cancellable_cancel (attempt->cancellable);
  return G_SOURCE_REMOVE;
}

/* NULL unless @url is a ws:// or wss:// URL with a host: libsoup treats
 * anything else as a programming error. */
static SoupMessage *
new_handshake_message (const char *url)
{
  g_autoptr (GUri) uri = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, NULL);
  const char *scheme;

  if (uri == NULL)
    return NULL;
  scheme = g_uri_get_scheme (uri);
  if ((g_ascii_strcasecmp (scheme, "ws") != 0 && g_ascii_strcasecmp (scheme, "wss") != 0)
      || g_uri_get_host (uri) == NULL || g_uri_get_host (uri)[0] == '\0')
    return NULL;
  return soup_message_new_from_uri (SOUP_METHOD_GET, uri);
}

static void
start_connect (WbUpstream *self)
{
  g_autoptr (SoupMessage) msg = NULL;
  ConnectAttempt *attempt;

  clear_source (&self->retry_id);
  abandon_attempt (self);
  detach_ws (self, WB_UPSTREAM_CLOSE_NORMAL, "reconnect");

  msg = new_handshake_message (self->full_url);
  if (msg == NULL)
    {
      set_last_error (self, "invalid upstream URL");
      g_warning ("invalid upstream URL %s", self->redacted_url);
      /* Still an attempt, so observers see the same cycle as for any failure. */
      set_state (self, WB_UPSTREAM_CONNECTING);
      apply_policy (self, wb_close_policy_for_local_failure (WB_LOCAL_FAILURE_INVALID_URL));
      return;
    }
  if (self->extra_ca != NULL)
    g_signal_connect_object (msg, "accept-certificate", G_CALLBACK (accept_certificate_cb),
                             self->extra_ca, 0);

  attempt = g_new0 (ConnectAttempt, 1);
  attempt->ref_count = 2; /* self->attempt and the async operation */
  attempt->upstream = self;
  attempt->cancellable = g_cancellable_new ();
  attempt->msg = g_object_ref (msg);
  /* A handshake that hangs (black-holed SYN, a server that never answers)
   * gets one heartbeat cycle, then counts as a network failure. */
  attempt->timeout_id = g_timeout_add (connect_timeout_ms (self), connect_timeout_cb, attempt);
  self->attempt = attempt;

  g_debug ("connecting to %s", self->redacted_url);
  set_state (self, WB_UPSTREAM_CONNECTING);
  soup_session_websocket_connect_async (self->session, msg, NULL, NULL, G_PRIORITY_DEFAULT,
                                        attempt->cancellable, connect_cb, attempt);
}

/* Demand appeared: connect if nothing is running or planned. */
static void
demand_added (WbUpstream *self)
{
  update_idle_timer (self);
  if (self->status.state == WB_UPSTREAM_IDLE || self->status.state == WB_UPSTREAM_CLOSED)
    start_connect (self);
}

void
wb_upstream_demand (WbUpstream *self)
{
  g_return_if_fail (self != NULL);
  if (have_demand (self))
    demand_added (self);
}

/* ---- configuration -------------------------------------------------------- */

static void
clear_config_strings (WbConfig *config)
{
  g_clear_pointer (&config->url, g_free);
  g_clear_pointer (&config->ca_file, g_free);
}

static void
apply_config (WbUpstream *self, const WbConfig *config, const char *api_key)
{
  g_autoptr (GError) error = NULL;

  clear_config_strings (&self->config);
  self->config = *config;
  self->config.url = g_strdup (config->url);
  self->config.ca_file = g_strdup (config->ca_file);
  /* Not ours to keep. */
  self->config.api_key_file = NULL;
  self->config.socket_path = NULL;
  self->config.send_group = NULL;
  self->config.loaded_from = NULL;
  /* Zero would make timers spin or queues useless. */
  self->config.ping_interval_ms = MAX (self->config.ping_interval_ms, 1);
  self->config.pong_timeout_ms = MAX (self->config.pong_timeout_ms, 1);
  self->config.messages_per_second = MAX (self->config.messages_per_second, 1);
  if (self->pace.period_us != 0)
    wb_rate_limit_set_rate (&self->pace, self->config.messages_per_second, g_get_monotonic_time ());

  if (self->api_key != NULL)
    memset (self->api_key, 0, strlen (self->api_key));
  g_free (self->api_key);
  self->api_key = g_strdup (api_key != NULL ? api_key : "");
  if (self->full_url != NULL)
    memset (self->full_url, 0, strlen (self->full_url));
  g_free (self->full_url);
  self->full_url = wb_config_build_upstream_url (&self->config, self->api_key);
  g_free (self->redacted_url);
  self->redacted_url = wb_config_redact_url (self->full_url);
  self->status.redacted_url = self->redacted_url;

  g_clear_object (&self->extra_ca);
  if (self->config.ca_file != NULL && self->config.ca_file[0] != '\0')
    {
      self->extra_ca = g_tls_file_database_new (self->config.ca_file, &error);
      if (self->extra_ca == NULL)
        {
          g_warning ("cannot load CAFile %s: %s", self->config.ca_file, error->message);
          set_last_error (self, error->message);
        }
    }
}

/* ---- public API ------------------------------------------------------------ */

WbUpstream *
wb_upstream_new (const WbConfig *config, const char *api_key, const WbUpstreamCallbacks *callbacks,
                 gpointer user_data)
{
  WbUpstream *self;

  g_return_val_if_fail (config != NULL && config->url != NULL, NULL);
  g_return_val_if_fail (callbacks != NULL, NULL);

  self = g_new0 (WbUpstream, 1);
  self->callbacks = *callbacks;
  self->user_data = user_data;
  self->streams
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_strfreev);
  self->sent = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_strfreev);
  self->unsynced = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  wb_rate_limit_init_per_second (&self->pace, self->config.messages_per_second,
                                 g_get_monotonic_time ());
  g_queue_init (&self->send_queue);
  g_queue_init (&self->completions);
  self->rand = g_rand_new ();
  self->last_close_reason = g_strdup ("");
  self->last_error = g_strdup ("");
  self->status.state = WB_UPSTREAM_IDLE;
  self->status.state_since_realtime_us = g_get_real_time ();
  self->status.last_close_reason = self->last_close_reason;
  self->status.last_error = self->last_error;
  apply_config (self, config, api_key);
  wb_backoff_init (&self->backoff, self->config.backoff_initial_ms, self->config.backoff_max_ms);
  self->session = soup_session_new_with_options ("user-agent", "wave-bridge/" WB_VERSION, NULL);
  return self;
}

void
wb_upstream_free (WbUpstream *self)
{
  if (self == NULL)
    return;

  abandon_attempt (self);
  detach_ws (self, WB_UPSTREAM_CLOSE_NORMAL, "shutting down");
  clear_source (&self->retry_id);
  clear_source (&self->expiry_id);
  fail_queued_sends (self, WB_UPSTREAM_ERROR_SEND_FAILED, "upstream shut down");
  /* Every send gets its callback, even those decided a moment ago. */
  clear_source (&self->completion_id);
  completion_dispatch_cb (self);

  soup_session_abort (self->session);
  g_clear_object (&self->session);
  g_clear_object (&self->extra_ca);
  g_hash_table_unref (self->streams);
  g_hash_table_unref (self->sent);
  g_hash_table_unref (self->unsynced);
  g_rand_free (self->rand);
  clear_config_strings (&self->config);
  if (self->api_key != NULL)
    memset (self->api_key, 0, strlen (self->api_key));
  g_free (self->api_key);
  if (self->full_url != NULL)
    memset (self->full_url, 0, strlen (self->full_url));
  g_free (self->full_url);
  g_free (self->redacted_url);
  g_free (self->last_close_reason);
  g_free (self->last_error);
  g_free (self);
}

void
wb_upstream_set_stream_events (WbUpstream *self, const char *stream_id, const char *const *events)
{
  char **old;
  gboolean adds;

  g_return_if_fail (self != NULL && stream_id != NULL);

  old = g_hash_table_lookup (self->streams, stream_id);
  if (events == NULL || events[0] == NULL)
    {
      if (old == NULL)
        return;
      g_hash_table_remove (self->streams, stream_id);
      adds = FALSE;
    }
  else
    {
      if (old != NULL && g_strv_equal ((const char *const *)old, events))
        return;
      g_hash_table_replace (self->streams, g_strdup (stream_id), g_strdupv ((char **)events));
      adds = TRUE;
    }
  sync_stream (self, stream_id);
  if (adds)
    demand_added (self);
  else
    update_idle_timer (self);
}

void
wb_upstream_send (WbUpstream *self, JsonNode *message, WbUpstreamSendCallback callback,
                  gpointer user_data)
{
  QueuedSend *entry;

  g_return_if_fail (self != NULL && message != NULL);

  if (self->status.state == WB_UPSTREAM_AUTH_FAILED)
    {
      complete_send (self, callback, user_data,
                     g_error_new_literal (WB_UPSTREAM_ERROR, WB_UPSTREAM_ERROR_NOT_CONNECTED,
                                          "upstream rejected the API key"));
      return;
    }
  if (self->send_queue.length >= self->config.send_queue_size)
    {
      complete_send (self, callback, user_data,
                     g_error_new (WB_UPSTREAM_ERROR, WB_UPSTREAM_ERROR_NOT_CONNECTED,
                                  "%u message(s) already waiting to go upstream",
                                  self->send_queue.length));
      return;
    }
  entry = g_new0 (QueuedSend, 1);
  entry->message = json_node_ref (message);
  entry->callback = callback;
  entry->user_data = user_data;
  entry->deadline_us = g_get_monotonic_time () + (gint64)self->config.send_queue_timeout_ms * 1000;
  g_queue_push_tail (&self->send_queue, entry);
  if (self->expiry_id == 0)
    schedule_expiry (self);
  notify_status (self);
  demand_added (self);
  /* Every send takes the queue: the pump writes it now on a healthy
   * connection with a token to spare, later otherwise, always in order. */
  if (self->healthy)
    pump (self);
}

void
wb_upstream_reconnect (WbUpstream *self)
{
  g_return_if_fail (self != NULL);

  g_message ("reconnect requested");
  if (self->ws != NULL)
    self->lost_monotonic_us = g_get_monotonic_time ();
  start_connect (self);
}

void
wb_upstream_reload (WbUpstream *self, const WbConfig *config, const char *api_key)
{
  g_autofree char *old_url = NULL;
  g_autofree char *old_ca = NULL;
  gboolean changed;

  g_return_if_fail (self != NULL && config != NULL && config->url != NULL);

  old_url = g_steal_pointer (&self->full_url);
  old_ca = g_strdup (self->config.ca_file);
  apply_config (self, config, api_key);
  changed
      = g_strcmp0 (old_url, self->full_url) != 0 || g_strcmp0 (old_ca, self->config.ca_file) != 0;
  memset (old_url, 0, strlen (old_url));
  if (changed)
    wb_backoff_init (&self->backoff, self->config.backoff_initial_ms, self->config.backoff_max_ms);
  else
    {
      self->backoff.initial_ms = MAX (self->config.backoff_initial_ms, 1);
      self->backoff.max_ms = MAX (self->config.backoff_max_ms, self->backoff.initial_ms);
    }
  g_message ("configuration reloaded%s", changed ? ", upstream changed" : "");

  if (self->ws != NULL || self->attempt != NULL)
    {
      if (changed)
        wb_upstream_reconnect (self);
      return;
    }
  switch (self->status.state)
    {
    case WB_UPSTREAM_AUTH_FAILED:
    case WB_UPSTREAM_CLOSED:
      /* A reload is the demand these states wait for. */
      if (have_demand (self))
        start_connect (self);
      else
        set_state (self, WB_UPSTREAM_IDLE);
      break;
    case WB_UPSTREAM_WAITING:
    case WB_UPSTREAM_RATE_LIMITED:
      if (changed)
        {
          clear_source (&self->retry_id);
          retry_cb (self);
        }
      break;
    case WB_UPSTREAM_IDLE:
    case WB_UPSTREAM_CONNECTING:
    case WB_UPSTREAM_CONNECTED:
    default:
      break;
    }
  notify_status (self);
}

void
wb_upstream_network_changed (WbUpstream *self)
{
  g_return_if_fail (self != NULL);

  if (self->status.state == WB_UPSTREAM_WAITING && self->retry_is_backoff && self->retry_id != 0)
    {
      g_message ("network changed, skipping the remaining backoff");
      clear_source (&self->retry_id);
      retry_cb (self);
    }
  else if (self->healthy)
    {
      /* The old route may be gone: find out now rather than at the next ping. */
      send_ping (self);
    }
}

const WbUpstreamStatus *
wb_upstream_get_status (WbUpstream *self)
{
  g_return_val_if_fail (self != NULL, NULL);

  self->status.send_queue_length = self->send_queue.length;
  return &self->status;
}
