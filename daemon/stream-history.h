/* SPDX-License-Identifier: MIT */
/*
 * The recent chat of one stream: a ring of the last chat.message and
 * reaction.received events the hub fanned out, bounded in count
 * ([Limits] HistoryPerStream) and in bytes ([Limits] HistoryBytesPerStream),
 * replayed to a subscriber that asks for "history": N.
 *
 * Every kept event gets the next number of the ring's own sequence. A
 * subscriber's WbHistoryCursor says, per kind, from which number on it took
 * the events live; a replay hands it only what lies before, and moves the
 * cursor back over what it handed out, so nothing reaches it twice however
 * often it asks, re-subscribes or upstream reconnects.
 */
#pragma once

#include <glib.h>

#include "event.h"

G_BEGIN_DECLS

/* [Limits] HistoryPerStream: default and ceiling. 0 keeps nothing. */
#define WB_STREAM_HISTORY_DEFAULT_EVENTS 50
#define WB_STREAM_HISTORY_MAX_EVENTS 1000
/* [Limits] HistoryBytesPerStream: default, floor and ceiling, counted as
 * the events' JSON lines (what a socket client would receive) plus a fixed
 * cost per event for the bookkeeping: only the lines are kept. */
#define WB_STREAM_HISTORY_DEFAULT_BYTES (64 * 1024)
#define WB_STREAM_HISTORY_MIN_BYTES 1024
#define WB_STREAM_HISTORY_MAX_BYTES (16 * 1024 * 1024)

/* The kinds of event a history keeps. */
typedef enum
{
  WB_HISTORY_KIND_CHAT,     /* chat.message */
  WB_HISTORY_KIND_REACTION, /* reaction.received */
  WB_HISTORY_N_KINDS
} WbHistoryKind;

/* What one subscriber already has, per kind: every kept event numbered
 * @seen_from[kind] or later. 0 (the zero-initialized cursor) = has
 * everything, i.e. wants no history of that kind. Also every event numbered
 * from @had_from[kind] up to (not including) @had_to[kind]: what it took
 * live before it stopped taking the kind and took it again (empty when
 * equal), so a replay never hands those out again. */
typedef struct
{
  guint64 seen_from[WB_HISTORY_N_KINDS];
  guint64 had_from[WB_HISTORY_N_KINDS];
  guint64 had_to[WB_HISTORY_N_KINDS];
} WbHistoryCursor;

typedef struct _WbStreamHistory WbStreamHistory;

/* @max_events 0: keeps nothing. */
WbStreamHistory *wb_stream_history_new (guint max_events, gsize max_bytes);
void wb_stream_history_free (WbStreamHistory *history);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbStreamHistory, wb_stream_history_free)
/* New limits (a reload); drops the oldest events past them. */
void wb_stream_history_set_limits (WbStreamHistory *history, guint max_events, gsize max_bytes);

/* TRUE for the message types a history keeps (@out_kind: which). */
gboolean wb_stream_history_kind_of (WbMessageType type, WbHistoryKind *out_kind);

/* Remembers @event (a ref) received at @now_us (monotonic), dropping the
 * oldest past the limits. FALSE, keeping nothing, for a type not kept, an
 * event bigger than the whole byte budget, a chat.message whose message_id
 * is already held (WAVE sending it again, e.g. after a reconnect), or a
 * history of 0 events. */
gboolean wb_stream_history_add (WbStreamHistory *history, WbEvent *event, gint64 now_us);

guint wb_stream_history_get_length (WbStreamHistory *history);
/* The bytes held (the sum of the kept events' line lengths). */
gsize wb_stream_history_get_bytes (WbStreamHistory *history);

/* A cursor for a subscriber that from now on takes the kinds of
 * @type_mask (1 << WbMessageType) live, and whose cursor was @previous
 * (NULL for a new subscriber): a kind it keeps taking keeps its place, a
 * kind it starts taking begins now, a kind it no longer takes is 0. What a
 * kind it stops taking had stays remembered (had_from … had_to), so taking
 * it again offers what it missed meanwhile, never what it had; after a
 * second stop, the runs it had and the gap between them count as had (one
 * range: the gap is not offered, nothing is offered twice). */
void wb_stream_history_cursor_update (WbStreamHistory *history, WbHistoryCursor *cursor,
                                      const WbHistoryCursor *previous, guint32 type_mask);

/* At most @count of the newest events that @cursor has not seen, oldest
 * first, each a copy marked "cached":true,"age_ms":N (as the state cache's
 * replay is), and moves @cursor back to the oldest one returned. Free with
 * g_ptr_array_unref. */
GPtrArray *wb_stream_history_build_replay (WbStreamHistory *history, WbHistoryCursor *cursor,
                                           guint count, gint64 now_us);

G_END_DECLS
