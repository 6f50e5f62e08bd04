/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-upstream"

#include "upstream.h"

#include <libsoup/soup.h>
#include <string.h>

#include "backoff.h"
#include "close-policy.h"
#include "text.h"
#include "upstream-outbox.h"
#include "wb-build-config.h"

/*
 * The connection state machine. set_state() is the one place the state
 * changes; what must hold in each state:
 *
 *   state          ws     attempt  retry_id  ping_id, pong_timeout_id  idle_id
 *   idle           -      -        -         -                         -
 *   connecting     -      yes      -         -                         -
 *   connected      yes    -        -         yes (pong: while pinging) while no demand
 *   waiting        -      -        yes       -                         -
 *   rate-limited   -      -        yes       -                         -
 *   auth-failed    -      -        -         -                         -
 *   closed         -      -        -         -                         -
 *
 * Flags: `healthy` (a pong arrived on this connection: held sends may go,
 * the backoff was reset), `io_error` (libsoup reported one: a close
 * without a code is a write error) and `too_big` (the server sent a frame
 * over the limit; the bridge answered 1009) describe the current connection
 * and are cleared with it; `retry_is_backoff` says whether the planned
 * retry may be cut short by a network change (a server's fixed wait may
 * not). Which streams lost their coverage, and since when, is the outbox's
 * to track: it reports each one back (a resync) once it is re-sent on a
 * live connection.
 *
 * Transitions (the close table's actions are close-policy.c's):
 *   idle, closed   → connecting   local demand (stream, send), reload
 *   connecting     → connected    handshake done
 *   connecting     → waiting, rate-limited, auth-failed   handshake failed
 *   connected      → waiting, rate-limited, auth-failed, closed   connection lost
 *   connected      → idle         no demand for IdleTimeout
 *   waiting, rate-limited → connecting   retry due (or network back, or reload
 *                                        with a new URL or key)
 *   auth-failed    → connecting   reload
 *   any            → connecting   Reconnect()
 *
 * Callbacks are never made from inside a call into this module: state
 * changes, resyncs, status changes and send outcomes are queued as notes
 * and delivered from the notes source, in order. Server frames are
 * handled straight from libsoup's "message" while no note waits and the
 * iteration's share (frames and notes, and frame bytes) is not spent; past that they join the same
 * queue (parsed there, a bounded share per iteration), so none overtakes a state change and an
 * upstream flood cannot freeze the loop.
 */

/* WAVE events are small JSON objects; anything this big is a broken or
 * hostile server, and libsoup's 128 KiB default is too tight for chat bursts. */
#define WB_UPSTREAM_MAX_INCOMING_PAYLOAD_BYTES (1024 * 1024)
#define WB_UPSTREAM_TOO_BIG_TEXT "server sent a frame over 1 MiB"
#define WB_UPSTREAM_TOO_BIG_REASON "frame too big"
/* Upstream frames (and notes) handled per main-loop iteration, and the most
 * bytes of frames waiting: a flood cannot freeze the loop or grow memory. */
#define WB_UPSTREAM_NOTES_PER_ITERATION 128
/* ...and the most bytes of frames parsed per iteration (at least one frame
 * is): 128 frames of 1 MiB, numbers and nesting a hostile server chose,
 * took seconds of one iteration (about 50 ms each), every local client
 * waiting. WAVE's events are a few hundred bytes: 128 of them stay far
 * under it. */
#define WB_UPSTREAM_FRAME_BYTES_PER_ITERATION (256 * 1024)
#define WB_UPSTREAM_MAX_QUEUED_FRAME_BYTES (16 * 1024 * 1024)
/* Invalid server messages, and its error messages, are logged at most this
 * often per window, each kind. */
#define WB_UPSTREAM_INVALID_LOG_BURST 5
#define WB_UPSTREAM_INVALID_LOG_WINDOW_US (60 * G_USEC_PER_SEC)
/* What stands in for the API key where the server sends it back (an error
 * quoting the key it refused, say): clients, local WebSocket apps included,
 * never get it (docs/upstream.md). Keys shorter than this are not looked
 * for: they would match ordinary text. */
#define WB_UPSTREAM_KEY_STAND_IN "(api key removed)"
#define WB_UPSTREAM_KEY_MIN_SEARCH_BYTES 8
/* How long an idle HTTP connection (a refused handshake's) may stay open. */
#define WB_UPSTREAM_IDLE_HTTP_S 1
/* Close codes the bridge sends itself. */
#define WB_UPSTREAM_CLOSE_NORMAL 1000
#define WB_UPSTREAM_CLOSE_GOING_AWAY 1001

typedef enum
{
  NOTE_FRAME,
  NOTE_DROPPED,
  NOTE_STATE,
  NOTE_RESYNCED,
  NOTE_SEND_DONE,
} NoteKind;

