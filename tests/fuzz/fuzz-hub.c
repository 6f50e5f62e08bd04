/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: upstream frames through the hub to what local programs get.
 * Each frame is parsed as upstream.c parses it and handed to the real hub;
 * every line a socket client is given must be one line of strict JSON that
 * parses back to the same event, and every stream event must reach D-Bus:
 * the real dbus-stream.c emits its signal and PropertiesChanged, and the
 * manager (dbus-manager.c) answers GetAll, over a peer-to-peer sd-bus
 * connection whose other end reads and checks every message.
 *
 * Input: byte 0 options (OPTION_*), byte 1 the event types the "picky"
 * client wants (bit i: the i-th stream event name, 0 = all), then frames
 * separated by NUL bytes (never part of a valid frame: the parser refuses
 * NUL).
 */
#define G_LOG_DOMAIN "wave-fuzz-hub"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-id128.h>

#include "dbus-private.h"
#include "fuzz.h"
#include "hub.h"
#include "stream-history.h"
#include "text.h"

#define MAX_FRAMES 64
#define FRAME_SEPARATOR '\0'
/* sd_bus_process rounds on both ends before a message must have arrived. */
#define MAX_BUS_ROUNDS 1000

enum
{
  OPTION_LATE_SUBSCRIBER = 1 << 0,  /* a client subscribes after each frame: cache replay */
  OPTION_UNSUBSCRIBE_EACH = 1 << 1, /* "all" leaves each stream after each frame */
  OPTION_RESYNC_EACH = 1 << 2,      /* bridge.resync after each frame */
  OPTION_STATE_EACH = 1 << 3,       /* bridge.state after each frame */
};

typedef struct _Fuzz Fuzz;

typedef struct
{
  Fuzz *fuzz;
  const char *name;
  WbHubClient *client;
  guint32 type_mask; /* stream events it subscribes to, 1 << WbMessageType */
  gboolean replaying;
  guint delivered;
} Sink;

struct _Fuzz
{
  WbConfig *config;
  WbLinkStatus link;
  char *last_error;
  WbHub *hub;
  /* What dbus-stream.c and dbus-manager.c read: hub, bus, streams. */
  WbDbusFrontend dbus;
  sd_bus *peer;
  Sink all;   /* every event of every stream a frame names */
  Sink picky; /* the types chosen by byte 1 */
  Sink late;  /* subscribes after each frame, gets the cached replay */
  /* The frame being handled: a line equal to it was forwarded verbatim. */
  const char *frame;
  gsize frame_length;
  guint signals;
  const char *expect_path; /* of the next signal */
  gboolean reply_done;
  gboolean reply_failed;
};

static Fuzz fuzz;

/* ---- the upstream the hub sees ------------------------------------------- */

static void
ops_set_stream_events (gpointer upstream, const char *stream_id, const char *const *events,
                       gint64 owner)
{
}

static void
ops_send (gpointer upstream, JsonNode *message, gint64 owner, WbSendCallback callback,
          gpointer user_data)
{
  /* Only local clients send; none does here. */
  FUZZ_CHECK (!"no send expected");
}

static const WbLinkStatus *
ops_get_status (gpointer upstream)
{
  return &((Fuzz *)upstream)->link;
}

static gboolean
ops_reconnect (gpointer upstream, GError **error)
{
  return TRUE;
}

static void
ops_demand (gpointer upstream)
{
}

static const WbHubUpstreamOps ops = {
  .set_stream_events = ops_set_stream_events,
  .send = ops_send,
  .get_status = ops_get_status,
  .reconnect = ops_reconnect,
  .demand = ops_demand,
};

/* ---- lines for socket clients --------------------------------------------- */

