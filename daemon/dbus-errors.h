/* SPDX-License-Identifier: MIT */
/*
 * GError → inc.wave.Bridge1.Error.* names (dbus/inc.wave.Bridge1.xml).
 */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

G_BEGIN_DECLS

#define WB_DBUS_ERROR_NOT_CONNECTED "inc.wave.Bridge1.Error.NotConnected"
#define WB_DBUS_ERROR_RATE_LIMITED "inc.wave.Bridge1.Error.RateLimited"
#define WB_DBUS_ERROR_INVALID_ARGUMENT "inc.wave.Bridge1.Error.InvalidArgument"
#define WB_DBUS_ERROR_SEND_FAILED "inc.wave.Bridge1.Error.SendFailed"
#define WB_DBUS_ERROR_NOT_SUBSCRIBED "inc.wave.Bridge1.Error.NotSubscribed"
#define WB_DBUS_ERROR_TOO_MANY_SUBSCRIPTIONS "inc.wave.Bridge1.Error.TooManySubscriptions"
#define WB_DBUS_ERROR_LIMITS_EXCEEDED "inc.wave.Bridge1.Error.LimitsExceeded"
#define WB_DBUS_ERROR_FORBIDDEN "inc.wave.Bridge1.Error.Forbidden"
#define WB_DBUS_ERROR_FAILED "inc.wave.Bridge1.Error.Failed"

/* Fills @ret_error; returns the negative errno sd-bus method handlers return. */
int wb_dbus_error_set_from_gerror (sd_bus_error *ret_error, const GError *error);

G_END_DECLS
