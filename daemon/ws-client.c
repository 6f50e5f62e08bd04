/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-websocket"

#include "ws-client.h"

#include <gio/gio.h>

/* Events resume once the queue drained to 1/LOW_WATER_DIVISOR of its bound,
 * so a client hovering at the bound gets one notice, not thousands. */
#define LOW_WATER_DIVISOR 2
/* The codes this module closes with (RFC 6455 7.4.1). */
#define CLOSE_POLICY_VIOLATION 1008

struct _WbWsClient
{
  SoupWebsocketConnection *connection;
  WbWsMeter *meter;              /* what the peer sends, or NULL */
  GPollableOutputStream *output; /* the connection's, to ask whether it takes more */
  WbWsClientLimits limits;
  WbWsClientCallbacks callbacks;
  GBytes *(*dropped_notice) (guint count, gpointer user_data);
  gpointer user_data;
  gulong message_handler;
  gulong closed_handler;

  GQueue output_queue; /* GBytes lines, '\n' included, not yet given to libsoup */
  gsize queued_bytes;
  WbWsAccount *account;
  GSource *writable_source; /* while the socket is full */

  gboolean congested;
  guint dropped_pending;
  guint64 dropped_total;
  guint slow_timeout_id;

  gboolean closing;
  WbWsClientCloseReason close_reason;
};

const char *
wb_ws_client_close_reason_to_string (WbWsClientCloseReason reason)
{
  switch (reason)
    {
    case WB_WS_CLIENT_CLOSED_BY_PEER:
      return "closed by peer";
    case WB_WS_CLIENT_CLOSED_DONE:
      return "closed";
    case WB_WS_CLIENT_CLOSED_SLOW:
      return "too slow";
    case WB_WS_CLIENT_CLOSED_OVERFLOW:
      return "output queue overflow";
    }
  return "?";
}

static void
client_account_add (WbWsClient *client, gssize delta)
{
  client->queued_bytes += delta;
  if (client->account != NULL)
    client->account->queued += delta;
}

static void
client_send_head (WbWsClient *client)
{
  g_autoptr (GBytes) line = g_queue_pop_head (&client->output_queue);
  gsize size = g_bytes_get_size (line);
  g_autoptr (GBytes) frame = g_bytes_new_from_bytes (line, 0, size > 0 ? size - 1 : 0);

  client_account_add (client, -(gssize)size);
  soup_websocket_connection_send_message (client->connection, SOUP_WEBSOCKET_DATA_TEXT, frame);
}

static gboolean client_writable_cb (GObject *stream, gpointer user_data);

/* Gives libsoup as much as the socket takes now: libsoup writes a frame at
 * once when it can and keeps the rest without bound, so what it holds stays
 * at about one frame; the rest waits here, counted. */
static void
client_pump (WbWsClient *client)
{
  while (!g_queue_is_empty (&client->output_queue)
         && soup_websocket_connection_get_state (client->connection) == SOUP_WEBSOCKET_STATE_OPEN
         && g_pollable_output_stream_is_writable (client->output))
    client_send_head (client);

  if (client->congested && client->queued_bytes <= client->limits.queue_bytes / LOW_WATER_DIVISOR)
    {
      client->congested = FALSE;
      g_clear_handle_id (&client->slow_timeout_id, g_source_remove);
    }
  if (!g_queue_is_empty (&client->output_queue) && client->writable_source == NULL
      && soup_websocket_connection_get_state (client->connection) == SOUP_WEBSOCKET_STATE_OPEN)
    {
      client->writable_source = g_pollable_output_stream_create_source (client->output, NULL);
      g_source_set_callback (client->writable_source, (GSourceFunc)(GCallback)client_writable_cb,
                             client, NULL);
      g_source_attach (client->writable_source, NULL);
    }
}

static gboolean
client_writable_cb (GObject *stream, gpointer user_data)
{
  WbWsClient *client = user_data;

  g_clear_pointer (&client->writable_source, g_source_unref);
  client_pump (client);
  return G_SOURCE_REMOVE;
}

