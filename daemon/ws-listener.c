/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-websocket"

#include "ws-listener.h"

#include "hub.h"
#include "tcp-peer.h"

/* At most one log line per interval for refused connections. */
#define REFUSAL_LOG_INTERVAL_US (10 * G_USEC_PER_SEC)

typedef struct
{
  WbWsListener *listener;
  GSocketConnection *connection;
  WbWsMeter *meter;
  char *peer; /* "address:port" of the peer: the key */
  uid_t uid;
  guint timeout_id;
} Pending;

struct _WbWsListener
{
  SoupServer *server;
  GSocketService *service;
  GHashTable *pending;  /* peer "address:port" → Pending */
  GHashTable *per_user; /* uid → pending count */
  gint64 last_refusal_log_us;
  guint refusals_unlogged;
};

/* NULL if @address is not an IP address and port. */
static char *
peer_key (GSocketAddress *address)
{
  g_autofree char *host = NULL;

  if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address))
    return NULL;
  host = g_inet_address_to_string (
      g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address)));
  return g_strdup_printf ("%s:%u", host,
                          g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (address)));
}

static void
per_user_add (WbWsListener *listener, uid_t uid, gint delta)
{
  guint count = GPOINTER_TO_UINT (g_hash_table_lookup (listener->per_user, GUINT_TO_POINTER (uid)));

  count += delta;
  if (count == 0)
    g_hash_table_remove (listener->per_user, GUINT_TO_POINTER (uid));
  else
    g_hash_table_insert (listener->per_user, GUINT_TO_POINTER (uid), GUINT_TO_POINTER (count));
}

static void
pending_free (gpointer data)
{
  Pending *pending = data;

  per_user_add (pending->listener, pending->uid, -1);
  g_clear_handle_id (&pending->timeout_id, g_source_remove);
  g_clear_object (&pending->connection);
  g_clear_object (&pending->meter);
  g_free (pending->peer);
  g_free (pending);
}

/* Shutting the socket down (not closing it) lets whoever holds the stream
 * (the SoupServer) see the end and clean up as usual. */
static void
connection_shut_down (GSocketConnection *connection)
{
  g_socket_shutdown (g_socket_connection_get_socket (connection), TRUE, TRUE, NULL);
}

static gboolean
pending_timeout_cb (gpointer user_data)
{
  Pending *pending = user_data;

  pending->timeout_id = 0;
  g_debug ("local WebSocket peer %s: no handshake within %d ms, closing", pending->peer,
           WB_WS_HANDSHAKE_TIMEOUT_MS);
  connection_shut_down (pending->connection);
  g_hash_table_remove (pending->listener->pending, pending->peer);
  return G_SOURCE_REMOVE;
}

static void
listener_log_refusal (WbWsListener *listener, uid_t uid, const char *why)
{
  gint64 now = g_get_monotonic_time ();

  listener->refusals_unlogged++;
  if (listener->last_refusal_log_us != 0
      && now - listener->last_refusal_log_us < REFUSAL_LOG_INTERVAL_US)
    return;
  g_message ("Refusing a local WebSocket connection of uid %u and %u more: %s", (unsigned)uid,
             listener->refusals_unlogged - 1, why);
  listener->refusals_unlogged = 0;
  listener->last_refusal_log_us = now;
}