/* A callback owed to the owner, delivered from the main loop. */
typedef struct
{
  NoteKind kind;
  GBytes *frame;                /* NOTE_FRAME: a text frame as received, owned */
  guint connection;             /* NOTE_FRAME: which connection it came on */
  guint dropped;                /* NOTE_DROPPED: frames not taken in */
  WbUpstreamStateChange change; /* NOTE_STATE */
  char *stream_id;              /* NOTE_RESYNCED */
  gint64 gap_ms;
  WbSendCallback send_callback; /* NOTE_SEND_DONE */
  gpointer send_data;
  GError *send_error; /* owned; NULL: written */
} Note;

/* Lines a server's messages may put in the log per window (see log_allow). */
typedef struct
{
  gint64 window_start_us;
  guint logged_in_window;
  guint64 suppressed;
} LogBudget;

/* Delivers the notes from the main loop. A source of its own that stays
 * attached: an idle source added per batch costs an allocation and a
 * loop iteration of its own for every upstream event at light load. */
typedef struct
{
  GSource source;
  WbUpstream *upstream;
} NotesSource;

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
  /* Borrowed (see wb_upstream_new); what is derived from it is ours. */
  const WbConfig *config;
  char *api_key;
  char *full_url;     /* with the key: wiped when replaced */
  char *redacted_url; /* for logs and status */
  char *ca_file;      /* the file extra_ca was loaded from */
  GTlsDatabase *extra_ca;

  WbUpstreamCallbacks callbacks;
  gpointer user_data;
  GQueue notes; /* Note */
  GSource *notes_source;
  guint handled_in_iteration; /* frames and notes, against WB_UPSTREAM_NOTES_PER_ITERATION */
  gsize parsed_in_iteration;  /* frame bytes, against WB_UPSTREAM_FRAME_BYTES_PER_ITERATION */
  guint64 key_echoes;         /* frames that carried the API key, logged once */
  gsize frame_bytes;          /* of the queued frames: bounded */
  guint connection;           /* counts connections: frames know their own */
  gboolean status_dirty;      /* a status_changed is owed */

  SoupSession *session;
  ConnectAttempt *attempt;
  SoupWebsocketConnection *ws;
  gboolean healthy;
  gboolean io_error;
  gboolean too_big;
  WbOutbox *outbox;

  WbBackoff backoff;
  GRand *rand;
  gboolean retry_is_backoff;
  gint64 next_attempt_monotonic_us;

  gboolean ping_outstanding;
  gint64 ping_sent_us;

  gboolean was_connected;

  guint retry_id;
  guint ping_id;
  guint pong_timeout_id;
  guint idle_id;

  LogBudget invalid_log;
  LogBudget error_log;

  char *last_close_reason;
  char *last_error;
  WbLinkStatus status;
};

static void start_connect (WbUpstream *self);
static void handle_frame (WbUpstream *self, GBytes *frame, gboolean current);
static void connection_failed (WbUpstream *self, const WbClosePolicy *policy, guint16 code,
                               const char *reason);
static void update_idle_timer (WbUpstream *self);

/* ---- notes: callbacks, always from the main loop ------------------------- */

static void
note_free (Note *note)
{
  g_clear_pointer (&note->frame, g_bytes_unref);
  g_free (note->stream_id);
  g_clear_error (&note->send_error);
  g_free (note);
}

static void
note_deliver (WbUpstream *self, Note *note)
{
  switch (note->kind)
    {
    case NOTE_FRAME:
      self->frame_bytes -= g_bytes_get_size (note->frame);
      self->parsed_in_iteration += g_bytes_get_size (note->frame);
      handle_frame (self, note->frame, note->connection == self->connection);
      break;
    case NOTE_DROPPED:
      if (self->callbacks.frames_dropped != NULL)
        self->callbacks.frames_dropped (note->dropped, self->user_data);
      break;
    case NOTE_STATE:
      if (self->callbacks.state_changed != NULL)
        self->callbacks.state_changed (&note->change, self->user_data);
      break;
    case NOTE_RESYNCED:
      if (self->callbacks.resynced != NULL)
        self->callbacks.resynced (note->stream_id, note->gap_ms, self->user_data);
      break;
    case NOTE_SEND_DONE:
      note->send_callback (note->send_error, note->send_data);
      break;
    }
}

/* Frames are still parsed in this iteration: fewer than its share of frames
 * and notes, and of frame bytes. */
static gboolean
iteration_share_left (WbUpstream *self)
{
  return self->handled_in_iteration < WB_UPSTREAM_NOTES_PER_ITERATION
         && self->parsed_in_iteration < WB_UPSTREAM_FRAME_BYTES_PER_ITERATION;
}

/* Called once per loop iteration, before the poll: a new share begins. */
static gboolean
notes_source_prepare (GSource *source, gint *out_timeout)
{
  WbUpstream *self = ((NotesSource *)source)->upstream;

  self->handled_in_iteration = 0;
  self->parsed_in_iteration = 0;
  *out_timeout = -1;
  if (self->notes.length == 0 && !self->status_dirty)
    return FALSE;
  *out_timeout = 0;
  return TRUE;
}

static gboolean
notes_source_check (GSource *source)
{
  WbUpstream *self = ((NotesSource *)source)->upstream;

  return self->notes.length > 0 || self->status_dirty;
}

