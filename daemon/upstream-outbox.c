/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-upstream"

#include "upstream-outbox.h"

#include "message.h"
#include "ratelimit.h"

/*
 * Three lanes share the pace:
 *   resync  the whole union, owed to a connection that just opened; sorted;
 *   churn   streams whose union changed while connected, per owner (user);
 *   sends   held chat messages and reactions, per owner, once healthy.
 * When sends and subscription work both wait, they take turns, and so do
 * resync and churn within subscription work, so no lane starves another (a
 * union of thousands re-sent after every reconnect would otherwise keep a
 * new stream out for ever); within churn and sends, owners take turns, so one
 * user's burst delays another user's first message by at most one message
 * per other busy user. A lone churn entry (the pace bucket is full: nothing
 * went upstream for a while) is due at once; one made while messages are
 * going waits one pace interval, so changes to its stream made meanwhile
 * are merged and a subscribe undone within it costs nothing upstream.
 */

/* max_held is shared out so that this many owners can each hold their part. */
#define WB_OUTBOX_HELD_SHARES 16

typedef struct _Owner Owner;

typedef struct
{
  JsonNode *message;
  WbSendCallback callback;
  gpointer callback_data;
  gint64 deadline_us; /* monotonic */
  Owner *owner;
  GList all_link;   /* in outbox->held */
  GList owner_link; /* in owner->sends */
} HeldSend;

typedef struct
{
  char *stream_id;
  gint64 due_us; /* monotonic */
  Owner *owner;  /* NULL: in the resync lane */
  GList link;
} Unsynced;

/* One user's share of the churn and send lanes. */
struct _Owner
{
  gint64 id;
  GQueue churn; /* Unsynced, by link, oldest first */
  GQueue sends; /* HeldSend, by owner_link, oldest first */
  GList churn_ring_link;
  GList send_ring_link;
  gboolean in_churn_ring;
  gboolean in_send_ring;
};

struct _WbOutbox
{
  WbOutboxLimits limits;
  WbOutboxCallbacks callbacks;
  gpointer user_data;

  /* stream id → sorted event strv: the union the hub asked for. */
  GHashTable *wanted;
  /* stream id → event strv the current connection was last told. */
  GHashTable *told;
  /* stream id → Unsynced: streams whose wanted and told may differ, each in
   * one lane only. */
  GHashTable *unsynced;
  GQueue resync; /* Unsynced, by link, sorted */

  /* stream id → gint64 *: since when (monotonic) no live connection has
   * carried the stream's subscription; streams with a gap to report. */
  GHashTable *uncovered;
  /* Streams re-sent on a connection that has not answered a ping yet. */
  GPtrArray *covered_unconfirmed;

  GHashTable *owners;   /* id → Owner, kept while it has work */
  GQueue churn_ring;    /* Owner with churn, by churn_ring_link; head is next */
  GQueue send_ring;     /* Owner with sends, by send_ring_link; head is next */
  gboolean sent_last;   /* the last message written was a held send */
  gboolean resync_last; /* the last stream told was from the resync lane */

  GQueue held; /* HeldSend, by all_link, oldest first */
  guint expiry_id;

  gboolean open;    /* a connection takes writes */
  gboolean healthy; /* it answered a ping: held sends may go */
  WbRateLimit pace;
  guint wake_id;
  gint64 wake_us;
};

static void pump (WbOutbox *self);

/* ---- small helpers ------------------------------------------------------- */

static gboolean
strv_equal0 (char **a, char **b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return g_strv_equal ((const char *const *)a, (const char *const *)b);
}

static gint64
pace_interval_us (WbOutbox *self)
{
  return G_USEC_PER_SEC / self->limits.messages_per_second;
}

static void
notify_held_changed (WbOutbox *self)
{
  if (self->callbacks.held_changed != NULL)
    self->callbacks.held_changed (self->user_data);
}

static gboolean
wake_cb (gpointer user_data)
{
  WbOutbox *self = user_data;

  self->wake_id = 0;
  pump (self);
  return G_SOURCE_REMOVE;
}

