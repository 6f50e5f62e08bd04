/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-stream-history"

#include "stream-history.h"

#include <string.h>

/* Only the line is kept, not the parsed event: a parsed chat message takes
 * about ten times its line (json-glib's objects and hash tables; measured
 * 2.8 KiB for a 254-byte line), and history is read far less often than it
 * is written. A replay parses the few lines it hands out. */
typedef struct
{
  GBytes *line; /* the event's line, shared with its WbEvent while that lives */
  guint64 seq;
  gint64 received_us;
  gsize bytes; /* what it counts against the byte budget */
  WbHistoryKind kind;
  char *message_id; /* NULL if none */
} HistoryEntry;

/* What an entry costs beside its line: the entry, the GBytes, the queue
 * link, the message id's copy and its hash table slot, rounded up. So the
 * byte budget bounds memory, not only text. */
#define HISTORY_ENTRY_OVERHEAD_BYTES 256

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
  g_bytes_unref (entry->line);
  g_free (entry->message_id);
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
  GBytes *line;
  gsize bytes;

  g_return_val_if_fail (history != NULL && event != NULL, FALSE);

  if (history->max_events == 0
      || !wb_stream_history_kind_of (wb_event_get_message_type (event), &kind))
    return FALSE;
  line = wb_event_get_line (event);
  bytes = g_bytes_get_size (line) + HISTORY_ENTRY_OVERHEAD_BYTES;
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
  entry->line = g_bytes_ref (line);
  entry->seq = history->next_seq++;
  entry->received_us = now_us;
  entry->bytes = bytes + (message_id != NULL ? strlen (message_id) : 0);
  entry->kind = kind;
  entry->message_id = g_strdup (message_id);
  if (entry->message_id != NULL)
    g_hash_table_insert (history->message_ids, entry->message_id, entry);
  g_queue_push_tail (&history->entries, entry);
  history->bytes += entry->bytes;
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
      cursor->had_from[kind] = old.had_from[kind];
      cursor->had_to[kind] = old.had_to[kind];
      if ((type_mask & (1u << kind_types[kind])) == 0)
        {
          /* It stops taking the kind: remember what it had (a replay must
           * never hand that out again) before the place is given up. */
          if (old.seen_from[kind] != 0)
            {
              cursor->had_from[kind] = old.had_to[kind] == old.had_from[kind]
                                           ? old.seen_from[kind]
                                           : MIN (old.had_from[kind], old.seen_from[kind]);
              cursor->had_to[kind] = history->next_seq;
            }
          cursor->seen_from[kind] = 0;
        }
      else if (old.seen_from[kind] != 0)
        cursor->seen_from[kind] = old.seen_from[kind];
      else
        cursor->seen_from[kind] = history->next_seq;
    }
}

/* The event again from its line: it parsed once when it came in, so it
 * parses now; NULL (logged) would mean memory went bad. */
static WbEvent *
entry_parse (HistoryEntry *entry)
{
  gsize length = 0;
  const char *data = g_bytes_get_data (entry->line, &length);
  g_autoptr (GError) error = NULL;
  g_autoptr (WbMessage) message = NULL;

  if (length > 0 && data[length - 1] == '\n')
    length--;
  message = wb_message_parse (data, length, WB_DIRECTION_TO_CLIENT, &error);
  if (message == NULL)
    {
      g_warning ("A kept event no longer parses, left out of the history: %s", error->message);
      return NULL;
    }
  return wb_event_new_from_message (message);
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

      if (entry->seq < cursor->seen_from[entry->kind]
          && !(entry->seq >= cursor->had_from[entry->kind]
               && entry->seq < cursor->had_to[entry->kind]))
        g_ptr_array_add (picked, entry);
    }
  for (guint i = picked->len; i > 0; i--)
    {
      HistoryEntry *entry = g_ptr_array_index (picked, i - 1);
      g_autoptr (WbEvent) event = entry_parse (entry);

      /* Handed out or not, it counts as seen: it cannot come back. */
      oldest = MIN (oldest, entry->seq);
      if (event != NULL)
        g_ptr_array_add (events, wb_event_new_cached (event, (now_us - entry->received_us) / 1000));
    }
  g_ptr_array_unref (picked);

  /* Every unseen event from @oldest on was handed out, of each kind. */
  for (guint kind = 0; kind < WB_HISTORY_N_KINDS; kind++)
    if (cursor->seen_from[kind] > oldest)
      cursor->seen_from[kind] = oldest;
  return events;
}
