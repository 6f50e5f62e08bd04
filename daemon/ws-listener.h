/* SPDX-License-Identifier: MIT */
/*
 * The TCP side of the local WAVE endpoint: accepts connections itself and
 * hands them to the SoupServer (soup_server_accept_iostream), so that what
 * a connection may cost before it is a WebSocket client is bounded here:
 * at most WB_WS_MAX_PENDING handshakes at once, WB_WS_MAX_PENDING_PER_USER
 * of one uid (root and the daemon's user: only the first bound), each
 * for at most WB_WS_HANDSHAKE_TIMEOUT_MS. (libsoup 3.2's
 * own listener has no such bounds, and leaks a GSocket per connection.)
 * The uid of each peer is looked up once, at accept (tcp-peer.c).
 */
#pragma once

#include <gio/gio.h>
#include <libsoup/soup.h>
#include <sys/types.h>

#include "ws-meter.h"

G_BEGIN_DECLS

/* Connections accepted whose handshake has not completed. */
#define WB_WS_MAX_PENDING 256
#define WB_WS_MAX_PENDING_PER_USER 16
/* What a peer may send before its handshake is done: the HTTP request
 * (headers, and a body SoupServer would keep in memory whole). */
#define WB_WS_MAX_REQUEST_BYTES (64 * 1024)
/* A connection that is not a WebSocket after this long is shut down (an
 * HTTP request that was answered, or one that never came). */
#define WB_WS_HANDSHAKE_TIMEOUT_MS 10000
/* A peer whose uid the kernel cannot name: one shared user. Not a real uid:
 * (uid_t)-2, never root, in no group. */
#define WB_WS_UID_UNKNOWN ((uid_t)-2)

typedef struct _WbWsListener WbWsListener;

/* Listens on @address (a loopback address) for @server, which must not
 * listen itself. */
WbWsListener *wb_ws_listener_new (SoupServer *server, GSocketAddress *address, GError **error);
/* Stops listening and shuts down pending connections. Accepts NULL. */
void wb_ws_listener_free (WbWsListener *listener);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbWsListener, wb_ws_listener_free)

/* The connection from @remote became a WebSocket: it is no longer pending.
 * Returns its peer's uid (WB_WS_UID_UNKNOWN if the kernel did not say) and
 * (@out_meter, a new ref) the meter of what it sends, or NULL if the
 * connection is not known. */
uid_t wb_ws_listener_claim (WbWsListener *listener, GSocketAddress *remote, WbWsMeter **out_meter);

G_END_DECLS