/* Runs the pump at @when_us (monotonic) or earlier if already planned so. */
static void
wake_at (WbOutbox *self, gint64 when_us)
{
  gint64 now = g_get_monotonic_time ();

  if (self->wake_id != 0 && self->wake_us <= when_us)
    return;
  g_clear_handle_id (&self->wake_id, g_source_remove);
  self->wake_us = when_us;
  /* Rounded up: timers never fire early, so the token is there. */
  self->wake_id = g_timeout_add ((guint)MAX ((when_us - now + 999) / 1000, 1), wake_cb, self);
}

/* The service closes a client that sends too fast (4429, then a minute of
 * silence for everyone here), so every message but the heartbeat takes a
 * token. FALSE: none now, and the pump runs again when one is due. */
static gboolean
pace_take (WbOutbox *self)
{
  gint64 now = g_get_monotonic_time ();

  if (wb_rate_limit_take (&self->pace, now))
    return TRUE;
  wake_at (self, now + wb_rate_limit_get_wait_us (&self->pace, now));
  return FALSE;
}

/* ---- owners -------------------------------------------------------------- */

static Owner *
owner_get (WbOutbox *self, gint64 id)
{
  Owner *owner = g_hash_table_lookup (self->owners, &id);

  if (owner == NULL)
    {
      owner = g_new0 (Owner, 1);
      owner->id = id;
      owner->churn_ring_link.data = owner;
      owner->send_ring_link.data = owner;
      g_hash_table_insert (self->owners, &owner->id, owner);
    }
  return owner;
}

static void
owner_release_if_idle (WbOutbox *self, Owner *owner)
{
  if (owner->churn.length == 0 && owner->sends.length == 0)
    g_hash_table_remove (self->owners, &owner->id);
}

static void
ring_join (GQueue *ring, GList *link, gboolean *member)
{
  if (*member)
    return;
  g_queue_push_tail_link (ring, link);
  *member = TRUE;
}

static void
ring_leave (GQueue *ring, GList *link, gboolean *member)
{
  if (!*member)
    return;
  g_queue_unlink (ring, link);
  *member = FALSE;
}

/* An owner had its turn: to the back of the ring. */
static void
ring_next_turn (GQueue *ring, GList *link, gboolean member)
{
  if (!member)
    return;
  g_queue_unlink (ring, link);
  g_queue_push_tail_link (ring, link);
}

/* ---- held sends ---------------------------------------------------------- */

/* What one owner may hold of max_held: while upstream is down, a couple of
 * users must not fill the queue and lock everyone else's chat out. */
static guint
held_share (WbOutbox *self)
{
  return MAX (self->limits.max_held / WB_OUTBOX_HELD_SHARES, 1);
}

/* Takes @entry out of the held queues (it is the caller's then). */
static void
held_send_unlink (WbOutbox *self, HeldSend *entry)
{
  Owner *owner = entry->owner;

  g_queue_unlink (&self->held, &entry->all_link);
  g_queue_unlink (&owner->sends, &entry->owner_link);
  if (owner->sends.length == 0)
    ring_leave (&self->send_ring, &owner->send_ring_link, &owner->in_send_ring);
  owner_release_if_idle (self, owner);
  entry->owner = NULL;
}

/* Reports @entry's outcome (takes @error; NULL: written) and frees it. */
static void
held_send_report (WbOutbox *self, HeldSend *entry, GError *error)
{
  if (entry->callback != NULL)
    self->callbacks.send_done (entry->callback, entry->callback_data, error, self->user_data);
  else
    g_clear_error (&error);
  json_node_unref (entry->message);
  g_free (entry);
}

static void
held_send_end (WbOutbox *self, HeldSend *entry, GError *error)
{
  held_send_unlink (self, entry);
  held_send_report (self, entry, error);
}

static gboolean expiry_cb (gpointer user_data);

static void
schedule_expiry (WbOutbox *self)
{
  gint64 earliest = G_MAXINT64;
  gint64 now = g_get_monotonic_time ();

  g_clear_handle_id (&self->expiry_id, g_source_remove);
  /* Not always the oldest: a reload may have shortened the timeout. */
  for (GList *l = self->held.head; l != NULL; l = l->next)
    earliest = MIN (earliest, ((HeldSend *)l->data)->deadline_us);
  if (earliest == G_MAXINT64)
    return;
  /* Rounded up so the entry is due when the timer fires. */
  self->expiry_id
      = g_timeout_add ((guint)((MAX (earliest - now, 0) + 999) / 1000), expiry_cb, self);
}

