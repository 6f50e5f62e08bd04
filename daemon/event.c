/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-event"

#include "event.h"

struct _WbEvent
{
  grefcount ref_count;
  WbMessageType type;
  JsonNode *root;        /* may be immutable (shared with the parser's tree) */
  const char *type_name; /* borrowed from root */
  JsonObject *payload;   /* borrowed from root */
  const char *stream_id; /* borrowed from root or owned_stream_id; may be NULL */
  char *owned_stream_id;
  GBytes *line; /* serialized on first use */
};

static WbEvent *
event_new_take_root (JsonNode *root, WbMessageType type, JsonObject *payload)
{
  WbEvent *event = g_new0 (WbEvent, 1);

  g_ref_count_init (&event->ref_count);
  event->root = root;
  event->type = type;
  event->type_name = json_object_get_string_member (json_node_get_object (root), "type");
  event->payload = payload;
  return event;
}

/* An upstream `error` concerns the stream its details name, if any. */
static const char *
error_stream_id (JsonObject *payload)
{
  JsonNode *details = json_object_get_member (payload, "details");

  /* Optional; when present, the parser made sure it is an object. */
  if (details == NULL || !JSON_NODE_HOLDS_OBJECT (details))
    return NULL;
  return wb_json_get_string (json_node_get_object (details), "stream_id", NULL);
}

WbEvent *
wb_event_new_from_message (const WbMessage *message)
{
  WbEvent *event;

  g_return_val_if_fail (message != NULL && message->root != NULL && message->body != NULL, NULL);

  event = event_new_take_root (json_node_ref (message->root), message->type, message->body);
  event->stream_id = message->stream_id;
  if (message->line != NULL)
    event->line = g_bytes_ref (message->line);
  if (message->type == WB_MESSAGE_ERROR)
    event->stream_id = error_stream_id (message->body);
  return event;
}

WbEvent *
wb_event_new (const char *type, const char *stream_id, JsonObject *payload)
{
  WbEvent *event;

  g_return_val_if_fail (type != NULL && payload != NULL, NULL);

  event = event_new_take_root (wb_message_new_enveloped (type, payload),
                               wb_message_type_from_string (type), payload);
  event->owned_stream_id = g_strdup (stream_id);
  event->stream_id = event->owned_stream_id;
  return event;
}

WbEvent *
wb_event_new_cached (WbEvent *event, gint64 age_ms)
{
  JsonObject *root = json_object_new ();
  JsonNode *node;
  WbEvent *cached;

  g_return_val_if_fail (event != NULL, NULL);

  /* The payload object is shared, not copied: events are immutable. */
  json_object_set_string_member (root, "type", event->type_name);
  json_object_set_object_member (root, "payload", json_object_ref (event->payload));
  json_object_set_boolean_member (root, "cached", TRUE);
  json_object_set_int_member (root, "age_ms", MAX (age_ms, 0));
  node = json_node_new (JSON_NODE_OBJECT);
  json_node_take_object (node, root);

  cached = event_new_take_root (node, event->type, event->payload);
  cached->owned_stream_id = g_strdup (event->stream_id);
  cached->stream_id = cached->owned_stream_id;
  return cached;
}

gint64
wb_event_get_age_ms (const WbEvent *event)
{
  JsonObject *root;

  g_return_val_if_fail (event != NULL, -1);

  root = JSON_NODE_HOLDS_OBJECT (event->root) ? json_node_get_object (event->root) : NULL;
  if (root == NULL || !json_object_get_boolean_member_with_default (root, "cached", FALSE))
    return -1;
  return json_object_get_int_member_with_default (root, "age_ms", 0);
}

WbEvent *
wb_event_ref (WbEvent *event)
{
  g_return_val_if_fail (event != NULL, NULL);
  g_ref_count_inc (&event->ref_count);
  return event;
}

void
wb_event_unref (WbEvent *event)
{
  if (event == NULL || !g_ref_count_dec (&event->ref_count))
    return;
  g_clear_pointer (&event->line, g_bytes_unref);
  g_clear_pointer (&event->root, json_node_unref);
  g_free (event->owned_stream_id);
  g_free (event);
}

const char *
wb_event_get_type_name (const WbEvent *event)
{
  g_return_val_if_fail (event != NULL, NULL);
  return event->type_name;
}

WbMessageType
wb_event_get_message_type (const WbEvent *event)
{
  g_return_val_if_fail (event != NULL, WB_MESSAGE_TYPE_INVALID);
  return event->type;
}

const char *
wb_event_get_stream_id (const WbEvent *event)
{
  g_return_val_if_fail (event != NULL, NULL);
  return event->stream_id;
}

JsonObject *
wb_event_get_payload (const WbEvent *event)
{
  g_return_val_if_fail (event != NULL, NULL);
  return event->payload;
}

GBytes *
wb_event_get_line (WbEvent *event)
{
  g_return_val_if_fail (event != NULL, NULL);

  if (event->line == NULL)
    event->line = wb_json_to_line (event->root);
  return event->line;
}
