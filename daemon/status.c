/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-status"

#include "status.h"

#include <stddef.h>

/* clang-format off */
/* clang-format off */
G_DEFINE_QUARK (wb-send-error-quark, wb_send_error)
G_DEFINE_QUARK (wb-link-error-quark, wb_link_error)
/* clang-format on */
/* clang-format on */

const char *
wb_link_state_to_string (WbLinkState state)
{
  switch (state)
    {
    case WB_LINK_IDLE:
      return "idle";
    case WB_LINK_CONNECTING:
      return "connecting";
    case WB_LINK_CONNECTED:
      return "connected";
    case WB_LINK_WAITING:
      return "waiting";
    case WB_LINK_RATE_LIMITED:
      return "rate-limited";
    case WB_LINK_AUTH_FAILED:
      return "auth-failed";
    case WB_LINK_CLOSED:
      return "closed";
    default:
      return "unknown";
    }
}

#define FIELD(id, json, dbus, field_kind, member, is_constant)                                     \
  [id] = { .json_name = json,                                                                      \
           .dbus_name = dbus,                                                                      \
           .kind = WB_STATUS_KIND_##field_kind,                                                    \
           .offset = offsetof (WbBridgeStatus, member),                                            \
           .constant = is_constant }

const WbStatusField wb_status_fields[WB_STATUS_N_FIELDS] = {
  FIELD (WB_STATUS_STATE, "state", "State", STATE, link.state, FALSE),
  FIELD (WB_STATUS_STATE_SINCE, "state_since", "StateSince", TIMESTAMP, link.state_since_us, FALSE),
  FIELD (WB_STATUS_UPSTREAM_URL, "upstream_url", "UpstreamURL", STRING, link.url, FALSE),
  FIELD (WB_STATUS_UPSTREAM_RTT, "upstream_rtt_us", "UpstreamRTT", UINT64, link.rtt_us, FALSE),
  FIELD (WB_STATUS_CONNECTED_SINCE, "connected_since", "ConnectedSince", TIMESTAMP,
         link.connected_since_us, FALSE),
  FIELD (WB_STATUS_NEXT_ATTEMPT, "next_attempt", "NextAttempt", TIMESTAMP, link.next_attempt_us,
         FALSE),
  FIELD (WB_STATUS_RECONNECTS, "reconnects", "Reconnects", UINT, link.reconnects, FALSE),
  FIELD (WB_STATUS_LAST_CLOSE_CODE, "last_close_code", "LastCloseCode", UINT16,
         link.last_close_code, FALSE),
  FIELD (WB_STATUS_LAST_CLOSE_REASON, "last_close_reason", "LastCloseReason", STRING,
         link.last_close_reason, FALSE),
  FIELD (WB_STATUS_LAST_ERROR, "last_error", "LastError", STRING, link.last_error, FALSE),
  FIELD (WB_STATUS_HELD_SENDS, "held_sends", "HeldSends", UINT, link.held_sends, FALSE),
  FIELD (WB_STATUS_INVALID_MESSAGES, "invalid_messages", "InvalidMessages", UINT64,
         link.invalid_messages, FALSE),
  FIELD (WB_STATUS_CLIENTS, "clients", "Clients", UINT, clients, FALSE),
  FIELD (WB_STATUS_EVENTS_RECEIVED, "events_received", "EventsReceived", UINT64, events_received,
         FALSE),
  FIELD (WB_STATUS_EVENTS_DELIVERED, "events_delivered", "EventsDelivered", UINT64,
         events_delivered, FALSE),
  FIELD (WB_STATUS_EVENTS_DROPPED, "events_dropped", "EventsDropped", UINT64, events_dropped,
         FALSE),
  FIELD (WB_STATUS_VERSION, "version", "Version", STRING, version, TRUE),
};

#undef FIELD

const char *
wb_status_field_name (WbStatusFieldId id)
{
  g_return_val_if_fail (id < WB_STATUS_N_FIELDS, NULL);
  return wb_status_fields[id].json_name;
}

const WbStatusField *
wb_status_field_by_dbus_name (const char *dbus_name)
{
  for (guint i = 0; i < WB_STATUS_N_FIELDS; i++)
    if (g_strcmp0 (wb_status_fields[i].dbus_name, dbus_name) == 0)
      return &wb_status_fields[i];
  return NULL;
}

const char *
wb_status_field_signature (const WbStatusField *field)
{
  switch (field->kind)
    {
    case WB_STATUS_KIND_STATE:
    case WB_STATUS_KIND_STRING:
      return "s";
    case WB_STATUS_KIND_TIMESTAMP:
    case WB_STATUS_KIND_UINT64:
      return "t";
    case WB_STATUS_KIND_UINT:
      return "u";
    case WB_STATUS_KIND_UINT16:
      return "q";
    default:
      g_return_val_if_reached ("s");
    }
}

static gconstpointer
field_address (const WbStatusField *field, const WbBridgeStatus *status)
{
  return (const guint8 *)status + field->offset;
}

const char *
wb_status_field_get_string (const WbStatusField *field, const WbBridgeStatus *status)
{
  gconstpointer address = field_address (field, status);
  const char *text;

  if (field->kind == WB_STATUS_KIND_STATE)
    return wb_link_state_to_string (*(const WbLinkState *)address);
  g_return_val_if_fail (field->kind == WB_STATUS_KIND_STRING, "");
  text = *(const char *const *)address;
  return text != NULL ? text : "";
}

guint64
wb_status_field_get_uint (const WbStatusField *field, const WbBridgeStatus *status)
{
  gconstpointer address = field_address (field, status);

  switch (field->kind)
    {
    case WB_STATUS_KIND_TIMESTAMP:
      return (guint64)MAX (*(const gint64 *)address, 0);
    case WB_STATUS_KIND_UINT64:
      return *(const guint64 *)address;
    case WB_STATUS_KIND_UINT:
      return *(const guint *)address;
    case WB_STATUS_KIND_UINT16:
      return *(const guint16 *)address;
    case WB_STATUS_KIND_STATE:
    case WB_STATUS_KIND_STRING:
    default:
      g_return_val_if_reached (0);
    }
}

void
wb_bridge_status_to_json (const WbBridgeStatus *status, JsonObject *object)
{
  g_return_if_fail (status != NULL && object != NULL);

  for (guint i = 0; i < WB_STATUS_N_FIELDS; i++)
    {
      const WbStatusField *field = &wb_status_fields[i];

      if (field->kind == WB_STATUS_KIND_STATE || field->kind == WB_STATUS_KIND_STRING)
        json_object_set_string_member (object, field->json_name,
                                       wb_status_field_get_string (field, status));
      else
        json_object_set_int_member (
            object, field->json_name,
            (gint64)MIN (wb_status_field_get_uint (field, status), (guint64)G_MAXINT64));
    }
}