static gboolean
expiry_cb (gpointer user_data)
{
  WbOutbox *self = user_data;
  gint64 now = g_get_monotonic_time ();
  guint expired = 0;
  GList *l = self->held.head;

  self->expiry_id = 0;
  while (l != NULL)
    {
      GList *next = l->next;
      HeldSend *entry = l->data;

      if (entry->deadline_us <= now)
        {
          held_send_end (self, entry,
                         g_error_new (WB_SEND_ERROR, WB_SEND_ERROR_FAILED,
                                      "upstream not connected within %u ms",
                                      self->limits.held_timeout_ms));
          expired++;
        }
      l = next;
    }
  if (expired > 0)
    {
      g_message ("%u held message(s) expired before upstream was back", expired);
      notify_held_changed (self);
    }
  schedule_expiry (self);
  return G_SOURCE_REMOVE;
}

/* ---- stream synchronisation ---------------------------------------------- */

static void
unsynced_free (Unsynced *item)
{
  g_free (item->stream_id);
  g_free (item);
}

/* Takes @item out of its lane and the table (frees it). */
static void
unsynced_remove (WbOutbox *self, Unsynced *item)
{
  Owner *owner = item->owner;

  if (owner == NULL)
    g_queue_unlink (&self->resync, &item->link);
  else
    {
      g_queue_unlink (&owner->churn, &item->link);
      if (owner->churn.length == 0)
        ring_leave (&self->churn_ring, &owner->churn_ring_link, &owner->in_churn_ring);
      owner_release_if_idle (self, owner);
    }
  g_hash_table_remove (self->unsynced, item->stream_id); /* frees @item */
}

static Unsynced *
unsynced_new (WbOutbox *self, const char *stream_id)
{
  Unsynced *item = g_new0 (Unsynced, 1);

  item->stream_id = g_strdup (stream_id);
  item->link.data = item;
  g_hash_table_insert (self->unsynced, item->stream_id, item);
  return item;
}

static void
mark_churn (WbOutbox *self, const char *stream_id, gint64 owner_id)
{
  Unsynced *item;
  Owner *owner;
  gint64 now;

  if (g_hash_table_contains (self->unsynced, stream_id))
    return; /* already owed, in its lane: it will carry the newest union */
  item = unsynced_new (self, stream_id);
  owner = owner_get (self, owner_id);
  item->owner = owner;
  now = g_get_monotonic_time ();
  /* A lone change (a client subscribing to its stream) goes at once; in a
   * run of changes each waits an interval and absorbs the ones after it. */
  item->due_us = wb_rate_limit_is_full (&self->pace, now) ? now : now + pace_interval_us (self);
  g_queue_push_tail_link (&owner->churn, &item->link);
  ring_join (&self->churn_ring, &owner->churn_ring_link, &owner->in_churn_ring);
}

static void
clear_unsynced (WbOutbox *self)
{
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->unsynced);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Unsynced *item = value;

      Owner *owner = item->owner;

      if (owner != NULL)
        {
          g_queue_unlink (&owner->churn, &item->link);
          if (owner->churn.length == 0)
            ring_leave (&self->churn_ring, &owner->churn_ring_link, &owner->in_churn_ring);
          owner_release_if_idle (self, owner);
        }
    }
  g_queue_init (&self->resync);
  g_hash_table_remove_all (self->unsynced);
}

/* The next stream to tell: from the resync lane, or from the first owner in
 * turn whose oldest change is due; when both have one, they take turns (a
 * union re-sent after every reconnect must not keep a user's new stream out
 * for ever). NULL if none is due; @out_wake_us then says when one will be
 * (0: none waiting). */
