/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-upstream"

#include "upstream-outbox.h"

#include "message.h"
#include "ratelimit.h"

typedef struct
{
  JsonNode *message;
  WbSendCallback callback;
  gpointer callback_data;
  gint64 deadline_us; /* monotonic */
} HeldSend;

struct _WbOutbox
{
  WbOutboxLimits limits;
  WbOutboxCallbacks callbacks;
  gpointer user_data;

  /* stream id → sorted event strv: the union the hub asked for. */
  GHashTable *wanted;
  /* stream id → event strv the current connection was last told. */
  GHashTable *told;
  /* Streams whose wanted and told differ, in the order they changed; the
   * set mirrors the queue so a stream is queued once. */
  GQueue unsynced;
  GHashTable *unsynced_set;

  GQueue held; /* HeldSend, oldest first */
  guint expiry_id;

  gboolean open;    /* a connection takes writes */
  gboolean healthy; /* it answered a ping: held sends may go */
  WbRateLimit pace;
  guint pace_id;
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

static void
held_send_free (HeldSend *entry)
{
  json_node_unref (entry->message);
  g_free (entry);
}

static void
held_send_end (WbOutbox *self, HeldSend *entry, GError *error)
{
  if (entry->callback != NULL)
    self->callbacks.send_done (entry->callback, entry->callback_data, error, self->user_data);
  else
    g_clear_error (&error);
  held_send_free (entry);
}

static void
notify_held_changed (WbOutbox *self)
{
  if (self->callbacks.held_changed != NULL)
    self->callbacks.held_changed (self->user_data);
}

/* ---- pacing -------------------------------------------------------------- */

static gboolean
pace_cb (gpointer user_data)
{
  WbOutbox *self = user_data;

  self->pace_id = 0;
  pump (self);
  return G_SOURCE_REMOVE;
}

/* The service closes a client that sends too fast (4429, then a minute of
 * silence for everyone here), so every message but the heartbeat takes a
 * token. FALSE: none now, and the pump runs again when one is due. */
static gboolean
pace_take (WbOutbox *self)
{
  gint64 now = g_get_monotonic_time ();
  gint64 wait_us;

  if (wb_rate_limit_take (&self->pace, now))
    return TRUE;
  wait_us = wb_rate_limit_get_wait_us (&self->pace, now);
  if (self->pace_id == 0)
    self->pace_id = g_timeout_add (MAX ((guint)((wait_us + 999) / 1000), 1), pace_cb, self);
  return FALSE;
}

/* ---- held sends ---------------------------------------------------------- */

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
          g_queue_delete_link (&self->held, l);
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

static void
flush_held (WbOutbox *self)
{
  guint written = 0;
  HeldSend *entry;

  while (self->open && (entry = g_queue_peek_head (&self->held)) != NULL && pace_take (self))
    {
      g_queue_pop_head (&self->held);
      self->callbacks.write (entry->message, self->user_data);
      held_send_end (self, entry, NULL);
      written++;
    }
  if (written > 0)
    {
      schedule_expiry (self);
      notify_held_changed (self);
    }
}

/* ---- the union ----------------------------------------------------------- */

/* Tells the connection about @stream_id if what it was last told differs.
 * FALSE if the pace allows no message now. */
static gboolean
write_stream (WbOutbox *self, const char *stream_id)
{
  char **wanted = g_hash_table_lookup (self->wanted, stream_id);
  char **told = g_hash_table_lookup (self->told, stream_id);
  g_autoptr (JsonNode) node = NULL;

  if (strv_equal0 (wanted, told))
    return TRUE;
  if (!pace_take (self))
    return FALSE;
  if (wanted != NULL)
    {
      node = wb_message_new_subscribe (stream_id, (const char *const *)wanted);
      g_hash_table_replace (self->told, g_strdup (stream_id), g_strdupv (wanted));
    }
  else
    {
      node = wb_message_new_unsubscribe (stream_id);
      g_hash_table_remove (self->told, stream_id);
    }
  self->callbacks.write (node, self->user_data);
  return TRUE;
}

static void
mark_unsynced (WbOutbox *self, const char *stream_id)
{
  char *id;

  if (g_hash_table_contains (self->unsynced_set, stream_id))
    return;
  id = g_strdup (stream_id);
  g_hash_table_add (self->unsynced_set, id);
  g_queue_push_tail (&self->unsynced, id);
}

/* Writes what the pace allows: the union first, then (on a connection that
 * proved healthy) the held sends. */
static void
pump (WbOutbox *self)
{
  const char *stream_id;

  if (!self->open)
    return;
  while ((stream_id = g_queue_peek_head (&self->unsynced)) != NULL)
    {
      if (!write_stream (self, stream_id))
        return;
      /* A write that broke the connection forgot the whole queue. */
      if (!self->open)
        return;
      g_queue_pop_head (&self->unsynced);
      g_hash_table_remove (self->unsynced_set, stream_id); /* frees it */
    }
  if (self->healthy)
    flush_held (self);
}

static void
clear_unsynced (WbOutbox *self)
{
  g_queue_clear (&self->unsynced);
  g_hash_table_remove_all (self->unsynced_set);
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
  self->unsynced_set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_queue_init (&self->unsynced);
  g_queue_init (&self->held);
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
  g_clear_handle_id (&self->pace_id, g_source_remove);
  clear_unsynced (self);
  g_hash_table_unref (self->unsynced_set);
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
wb_outbox_set_stream_events (WbOutbox *self, const char *stream_id, const char *const *events)
{
  char **old;

  g_return_val_if_fail (self != NULL && stream_id != NULL, FALSE);

  old = g_hash_table_lookup (self->wanted, stream_id);
  if (events == NULL || events[0] == NULL)
    {
      if (old == NULL)
        return FALSE;
      g_hash_table_remove (self->wanted, stream_id);
    }
  else
    {
      if (old != NULL && g_strv_equal ((const char *const *)old, events))
        return FALSE;
      g_hash_table_replace (self->wanted, g_strdup (stream_id), g_strdupv ((char **)events));
    }
  if (self->open)
    {
      mark_unsynced (self, stream_id);
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
    mark_unsynced (self, ids[i]);
  pump (self);
}

void
wb_outbox_connection_healthy (WbOutbox *self)
{
  g_return_if_fail (self != NULL);

  if (!self->open || self->healthy)
    return;
  self->healthy = TRUE;
  pump (self);
}

void
wb_outbox_connection_closed (WbOutbox *self)
{
  g_return_if_fail (self != NULL);

  self->open = FALSE;
  self->healthy = FALSE;
  g_hash_table_remove_all (self->told);
  clear_unsynced (self);
  g_clear_handle_id (&self->pace_id, g_source_remove);
}

void
wb_outbox_send (WbOutbox *self, JsonNode *message, WbSendCallback callback, gpointer callback_data)
{
  HeldSend *entry;

  g_return_if_fail (self != NULL && message != NULL);

  if (self->held.length >= self->limits.max_held)
    {
      if (callback != NULL)
        self->callbacks.send_done (callback, callback_data,
                                   g_error_new (WB_SEND_ERROR, WB_SEND_ERROR_NOT_CONNECTED,
                                                "%u message(s) already waiting to go upstream",
                                                self->held.length),
                                   self->user_data);
      return;
    }
  entry = g_new0 (HeldSend, 1);
  entry->message = json_node_ref (message);
  entry->callback = callback;
  entry->callback_data = callback_data;
  entry->deadline_us = g_get_monotonic_time () + (gint64)self->limits.held_timeout_ms * 1000;
  g_queue_push_tail (&self->held, entry);
  if (self->expiry_id == 0)
    schedule_expiry (self);
  notify_held_changed (self);
  /* Every send takes the queue: the pump writes it now on a healthy
   * connection with a token to spare, later otherwise, always in order. */
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
  while ((entry = g_queue_pop_head (&self->held)) != NULL)
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
