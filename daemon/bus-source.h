/* SPDX-License-Identifier: MIT */
/*
 * sd-bus attached to a GMainContext as a GSource (STYLE.md "sd-bus in the
 * GLib main loop"). The source owns a reference on the bus and closes it
 * (sd_bus_flush_close_unref) when finalized.
 */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

G_BEGIN_DECLS

/* Called once, from the source's dispatch, when sd_bus_process() fails (the
 * connection is gone: @error is the negative errno). The source stops itself
 * afterwards. Set with g_source_set_callback (source, G_SOURCE_FUNC (f), …). */
typedef void (*WbBusSourceLostFunc) (int error, gpointer user_data);

/* Takes a new reference on @bus. Attach with g_source_attach(). */
GSource *wb_bus_source_new (sd_bus *bus);
/* TRUE once the bus was reported lost. */
gboolean wb_bus_source_is_lost (GSource *source);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus, sd_bus_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus_message, sd_bus_message_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus_slot, sd_bus_slot_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus_track, sd_bus_track_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (sd_bus_creds, sd_bus_creds_unref)

G_END_DECLS