static void
client_close_for (WbWsClient *client, WbWsClientCloseReason reason, const char *text)
{
  if (client->closing)
    return;
  client->closing = TRUE;
  client->close_reason = reason;
  /* Nothing more of this client is worth writing. */
  while (!g_queue_is_empty (&client->output_queue))
    {
      GBytes *line = g_queue_pop_head (&client->output_queue);

      client_account_add (client, -(gssize)g_bytes_get_size (line));
      g_bytes_unref (line);
    }
  if (soup_websocket_connection_get_state (client->connection) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close (client->connection, CLOSE_POLICY_VIOLATION, text);
}

static gboolean
client_slow_cb (gpointer user_data)
{
  WbWsClient *client = user_data;

  client->slow_timeout_id = 0;
  if (client->congested)
    client_close_for (client, WB_WS_CLIENT_CLOSED_SLOW, "too slow");
  return G_SOURCE_REMOVE;
}

static void
client_push (WbWsClient *client, GBytes *line)
{
  g_queue_push_tail (&client->output_queue, g_bytes_ref (line));
  client_account_add (client, (gssize)g_bytes_get_size (line));
  client_pump (client);
}

gboolean
wb_ws_client_queue_event (WbWsClient *client, GBytes *line)
{
  gsize size;

  g_return_val_if_fail (client != NULL && line != NULL, FALSE);

  if (client->closing)
    return FALSE;
  size = g_bytes_get_size (line);
  /* An empty queue takes any one line: refusing it would leave the client
   * congested with nothing to drain. */
  if (client->congested
      || (client->queued_bytes > 0 && client->queued_bytes + size > client->limits.queue_bytes))
    {
      if (!client->congested)
        {
          client->congested = TRUE;
          client->slow_timeout_id
              = g_timeout_add (client->limits.slow_timeout_ms, client_slow_cb, client);
        }
      client->dropped_pending++;
      client->dropped_total++;
      return FALSE;
    }
  if (client->account != NULL && client->account->queued > 0
      && client->account->queued + size > client->account->limit)
    {
      client->dropped_pending++;
      client->dropped_total++;
      return FALSE;
    }
  if (client->dropped_pending > 0)
    {
      g_autoptr (GBytes) notice
          = client->dropped_notice (client->dropped_pending, client->user_data);

      client->dropped_pending = 0;
      if (notice != NULL)
        client_push (client, notice);
    }
  client_push (client, line);
  return TRUE;
}

void
wb_ws_client_queue_control (WbWsClient *client, GBytes *line)
{
  g_return_if_fail (client != NULL && line != NULL);

  if (client->closing)
    return;
  client_push (client, line);
  if (client->queued_bytes > client->limits.hard_queue_bytes
      || (client->account != NULL && client->account->queued > client->account->hard_limit))
    client_close_for (client, WB_WS_CLIENT_CLOSED_OVERFLOW, "output queue overflow");
}

void
wb_ws_client_close (WbWsClient *client, gushort code, const char *reason)
{
  g_return_if_fail (client != NULL);

  if (client->closing)
    return;
  client->closing = TRUE;
  client->close_reason = WB_WS_CLIENT_CLOSED_DONE;
  /* The close frame goes after what was queued (an error that explains it). */
  while (!g_queue_is_empty (&client->output_queue)
         && soup_websocket_connection_get_state (client->connection) == SOUP_WEBSOCKET_STATE_OPEN)
    client_send_head (client);
  if (soup_websocket_connection_get_state (client->connection) == SOUP_WEBSOCKET_STATE_OPEN)
    soup_websocket_connection_close (client->connection, code, reason);
}

gboolean
wb_ws_client_is_closing (WbWsClient *client)
{
  g_return_val_if_fail (client != NULL, TRUE);
  return client->closing
         || soup_websocket_connection_get_state (client->connection) != SOUP_WEBSOCKET_STATE_OPEN;
}

static void
connection_message_cb (SoupWebsocketConnection *connection, gint type, GBytes *message,
                       gpointer user_data)
{
  WbWsClient *client = user_data;
  gsize length = 0;
  const char *data = g_bytes_get_data (message, &length);

  if (client->meter != NULL)
    wb_ws_meter_mark (client->meter);
  if (client->closing)
    return;
  client->callbacks.message (client, type == SOUP_WEBSOCKET_DATA_TEXT, data != NULL ? data : "",
                             length, client->user_data);
}

static void
connection_closed_cb (SoupWebsocketConnection *connection, gpointer user_data)
{
  WbWsClient *client = user_data;

  client->callbacks.closed (client,
                            client->closing ? client->close_reason : WB_WS_CLIENT_CLOSED_BY_PEER,
                            client->user_data);
}

/* The answer to the keepalive ping, or a pong the peer sent unasked. Not
 * a mark: a peer may put pongs between the fragments of a message (RFC
 * 6455 5.4), and a mark there let a message grow without bound. A pong is
 * credited instead with the smallest size a client's frame has (the
 * 2-byte header and the 4-byte mask; libsoup refuses an unmasked one), so
 * an idle client answering the (empty) keepalive pings never runs out of
 * budget and no pong buys room for anything else. Not its payload's size:
 * libsoup 3.2 passes a GByteArray where the signal says GBytes. */
static void
connection_pong_cb (SoupWebsocketConnection *connection, gpointer message, gpointer user_data)
{
  WbWsClient *client = user_data;

  if (client->meter != NULL)
    wb_ws_meter_credit (client->meter, WB_WS_CLIENT_MASKED_HEADER_BYTES);
}

static void
connection_error_cb (SoupWebsocketConnection *connection, GError *error, gpointer user_data)
{
  g_debug ("local WebSocket client: %s", error->message);
}

static void
client_apply_limits (WbWsClient *client, const WbWsClientLimits *limits)
{
  client->limits = *limits;
  if (client->meter != NULL)
    wb_ws_meter_set_budget (client->meter, limits->max_message_bytes + WB_WS_CLIENT_CONTROL_SLACK);
  soup_websocket_connection_set_max_incoming_payload_size (client->connection,
                                                           limits->max_message_bytes);
#if SOUP_CHECK_VERSION(3, 8, 0)
  /* Before 3.8 only each frame is bounded, not a message of many fragments
   * (docs/websocket.md, "Limits"). */
  soup_websocket_connection_set_max_total_message_size (client->connection,
                                                        limits->max_message_bytes);
#endif
}

WbWsClient *
wb_ws_client_new (SoupWebsocketConnection *connection, WbWsMeter *meter,
                  const WbWsClientLimits *limits,
                  GBytes *(*dropped_notice) (guint count, gpointer user_data),
                  const WbWsClientCallbacks *callbacks, gpointer user_data)
{
  WbWsClient *client;

  g_return_val_if_fail (SOUP_IS_WEBSOCKET_CONNECTION (connection), NULL);
  g_return_val_if_fail (limits != NULL && callbacks != NULL && dropped_notice != NULL, NULL);

  client = g_new0 (WbWsClient, 1);
  client->connection = g_object_ref (connection);
  client->meter = meter != NULL ? g_object_ref (meter) : NULL;
  client->output = G_POLLABLE_OUTPUT_STREAM (
      g_io_stream_get_output_stream (soup_websocket_connection_get_io_stream (connection)));
  client->callbacks = *callbacks;
  client->dropped_notice = dropped_notice;
  client->user_data = user_data;
  g_queue_init (&client->output_queue);
  client_apply_limits (client, limits);
  client->message_handler
      = g_signal_connect (connection, "message", G_CALLBACK (connection_message_cb), client);
  client->closed_handler
      = g_signal_connect (connection, "closed", G_CALLBACK (connection_closed_cb), client);
  g_signal_connect (connection, "error", G_CALLBACK (connection_error_cb), client);
  g_signal_connect (connection, "pong", G_CALLBACK (connection_pong_cb), client);
  return client;
}

void
wb_ws_client_free (WbWsClient *client)
{
  if (client == NULL)
    return;
  g_signal_handlers_disconnect_by_data (client->connection, client);
  if (client->writable_source != NULL)
    {
      g_source_destroy (client->writable_source);
      g_clear_pointer (&client->writable_source, g_source_unref);
    }
  g_clear_handle_id (&client->slow_timeout_id, g_source_remove);
  while (!g_queue_is_empty (&client->output_queue))
    {
      GBytes *line = g_queue_pop_head (&client->output_queue);

      client_account_add (client, -(gssize)g_bytes_get_size (line));
      g_bytes_unref (line);
    }
  g_clear_object (&client->connection);
  g_clear_object (&client->meter);
  g_free (client);
}

void
wb_ws_client_set_limits (WbWsClient *client, const WbWsClientLimits *limits)
{
  g_return_if_fail (client != NULL && limits != NULL);
  client_apply_limits (client, limits);
}

void
wb_ws_client_set_account (WbWsClient *client, WbWsAccount *account)
{
  g_return_if_fail (client != NULL);

  if (client->account != NULL)
    client->account->queued -= client->queued_bytes;
  client->account = account;
  if (account != NULL)
    account->queued += client->queued_bytes;
}

gsize
wb_ws_client_get_queued_bytes (WbWsClient *client)
{
  g_return_val_if_fail (client != NULL, 0);
  return client->queued_bytes;
}

guint64
wb_ws_client_get_dropped_total (WbWsClient *client)
{
  g_return_val_if_fail (client != NULL, 0);
  return client->dropped_total;
}
