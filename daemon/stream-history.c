/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-stream-history"

#include "stream-history.h"

#include <string.h>

typedef struct
{
  WbEvent *event;
  guint64 seq;
  gint64 received_us;
  gsize bytes;
  WbHistoryKind kind;
  const char *message_id; /* in @event's payload; NULL if none */
} HistoryEntry;

struct _WbStreamHistory
{
  GQueue entries; /* HistoryEntry, oldest at the head */
  gsize bytes;
  guint max_events;
  gsize max_bytes;
  guint64 next_seq; /* from 1: a cursor's 0 means "has everything" */
  /* message_id → HistoryEntry of the chat messages held: WAVE may send one
   * again (a resubscribe after a reconnect) and history must not. */
  GHashTable *message_ids;
};

WbStreamHistory *
wb_stream_history_new (guint max_events, gsize max_bytes)
{
  WbStreamHistory *history = g_new0 (WbStreamHistory, 1);

  g_queue_init (&history->entries);
  history->max_events = MIN (max_events, WB_STREAM_HISTORY_MAX_EVENTS);
  history->max_bytes = max_bytes;
  history->next_seq = 1;
  history->message_ids = g_hash_table_new (g_str_hash, g_str_equal);
  return history;
}

static void
entry_free (HistoryEntry *entry)
{
  wb_event_unref (entry->event);
  g_free (entry);
}

static void
drop_oldest (WbStreamHistory *history)
{
  HistoryEntry *entry = g_queue_pop_head (&history->entries);

  history->bytes -= entry->bytes;
  if (entry->message_id != NULL
      && g_hash_table_lookup (history->message_ids, entry->message_id) == entry)
    g_hash_table_remove (history->message_ids, entry->message_id);
  entry_free (entry);
}

static void
trim (WbStreamHistory *history)
{
  while (history->entries.length > 0
         && (history->entries.length > history->max_events || history->bytes > history->max_bytes))
    drop_oldest (history);
}

void
wb_stream_history_free (WbStreamHistory *history)
{
  if (history == NULL)
    return;
  g_hash_table_unref (history->message_ids);
  g_queue_clear_full (&history->entries, (GDestroyNotify)entry_free);
  g_free (history);
}

void
wb_stream_history_set_limits (WbStreamHistory *history, guint max_events, gsize max_bytes)
{
  g_return_if_fail (history != NULL);

  history->max_events = MIN (max_events, WB_STREAM_HISTORY_MAX_EVENTS);
  history->max_bytes = max_bytes;
  trim (history);
}

gboolean
wb_stream_history_kind_of (WbMessageType type, WbHistoryKind *out_kind)
{
  WbHistoryKind kind;

  switch (type)
    {
    case WB_MESSAGE_CHAT_MESSAGE:
      kind = WB_HISTORY_KIND_CHAT;
      break;
    case WB_MESSAGE_REACTION_RECEIVED:
      kind = WB_HISTORY_KIND_REACTION;
      break;
    default:
      return FALSE;
    }
  if (out_kind != NULL)
    *out_kind = kind;
  return TRUE;
}

gboolean
wb_stream_history_add (WbStreamHistory *history, WbEvent *event, gint64 now_us)
{
  HistoryEntry *entry;
  WbHistoryKind kind;
  const char *message_id = NULL;
  gsize bytes;

  g_return_val_if_fail (history != NULL && event != NULL, FALSE);

  if (history->max_events == 0
      || !wb_stream_history_kind_of (wb_event_get_message_type (event), &kind))
    return FALSE;
  bytes = g_bytes_get_size (wb_event_get_line (event));
  if (bytes > history->max_bytes)
    return FALSE;
  if (kind == WB_HISTORY_KIND_CHAT)
    {
      message_id = wb_json_get_string (wb_event_get_payload (event), "message_id", NULL);
      if (message_id != NULL && message_id[0] == '\0')
        message_id = NULL;
      if (message_id != NULL && g_hash_table_contains (history->message_ids, message_id))
        return FALSE;
    }

  entry = g_new0 (HistoryEntry, 1);
  entry->event = wb_event_ref (event);
  entry->seq = history->next_seq++;
  entry->received_us = now_us;
  entry->bytes = bytes;
  entry->kind = kind;
  entry->message_id = message_id;
  if (message_id != NULL)
    g_hash_table_insert (history->message_ids, (gpointer)message_id, entry);
  g_queue_push_tail (&history->entries, entry);
  history->bytes += bytes;
  trim (history);
  return TRUE;
}

guint
wb_stream_history_get_length (WbStreamHistory *history)
{
  g_return_val_if_fail (history != NULL, 0);
  return history->entries.length;
}

gsize
wb_stream_history_get_bytes (WbStreamHistory *history)
{
  g_return_val_if_fail (history != NULL, 0);
  return history->bytes;
}

void
wb_stream_history_cursor_update (WbStreamHistory *history, WbHistoryCursor *cursor,
                                 const WbHistoryCursor *previous, guint32 type_mask)
{
  static const WbMessageType kind_types[WB_HISTORY_N_KINDS] = {
    [WB_HISTORY_KIND_CHAT] = WB_MESSAGE_CHAT_MESSAGE,
    [WB_HISTORY_KIND_REACTION] = WB_MESSAGE_REACTION_RECEIVED,
  };
  WbHistoryCursor old = { { 0 } };

  g_return_if_fail (history != NULL && cursor != NULL);

  if (previous != NULL)
    old = *previous;
  for (guint kind = 0; kind < WB_HISTORY_N_KINDS; kind++)
    {
      if ((type_mask & (1u << kind_types[kind])) == 0)
        cursor->seen_from[kind] = 0;
      else if (old.seen_from[kind] != 0)
        cursor->seen_from[kind] = old.seen_from[kind];
      else
        cursor->seen_from[kind] = history->next_seq;
    }
}

GPtrArray *
wb_stream_history_build_replay (WbStreamHistory *history, WbHistoryCursor *cursor, guint count,
                                gint64 now_us)
{
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify)wb_event_unref);
  GPtrArray *picked;
  guint64 oldest = G_MAXUINT64;

  g_return_val_if_fail (history != NULL && cursor != NULL, events);

  /* Newest first, so that a short @count takes the most recent. */
  picked = g_ptr_array_new ();
  for (GList *l = history->entries.tail; l != NULL && picked->len < count; l = l->prev)
    {
      HistoryEntry *entry = l->data;

      if (entry->seq < cursor->seen_from[entry->kind])
        g_ptr_array_add (picked, entry);
    }
  for (guint i = picked->len; i > 0; i--)
    {
      HistoryEntry *entry = g_ptr_array_index (picked, i - 1);

      g_ptr_array_add (events,
                       wb_event_new_cached (entry->event, (now_us - entry->received_us) / 1000));
      oldest = MIN (oldest, entry->seq);
    }
  g_ptr_array_unref (picked);

  /* Every unseen event from @oldest on was handed out, of each kind. */
  for (guint kind = 0; kind < WB_HISTORY_N_KINDS; kind++)
    if (cursor->seen_from[kind] > oldest)
      cursor->seen_from[kind] = oldest;
  return events;
}