static gboolean
notes_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  WbUpstream *self = ((NotesSource *)source)->upstream;
  Note *note;

  /* A bounded share per iteration, frames handled straight from libsoup
   * included: under an upstream flood the other sources (local clients'
   * requests, the bus) get their turn between shares. */
  while (iteration_share_left (self) && (note = g_queue_pop_head (&self->notes)) != NULL)
    {
      self->handled_in_iteration++;
      note_deliver (self, note);
      note_free (note);
    }
  if (self->notes.length == 0 && self->status_dirty)
    {
      self->status_dirty = FALSE;
      if (self->callbacks.status_changed != NULL)
        self->callbacks.status_changed (self->user_data);
    }
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs notes_source_funcs = {
  .prepare = notes_source_prepare,
  .check = notes_source_check,
  .dispatch = notes_source_dispatch,
};

static GSource *
notes_source_new (WbUpstream *self)
{
  GSource *source = g_source_new (&notes_source_funcs, sizeof (NotesSource));

  ((NotesSource *)source)->upstream = self;
  g_source_set_static_name (source, "wave-bridge upstream notes");
  /* Default priority: under steady traffic an idle-priority source could
   * postpone every sender's reply indefinitely. Nothing to arm when a note
   * is queued: prepare() looks at the queue every iteration. */
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_attach (source, NULL);
  return source;
}

static Note *
note_push (WbUpstream *self, NoteKind kind)
{
  Note *note = g_new0 (Note, 1);

  note->kind = kind;
  g_queue_push_tail (&self->notes, note);
  return note;
}

static void
notify_status (WbUpstream *self)
{
  self->status_dirty = TRUE;
}

static void
outbox_send_done (WbSendCallback callback, gpointer callback_data, GError *error,
                  gpointer user_data)
{
  Note *note = note_push (user_data, NOTE_SEND_DONE);

  note->send_callback = callback;
  note->send_data = callback_data;
  note->send_error = error;
}

/* ---- small helpers ------------------------------------------------------ */

static void
clear_source (guint *id)
{
  g_clear_handle_id (id, g_source_remove);
}

static gboolean
have_demand (WbUpstream *self)
{
  return wb_outbox_get_n_streams (self->outbox) > 0 || wb_outbox_get_n_held (self->outbox) > 0;
}

static gboolean
is_connected (WbUpstream *self)
{
  return self->ws != NULL
         && soup_websocket_connection_get_state (self->ws) == SOUP_WEBSOCKET_STATE_OPEN;
}

/* Server text (reason phrases, close reasons, error messages) and what the
 * network stack says go to status, D-Bus, sd_notify and logs: valid UTF-8,
 * no control characters, bounded (text.h), here and in record_close(). */
static void
set_last_error (WbUpstream *self, const char *text)
{
  g_free (self->last_error);
  self->last_error = wb_text_sanitize (text, -1, WB_TEXT_MAX_BYTES);
  self->status.last_error = self->last_error;
}

/* The one place the state changes; see the table at the top. */
static void
set_state (WbUpstream *self, WbLinkState state)
{
  WbLinkState old = self->status.state;
  Note *note;

  if (state != WB_LINK_WAITING && state != WB_LINK_RATE_LIMITED)
    {
      self->next_attempt_monotonic_us = 0;
      self->status.next_attempt_us = 0;
    }
  if (state != WB_LINK_CONNECTED)
    self->status.connected_since_us = 0;
  if (old == state)
    return;

  self->status.state = state;
  self->status.state_since_us = g_get_real_time ();
  if (state == WB_LINK_CONNECTED)
    self->status.connected_since_us = self->status.state_since_us;
  g_debug ("state %s -> %s", wb_link_state_to_string (old), wb_link_state_to_string (state));
  note = note_push (self, NOTE_STATE);
  note->change = (WbUpstreamStateChange){
    .old_state = old,
    .new_state = state,
    .at_us = g_get_monotonic_time (),
    .next_attempt_us = self->next_attempt_monotonic_us,
    .last_close_code = self->status.last_close_code,
  };
  notify_status (self);
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

/* Written when libsoup took it without the connection failing: a write
 * error shows at once as its "error" signal (io_error) or a closed state. */
static gboolean
outbox_write (JsonNode *message, gpointer user_data)
{
  WbUpstream *self = user_data;

  /* Never into a closing WebSocket: not written, so not "sent". */
  if (!is_connected (self))
    return FALSE;
  write_json (self, message);
  return is_connected (self) && !self->io_error;
}

static void
outbox_held_changed (gpointer user_data)
{
  WbUpstream *self = user_data;

  update_idle_timer (self);
  notify_status (self);
}

/* A stream's subscription is back on a live connection: its subscribers
 * learn how long it was not covered (bridge.resync). */
static void
outbox_stream_covered (const char *stream_id, gint64 since_us, gpointer user_data)
{
  Note *note = note_push (user_data, NOTE_RESYNCED);

  note->stream_id = g_strdup (stream_id);
  note->gap_ms = MAX (g_get_monotonic_time () - since_us, 0) / 1000;
}

static const WbOutboxCallbacks outbox_callbacks = {
  .write = outbox_write,
  .send_done = outbox_send_done,
  .held_changed = outbox_held_changed,
  .stream_covered = outbox_stream_covered,
};

static WbOutboxLimits
outbox_limits (const WbConfig *config)
{
  return (WbOutboxLimits){
    .messages_per_second = config->messages_per_second,
    .max_held = config->send_queue_size,
    .held_timeout_ms = config->send_queue_timeout_ms,
  };
}

/* ---- heartbeat ------------------------------------------------------------ */

static gboolean
pong_timeout_cb (gpointer user_data)
{
  WbUpstream *self = user_data;

  self->pong_timeout_id = 0;
  g_message ("no pong within %u ms, reconnecting", self->config->pong_timeout_ms);
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
  self->pong_timeout_id
      = g_timeout_add (MAX (self->config->pong_timeout_ms, 1), pong_timeout_cb, self);
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
      wb_outbox_connection_healthy (self->outbox);
      update_idle_timer (self);
    }
  notify_status (self);
}

