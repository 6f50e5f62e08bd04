/* SPDX-License-Identifier: MIT */
/*
 * Shared between the D-Bus frontend's files: dbus-frontend.c (bus, clients,
 * hub observer), dbus-manager.c (/inc/wave/Bridge1) and dbus-stream.c
 * (/inc/wave/Bridge1/stream/…). Not a public interface.
 */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

#include "bus-source.h"
#include "dbus-frontend.h"
#include "hub.h"

G_BEGIN_DECLS

#define WB_DBUS_NAME "inc.wave.Bridge1"
#define WB_DBUS_MANAGER_PATH "/inc/wave/Bridge1"
#define WB_DBUS_MANAGER_INTERFACE "inc.wave.Bridge1"
#define WB_DBUS_STREAM_PREFIX "/inc/wave/Bridge1/stream"
#define WB_DBUS_STREAM_INTERFACE "inc.wave.Bridge1.Stream"

/* Counters and RTT are published at most this often; State at once. */
#define WB_DBUS_STATUS_INTERVAL_MS 1000
/* Signals waiting in sd-bus's own output queue, at most (about 1.2 KiB
 * each): beyond, stream signals are dropped and counted. sd-bus's own
 * limit (384 Ki messages) let a stopped dbus-daemon grow the bridge by
 * 450 MiB during a flood. */
#define WB_DBUS_MAX_QUEUED_MESSAGES 4096
/* A failed emit other than ENOBUFS is logged at most this often. */
#define WB_DBUS_EMIT_WARNING_INTERVAL_US (10 * G_USEC_PER_SEC)

/* What the manager last published (status.h's fields, strings copied), to
 * emit PropertiesChanged only for properties whose values really changed. */
typedef struct
{
  gboolean valid;
  char *strings[WB_STATUS_N_FIELDS];
  guint64 numbers[WB_STATUS_N_FIELDS];
} WbDbusManagerSnapshot;

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (sd_bus_error, sd_bus_error_free)

typedef struct _WbDbusClient WbDbusClient;

/* A stream object: exists between the hub's stream_added and stream_removed. */
typedef struct
{
  WbDbusFrontend *frontend;
  char *stream_id;
  char *path;
} WbDbusStream;

struct _WbDbusFrontend
{
  gint64 last_reconnect_us; /* monotonic, of the last Reconnect() obeyed */
  WbHub *hub;
  const WbConfig *config;
  sd_bus *bus;
  GSource *source;
  WbDbusFrontendCallbacks callbacks;
  gpointer callback_data;
  GPtrArray *pending_reloads; /* sd_bus_message: Reload() calls to answer */
  guint observer_id;

  GHashTable *clients; /* unique name → WbDbusClient */
  guint n_resolving;   /* clients whose credentials are being asked */
  gsize waiting_bytes; /* what their calls hold (dbus-client.c) */
  sd_bus_slot *caller_left_slot;
  GHashTable *privileged_calls; /* set of privileged calls asking who their callers are */
  GHashTable *streams;          /* stream id → WbDbusStream */

  sd_bus_slot *manager_slot;
  sd_bus_slot *object_manager_slot;
  sd_bus_slot *stream_slot;
  sd_bus_slot *enumerator_slot;

  WbDbusManagerSnapshot published;
  guint status_timeout_id;
  gint64 last_status_us;
  gint64 last_emit_warning_us; /* monotonic; see wb_dbus_frontend_note_emit */
};

/* dbus-client.c */
/* Runs with the caller's hub client; like an sd-bus method handler, it
 * reads the call's arguments (handlers that defer to it read none) and
 * replies, or returns a negative errno / sets @ret_error for the reply. */
typedef int (*WbDbusClientFunc) (WbDbusFrontend *frontend, WbHubClient *client,
                                 sd_bus_message *call, sd_bus_error *ret_error);
