/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-wake"

#include "wake-monitor.h"

#include <gio/gio.h>

#define LOGIND_NAME "org.freedesktop.login1"
#define LOGIND_PATH "/org/freedesktop/login1"
#define LOGIND_MANAGER "org.freedesktop.login1.Manager"

struct _WbWakeMonitor
{
  WbWakeCallback callback;
  gpointer user_data;
  GNetworkMonitor *network_monitor;
  gulong network_handler;
  gboolean network_available;
  GCancellable *cancellable;
  GDBusConnection *system_bus;
  guint sleep_subscription;
};

static void
network_changed_cb (GNetworkMonitor *network_monitor, gboolean available, gpointer user_data)
{
  WbWakeMonitor *monitor = user_data;
  gboolean was_available = monitor->network_available;

  monitor->network_available = available;
  if (available && !was_available)
    {
      g_message ("network is back: retrying upstream now");
      monitor->callback ("network", monitor->user_data);
    }
}

static void
prepare_for_sleep_cb (GDBusConnection *connection, const char *sender, const char *path,
                      const char *interface, const char *signal, GVariant *parameters,
                      gpointer user_data)
{
  WbWakeMonitor *monitor = user_data;
  gboolean going_to_sleep = TRUE;

  if (!g_variant_is_of_type (parameters, G_VARIANT_TYPE ("(b)")))
    return;
  g_variant_get (parameters, "(b)", &going_to_sleep);
  if (!going_to_sleep)
    {
      g_message ("resumed from suspend: retrying upstream now");
      monitor->callback ("resume", monitor->user_data);
    }
}

static void
system_bus_ready_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  GDBusConnection *bus = g_bus_get_finish (result, &error);
  WbWakeMonitor *monitor;

  if (bus == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_debug ("no system bus, resume from suspend is not watched: %s", error->message);
      return;
    }
  monitor = user_data;
  monitor->system_bus = bus;
  monitor->sleep_subscription = g_dbus_connection_signal_subscribe (
      bus, LOGIND_NAME, LOGIND_MANAGER, "PrepareForSleep", LOGIND_PATH, NULL,
      G_DBUS_SIGNAL_FLAGS_NONE, prepare_for_sleep_cb, monitor, NULL);
}

WbWakeMonitor *
wb_wake_monitor_new (WbWakeCallback callback, gpointer user_data)
{
  WbWakeMonitor *monitor;

  g_return_val_if_fail (callback != NULL, NULL);
  monitor = g_new0 (WbWakeMonitor, 1);
  monitor->callback = callback;
  monitor->user_data = user_data;
  monitor->cancellable = g_cancellable_new ();

  monitor->network_monitor = g_object_ref (g_network_monitor_get_default ());
  monitor->network_available = g_network_monitor_get_network_available (monitor->network_monitor);
  monitor->network_handler = g_signal_connect (monitor->network_monitor, "network-changed",
                                               G_CALLBACK (network_changed_cb), monitor);

  g_bus_get (G_BUS_TYPE_SYSTEM, monitor->cancellable, system_bus_ready_cb, monitor);
  return monitor;
}

void
wb_wake_monitor_free (WbWakeMonitor *monitor)
{
  if (monitor == NULL)
    return;
  g_cancellable_cancel (monitor->cancellable);
  g_clear_object (&monitor->cancellable);
  if (monitor->system_bus != NULL && monitor->sleep_subscription != 0)
    g_dbus_connection_signal_unsubscribe (monitor->system_bus, monitor->sleep_subscription);
  g_clear_object (&monitor->system_bus);
  g_clear_signal_handler (&monitor->network_handler, monitor->network_monitor);
  g_clear_object (&monitor->network_monitor);
  g_free (monitor);
}