static Unsynced *
next_stream (WbOutbox *self, gint64 now, gint64 *out_wake_us)
{
  Unsynced *resync = self->resync.head != NULL ? self->resync.head->data : NULL;
  Unsynced *churn = NULL;

  *out_wake_us = 0;
  for (GList *l = self->churn_ring.head; l != NULL && churn == NULL; l = l->next)
    {
      Owner *owner = l->data;
      Unsynced *oldest = owner->churn.head->data;

      if (oldest->due_us <= now)
        churn = oldest;
      else if (*out_wake_us == 0 || oldest->due_us < *out_wake_us)
        *out_wake_us = oldest->due_us;
    }
  if (resync != NULL && churn != NULL)
    return self->resync_last ? churn : resync;
  return resync != NULL ? resync : churn;
}

static void
report_covered (WbOutbox *self, const char *stream_id)
{
  gint64 *since = g_hash_table_lookup (self->uncovered, stream_id);

  if (since == NULL)
    return;
  if (self->callbacks.stream_covered != NULL)
    self->callbacks.stream_covered (stream_id, *since, self->user_data);
  g_hash_table_remove (self->uncovered, stream_id);
}

/* A stream of the union was told to the current connection (or needed no
 * telling): covered, once that connection has proved it is alive. */
static void
stream_told (WbOutbox *self, const char *stream_id)
{
  if (!g_hash_table_contains (self->uncovered, stream_id))
    return;
  if (self->healthy)
    report_covered (self, stream_id);
  else
    g_ptr_array_add (self->covered_unconfirmed, g_strdup (stream_id));
}

/* Writes what @item's stream needs (perhaps nothing, which costs no token).
 * FALSE if the pace allows no message now. */
static gboolean
write_stream (WbOutbox *self, Unsynced *item)
{
  char **wanted = g_hash_table_lookup (self->wanted, item->stream_id);
  char **told = g_hash_table_lookup (self->told, item->stream_id);
  g_autoptr (JsonNode) node = NULL;
  Owner *owner = item->owner;

  if (!strv_equal0 (wanted, told))
    {
      if (!pace_take (self))
        return FALSE;
      if (wanted != NULL)
        {
          node = wb_message_new_subscribe (item->stream_id, (const char *const *)wanted);
          g_hash_table_replace (self->told, g_strdup (item->stream_id), g_strdupv (wanted));
        }
      else
        {
          node = wb_message_new_unsubscribe (item->stream_id);
          g_hash_table_remove (self->told, item->stream_id);
        }
    }
  if (owner != NULL)
    ring_next_turn (&self->churn_ring, &owner->churn_ring_link, owner->in_churn_ring);
  self->resync_last = owner == NULL;
  if (node != NULL)
    {
      self->sent_last = FALSE;
      self->callbacks.write (node, self->user_data);
    }
  /* A write that broke the connection forgot the lanes, @item with them. */
  if (!self->open)
    return TRUE;
  if (wanted != NULL)
    stream_told (self, item->stream_id);
  unsynced_remove (self, item);
  return TRUE;
}

/* Writes the next owner's oldest held send. FALSE if the pace allows none. */
static gboolean
write_send (WbOutbox *self)
{
  Owner *owner = self->send_ring.head->data;
  HeldSend *entry = owner->sends.head->data;
  gboolean written;

  if (!pace_take (self))
    return FALSE;
  ring_next_turn (&self->send_ring, &owner->send_ring_link, owner->in_send_ring);
  /* Out of the queues before writing: a write that breaks the connection
   * may fail what is still held, and this one must end exactly once. */
  held_send_unlink (self, entry);
  self->sent_last = TRUE;
  written = self->callbacks.write (entry->message, self->user_data);
  held_send_report (self, entry,
                    written ? NULL
                            : g_error_new_literal (WB_SEND_ERROR, WB_SEND_ERROR_FAILED,
                                                   "the upstream connection failed while "
                                                   "writing it"));
  notify_held_changed (self);
  return TRUE;
}

