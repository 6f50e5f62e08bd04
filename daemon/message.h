/* SPDX-License-Identifier: MIT */
/*
 * The WAVE message model: the one place that parses, validates and
 * serializes the WAVE envelope (see ../shared/upstream/wave-websocket-api.txt
 * and docs/protocol.md).
 *
 * Two wire shapes exist:
 *  - client → server (and local client → bridge): flat objects,
 *      {"type":"subscribe","stream_id":S,"events":[…]}
 *  - server → client (and bridge → local client): enveloped,
 *      {"type":T,"payload":{…}}
 * A WbMessage keeps the parsed JSON and points `body` at whichever object
 * holds the fields, so callers never care which shape they were given.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Hard limits on what the parser accepts; callers may impose smaller ones. */
#define WB_MESSAGE_MAX_DEPTH 32
#define WB_MESSAGE_MAX_STREAM_ID_BYTES 256
#define WB_MESSAGE_MAX_TEXT_BYTES 4096

typedef enum
{
  WB_MESSAGE_TYPE_INVALID = 0,
  WB_MESSAGE_STREAM_STARTED,
  WB_MESSAGE_STREAM_ENDED,
  WB_MESSAGE_STREAM_HEALTH,
  WB_MESSAGE_VIEWER_JOINED,
  WB_MESSAGE_VIEWER_LEFT,
  WB_MESSAGE_ANALYTICS_UPDATE,
  WB_MESSAGE_CHAT_MESSAGE,
  WB_MESSAGE_REACTION_SENT,
  WB_MESSAGE_REACTION_RECEIVED,
  WB_MESSAGE_PING,
  WB_MESSAGE_PONG,
  WB_MESSAGE_ERROR,
  WB_MESSAGE_SUBSCRIBE,
  WB_MESSAGE_UNSUBSCRIBE,
  /* The bridge's own request on the local socket. */
  WB_MESSAGE_STATUS,
  WB_MESSAGE_N_TYPES
} WbMessageType;

/* Who sends a message, which selects the wire shape and the schema. */
typedef enum
{
  WB_DIRECTION_TO_SERVER, /* flat: upstream client messages, local client requests */
  WB_DIRECTION_TO_CLIENT, /* enveloped: upstream server messages */
} WbDirection;

#define WB_MESSAGE_ERROR_DOMAIN (wb_message_error_quark ())
GQuark wb_message_error_quark (void);

typedef enum
{
  WB_MESSAGE_ERROR_INVALID_UTF8,
  WB_MESSAGE_ERROR_INVALID_JSON,
  WB_MESSAGE_ERROR_TOO_DEEP,
  WB_MESSAGE_ERROR_NOT_OBJECT,
  WB_MESSAGE_ERROR_UNKNOWN_TYPE,
  WB_MESSAGE_ERROR_WRONG_DIRECTION,
  WB_MESSAGE_ERROR_MISSING_FIELD,
  WB_MESSAGE_ERROR_INVALID_FIELD,
  /* Valid JSON with "\u0000" in a string: json-glib would cut the string
   * there (a stream id "s\u0000x" would become "s"), so it is refused. */
  WB_MESSAGE_ERROR_NUL_CHARACTER,
} WbMessageError;

typedef struct
{
  WbMessageType type;
  JsonNode *root;        /* owned: the whole object as received */
  JsonObject *body;      /* borrowed from root: payload or root, by direction */
  const char *stream_id; /* borrowed from body; NULL for ping, pong, error, status */
  JsonNode *request_id;  /* borrowed from root: the client's "id", or NULL */
  /* Server → client only: the text exactly as received plus '\n', when it
   * was one line already (so it can be forwarded without re-serializing);
   * NULL otherwise. Owned. It passed wb_json_strict_check (json-strict.h). */
  GBytes *line;
} WbMessage;

/* Every stream event type a client may subscribe to (the table's
 * stream_event rows), sorted, NULL-terminated. */
const char *const *wb_message_stream_event_names (void);
gboolean wb_message_is_stream_event_name (const char *name);

const char *wb_message_type_to_string (WbMessageType type);
WbMessageType wb_message_type_from_string (const char *name);
gboolean wb_message_type_is_stream_event (WbMessageType type);

WbMessage *wb_message_parse (const char *data, gsize length, WbDirection direction, GError **error);
void wb_message_free (WbMessage *message);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbMessage, wb_message_free)

/* Typed reads of one member of a JSON object: a payload the parser already
 * checked, a status, a reply. @object may be NULL; a member that is absent,
 * null or of another type gives @fallback. Numbers are read whether they
 * were written as integers or not. */
const char *wb_json_get_string (JsonObject *object, const char *member, const char *fallback);
gboolean wb_json_has_number (JsonObject *object, const char *member);
double wb_json_get_double (JsonObject *object, const char *member, double fallback);
/* A fraction is truncated; a double past the gint64 range is clamped. */
gint64 wb_json_get_int (JsonObject *object, const char *member, gint64 fallback);
/* A count for an unsigned fixed-size type (D-Bus u, t): 0 when absent,
 * negative or not a number, @max when at or past it, else truncated. */
guint64 wb_json_get_count (JsonObject *object, const char *member, guint64 max);

/* The same on a message's body; NULL/0 when absent or of another type. */
const char *wb_message_get_string (const WbMessage *message, const char *field);
double wb_message_get_double (const WbMessage *message, const char *field);
gint64 wb_message_get_int (const WbMessage *message, const char *field);

/* The events of a subscribe request, validated; empty means every stream
 * event. Returns a NULL-terminated sorted, de-duplicated vector. */
char **wb_message_dup_events (const WbMessage *message);

/* Serializes @node as one compact line: no raw newline can appear inside. */
char *wb_json_to_string (JsonNode *node, gsize *out_length);
/* The same with the terminating '\n', ready for the socket. */
GBytes *wb_json_to_line (JsonNode *node);

/* Builders for the messages the bridge sends, each a new JSON object node. */
JsonNode *wb_message_new_subscribe (const char *stream_id, const char *const *events);
JsonNode *wb_message_new_unsubscribe (const char *stream_id);
JsonNode *wb_message_new_chat (const char *stream_id, const char *text);
JsonNode *wb_message_new_reaction (const char *stream_id, const char *reaction);
JsonNode *wb_message_new_ping (gint64 timestamp_ms);
/* The answer to a server's ping, echoing its timestamp. */
JsonNode *wb_message_new_pong (gint64 timestamp_ms);
/* {"type":type,"payload":payload}; takes ownership of @payload. */
JsonNode *wb_message_new_enveloped (const char *type, JsonObject *payload);
/* {"type":"error","payload":{"code","message","details"}}; @details may be NULL. */
JsonNode *wb_message_new_error (const char *code, const char *message, JsonObject *details);

G_END_DECLS
