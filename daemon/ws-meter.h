/* SPDX-License-Identifier: MIT */
/*
 * What a local WebSocket peer may send, counted as it is read: a pollable
 * input stream in front of the socket's. Past a budget of bytes since the
 * last mark, reads fail (G_IO_ERROR_MESSAGE_TOO_LARGE) and whoever reads
 * (libsoup) ends the connection. The listener sets a small budget for the
 * HTTP request (SoupServer would otherwise keep a request body of any
 * size in memory); the frontend then gives each message MaxLineBytes and
 * marks every message it receives (libsoup 3.2 bounds a frame, not a
 * message of many fragments).
 *
 * With a socket set, it also reads nothing while that socket takes no
 * output: a peer that does not read cannot make libsoup queue answers
 * (pongs to its pings) without bound; its bytes wait in the kernel.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define WB_TYPE_WS_METER (wb_ws_meter_get_type ())
G_DECLARE_FINAL_TYPE (WbWsMeter, wb_ws_meter, WB, WS_METER, GFilterInputStream)

/* @base must be pollable (a socket's input stream). */
GInputStream *wb_ws_meter_new (GInputStream *base, gsize budget);
/* A new budget, counted from now. */
void wb_ws_meter_set_budget (WbWsMeter *meter, gsize budget);
/* A whole message arrived: its budget starts again. */
void wb_ws_meter_mark (WbWsMeter *meter);
/* @count bytes just read were a frame that is no part of a message (a
 * pong): they are not counted against the budget. Unlike a mark, a
 * message being gathered keeps what it has used. */
void wb_ws_meter_credit (WbWsMeter *meter, gsize count);
/* Reads wait while @socket (the peer's, whose output libsoup writes) is
 * not writable. */
void wb_ws_meter_set_socket (WbWsMeter *meter, GSocket *socket);
guint64 wb_ws_meter_get_total (WbWsMeter *meter);

G_END_DECLS