/* Installs the match that ends the clients of callers leaving the bus. */
gboolean wb_dbus_clients_watch (WbDbusFrontend *frontend, GError **error);
/* Runs @func now if the caller is a known client; otherwise (if @create)
 * asks the bus who it is and runs @func, after the caller's earlier calls,
 * once the bus has answered. Without @create an unknown caller gets
 * NotSubscribed. Returns what a method handler returns. */
int wb_dbus_frontend_call_with_client (WbDbusFrontend *frontend, sd_bus_message *call,
                                       gboolean create, WbDbusClientFunc func,
                                       sd_bus_error *ret_error);
void wb_dbus_client_free (WbDbusClient *client);
/* A method for root and the daemon's own user only (Reload), like sd-bus's
 * check for methods not marked unprivileged, but without its synchronous
 * GetConnectionCredentials: a stalled bus would stall the whole loop. */
typedef int (*WbDbusPrivilegedFunc) (WbDbusFrontend *frontend, sd_bus_message *call,
                                     sd_bus_error *ret_error);
/* Runs @func now on a user bus (the user's own), otherwise once the bus has
 * said the caller is root or the daemon's user (AccessDenied if not).
 * Returns what a method handler returns. */
int wb_dbus_frontend_call_if_privileged (WbDbusFrontend *frontend, sd_bus_message *call,
                                         WbDbusPrivilegedFunc func, sd_bus_error *ret_error);
void wb_dbus_privileged_call_free (gpointer data);

/* dbus-frontend.c */
/* What a SendChatMessage or SendReaction call (either interface) sends. */
WbMessageType wb_dbus_send_type (sd_bus_message *call);
/* SendChatMessage / SendReaction from either interface: replies later. */
int wb_dbus_frontend_send (WbHubClient *client, sd_bus_message *call, WbMessageType type,
                           const char *stream_id, const char *text, sd_bus_error *ret_error);
/* Accounts for the result of emitting a signal: any failure (ENOBUFS, or a
 * message sd-bus refused to build) is a dropped message. */
void wb_dbus_frontend_note_emit (WbDbusFrontend *frontend, int r, const char *what);
/* TRUE when the bus daemon is not reading and WB_DBUS_MAX_QUEUED_MESSAGES
 * wait already: emit nothing more that can wait (note it as -ENOBUFS). */
gboolean wb_dbus_frontend_output_full (WbDbusFrontend *frontend);
/* The reply to a method call whose arguments sd-bus could not read (it
 * refuses strings that are not UTF-8 or hold noncharacters): InvalidArgument
 * rather than sd-bus's errno-named error. */
int wb_dbus_frontend_bad_arguments (sd_bus_error *ret_error, int r);

/* dbus-manager.c */
extern const sd_bus_vtable wb_dbus_manager_vtable[];
/* @immediate: State changed, publish now; otherwise coalesce. */
void wb_dbus_manager_status_changed (WbDbusFrontend *frontend, gboolean immediate);
void wb_dbus_manager_clear (WbDbusFrontend *frontend);

/* dbus-stream.c */
extern const sd_bus_vtable wb_dbus_stream_vtable[];
int wb_dbus_stream_find_cb (sd_bus *bus, const char *path, const char *interface, void *user_data,
                            void **out_found, sd_bus_error *ret_error);
int wb_dbus_stream_enumerate_cb (sd_bus *bus, const char *prefix, void *user_data,
                                 char ***out_nodes, sd_bus_error *ret_error);
WbDbusStream *wb_dbus_stream_new (WbDbusFrontend *frontend, const char *stream_id);
void wb_dbus_stream_free (WbDbusStream *stream);
/* Path of @stream_id's object; free with g_free. */
char *wb_dbus_stream_path (const char *stream_id);
void wb_dbus_stream_emit_event (WbDbusStream *stream, WbEvent *event);
void wb_dbus_stream_emit_changed (WbDbusStream *stream, WbStreamFields changed);
/* The stream id of a stream object's @path; NULL if it is not one. */
char *wb_dbus_stream_id_from_path (const char *path);

G_END_DECLS
