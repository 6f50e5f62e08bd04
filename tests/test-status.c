/* SPDX-License-Identifier: MIT */
/*
 * status.h's field table is the one list of what the bridge publishes: the
 * D-Bus manager's properties must be exactly its fields, with the
 * signatures its kinds give, and bridge.status carries every field.
 */
#include <glib.h>
#include <string.h>

#include "dbus-private.h"
#include "status.h"

static void
test_dbus_properties_are_the_table (void)
{
  guint properties = 0;

  for (const sd_bus_vtable *entry = wb_dbus_manager_vtable; entry->type != _SD_BUS_VTABLE_END;
       entry++)
    {
      const WbStatusField *field;

      if (entry->type != _SD_BUS_VTABLE_PROPERTY && entry->type != _SD_BUS_VTABLE_WRITABLE_PROPERTY)
        continue;
      field = wb_status_field_by_dbus_name (entry->x.property.member);
      g_test_message ("property %s", entry->x.property.member);
      g_assert_nonnull (field);
      g_assert_cmpstr (entry->x.property.signature, ==, wb_status_field_signature (field));
      /* In the table's order, so the two read side by side. */
      g_assert_true (field == &wb_status_fields[properties]);
      if (field->constant)
        g_assert_true (entry->flags & SD_BUS_VTABLE_PROPERTY_CONST);
      else
        g_assert_true (entry->flags & SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE);
      properties++;
    }
  g_assert_cmpuint (properties, ==, WB_STATUS_N_FIELDS);
}

static void
test_json_carries_every_field (void)
{
  WbBridgeStatus status = {
    .link = { .state = WB_LINK_RATE_LIMITED,
              .state_since_us = 1,
              .connected_since_us = 0,
              .next_attempt_us = 5,
              .reconnects = 2,
              .last_close_code = 4429,
              .last_close_reason = "slow down",
              .last_error = NULL,
              .rtt_us = 99,
              .url = "wss://x/?api_key=REDACTED",
              .held_sends = 3,
              .invalid_messages = G_MAXUINT64 },
    .clients = 4,
    .events_received = 10,
    .events_delivered = 9,
    .events_dropped = 1,
    .version = "1.2.3",
  };
  g_autoptr (JsonObject) object = json_object_new ();

  wb_bridge_status_to_json (&status, object);
  g_assert_cmpuint (json_object_get_size (object), ==, WB_STATUS_N_FIELDS);
  for (guint i = 0; i < WB_STATUS_N_FIELDS; i++)
    g_assert_true (json_object_has_member (object, wb_status_fields[i].json_name));
  g_assert_cmpstr (json_object_get_string_member (object, wb_status_field_name (WB_STATUS_STATE)),
                   ==, "rate-limited");
  g_assert_cmpstr (json_object_get_string_member (object, "last_error"), ==, "");
  g_assert_cmpint (json_object_get_int_member (object, "last_close_code"), ==, 4429);
  g_assert_cmpint (json_object_get_int_member (object, "next_attempt"), ==, 5);
  /* JSON consumers read int64: a counter past it is clamped, not wrapped. */
  g_assert_cmpint (json_object_get_int_member (object, "invalid_messages"), ==, G_MAXINT64);
  g_assert_cmpstr (json_object_get_string_member (object, "version"), ==, "1.2.3");
}

static void
test_state_names (void)
{
  const char *const names[]
      = { "idle", "connecting", "connected", "waiting", "rate-limited", "auth-failed", "closed" };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_cmpstr (wb_link_state_to_string ((WbLinkState)i), ==, names[i]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/status/dbus-properties-are-the-table", test_dbus_properties_are_the_table);
  g_test_add_func ("/status/json-carries-every-field", test_json_carries_every_field);
  g_test_add_func ("/status/state-names", test_state_names);
  return g_test_run ();
}
