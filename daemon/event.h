/* SPDX-License-Identifier: MIT */
/*
 * WbEvent: one message as local clients get it, parsed once, serialized
 * once (lazily), the same bytes shared by every recipient. Immutable,
 * refcounted. Upstream events, the bridge's own notices (bridge.*) and
 * cache replays are all events.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "message.h"

G_BEGIN_DECLS

typedef struct _WbEvent WbEvent;

/* Wraps a parsed upstream message (takes a ref on its JSON). */
WbEvent *wb_event_new_from_message (const WbMessage *message);
/* {"type":type,"payload":payload} for the bridge's own messages; takes @payload. */
WbEvent *wb_event_new (const char *type, const char *stream_id, JsonObject *payload);
/* @event with "cached":true,"age_ms":@age_ms added to its envelope, sharing
 * its payload. */
WbEvent *wb_event_new_cached (WbEvent *event, gint64 age_ms);
WbEvent *wb_event_ref (WbEvent *event);
void wb_event_unref (WbEvent *event);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbEvent, wb_event_unref)

const char *wb_event_get_type_name (const WbEvent *event);
/* WB_MESSAGE_TYPE_INVALID for the bridge's own types (bridge.*). */
WbMessageType wb_event_get_message_type (const WbEvent *event);
const char *wb_event_get_stream_id (const WbEvent *event);
JsonObject *wb_event_get_payload (const WbEvent *event);
/* A replayed copy's "age_ms" (wb_event_new_cached); -1 for any other event. */
gint64 wb_event_get_age_ms (const WbEvent *event);
/* The compact JSON line with its '\n'; serialized on first use, then shared. */
GBytes *wb_event_get_line (WbEvent *event);

G_END_DECLS