static void
check_line (Sink *sink, WbEvent *event)
{
  GBytes *bytes = wb_event_get_line (event);
  gsize length = 0;
  const char *text = g_bytes_get_data (bytes, &length);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  WbMessageType type = wb_event_get_message_type (event);
  JsonObject *root;

  /* One line: clients split on '\n' (and some on '\r'). */
  FUZZ_CHECK (length >= 3 && text[length - 1] == '\n');
  FUZZ_CHECK (memchr (text, '\n', length - 1) == NULL && memchr (text, '\r', length) == NULL);
  /* Forwarded as received or serialized by the bridge: strict either way. */
  wb_fuzz_check_serialized (text, length - 1, "event line");

  /* The same event, as a client reading it finds it. */
  FUZZ_CHECK (json_parser_load_from_data (parser, text, (gssize)length - 1, NULL));
  FUZZ_CHECK (JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)));
  root = json_node_get_object (json_parser_get_root (parser));
  FUZZ_CHECK (g_strcmp0 (wb_json_get_string (root, "type", NULL), wb_event_get_type_name (event))
              == 0);
  FUZZ_CHECK (json_object_has_member (root, "payload"));
  FUZZ_CHECK (sink->replaying == json_object_has_member (root, "cached"));
  if (type != WB_MESSAGE_TYPE_INVALID)
    {
      /* A WAVE message still: another bridge could take it from here. */
      g_autoptr (WbMessage) again
          = wb_message_parse (text, length - 1, WB_DIRECTION_TO_CLIENT, &error);

      if (again == NULL)
        wb_fuzz_fail (__FILE__, __LINE__, "a %s line does not parse back: %s: %.*s",
                      wb_event_get_type_name (event), error->message, (int)MIN (length, 400), text);
      FUZZ_CHECK (again->type == type);
      if (wb_message_type_is_stream_event (type))
        FUZZ_CHECK (g_strcmp0 (again->stream_id, wb_event_get_stream_id (event)) == 0);
    }
}

static gboolean
sink_deliver_cb (WbHubClient *client, WbEvent *event, gpointer user_data)
{
  Sink *sink = user_data;
  WbMessageType type = wb_event_get_message_type (event);
  const char *stream_id = wb_event_get_stream_id (event);

  /* Only what it asked for: its streams, its types. */
  if (wb_message_type_is_stream_event (type))
    FUZZ_CHECK ((sink->type_mask & (1u << type)) != 0);
  if (stream_id != NULL)
    FUZZ_CHECK (wb_hub_client_is_subscribed (client, stream_id));
  check_line (sink, event);
  sink->delivered++;
  return TRUE;
}

static const WbHubClientSink sink_vtable = {
  .deliver = sink_deliver_cb,
};

/* ---- D-Bus ------------------------------------------------------------------ */

/* Reads every argument, as a client's bindings would. */
static void
read_all (sd_bus_message *message)
{
  const char *contents = NULL;
  char type;
  int r;

  while ((r = sd_bus_message_peek_type (message, &type, &contents)) > 0)
    {
      if (type == SD_BUS_TYPE_ARRAY || type == SD_BUS_TYPE_VARIANT || type == SD_BUS_TYPE_STRUCT
          || type == SD_BUS_TYPE_DICT_ENTRY)
        {
          FUZZ_CHECK (sd_bus_message_enter_container (message, type, contents) > 0);
          read_all (message);
          FUZZ_CHECK (sd_bus_message_exit_container (message) > 0);
          continue;
        }
      {
        union
        {
          guint64 number;
          double real;
          const char *text;
        } value;

        FUZZ_CHECK (sd_bus_message_read_basic (message, type, &value) > 0);
        if (type == SD_BUS_TYPE_STRING)
          FUZZ_CHECK (g_utf8_validate (value.text, -1, NULL));
      }
    }
  FUZZ_CHECK (r == 0);
}

static int
peer_filter_cb (sd_bus_message *message, void *user_data, sd_bus_error *ret_error)
{
  uint8_t type = 0;

  FUZZ_CHECK (sd_bus_message_get_type (message, &type) >= 0);
  if (type != SD_BUS_MESSAGE_SIGNAL)
    return 0;
  FUZZ_CHECK (fuzz.expect_path != NULL);
  FUZZ_CHECK (g_strcmp0 (sd_bus_message_get_path (message), fuzz.expect_path) == 0);
  read_all (message);
  fuzz.signals++;
  return 0;
}

static int
peer_reply_cb (sd_bus_message *reply, void *user_data, sd_bus_error *ret_error)
{
  fuzz.reply_done = TRUE;
  fuzz.reply_failed = sd_bus_message_is_method_error (reply, NULL);
  if (!fuzz.reply_failed)
    read_all (reply);
  return 0;
}

/* Until neither end has anything left to write or read. */
static void
pump_bus (void)
{
  for (guint i = 0; i < MAX_BUS_ROUNDS; i++)
    {
      int r_bridge = sd_bus_process (fuzz.dbus.bus, NULL);
      int r_peer = sd_bus_process (fuzz.peer, NULL);

      FUZZ_CHECK (r_bridge >= 0 && r_peer >= 0);
      if (r_bridge == 0 && r_peer == 0)
        return;
    }
  FUZZ_CHECK (!"the D-Bus connection settles");
}

