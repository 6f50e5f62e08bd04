/* SPDX-License-Identifier: MIT */
/*
 * The WAVE WebSocket endpoint of wave-sim: handshake (key check, injected
 * rejections, connection cap), the per-connection protocol (ping, subscribe,
 * unsubscribe, chat.message, reaction.sent, rate limit) and fan-out of
 * events to the connections subscribed to them. Fault injection entry points
 * are used by sim-control.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "sim-streams.h"

G_BEGIN_DECLS

#define SIM_SERVER_PATH "/v1/streams"
#define SIM_SERVER_DEFAULT_API_KEY "wave_test_key"
#define SIM_SERVER_DEFAULT_RATE_LIMIT 50
#define SIM_SERVER_MAX_RATE_LIMIT 100000
#define SIM_SERVER_DEFAULT_MAX_CONNECTIONS 64
#define SIM_SERVER_MAX_CONNECTIONS 4096
/* Largest client frame accepted; libsoup closes bigger ones with 1009. */
#define SIM_SERVER_MAX_INCOMING_PAYLOAD (64 * 1024)

typedef struct
{
  guint16 port;                     /* 0: any free port */
  const char *api_key;              /* NULL: any key is accepted */
  guint rate_limit;                 /* client messages per 1 s window; 0: none */
  guint max_connections;            /* open WebSockets; more get HTTP 503 */
  GTlsCertificate *tls_certificate; /* NULL: plain ws:// */
  const char *event_log;            /* NULL: none; else a file (sim-event-log.h) */
} SimServerOptions;

typedef struct _SimServer SimServer;

/* Creates the server and starts listening on 127.0.0.1. */
SimServer *sim_server_new (const SimServerOptions *options, SimStreams *streams, GError **error);
void sim_server_free (SimServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SimServer, sim_server_free)

SoupServer *sim_server_get_soup_server (SimServer *server);
/* "ws://127.0.0.1:PORT/v1/streams" (wss:// with TLS). */
const char *sim_server_get_url (SimServer *server);

/* Sends {"type":type,"payload":payload} to the connections subscribed to
 * payload.stream_id and @type. Returns how many got it. Numbers the event
 * first: sets @payload's "sim_stream_seq" to the stream's next number (1, 2,
 * …, per stream id, whether anyone gets it or not) and logs it. */
guint sim_server_publish (SimServer *server, const char *type, JsonObject *payload);
/* The same, @payload exactly as given: not numbered, not logged (/sim/emit). */
guint sim_server_publish_verbatim (SimServer *server, const char *type, JsonObject *payload);
/* Sets @payload's "sim_stream_seq" now (floods size their padding after it);
 * sim_server_publish () then keeps it. */
void sim_server_number_event (SimServer *server, JsonObject *payload);
/* A SimPublishFunc for sim_streams_set_publish_func (user_data: the server). */
void sim_server_publish_cb (const char *type, JsonObject *payload, gpointer user_data);
/* Sends @message as a text frame to every open connection. */
guint sim_server_send_all (SimServer *server, JsonNode *message);

/* Fault injection. */
guint sim_server_close_all (SimServer *server, gushort code, const char *reason);
guint sim_server_drop_all (SimServer *server);
void sim_server_set_answer_pings (SimServer *server, gboolean answer);
/* The next @count handshakes fail with @http_status (and @reason as the
 * HTTP reason phrase, written as the bytes it is; NULL: the usual one), or
 * (when @http_status is 0) are accepted then closed at once with @close_code. */
void sim_server_reject_next (SimServer *server, guint count, guint http_status, const char *reason,
                             gushort close_code);
guint sim_server_send_raw_text (SimServer *server, const char *text);
guint sim_server_send_raw_binary (SimServer *server, GBytes *data);

/* Adds the server's counters to the /sim/stats answer. */
void sim_server_add_stats (SimServer *server, JsonObject *stats);
/* HTTP answers of the sim: @answer as JSON, or {"ok":false,"error":text}. */
void sim_server_respond_json (SoupServerMessage *msg, guint status, JsonObject *answer);
void sim_server_respond_error (SoupServerMessage *msg, guint status, const char *text);

/* Closes every connection with 1001 (going away) before exit. */
void sim_server_shutdown (SimServer *server);

G_END_DECLS
