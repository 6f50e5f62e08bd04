/* SPDX-License-Identifier: MIT */
/*
 * The D-Bus frontend: inc.wave.Bridge1 on the system or session bus with
 * sd-bus, DESIGN.md "D-Bus", dbus/inc.wave.Bridge1.xml. Talks only to the hub.
 */
#pragma once

#include <glib.h>

#include "config.h"
#include "hub.h"

G_BEGIN_DECLS

typedef struct _WbDbusFrontend WbDbusFrontend;

/* Called once if the bus connection is lost; the daemon then exits non-zero. */
typedef void (*WbDbusLostCallback) (gpointer user_data);

/* Connects to config->bus (must not be WB_BUS_NONE), exports the objects,
 * requests inc.wave.Bridge1 and attaches to the default main context. */
WbDbusFrontend *wb_dbus_frontend_new (WbHub *hub, const WbConfig *config,
                                      WbDbusLostCallback lost_callback, gpointer user_data,
                                      GError **error);
void wb_dbus_frontend_free (WbDbusFrontend *frontend);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbDbusFrontend, wb_dbus_frontend_free)
void wb_dbus_frontend_set_config (WbDbusFrontend *frontend, const WbConfig *config);

G_END_DECLS