static void
setup_bus (void)
{
  sd_id128_t server_id;
  int fds[2];

  FUZZ_CHECK (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) == 0);
  FUZZ_CHECK (sd_id128_randomize (&server_id) >= 0);
  FUZZ_CHECK (sd_bus_new (&fuzz.dbus.bus) >= 0);
  FUZZ_CHECK (sd_bus_set_fd (fuzz.dbus.bus, fds[0], fds[0]) >= 0);
  FUZZ_CHECK (sd_bus_new (&fuzz.peer) >= 0);
  FUZZ_CHECK (sd_bus_set_fd (fuzz.peer, fds[1], fds[1]) >= 0);
  FUZZ_CHECK (sd_bus_set_server (fuzz.peer, 1, server_id) >= 0);
  FUZZ_CHECK (sd_bus_start (fuzz.dbus.bus) >= 0 && sd_bus_start (fuzz.peer) >= 0);
  FUZZ_CHECK (sd_bus_add_filter (fuzz.peer, NULL, peer_filter_cb, NULL) >= 0);
  /* The objects as dbus-frontend.c exports them. */
  FUZZ_CHECK (sd_bus_add_object_vtable (fuzz.dbus.bus, NULL, WB_DBUS_MANAGER_PATH,
                                        WB_DBUS_MANAGER_INTERFACE, wb_dbus_manager_vtable,
                                        &fuzz.dbus)
              >= 0);
  FUZZ_CHECK (sd_bus_add_fallback_vtable (fuzz.dbus.bus, NULL, WB_DBUS_STREAM_PREFIX,
                                          WB_DBUS_STREAM_INTERFACE, wb_dbus_stream_vtable,
                                          wb_dbus_stream_find_cb, &fuzz.dbus)
              >= 0);
  pump_bus ();
  FUZZ_CHECK (sd_bus_is_ready (fuzz.dbus.bus) > 0 && sd_bus_is_ready (fuzz.peer) > 0);
}

/* The frontend's hub observer (dbus-frontend.c), minus what needs a bus
 * daemon (InterfacesAdded, the manager's rate limiting): each emission must
 * put exactly one message on the bus. */
static void
observer_stream_added_cb (const char *stream_id, gpointer user_data)
{
  WbDbusStream *stream = wb_dbus_stream_new (&fuzz.dbus, stream_id);

  FUZZ_CHECK (!g_hash_table_contains (fuzz.dbus.streams, stream_id));
  g_hash_table_insert (fuzz.dbus.streams, stream->stream_id, stream);
}

static void
observer_stream_removed_cb (const char *stream_id, gpointer user_data)
{
  FUZZ_CHECK (g_hash_table_remove (fuzz.dbus.streams, stream_id));
}

static void
observer_stream_event_cb (WbEvent *event, gpointer user_data)
{
  WbDbusStream *stream = g_hash_table_lookup (fuzz.dbus.streams, wb_event_get_stream_id (event));
  guint before = fuzz.signals;

  FUZZ_CHECK (stream != NULL);
  fuzz.expect_path = stream->path;
  wb_dbus_stream_emit_event (stream, event);
  pump_bus ();
  fuzz.expect_path = NULL;
  if (fuzz.signals != before + 1)
    wb_fuzz_fail (__FILE__, __LINE__, "%u D-Bus signals for a %s event", fuzz.signals - before,
                  wb_event_get_type_name (event));
}

static void
observer_stream_changed_cb (const char *stream_id, WbStreamFields changed, gpointer user_data)
{
  WbDbusStream *stream = g_hash_table_lookup (fuzz.dbus.streams, stream_id);
  guint before = fuzz.signals;

  FUZZ_CHECK (stream != NULL);
  fuzz.expect_path = stream->path;
  wb_dbus_stream_emit_changed (stream, changed);
  pump_bus ();
  fuzz.expect_path = NULL;
  if (fuzz.signals != before + 1)
    wb_fuzz_fail (__FILE__, __LINE__, "%u PropertiesChanged for a change of 0x%x",
                  fuzz.signals - before, changed);
}

static const WbHubObserver observer = {
  .stream_added = observer_stream_added_cb,
  .stream_removed = observer_stream_removed_cb,
  .stream_event = observer_stream_event_cb,
  .stream_changed = observer_stream_changed_cb,
};