/* Writes what the pace allows, lane by lane (see the top of the file). */
static void
pump (WbOutbox *self)
{
  gboolean wrote_send = FALSE;

  while (self->open)
    {
      gint64 now = g_get_monotonic_time ();
      gint64 stream_due_us;
      Unsynced *stream = next_stream (self, now, &stream_due_us);
      gboolean send_ready = self->healthy && self->send_ring.head != NULL;
      gboolean ok;

      if (stream == NULL && !send_ready)
        {
          if (stream_due_us != 0)
            wake_at (self, stream_due_us);
          break;
        }
      /* Take turns when both wait. */
      if (send_ready && (stream == NULL || !self->sent_last))
        {
          ok = write_send (self);
          wrote_send |= ok;
        }
      else
        ok = write_stream (self, stream);
      if (!ok)
        break;
    }
  if (wrote_send)
    schedule_expiry (self);
}

/* ---- public API ---------------------------------------------------------- */

WbOutbox *
wb_outbox_new (const WbOutboxLimits *limits, const WbOutboxCallbacks *callbacks, gpointer user_data)
{
  WbOutbox *self;

  g_return_val_if_fail (limits != NULL && callbacks != NULL, NULL);
  g_return_val_if_fail (callbacks->write != NULL && callbacks->send_done != NULL, NULL);

  self = g_new0 (WbOutbox, 1);
  self->callbacks = *callbacks;
  self->user_data = user_data;
  self->wanted
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_strfreev);
  self->told = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_strfreev);
  self->unsynced
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)unsynced_free);
  self->owners = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, g_free);
  self->uncovered = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->covered_unconfirmed = g_ptr_array_new_with_free_func (g_free);
  self->limits = *limits;
  self->limits.messages_per_second = MAX (limits->messages_per_second, 1);
  wb_rate_limit_init_per_second (&self->pace, self->limits.messages_per_second,
                                 g_get_monotonic_time ());
  return self;
}

void
wb_outbox_free (WbOutbox *self)
{
  if (self == NULL)
    return;
  self->open = FALSE;
  wb_outbox_fail_held (self, WB_SEND_ERROR_FAILED, "upstream shut down");
  g_clear_handle_id (&self->expiry_id, g_source_remove);
  g_clear_handle_id (&self->wake_id, g_source_remove);
  clear_unsynced (self);
  g_hash_table_unref (self->unsynced);
  g_hash_table_unref (self->owners);
  g_hash_table_unref (self->uncovered);
  g_ptr_array_unref (self->covered_unconfirmed);
  g_hash_table_unref (self->wanted);
  g_hash_table_unref (self->told);
  g_free (self);
}

void
wb_outbox_set_limits (WbOutbox *self, const WbOutboxLimits *limits)
{
  g_return_if_fail (self != NULL && limits != NULL);

  self->limits = *limits;
  self->limits.messages_per_second = MAX (limits->messages_per_second, 1);
  wb_rate_limit_set_rate (&self->pace, self->limits.messages_per_second, g_get_monotonic_time ());
}

gboolean
wb_outbox_set_stream_events (WbOutbox *self, const char *stream_id, const char *const *events,
                             gint64 owner)
{
  char **old;

  g_return_val_if_fail (self != NULL && stream_id != NULL, FALSE);

  old = g_hash_table_lookup (self->wanted, stream_id);
  if (events == NULL || events[0] == NULL)
    {
      if (old == NULL)
        return FALSE;
      g_hash_table_remove (self->wanted, stream_id);
      /* Nobody is left to tell of its gap. */
      g_hash_table_remove (self->uncovered, stream_id);
    }
  else
    {
      if (old != NULL && g_strv_equal ((const char *const *)old, events))
        return FALSE;
      g_hash_table_replace (self->wanted, g_strdup (stream_id), g_strdupv ((char **)events));
    }
  if (self->open)
    {
      mark_churn (self, stream_id, owner);
      pump (self);
    }
  return TRUE;
}

guint
wb_outbox_get_n_streams (WbOutbox *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return g_hash_table_size (self->wanted);
}

static gint
compare_strings (gconstpointer a, gconstpointer b, gpointer user_data)
{
  return g_strcmp0 (*(const char *const *)a, *(const char *const *)b);
}