/* ---- incoming messages ---------------------------------------------------- */

/* A hostile server must not be able to flood the journal: at most
 * WB_UPSTREAM_INVALID_LOG_BURST lines of one kind per window, the rest
 * counted and their number logged when the next window opens. */
static gboolean
log_allow (LogBudget *budget, const char *what)
{
  gint64 now = g_get_monotonic_time ();

  if (now - budget->window_start_us >= WB_UPSTREAM_INVALID_LOG_WINDOW_US)
    {
      if (budget->suppressed > 0)
        g_warning ("%" G_GUINT64_FORMAT " more %s were not logged", budget->suppressed, what);
      budget->window_start_us = now;
      budget->logged_in_window = 0;
      budget->suppressed = 0;
    }
  if (budget->logged_in_window < WB_UPSTREAM_INVALID_LOG_BURST)
    {
      budget->logged_in_window++;
      return TRUE;
    }
  budget->suppressed++;
  return FALSE;
}

static void
note_invalid (WbUpstream *self, const char *what)
{
  self->status.invalid_messages++;
  if (log_allow (&self->invalid_log, "invalid upstream message(s)"))
    {
      /* Parse errors quote what the server sent (an unknown type's name). */
      g_autofree char *safe_what = wb_text_sanitize (what, -1, WB_TEXT_MAX_BYTES);

      g_warning ("ignoring invalid upstream message: %s", safe_what);
    }
  notify_status (self);
}

static void
handle_error_message (WbUpstream *self, const WbMessage *message)
{
  g_autofree char *text = g_strdup_printf ("%s: %s", wb_message_get_string (message, "code"),
                                           wb_message_get_string (message, "message"));

  set_last_error (self, text);
  /* Status shows every one; the log as many as a server may fill it with. */
  if (log_allow (&self->error_log, "upstream error message(s)"))
    g_message ("upstream error: %s", self->last_error);
  notify_status (self);
}

/* @current: the frame came on the connection still open. Events of an
 * earlier one are still events; its heartbeat is not this one's. */
/* @frame, or a copy with every occurrence of the API key replaced: before
 * parsing, so neither the line passed on byte for byte nor the parsed
 * payload (cache, history) has it. The key inside a JSON string stays a
 * valid string; a key escaped (\u0061…) is not looked for. */
static GBytes *
frame_without_key (WbUpstream *self, GBytes *frame)
{
  gsize key_length = self->api_key != NULL ? strlen (self->api_key) : 0;
  gsize length = 0;
  const char *data = g_bytes_get_data (frame, &length);
  const char *found;
  GString *clean;

  if (key_length < WB_UPSTREAM_KEY_MIN_SEARCH_BYTES || data == NULL
      || (found = memmem (data, length, self->api_key, key_length)) == NULL)
    return g_bytes_ref (frame);
  clean = g_string_sized_new (length);
  do
    {
      g_string_append_len (clean, data, found - data);
      g_string_append (clean, WB_UPSTREAM_KEY_STAND_IN);
      length -= (gsize)(found - data) + key_length;
      data = found + key_length;
    }
  while ((found = memmem (data, length, self->api_key, key_length)) != NULL);
  g_string_append_len (clean, data, length);
  if (self->key_echoes++ == 0)
    g_warning ("The server sent the API key back; it was replaced with \"%s\" before anything "
               "else saw it (logged once)",
               WB_UPSTREAM_KEY_STAND_IN);
  return g_string_free_to_bytes (clean);
}

static void
handle_frame (WbUpstream *self, GBytes *raw_frame, gboolean current)
{
  g_autoptr (WbMessage) message = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) frame = frame_without_key (self, raw_frame);
  gsize length = 0;
  const char *data = g_bytes_get_data (frame, &length);

  message = wb_message_parse (data, length, WB_DIRECTION_TO_CLIENT, &error);
  if (message == NULL)
    {
      note_invalid (self, error->message);
      return;
    }
  switch (message->type)
    {
    case WB_MESSAGE_PONG:
      if (current)
        handle_pong (self);
      return;
    case WB_MESSAGE_PING:
      {
        /* The server checks on us: answer at once, outside the pace. */
        g_autoptr (JsonNode) pong = wb_message_new_pong (wb_message_get_int (message, "timestamp"));

        if (current && is_connected (self))
          write_json (self, pong);
        return;
      }
    case WB_MESSAGE_ERROR:
      handle_error_message (self, message);
      break;
    default:
      break;
    }
  if (self->callbacks.message != NULL)
    self->callbacks.message (message, self->user_data);
}