/* Properties.GetAll of the manager, as busctl or wavectl asks for it. */
static void
check_manager_get_all (void)
{
  fuzz.reply_done = FALSE;
  FUZZ_CHECK (sd_bus_call_method_async (fuzz.peer, NULL, NULL, WB_DBUS_MANAGER_PATH,
                                        "org.freedesktop.DBus.Properties", "GetAll", peer_reply_cb,
                                        NULL, "s", WB_DBUS_MANAGER_INTERFACE)
              >= 0);
  pump_bus ();
  FUZZ_CHECK (fuzz.reply_done);
  if (fuzz.reply_failed)
    wb_fuzz_fail (__FILE__, __LINE__, "GetAll of the manager failed (LastError: %s)",
                  fuzz.last_error);
}

/* ---- one input ---------------------------------------------------------------- */

static void
sink_init (Sink *sink, const char *name, guint32 type_mask)
{
  sink->fuzz = &fuzz;
  sink->name = name;
  sink->type_mask = type_mask;
  sink->replaying = FALSE;
  sink->delivered = 0;
  sink->client = wb_hub_client_new (fuzz.hub, name, NULL, &sink_vtable, sink, NULL);
  FUZZ_CHECK (sink->client != NULL);
}

static guint32
all_types_mask (void)
{
  guint32 mask = 0;

  for (const char *const *name = wb_message_stream_event_names (); *name != NULL; name++)
    mask |= 1u << wb_message_type_from_string (*name);
  return mask;
}

static guint32
picky_mask (guint8 bits, const char **out_names)
{
  const char *const *names = wb_message_stream_event_names ();
  guint32 mask = 0;
  guint n = 0;

  for (guint i = 0; names[i] != NULL; i++)
    if (bits & (1u << i))
      {
        out_names[n++] = names[i];
        mask |= 1u << wb_message_type_from_string (names[i]);
      }
  out_names[n] = NULL;
  return n > 0 ? mask : all_types_mask ();
}

static void
subscribe (Sink *sink, const char *stream_id, const char *const *events)
{
  g_autoptr (GError) error = NULL;

  if (wb_hub_client_is_subscribed (sink->client, stream_id))
    return;
  /* Refusals (a stream id the hub will not take) are fine; crashes are not. */
  wb_hub_client_subscribe (sink->client, stream_id, events, NULL, &error);
}

/* The stream an event is for: its stream_id, or an error's details.stream_id. */
static const char *
target_stream (const WbMessage *message)
{
  JsonNode *details;

  if (message->stream_id != NULL)
    return message->stream_id;
  if (message->type != WB_MESSAGE_ERROR)
    return NULL;
  details = json_object_get_member (message->body, "details");
  if (details == NULL || !JSON_NODE_HOLDS_OBJECT (details))
    return NULL;
  return wb_json_get_string (json_node_get_object (details), "stream_id", NULL);
}

