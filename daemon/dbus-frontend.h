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

typedef struct
{
  /* Called once if the bus connection is lost; the daemon then exits non-zero. */
  void (*lost) (gpointer user_data);
  /* Reload() was called: re-read the configuration from the main loop, then
   * answer with wb_dbus_frontend_reload_finished(). */
  void (*reload_requested) (gpointer user_data);
} WbDbusFrontendCallbacks;

/* Connects to config->bus (must not be WB_BUS_NONE), exports the objects,
 * requests inc.wave.Bridge1 and attaches to the default main context. */
WbDbusFrontend *wb_dbus_frontend_new (WbHub *hub, const WbConfig *config,
                                      const WbDbusFrontendCallbacks *callbacks, gpointer user_data,
                                      GError **error);
void wb_dbus_frontend_free (WbDbusFrontend *frontend);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbDbusFrontend, wb_dbus_frontend_free)
void wb_dbus_frontend_set_config (WbDbusFrontend *frontend, const WbConfig *config);
/* Answers every Reload() call waiting since reload_requested: @error NULL
 * = reloaded. */
void wb_dbus_frontend_reload_finished (WbDbusFrontend *frontend, const GError *error);

G_END_DECLS
