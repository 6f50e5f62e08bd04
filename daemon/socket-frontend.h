/* SPDX-License-Identifier: MIT */
/*
 * The local Unix socket: newline-delimited JSON, DESIGN.md "Local Unix
 * socket", docs/protocol.md. Talks only to the hub.
 */
#pragma once

#include <glib.h>

#include "config.h"
#include "hub.h"

G_BEGIN_DECLS

typedef struct _WbSocketFrontend WbSocketFrontend;

/* Takes the listening socket from systemd (sd_listen_fds) if one was passed,
 * otherwise binds config->socket_path (creating its directory, replacing a
 * stale socket, refusing if a live daemon owns it). */
WbSocketFrontend *wb_socket_frontend_new (WbHub *hub, const WbConfig *config, GError **error);
void wb_socket_frontend_free (WbSocketFrontend *frontend);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbSocketFrontend, wb_socket_frontend_free)
/* Limits and SendGroup after a reload; the socket path is not re-bound. */
void wb_socket_frontend_set_config (WbSocketFrontend *frontend, const WbConfig *config);
const char *wb_socket_frontend_get_path (WbSocketFrontend *frontend);

G_END_DECLS