static void
handle_frame (const char *frame, gsize length, guint8 options, const char *const *picky_events,
              guint index)
{
  g_autoptr (WbMessage) message = NULL;
  const char *stream_id;
  guint before;
  gboolean all_subscribed;

  message = wb_message_parse (frame, length, WB_DIRECTION_TO_CLIENT, NULL);
  /* What upstream.c keeps to itself: invalid frames, the heartbeat. */
  if (message == NULL || message->type == WB_MESSAGE_PING || message->type == WB_MESSAGE_PONG)
    return;
  fuzz.frame = frame;
  fuzz.frame_length = length;

  stream_id = target_stream (message);
  if (stream_id != NULL)
    {
      subscribe (&fuzz.all, stream_id, NULL);
      subscribe (&fuzz.picky, stream_id, picky_events);
    }
  all_subscribed = stream_id != NULL && wb_hub_client_is_subscribed (fuzz.all.client, stream_id);
  if (message->type == WB_MESSAGE_ERROR)
    {
      /* As upstream.c's handle_error_message and set_last_error record it. */
      g_autofree char *text = g_strdup_printf ("%s: %s", wb_message_get_string (message, "code"),
                                               wb_message_get_string (message, "message"));

      g_free (fuzz.last_error);
      fuzz.last_error = wb_text_sanitize (text, -1, WB_TEXT_MAX_BYTES);
      fuzz.link.last_error = fuzz.last_error;
    }

  before = fuzz.all.delivered;
  wb_hub_handle_upstream_message (fuzz.hub, message);
  /* Fan-out: a subscriber of every type gets each event of its stream once. */
  FUZZ_CHECK (fuzz.all.delivered == before + (all_subscribed ? 1 : 0));
  if (message->type == WB_MESSAGE_ERROR)
    check_manager_get_all ();

  if (stream_id != NULL && (options & OPTION_LATE_SUBSCRIBER))
    {
      fuzz.late.replaying = TRUE;
      subscribe (&fuzz.late, stream_id, NULL);
      if (wb_hub_client_is_subscribed (fuzz.late.client, stream_id))
        {
          /* The cache and the history: kept lines must parse again, and
           * what they give passes the same checks as live events. */
          wb_hub_client_replay (fuzz.late.client, stream_id, WB_STREAM_HISTORY_MAX_EVENTS);
          wb_hub_client_unsubscribe (fuzz.late.client, stream_id, NULL);
        }
      fuzz.late.replaying = FALSE;
    }
  if (stream_id != NULL && (options & OPTION_RESYNC_EACH))
    wb_hub_handle_upstream_resynced (fuzz.hub, stream_id, (gint64)length * 1000 - 1000);
  if (options & OPTION_STATE_EACH)
    {
      WbLinkState old_state = fuzz.link.state;

      fuzz.link.state = (WbLinkState)(index % (WB_LINK_CLOSED + 1));
      wb_hub_handle_upstream_state (fuzz.hub, old_state, fuzz.link.state);
    }
  if (stream_id != NULL && (options & OPTION_UNSUBSCRIBE_EACH))
    wb_hub_client_unsubscribe (fuzz.all.client, stream_id, NULL);
  fuzz.frame = NULL;
  fuzz.frame_length = 0;
}

static void
setup_once (void)
{
  wb_fuzz_init_logging ();
  fuzz.config = wb_config_new_defaults (FALSE);
  fuzz.last_error = g_strdup ("");
  fuzz.link.url = "wss://ws.wave.inc/v1/streams?api_key=REDACTED";
  fuzz.link.last_close_reason = "";
  fuzz.link.last_error = fuzz.last_error;
  setup_bus ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static gboolean set_up;
  const char *picky_events[WB_MESSAGE_N_TYPES + 1];
  const char *rest;
  const char *end = (const char *)data + size;
  guint8 options;
  guint frames = 0;
  guint observer_id;

  if (!set_up)
    {
      setup_once ();
      set_up = TRUE;
    }
  if (size < 2)
    return 0;
  options = data[0];

  fuzz.hub = wb_hub_new (fuzz.config, &ops, &fuzz);
  fuzz.dbus.hub = fuzz.hub;
  fuzz.dbus.streams
      = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify)wb_dbus_stream_free);
  observer_id = wb_hub_add_observer (fuzz.hub, &observer, NULL);
  sink_init (&fuzz.all, "all", all_types_mask ());
  sink_init (&fuzz.picky, "picky", picky_mask (data[1], picky_events));
  sink_init (&fuzz.late, "late", all_types_mask ());

  for (rest = (const char *)data + 2; rest <= end && frames < MAX_FRAMES; frames++)
    {
      const char *separator = memchr (rest, FRAME_SEPARATOR, end - rest);
      const char *frame_end = separator != NULL ? separator : end;

      handle_frame (rest, frame_end - rest, options, picky_events, frames);
      rest = frame_end + 1;
    }

  /* Leaving ends every subscription: the union and D-Bus objects go. */
  g_clear_pointer (&fuzz.late.client, wb_hub_client_free);
  g_clear_pointer (&fuzz.picky.client, wb_hub_client_free);
  g_clear_pointer (&fuzz.all.client, wb_hub_client_free);
  FUZZ_CHECK (g_hash_table_size (fuzz.dbus.streams) == 0);
  FUZZ_CHECK (wb_hub_get_status (fuzz.hub)->streams == 0);
  wb_hub_remove_observer (fuzz.hub, observer_id);
  g_clear_pointer (&fuzz.hub, wb_hub_free);
  g_clear_pointer (&fuzz.dbus.streams, g_hash_table_unref);
  fuzz.dbus.hub = NULL;
  fuzz.link.state = WB_LINK_IDLE;
  g_free (fuzz.last_error);
  fuzz.last_error = g_strdup ("");
  fuzz.link.last_error = fuzz.last_error;
  return 0;
}
