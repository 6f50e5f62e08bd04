/* SPDX-License-Identifier: MIT */
/*
 * What the bridge says about itself: the names of the upstream link's
 * states, the error domain of a send's outcome, and the status snapshot
 * that frontends publish (socket `bridge.status`, D-Bus properties of
 * inc.wave.Bridge1, wavectl status). Pure data: upstream fills the link
 * part, the hub adds its counters, frontends read it through the hub.
 *
 * wb_status_fields is the one list of the published fields; the socket
 * reply is built from it, D-Bus properties are read from it and checked
 * against it (tests/test-status.c), and wavectl names the fields it reads
 * through it.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum
{
  WB_LINK_IDLE,         /* no demand, not connected */
  WB_LINK_CONNECTING,   /* handshake under way */
  WB_LINK_CONNECTED,    /* open (healthy once the first pong arrived) */
  WB_LINK_WAITING,      /* backoff or fixed wait before the next attempt */
  WB_LINK_RATE_LIMITED, /* 4429 / HTTP 429: waiting 60 s */
  WB_LINK_AUTH_FAILED,  /* 4401 / HTTP 401/403: parked until key or config change */
  WB_LINK_CLOSED,       /* server closed with 1000: parked until local demand */
} WbLinkState;

/* "idle", "connecting", … as the socket, D-Bus and sd_notify show them. */
const char *wb_link_state_to_string (WbLinkState state);

/* The outcome of a chat message or reaction that could not be written. */
#define WB_SEND_ERROR (wb_send_error_quark ())
GQuark wb_send_error_quark (void);

typedef enum
{
  WB_SEND_ERROR_NOT_CONNECTED, /* refused at once: auth-failed, too many held */
  WB_SEND_ERROR_FAILED,        /* expired while held, write error, shut down */
} WbSendError;

/* Why the link refused a request (Reconnect()). */
#define WB_LINK_ERROR (wb_link_error_quark ())
GQuark wb_link_error_quark (void);

typedef enum
{
  WB_LINK_ERROR_SERVER_WAIT, /* the server asked for a wait (4429, 1001): it is kept */
  WB_LINK_ERROR_AUTH_FAILED, /* the key was rejected: only a new key helps */
} WbLinkError;

/* The outcome of one send: @error NULL = written into a healthy connection,
 * WB_SEND_ERROR otherwise. Always called from the main loop, never from
 * inside the call that made the send. */
typedef void (*WbSendCallback) (const GError *error, gpointer user_data);

/* The upstream link. Strings are borrowed and valid until the next
 * main-loop iteration. Times are g_get_real_time () microseconds. */
typedef struct
{
  WbLinkState state;
  gint64 state_since_us;
  gint64 connected_since_us; /* 0 unless connected */
  gint64 next_attempt_us;    /* 0 unless waiting for a retry */
  guint reconnects;          /* successful connects after the first */
  guint16 last_close_code;   /* 0 = none yet */
  const char *last_close_reason;
  const char *last_error; /* last upstream `error` or failure */
  guint64 rtt_us;         /* last ping round trip, 0 = not measured */
  const char *url;        /* with the API key redacted */
  guint held_sends;       /* chat/reactions waiting to go upstream */
  guint64 invalid_messages;
} WbLinkStatus;

/* Everything published: the link plus the hub's counters. */
typedef struct
{
  WbLinkStatus link;
  guint clients;
  guint streams;
  guint64 events_received;
  guint64 events_delivered;
  guint64 events_dropped;
  const char *version;
} WbBridgeStatus;

typedef enum
{
  WB_STATUS_KIND_STATE,     /* WbLinkState; a string on every transport */
  WB_STATUS_KIND_STRING,    /* const char * */
  WB_STATUS_KIND_TIMESTAMP, /* gint64 µs since the epoch, 0 = none */
  WB_STATUS_KIND_UINT64,
  WB_STATUS_KIND_UINT,
  WB_STATUS_KIND_UINT16,
} WbStatusKind;

typedef struct
{
  const char *json_name; /* member of bridge.status */
  const char *dbus_name; /* property of inc.wave.Bridge1 */
  WbStatusKind kind;
  gsize offset;      /* in WbBridgeStatus */
  gboolean constant; /* never changes, never re-published */
} WbStatusField;

/* Index of each field in wb_status_fields, for readers that name one. */
typedef enum
{
  WB_STATUS_STATE,
  WB_STATUS_STATE_SINCE,
  WB_STATUS_UPSTREAM_URL,
  WB_STATUS_UPSTREAM_RTT,
  WB_STATUS_CONNECTED_SINCE,
  WB_STATUS_NEXT_ATTEMPT,
  WB_STATUS_RECONNECTS,
  WB_STATUS_LAST_CLOSE_CODE,
  WB_STATUS_LAST_CLOSE_REASON,
  WB_STATUS_LAST_ERROR,
  WB_STATUS_HELD_SENDS,
  WB_STATUS_INVALID_MESSAGES,
  WB_STATUS_CLIENTS,
  WB_STATUS_EVENTS_RECEIVED,
  WB_STATUS_EVENTS_DELIVERED,
  WB_STATUS_EVENTS_DROPPED,
  WB_STATUS_VERSION,
  WB_STATUS_N_FIELDS
} WbStatusFieldId;

extern const WbStatusField wb_status_fields[WB_STATUS_N_FIELDS];

/* The JSON name of @id (what bridge.status carries). */
const char *wb_status_field_name (WbStatusFieldId id);
/* NULL if no field has that D-Bus name. */
const WbStatusField *wb_status_field_by_dbus_name (const char *dbus_name);

/* The D-Bus signature of a field: "s", "t", "u" or "q". */
const char *wb_status_field_signature (const WbStatusField *field);
/* Each kind's value, as the transports carry it. */
const char *wb_status_field_get_string (const WbStatusField *field, const WbBridgeStatus *status);
guint64 wb_status_field_get_uint (const WbStatusField *field, const WbBridgeStatus *status);

/* Adds every field of @status to @object under its JSON name. */
void wb_bridge_status_to_json (const WbBridgeStatus *status, JsonObject *object);

G_END_DECLS