static gboolean
service_incoming_cb (GSocketService *service, GSocketConnection *connection, GObject *source,
                     gpointer user_data)
{
  WbWsListener *listener = user_data;
  g_autoptr (GSocketAddress) local = g_socket_connection_get_local_address (connection, NULL);
  g_autoptr (GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GIOStream) metered = NULL;
  g_autofree char *peer = peer_key (remote);
  uid_t uid = WB_WS_UID_UNKNOWN;
  guint of_user;
  Pending *pending;

  if (local == NULL || peer == NULL || g_hash_table_contains (listener->pending, peer))
    {
      connection_shut_down (connection);
      return TRUE;
    }
  if (!wb_tcp_peer_lookup_uid (local, remote, &uid, &error))
    {
      g_debug ("The uid of a local WebSocket peer is unknown: %s", error->message);
      uid = WB_WS_UID_UNKNOWN;
    }
  /* Root and the daemon's own user answer only to the global bound, as
   * they do for the hub's per-user quotas. */
  of_user
      = wb_hub_uid_is_exempt (uid)
            ? 0
            : GPOINTER_TO_UINT (g_hash_table_lookup (listener->per_user, GUINT_TO_POINTER (uid)));
  if (g_hash_table_size (listener->pending) >= WB_WS_MAX_PENDING
      || of_user >= WB_WS_MAX_PENDING_PER_USER)
    {
      listener_log_refusal (listener, uid,
                            of_user >= WB_WS_MAX_PENDING_PER_USER
                                ? "too many handshakes of this user at once"
                                : "too many handshakes at once");
      connection_shut_down (connection);
      return TRUE;
    }
  pending = g_new0 (Pending, 1);
  pending->listener = listener;
  pending->connection = g_object_ref (connection);
  pending->meter = WB_WS_METER (wb_ws_meter_new (
      g_io_stream_get_input_stream (G_IO_STREAM (connection)), WB_WS_MAX_REQUEST_BYTES));
  /* A peer that sends but does not read waits: libsoup answers pings
   * (and writes HTTP answers) without bound on what it holds. */
  wb_ws_meter_set_socket (pending->meter, g_socket_connection_get_socket (connection));
  pending->peer = g_steal_pointer (&peer);
  pending->uid = uid;
  pending->timeout_id = g_timeout_add (WB_WS_HANDSHAKE_TIMEOUT_MS, pending_timeout_cb, pending);
  per_user_add (listener, uid, +1);
  g_hash_table_insert (listener->pending, pending->peer, pending);
  /* libsoup reads through the meter, from the request on. */
  metered = g_simple_io_stream_new (G_INPUT_STREAM (pending->meter),
                                    g_io_stream_get_output_stream (G_IO_STREAM (connection)));
  if (!soup_server_accept_iostream (listener->server, metered, local, remote, &error))
    {
      g_warning ("Cannot serve a local WebSocket connection: %s", error->message);
      connection_shut_down (connection);
      g_hash_table_remove (listener->pending, pending->peer);
    }
  return TRUE;
}

WbWsListener *
wb_ws_listener_new (SoupServer *server, GSocketAddress *address, GError **error)
{
  g_autoptr (WbWsListener) listener = NULL;

  g_return_val_if_fail (SOUP_IS_SERVER (server) && G_IS_SOCKET_ADDRESS (address), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  listener = g_new0 (WbWsListener, 1);
  listener->server = g_object_ref (server);
  listener->pending = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, pending_free);
  listener->per_user = g_hash_table_new (g_direct_hash, g_direct_equal);
  listener->service = g_socket_service_new ();
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (listener->service), address,
                                      G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, NULL,
                                      error))
    return NULL;
  g_signal_connect (listener->service, "incoming", G_CALLBACK (service_incoming_cb), listener);
  g_socket_service_start (listener->service);
  return g_steal_pointer (&listener);
}

void
wb_ws_listener_free (WbWsListener *listener)
{
  if (listener == NULL)
    return;
  if (listener->service != NULL)
    {
      g_signal_handlers_disconnect_by_data (listener->service, listener);
      g_socket_service_stop (listener->service);
      g_socket_listener_close (G_SOCKET_LISTENER (listener->service));
      g_clear_object (&listener->service);
    }
  if (listener->pending != NULL)
    {
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, listener->pending);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        connection_shut_down (((Pending *)value)->connection);
    }
  g_clear_pointer (&listener->pending, g_hash_table_unref);
  g_clear_pointer (&listener->per_user, g_hash_table_unref);
  g_clear_object (&listener->server);
  g_free (listener);
}

uid_t
wb_ws_listener_claim (WbWsListener *listener, GSocketAddress *remote, WbWsMeter **out_meter)
{
  g_autofree char *peer = peer_key (remote);
  Pending *pending;
  uid_t uid;

  g_return_val_if_fail (listener != NULL && out_meter != NULL, WB_WS_UID_UNKNOWN);

  *out_meter = NULL;
  pending = peer != NULL ? g_hash_table_lookup (listener->pending, peer) : NULL;
  if (pending == NULL)
    return WB_WS_UID_UNKNOWN;
  uid = pending->uid;
  *out_meter = g_object_ref (pending->meter);
  g_hash_table_remove (listener->pending, peer);
  return uid;
}