/* libsoup hands over every frame it can read before it returns to the main
 * loop: under a flood that could be seconds of work. A frame is handled
 * here, in the iteration that read it, only while no note waits (so it
 * overtakes nothing) and the iteration's share is not spent; the rest is
 * queued and parsed and fanned out a bounded share per iteration, in order
 * with the notes. Past WB_UPSTREAM_MAX_QUEUED_FRAME_BYTES frames are
 * dropped, counted and announced (frames_dropped), never silently.
 * Handling a frame never closes or frees @ws (nothing the owner does with
 * an event calls back into upstream), which libsoup's read loop relies on. */
static void
ws_message_cb (SoupWebsocketConnection *ws, gint type, GBytes *bytes, gpointer user_data)
{
  WbUpstream *self = user_data;
  Note *tail;

  if (type != SOUP_WEBSOCKET_DATA_TEXT)
    {
      note_invalid (self, "binary frame");
      return;
    }
  if (self->notes.length == 0 && iteration_share_left (self))
    {
      self->handled_in_iteration++;
      self->parsed_in_iteration += g_bytes_get_size (bytes);
      handle_frame (self, bytes, TRUE);
      return;
    }
  if (self->frame_bytes + g_bytes_get_size (bytes) > WB_UPSTREAM_MAX_QUEUED_FRAME_BYTES)
    {
      tail = g_queue_peek_tail (&self->notes);
      if (tail == NULL || tail->kind != NOTE_DROPPED)
        tail = note_push (self, NOTE_DROPPED);
      tail->dropped++;
      return;
    }
  self->frame_bytes += g_bytes_get_size (bytes);
  tail = note_push (self, NOTE_FRAME);
  tail->frame = g_bytes_ref (bytes);
  tail->connection = self->connection;
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
  wb_outbox_connection_closed (self->outbox);
  self->healthy = FALSE;
  self->io_error = FALSE;
  self->too_big = FALSE;
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

/* The planned retry is due (or cut short): connect if anyone still wants it. */
static void
retry_now (WbUpstream *self)
{
  clear_source (&self->retry_id);
  if (have_demand (self))
    start_connect (self);
  else
    set_state (self, WB_LINK_IDLE);
}

static gboolean
retry_cb (gpointer user_data)
{
  WbUpstream *self = user_data;

  self->retry_id = 0;
  retry_now (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_retry (WbUpstream *self, guint delay_ms, WbLinkState state, gboolean is_backoff)
{
  clear_source (&self->retry_id);
  self->retry_is_backoff = is_backoff;
  g_message ("next upstream attempt in %u ms", delay_ms);
  self->next_attempt_monotonic_us = g_get_monotonic_time () + (gint64)delay_ms * 1000;
  self->status.next_attempt_us = g_get_real_time () + (gint64)delay_ms * 1000;
  set_state (self, state);
  /* Armed after the change was stamped, so no wait measured from the
   * reported change can be shorter than @delay_ms. */
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
      wb_outbox_fail_held (self->outbox, WB_SEND_ERROR_NOT_CONNECTED,
                           "upstream rejected the API key");
      set_state (self, policy->state);
      update_idle_timer (self);
      break;
    case WB_CLOSE_ACTION_FIXED_WAIT:
      delay_ms = wb_jitter_lengthen_ms (wb_close_policy_fixed_wait_ms (policy, self->config),
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
  self->last_close_reason = wb_text_sanitize (reason, -1, WB_TEXT_MAX_BYTES);
  self->status.last_close_reason = self->last_close_reason;
}

/* The connection (or the attempt) is gone for a reason @policy covers. */
static void
connection_failed (WbUpstream *self, const WbClosePolicy *policy, guint16 code, const char *reason)
{
  /* For the log lines: @reason may be the server's. */
  g_autofree char *safe_reason
      = reason != NULL ? wb_text_sanitize (reason, -1, WB_TEXT_MAX_BYTES) : NULL;

  abandon_attempt (self);
  /* A close by the bridge itself: tell the server politely, count it as 1006. */
  detach_ws (self, WB_UPSTREAM_CLOSE_GOING_AWAY, reason);
  if (code != 0)
    record_close (self, code, reason);
  if (code != 0 && safe_reason != NULL && safe_reason[0] != '\0')
    g_message ("upstream %s lost: %s (close code %u: %s)", self->redacted_url, policy->description,
               code, safe_reason);
  else if (code != 0)
    g_message ("upstream %s lost: %s (close code %u)", self->redacted_url, policy->description,
               code);
  else
    g_message ("upstream %s lost: %s (%s)", self->redacted_url, policy->description,
               safe_reason != NULL ? safe_reason : "no reason given");
  apply_policy (self, policy);
  notify_status (self);
}

/* A close frame came (or libsoup is closing after an error): the
 * WebSocket takes no more messages, though "closed" may be a while off
 * (the server ends TCP). The outbox stops writing now and holds what it
 * has for the next connection; "closed" does the rest. */
static void
ws_closing_cb (SoupWebsocketConnection *ws, gpointer user_data)
{
  WbUpstream *self = user_data;

  wb_outbox_connection_closed (self->outbox);
}

static void
ws_closed_cb (SoupWebsocketConnection *ws, gpointer user_data)
{
  WbUpstream *self = user_data;
  guint16 code = soup_websocket_connection_get_close_code (ws);
  const char *reason = soup_websocket_connection_get_close_data (ws);
  g_autofree char *reason_copy = g_strdup (reason);
  const WbClosePolicy *policy;

  if (code == 0 && self->too_big)
    {
      /* Closed by the bridge with 1009 (ws_error_cb); last_error says why. */
      code = SOUP_WEBSOCKET_CLOSE_TOO_BIG;
      policy = wb_close_policy_for_close_code (code);
      g_free (reason_copy);
      reason_copy = g_strdup (WB_UPSTREAM_TOO_BIG_REASON);
    }
  else if (code == 0 && self->io_error)
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

  self->io_error = TRUE;
  if (g_error_matches (error, SOUP_WEBSOCKET_ERROR, SOUP_WEBSOCKET_CLOSE_TOO_BIG)
      && soup_websocket_connection_get_state (ws) == SOUP_WEBSOCKET_STATE_OPEN)
    {
      /* libsoup 3.2 emits this from reading the frame's header and closes
       * the TCP connection as soon as we return, without a close frame
       * (emit_error_and_close with prejudice). Queued now, the 1009 the
       * protocol asks for is written before that (libsoup writes at once
       * when the socket takes it; a full send buffer would lose it). */
      self->too_big = TRUE;
      soup_websocket_connection_close (ws, SOUP_WEBSOCKET_CLOSE_TOO_BIG,
                                       WB_UPSTREAM_TOO_BIG_REASON);
      set_last_error (self, WB_UPSTREAM_TOO_BIG_TEXT "; closed with 1009");
    }
  else
    set_last_error (self, error->message);
  g_message ("upstream connection error: %s", self->last_error);
  notify_status (self);
}

/* ---- idle close ----------------------------------------------------------- */

static gboolean
idle_timeout_cb (gpointer user_data)
{
  WbUpstream *self = user_data;

  self->idle_id = 0;
  g_message ("no subscriptions for %u ms, closing upstream", self->config->idle_timeout_ms);
  detach_ws (self, WB_UPSTREAM_CLOSE_NORMAL, "idle");
  record_close (self, WB_UPSTREAM_CLOSE_NORMAL, "idle");
  set_state (self, WB_LINK_IDLE);
  return G_SOURCE_REMOVE;
}

static void
update_idle_timer (WbUpstream *self)
{
  gboolean want = self->ws != NULL && !have_demand (self);

  if (!want)
    clear_source (&self->idle_id);
  else if (self->idle_id == 0)
    self->idle_id = g_timeout_add (self->config->idle_timeout_ms, idle_timeout_cb, self);
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
    {
      /* May name what the server's certificate says. */
      g_autofree char *text = wb_text_sanitize (error->message, -1, WB_TEXT_MAX_BYTES);

      g_message ("certificate check against CAFile failed: %s", text);
    }
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

  self->ws = ws;
  self->connection++;
  self->healthy = FALSE;
  /* The round trip of this connection; 0 until its first pong. */
  self->status.rtt_us = 0;
  self->io_error = FALSE;
  soup_websocket_connection_set_max_incoming_payload_size (ws,
                                                           WB_UPSTREAM_MAX_INCOMING_PAYLOAD_BYTES);
  /* Our own app-level ping is the heartbeat. */
  soup_websocket_connection_set_keepalive_interval (ws, 0);
  g_signal_connect (ws, "message", G_CALLBACK (ws_message_cb), self);
  g_signal_connect (ws, "closing", G_CALLBACK (ws_closing_cb), self);
  g_signal_connect (ws, "closed", G_CALLBACK (ws_closed_cb), self);
  g_signal_connect (ws, "error", G_CALLBACK (ws_error_cb), self);

  /* Ping first, then the whole union, before anything else. */
  send_ping (self);
  wb_outbox_connection_opened (self->outbox);
  self->ping_id = g_timeout_add (MAX (self->config->ping_interval_ms, 1), ping_interval_cb, self);

  if (reconnect)
    self->status.reconnects++;
  self->was_connected = TRUE;
  g_message ("connected to %s", self->redacted_url);
  update_idle_timer (self);
  set_state (self, WB_LINK_CONNECTED);
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
      set_state (self, WB_LINK_CONNECTING);
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
  self->attempt = attempt;

  g_debug ("connecting to %s", self->redacted_url);
  set_state (self, WB_LINK_CONNECTING);
  /* A handshake that hangs (black-holed SYN, a server that never answers)
   * gets one heartbeat cycle, then counts as a network failure. Armed after
   * the change was stamped, so no wait measured from it comes out shorter. */
  attempt->timeout_id
      = g_timeout_add (MAX (self->config->ping_interval_ms + self->config->pong_timeout_ms, 1),
                       connect_timeout_cb, attempt);
  soup_session_websocket_connect_async (self->session, msg, NULL, NULL, G_PRIORITY_DEFAULT,
                                        attempt->cancellable, connect_cb, attempt);
}

/* Demand appeared: connect if nothing is running or planned. */
static void
demand_added (WbUpstream *self)
{
  update_idle_timer (self);
  if (self->status.state == WB_LINK_IDLE || self->status.state == WB_LINK_CLOSED)
    start_connect (self);
}

/* ---- configuration -------------------------------------------------------- */

/* Takes what upstream uses of @config; TRUE if where and how it connects
 * (URL, key, CA file) changed. */
static gboolean
apply_config (WbUpstream *self, const WbConfig *config, const char *api_key)
{
  g_autofree char *full_url = NULL;
  g_autoptr (GError) error = NULL;
  gboolean changed;

  self->config = config;
  if (self->outbox != NULL)
    {
      WbOutboxLimits limits = outbox_limits (config);

      wb_outbox_set_limits (self->outbox, &limits);
    }

  full_url = wb_config_build_upstream_url (config, api_key != NULL ? api_key : "");
  changed = g_strcmp0 (full_url, self->full_url) != 0
            || g_strcmp0 (config->ca_file, self->ca_file) != 0;
  wb_clear_secret (&self->api_key);
  self->api_key = g_strdup (api_key != NULL ? api_key : "");
  wb_clear_secret (&self->full_url);
  self->full_url = g_steal_pointer (&full_url);
  g_free (self->redacted_url);
  self->redacted_url = wb_config_redact_url (self->full_url);
  self->status.url = self->redacted_url;

  if (g_strcmp0 (config->ca_file, self->ca_file) != 0)
    {
      g_free (self->ca_file);
      self->ca_file = g_strdup (config->ca_file);
      g_clear_object (&self->extra_ca);
      if (self->ca_file != NULL && self->ca_file[0] != '\0')
        {
          self->extra_ca = g_tls_file_database_new (self->ca_file, &error);
          if (self->extra_ca == NULL)
            {
              g_warning ("cannot load CAFile %s: %s", self->ca_file, error->message);
              set_last_error (self, error->message);
            }
        }
    }
  return changed;
}

/* ---- public API ------------------------------------------------------------ */

WbUpstream *
wb_upstream_new (const WbConfig *config, const char *api_key, const WbUpstreamCallbacks *callbacks,
                 gpointer user_data)
{
  WbUpstream *self;
  WbOutboxLimits limits;

  g_return_val_if_fail (config != NULL && config->url != NULL, NULL);
  g_return_val_if_fail (callbacks != NULL, NULL);

  self = g_new0 (WbUpstream, 1);
  self->callbacks = *callbacks;
  self->user_data = user_data;
  g_queue_init (&self->notes);
  self->notes_source = notes_source_new (self);
  self->rand = g_rand_new ();
  self->last_close_reason = g_strdup ("");
  self->last_error = g_strdup ("");
  self->status.state = WB_LINK_IDLE;
  self->status.state_since_us = g_get_real_time ();
  self->status.last_close_reason = self->last_close_reason;
  self->status.last_error = self->last_error;
  apply_config (self, config, api_key);
  limits = outbox_limits (config);
  self->outbox = wb_outbox_new (&limits, &outbox_callbacks, self);
  wb_backoff_init (&self->backoff, config->backoff_initial_ms, config->backoff_max_ms);
  /* The session only ever makes WebSocket handshakes, whose connections
   * leave its pool once upgraded. A refused one (HTTP 4xx/5xx) would stay
   * there idle for libsoup's default 60 s, never reused by the next
   * attempt: a connection to the server and a descriptor held for nothing
   * after each refusal (the soak's descriptor check found it). */
  self->session = soup_session_new_with_options ("user-agent", "wave-bridge/" WB_VERSION,
                                                 "idle-timeout", WB_UPSTREAM_IDLE_HTTP_S, NULL);
  return self;
}

void
wb_upstream_free (WbUpstream *self)
{
  Note *note;

  if (self == NULL)
    return;

  abandon_attempt (self);
  detach_ws (self, WB_UPSTREAM_CLOSE_NORMAL, "shutting down");
  clear_source (&self->retry_id);
  g_clear_pointer (&self->outbox, wb_outbox_free);
  /* Every send gets its outcome, even those decided a moment ago; nobody
   * is listening for the rest any more. */
  g_source_destroy (self->notes_source);
  g_clear_pointer (&self->notes_source, g_source_unref);
  while ((note = g_queue_pop_head (&self->notes)) != NULL)
    {
      if (note->kind == NOTE_SEND_DONE)
        note_deliver (self, note);
      note_free (note);
    }

  soup_session_abort (self->session);
  g_clear_object (&self->session);
  g_clear_object (&self->extra_ca);
  g_rand_free (self->rand);
  wb_clear_secret (&self->api_key);
  wb_clear_secret (&self->full_url);
  g_free (self->ca_file);
  g_free (self->redacted_url);
  g_free (self->last_close_reason);
  g_free (self->last_error);
  g_free (self);
}

void
wb_upstream_set_stream_events (WbUpstream *self, const char *stream_id, const char *const *events,
                               gint64 owner)
{
  g_return_if_fail (self != NULL && stream_id != NULL);

  if (!wb_outbox_set_stream_events (self->outbox, stream_id, events, owner))
    return;
  if (events != NULL && events[0] != NULL)
    demand_added (self);
  else
    update_idle_timer (self);
}

void
wb_upstream_send (WbUpstream *self, JsonNode *message, gint64 owner, WbSendCallback callback,
                  gpointer user_data)
{
  g_return_if_fail (self != NULL && message != NULL);

  if (self->status.state == WB_LINK_AUTH_FAILED)
    {
      if (callback != NULL)
        outbox_send_done (callback, user_data,
                          g_error_new_literal (WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED,
                                               "upstream rejected the API key"),
                          self);
      return;
    }
  wb_outbox_send (self->outbox, message, owner, callback, user_data);
  demand_added (self);
}

void
wb_upstream_demand (WbUpstream *self)
{
  g_return_if_fail (self != NULL);

  if (have_demand (self))
    demand_added (self);
}

/* Drops the current connection (a gap for its subscribers) and connects. */
static void
reconnect_now (WbUpstream *self)
{
  g_message ("reconnect requested");
  start_connect (self);
}

gboolean
wb_upstream_reconnect (WbUpstream *self, GError **error)
{
  gint64 remaining_ms;

  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  switch (self->status.state)
    {
    case WB_LINK_AUTH_FAILED:
      g_set_error_literal (error, WB_LINK_ERROR, WB_LINK_ERROR_AUTH_FAILED,
                           "upstream rejected the API key; a new key connects again "
                           "(a rewritten key file at once, the systemd credential on restart, "
                           "or Reload())");
      return FALSE;
    case WB_LINK_RATE_LIMITED:
    case WB_LINK_WAITING:
      if (self->status.state == WB_LINK_WAITING && self->retry_is_backoff)
        break;
      remaining_ms = MAX (self->next_attempt_monotonic_us - g_get_monotonic_time (), 0) / 1000;
      g_set_error (
          error, WB_LINK_ERROR, WB_LINK_ERROR_SERVER_WAIT,
          "the server asked the bridge to wait (%s); the next attempt is in %" G_GINT64_FORMAT
          " ms",
          wb_link_state_to_string (self->status.state), remaining_ms);
      return FALSE;
    case WB_LINK_IDLE:
    case WB_LINK_CONNECTING:
    case WB_LINK_CONNECTED:
    case WB_LINK_CLOSED:
    default:
      break;
    }
  reconnect_now (self);
  return TRUE;
}

void
wb_upstream_reload (WbUpstream *self, const WbConfig *config, const char *api_key)
{
  gboolean changed;

  g_return_if_fail (self != NULL && config != NULL && config->url != NULL);

  changed = apply_config (self, config, api_key);
  if (changed)
    wb_backoff_init (&self->backoff, config->backoff_initial_ms, config->backoff_max_ms);
  else
    wb_backoff_set_limits (&self->backoff, config->backoff_initial_ms, config->backoff_max_ms);
  g_message ("configuration reloaded%s", changed ? ", upstream changed" : "");

  if (self->ws != NULL || self->attempt != NULL)
    {
      if (changed)
        reconnect_now (self);
      return;
    }
  switch (self->status.state)
    {
    case WB_LINK_AUTH_FAILED:
    case WB_LINK_CLOSED:
      /* A reload is the demand these states wait for. */
      if (have_demand (self))
        start_connect (self);
      else
        set_state (self, WB_LINK_IDLE);
      break;
    case WB_LINK_WAITING:
    case WB_LINK_RATE_LIMITED:
      if (changed)
        retry_now (self);
      break;
    case WB_LINK_IDLE:
    case WB_LINK_CONNECTING:
    case WB_LINK_CONNECTED:
    default:
      break;
    }
  notify_status (self);
}

void
wb_upstream_network_changed (WbUpstream *self)
{
  g_return_if_fail (self != NULL);

  if (self->status.state == WB_LINK_WAITING && self->retry_is_backoff && self->retry_id != 0)
    {
      g_message ("network changed, skipping the remaining backoff");
      retry_now (self);
    }
  else if (self->healthy)
    {
      /* The old route may be gone: find out now rather than at the next ping. */
      send_ping (self);
    }
}

const WbLinkStatus *
wb_upstream_get_status (WbUpstream *self)
{
  g_return_val_if_fail (self != NULL, NULL);

  self->status.held_sends = wb_outbox_get_n_held (self->outbox);
  return &self->status;
}
