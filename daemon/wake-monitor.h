/* SPDX-License-Identifier: MIT */
/*
 * Tells when waiting out a reconnect backoff is pointless: GIO's network
 * monitor reports the network back, or logind reports resume from suspend
 * (PrepareForSleep(false) on the system bus).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _WbWakeMonitor WbWakeMonitor;

/* @reason: "network" or "resume". */
typedef void (*WbWakeCallback) (const char *reason, gpointer user_data);

/* Never fails: a missing system bus or network monitor only loses the hint. */
WbWakeMonitor *wb_wake_monitor_new (WbWakeCallback callback, gpointer user_data);
void wb_wake_monitor_free (WbWakeMonitor *monitor);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbWakeMonitor, wb_wake_monitor_free)

G_END_DECLS