void
wb_outbox_connection_opened (WbOutbox *self)
{
  g_autofree const char **ids = NULL;
  guint n = 0;

  g_return_if_fail (self != NULL);

  self->open = TRUE;
  self->healthy = FALSE;
  g_hash_table_remove_all (self->told);
  clear_unsynced (self);
  ids = (const char **)g_hash_table_get_keys_as_array (self->wanted, &n);
  /* A stable order keeps the wire (and the tests) deterministic. */
  g_qsort_with_data (ids, (gint)n, sizeof (char *), compare_strings, NULL);
  for (guint i = 0; i < n; i++)
    g_queue_push_tail_link (&self->resync, &unsynced_new (self, ids[i])->link);
  pump (self);
}

void
wb_outbox_connection_healthy (WbOutbox *self)
{
  g_autoptr (GPtrArray) confirmed = NULL;

  g_return_if_fail (self != NULL);

  if (!self->open || self->healthy)
    return;
  self->healthy = TRUE;
  confirmed = g_steal_pointer (&self->covered_unconfirmed);
  self->covered_unconfirmed = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < confirmed->len; i++)
    report_covered (self, g_ptr_array_index (confirmed, i));
  pump (self);
}

void
wb_outbox_connection_closed (WbOutbox *self)
{
  GHashTableIter iter;
  gpointer stream_id;

  g_return_if_fail (self != NULL);

  if (self->open)
    {
      gint64 now = g_get_monotonic_time ();

      g_hash_table_iter_init (&iter, self->wanted);
      while (g_hash_table_iter_next (&iter, &stream_id, NULL))
        if (!g_hash_table_contains (self->uncovered, stream_id))
          g_hash_table_insert (self->uncovered, g_strdup (stream_id), g_memdup2 (&now, sizeof now));
    }
  /* Written on a connection that never answered: still uncovered. */
  g_ptr_array_set_size (self->covered_unconfirmed, 0);
  self->open = FALSE;
  self->healthy = FALSE;
  g_hash_table_remove_all (self->told);
  clear_unsynced (self);
  g_clear_handle_id (&self->wake_id, g_source_remove);
}

void
wb_outbox_send (WbOutbox *self, JsonNode *message, gint64 owner_id, WbSendCallback callback,
                gpointer callback_data)
{
  HeldSend *entry;
  Owner *owner;

  g_return_if_fail (self != NULL && message != NULL);

  owner = g_hash_table_lookup (self->owners, &owner_id);
  if (self->held.length >= self->limits.max_held
      || (owner != NULL && owner->sends.length >= held_share (self)))
    {
      if (callback != NULL)
        self->callbacks.send_done (
            callback, callback_data,
            self->held.length >= self->limits.max_held
                ? g_error_new (WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED,
                               "%u message(s) already waiting to go upstream", self->held.length)
                : g_error_new (WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED,
                               "%u message(s) of this user already waiting to go upstream",
                               owner->sends.length),
            self->user_data);
      return;
    }
  owner = owner_get (self, owner_id);
  entry = g_new0 (HeldSend, 1);
  entry->message = json_node_ref (message);
  entry->callback = callback;
  entry->callback_data = callback_data;
  entry->deadline_us = g_get_monotonic_time () + (gint64)self->limits.held_timeout_ms * 1000;
  entry->owner = owner;
  entry->all_link.data = entry;
  entry->owner_link.data = entry;
  g_queue_push_tail_link (&self->held, &entry->all_link);
  g_queue_push_tail_link (&owner->sends, &entry->owner_link);
  ring_join (&self->send_ring, &owner->send_ring_link, &owner->in_send_ring);
  if (self->expiry_id == 0)
    schedule_expiry (self);
  notify_held_changed (self);
  /* Every send takes its lane: the pump writes it now on a healthy
   * connection with a token to spare, later otherwise, in turn. */
  pump (self);
}

void
wb_outbox_fail_held (WbOutbox *self, WbSendError code, const char *reason)
{
  HeldSend *entry;

  g_return_if_fail (self != NULL);

  if (self->held.length == 0)
    return;
  g_debug ("failing %u held message(s): %s", self->held.length, reason);
  while ((entry = g_queue_peek_head (&self->held)) != NULL)
    held_send_end (self, entry, g_error_new_literal (WB_SEND_ERROR, code, reason));
  g_clear_handle_id (&self->expiry_id, g_source_remove);
  notify_held_changed (self);
}

guint
wb_outbox_get_n_held (WbOutbox *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->held.length;
}
