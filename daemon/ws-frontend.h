/* SPDX-License-Identifier: MIT */
/*
 * The local WAVE endpoint: ws://127.0.0.1:PORT/v1/streams, served by
 * libsoup's SoupServer on the main loop, speaking the WAVE WebSocket
 * protocol as its documentation describes, so an existing WAVE app changes
 * only its URL and key (docs/websocket.md). Off unless [WebSocket] Listen
 * is set. Talks only to the hub.
 */
#pragma once

#include <glib.h>

#include "config.h"
#include "hub.h"

G_BEGIN_DECLS

/* The path WAVE serves its WebSocket on. */
#define WB_WS_PATH "/v1/streams"

typedef struct _WbWsFrontend WbWsFrontend;

/* Listens on config->ws_listen (which must be set) and loads (or creates)
 * the local key. */
WbWsFrontend *wb_ws_frontend_new (WbHub *hub, const WbConfig *config, GError **error);
/* Closes every client with 1001 (going away). Accepts NULL. */
void wb_ws_frontend_free (WbWsFrontend *frontend);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbWsFrontend, wb_ws_frontend_free)
/* Limits, origins and the local key after a reload (the address is not
 * re-bound). A new key closes every client with 4401. FALSE (and nothing
 * changed) if the key file cannot be read. */
gboolean wb_ws_frontend_set_config (WbWsFrontend *frontend, const WbConfig *config, GError **error);
/* ws://ADDRESS:PORT/v1/streams */
const char *wb_ws_frontend_get_url (WbWsFrontend *frontend);
/* TRUE if @secret is the local key: main refuses a local key that is the
 * real API key, which must never reach a local app. */
gboolean wb_ws_frontend_key_is (WbWsFrontend *frontend, const char *secret);

G_END_DECLS
