/* SPDX-License-Identifier: MIT */
/*
 * The socket transport: one connection to the bridge's Unix socket, lines
 * of JSON both ways. Requests (status, subscribe, sends) block with poll()
 * and a deadline; lines that arrive meanwhile are kept and handed to the
 * listener later, so nothing is lost between subscribing and listening.
 */
#define G_LOG_DOMAIN "wave-ctl"

#include "wavectl.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Bounds on what we hold from the bridge; the bridge's own MaxLineBytes is
 * far below this, so only a broken peer reaches it. */
#define WCTL_MAX_LINE_BYTES (16 * 1024 * 1024)
#define WCTL_MAX_PENDING_LINES 100000
#define WCTL_READ_CHUNK_BYTES 65536

#define WCTL_SYSTEM_SOCKET "/run/wave-bridge/wave.sock"
#define WCTL_USER_SOCKET_SUBPATH "wave-bridge/wave.sock"

/* clang-format off */
G_DEFINE_QUARK (wavectl-error-quark, wctl_error)
/* clang-format on */

/* ---- the transport-neutral wrappers ------------------------------------ */

JsonObject *
wctl_client_get_status (WctlClient *client, GError **error)
{
  g_return_val_if_fail (client != NULL, NULL);
  return client->ops->get_status (client, error);
}

gboolean
wctl_client_subscribe (WctlClient *client, const char *stream_id, const char *const *events,
                       guint history, GError **error)
{
  g_return_val_if_fail (client != NULL, FALSE);
  g_return_val_if_fail (stream_id != NULL, FALSE);
  return client->ops->subscribe (client, stream_id, events, history, error);
}

gboolean
wctl_client_send (WctlClient *client, const char *type, const char *stream_id, const char *text,
                  GError **error)
{
  g_return_val_if_fail (client != NULL, FALSE);
  return client->ops->send (client, type, stream_id, text, error);
}

void
wctl_client_listen (WctlClient *client, WctlMessageFunc func, gpointer user_data)
{
  g_return_if_fail (client != NULL);
  client->ops->listen (client, func, user_data);
}

void
wctl_client_request_status (WctlClient *client)
{
  g_return_if_fail (client != NULL);
  client->ops->request_status (client);
}

void
wctl_client_free (WctlClient *client)
{
  if (client == NULL)
    return;
  client->ops->free (client);
}

/* ---- the socket transport ---------------------------------------------- */

typedef struct
{
  JsonObject *message;
  char *line;
} PendingLine;

static void
pending_line_free (PendingLine *pending)
{
  if (pending == NULL)
    return;
  g_clear_pointer (&pending->message, json_object_unref);
  g_free (pending->line);
  g_free (pending);
}

typedef struct
{
  WctlClient parent;
  int fd;
  char *path;
  GString *input; /* bytes read, not yet a whole line */
  GQueue pending; /* PendingLine: read while waiting for a reply */
  gint64 next_id;
  gboolean eof;
  GError *read_error; /* why the connection ended, once it did */
  GError *refusal;    /* the bridge refused the connection (too_many_clients) */

  WctlMessageFunc func;
  gpointer func_data;
  guint fd_source_id;
  guint idle_source_id;
} WctlSocketClient;

char **
wctl_socket_default_paths (void)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  const char *runtime_dir = g_getenv ("XDG_RUNTIME_DIR");
  g_autofree char *user_path = NULL;

  if (runtime_dir != NULL && runtime_dir[0] == '/')
    user_path = g_build_filename (runtime_dir, WCTL_USER_SOCKET_SUBPATH, NULL);

  /* A user talks to their own session's bridge first; root to the system's. */
  if (geteuid () == 0)
    {
      g_strv_builder_add (builder, WCTL_SYSTEM_SOCKET);
      if (user_path != NULL)
        g_strv_builder_add (builder, user_path);
    }
  else
    {
      if (user_path != NULL)
        g_strv_builder_add (builder, user_path);
      g_strv_builder_add (builder, WCTL_SYSTEM_SOCKET);
    }
  return g_strv_builder_end (builder);
}

static void
set_connect_error (GError **error, int errsv, const char *path)
{
  switch (errsv)
    {
    case EACCES:
    case EPERM:
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_PERMISSION,
                   "permission denied on %s: add yourself to group 'wave'", path);
      break;
    case ENOENT:
    case ECONNREFUSED:
    case ENOTDIR:
    case ENOTSOCK:
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING, "%s (no bridge listens on %s)",
                   WCTL_NOT_RUNNING_HINT, path);
      break;
    default:
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_PROTOCOL, "cannot connect to %s: %s", path,
                   g_strerror (errsv));
      break;
    }
}

static int
connect_path (const char *path, GError **error)
{
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof (address.sun_path))
    {
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_USAGE, "socket path too long: %s", path);
      return -1;
    }
  strcpy (address.sun_path, path);

  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    {
      int errsv = errno;
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_PROTOCOL, "socket: %s", g_strerror (errsv));
      return -1;
    }
  if (connect (fd, (struct sockaddr *)&address, sizeof (address)) < 0)
    {
      int errsv = errno;
      close (fd);
      set_connect_error (error, errsv, path);
      return -1;
    }
  if (!g_unix_set_fd_nonblocking (fd, TRUE, NULL))
    {
      close (fd);
      g_set_error (error, WCTL_ERROR, WCTL_ERROR_PROTOCOL, "cannot configure the socket");
      return -1;
    }
  return fd;
}

static gint64
deadline_after_ms (guint timeout_ms)
{
  return g_get_monotonic_time () + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
}

/* Milliseconds left until @deadline for poll(), rounded up, never negative. */
static int
poll_timeout_ms (gint64 deadline)
{
  gint64 left = deadline - g_get_monotonic_time ();

  if (left <= 0)
    return 0;
  return (int)MIN ((left + G_TIME_SPAN_MILLISECOND - 1) / G_TIME_SPAN_MILLISECOND, G_MAXINT);
}

static gboolean
write_all (WctlSocketClient *self, const char *data, gsize length, GError **error)
{
  gint64 deadline = deadline_after_ms (WCTL_REQUEST_TIMEOUT_MS);

  while (length > 0)
    {
      /* MSG_NOSIGNAL: a bridge that went away is an error, not a SIGPIPE. */
      ssize_t written = send (self->fd, data, length, MSG_NOSIGNAL);

      if (written >= 0)
        {
          data += written;
          length -= (gsize)written;
          continue;
        }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        {
          struct pollfd pfd = { .fd = self->fd, .events = POLLOUT };
          int r = poll (&pfd, 1, poll_timeout_ms (deadline));

          if (r == 0)
            {
              g_set_error (error, WCTL_ERROR, WCTL_ERROR_TIMEOUT,
                           "the bridge does not read its socket");
              return FALSE;
            }
          continue;
        }
      {
        int errsv = errno;
        g_set_error (error, WCTL_ERROR, WCTL_ERROR_PROTOCOL, "writing to %s: %s", self->path,
                     g_strerror (errsv));
        return FALSE;
      }
    }
  return TRUE;
}

/* Adds "id" and writes @request as one line. Returns the id used. */
static gint64
send_request (WctlSocketClient *self, JsonObject *request, GError **error)
{
  gint64 id = ++self->next_id;
  g_autofree char *text = NULL;
  g_autoptr (GString) line = NULL;

  json_object_set_int_member (request, "id", id);
  text = wctl_json_to_string (request);
  line = g_string_new (text);
  g_string_append_c (line, '\n');
  if (!write_all (self, line->str, line->len, error))
    return 0;
  return id;
}

/* too_many_clients comes instead of bridge.hello, just before the bridge
 * closes: it is why the connection ended, so say that rather than "closed". */
static void
note_refusal (WctlSocketClient *self, JsonObject *message)
{
  JsonObject *payload;

  if (g_strcmp0 (wctl_message_type (message), "error") != 0 || self->refusal != NULL)
    return;
  payload = wctl_message_payload (message);
  if (g_strcmp0 (wb_json_get_string (payload, "code", NULL), "too_many_clients") != 0)
    return;
  self->refusal = g_error_new (WCTL_ERROR, WCTL_ERROR_REMOTE, "too_many_clients: %s",
                               wb_json_get_string (payload, "message", "refused"));
}

/* Moves every complete line of self->input to @queue. */
static void
split_lines (WctlSocketClient *self, GQueue *queue)
{
  char *start = self->input->str;
  char *newline;

  while ((newline = memchr (start, '\n', self->input->len - (gsize)(start - self->input->str)))
         != NULL)
    {
      gsize length = (gsize)(newline - start);
      g_autoptr (GError) error = NULL;
      PendingLine *pending;

      if (length > 0 && start[length - 1] == '\r')
        length--;
      if (length == 0)
        {
          start = newline + 1;
          continue;
        }

      pending = g_new0 (PendingLine, 1);
      pending->line = g_strndup (start, length);
      pending->message = wctl_json_parse_object (pending->line, length, &error);
      if (pending->message == NULL)
        {
          g_printerr ("wavectl: ignoring a line from the bridge: %s\n", error->message);
          pending_line_free (pending);
        }
      else
        {
          note_refusal (self, pending->message);
          g_queue_push_tail (queue, pending);
        }
      start = newline + 1;
    }
  g_string_erase (self->input, 0, (gssize)(start - self->input->str));
}

/* Reads what is there. FALSE and self->eof/read_error set when the
 * connection is over. */
static gboolean
read_available (WctlSocketClient *self, GQueue *queue)
{
  char buffer[WCTL_READ_CHUNK_BYTES];

  for (;;)
    {
      ssize_t n = recv (self->fd, buffer, sizeof (buffer), 0);

      if (n > 0)
        {
          g_string_append_len (self->input, buffer, n);
          split_lines (self, queue);
          if (self->input->len > WCTL_MAX_LINE_BYTES)
            {
              self->eof = TRUE;
              g_set_error (&self->read_error, WCTL_ERROR, WCTL_ERROR_PROTOCOL,
                           "the bridge sent a line over %d bytes", WCTL_MAX_LINE_BYTES);
              return FALSE;
            }
          continue;
        }
      if (n == 0)
        {
          self->eof = TRUE;
          if (self->refusal != NULL)
            self->read_error = g_error_copy (self->refusal);
          else
            g_set_error (&self->read_error, WCTL_ERROR, WCTL_ERROR_PROTOCOL,
                         "the bridge closed the connection");
          return FALSE;
        }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return TRUE;
      {
        int errsv = errno;
        self->eof = TRUE;
        g_set_error (&self->read_error, WCTL_ERROR, WCTL_ERROR_PROTOCOL,
                     "reading from the bridge: %s", g_strerror (errsv));
        return FALSE;
      }
    }
}

static gboolean
message_has_id (JsonObject *message, gint64 id)
{
  JsonObject *payload;

  if (wb_json_get_int (message, "id", -1) == id)
    return TRUE;
  payload = wctl_json_object (message, "payload");
  return payload != NULL && wb_json_get_int (payload, "id", -1) == id;
}

static gboolean
message_has_no_id (JsonObject *message)
{
  JsonObject *payload = wctl_json_object (message, "payload");

  return !json_object_has_member (message, "id")
         && (payload == NULL || !json_object_has_member (payload, "id"));
}

typedef gboolean (*ReplyMatch) (JsonObject *message, gint64 id, const char *stream_id);

/* Reads until a line matches; the others are kept for the listener. */
static JsonObject *
wait_reply (WctlSocketClient *self, ReplyMatch match, gint64 id, const char *stream_id,
            guint timeout_ms, GError **error)
{
  gint64 deadline = deadline_after_ms (timeout_ms);

  for (;;)
    {
      GQueue fresh = G_QUEUE_INIT;
      JsonObject *found = NULL;
      PendingLine *pending;
      struct pollfd pfd = { .fd = self->fd, .events = POLLIN };
      int r;

      if (self->eof)
        {
          g_propagate_error (error, g_error_copy (self->read_error));
          return NULL;
        }

      r = poll (&pfd, 1, poll_timeout_ms (deadline));
      if (r < 0 && errno == EINTR)
        continue;
      if (r == 0)
        {
          g_set_error (error, WCTL_ERROR, WCTL_ERROR_TIMEOUT,
                       "no answer from the bridge within %u s", timeout_ms / 1000);
          return NULL;
        }

      read_available (self, &fresh);
      while ((pending = g_queue_pop_head (&fresh)) != NULL)
        {
          if (found == NULL && match (pending->message, id, stream_id))
            {
              found = json_object_ref (pending->message);
              pending_line_free (pending);
            }
          else if (g_queue_get_length (&self->pending) < WCTL_MAX_PENDING_LINES)
            g_queue_push_tail (&self->pending, pending);
          else
            pending_line_free (pending);
        }
      if (found != NULL)
        return found;
    }
}

static gboolean
reply_error (JsonObject *reply, GError **error)
{
  JsonObject *payload;
  const char *code;
  const char *text;

  if (g_strcmp0 (wctl_message_type (reply), "error") != 0)
    return FALSE;
  payload = wctl_message_payload (reply);
  code = wb_json_get_string (payload, "code", NULL);
  text = wb_json_get_string (payload, "message", NULL);
  g_set_error (error, WCTL_ERROR, WCTL_ERROR_REMOTE, "%s: %s", code != NULL ? code : "error",
               text != NULL ? text : "the bridge refused the request");
  return TRUE;
}

static gboolean
match_status_cb (JsonObject *message, gint64 id, const char *stream_id)
{
  const char *type = wctl_message_type (message);

  if (g_strcmp0 (type, "bridge.status") == 0)
    return message_has_id (message, id) || message_has_no_id (message);
  return g_strcmp0 (type, "error") == 0 && message_has_id (message, id);
}

/* One page of bridge.status: the streams after @streams_after. */
static JsonObject *
socket_get_status_page (WctlSocketClient *self, const char *streams_after, GError **error)
{
  g_autoptr (JsonObject) request = json_object_new ();
  g_autoptr (JsonObject) reply = NULL;
  gint64 id;

  json_object_set_string_member (request, "type", "status");
  if (streams_after != NULL)
    json_object_set_string_member (request, "streams_after", streams_after);
  id = send_request (self, request, error);
  if (id == 0)
    return NULL;
  reply = wait_reply (self, match_status_cb, id, NULL, WCTL_REQUEST_TIMEOUT_MS, error);
  if (reply == NULL || reply_error (reply, error))
    return NULL;
  return json_object_ref (wctl_message_payload (reply));
}

static JsonArray *
status_streams (JsonObject *status)
{
  JsonNode *node = json_object_get_member (status, "streams");

  return node != NULL && JSON_NODE_HOLDS_ARRAY (node) ? json_node_get_array (node) : NULL;
}

/* bridge.status with every stream: the bridge lists them a page at a time. */
static JsonObject *
socket_get_status (WctlClient *client, GError **error)
{
  WctlSocketClient *self = (WctlSocketClient *)client;
  g_autoptr (JsonObject) status = socket_get_status_page (self, NULL, error);
  JsonArray *streams;
  g_autofree char *next = NULL;

  if (status == NULL)
    return NULL;
  streams = status_streams (status);
  next = g_strdup (wb_json_get_string (status, "streams_next", NULL));
  while (next != NULL && streams != NULL)
    {
      g_autoptr (JsonObject) page = socket_get_status_page (self, next, error);
      JsonArray *more;

      if (page == NULL)
        return NULL;
      more = status_streams (page);
      for (guint i = 0; more != NULL && i < json_array_get_length (more); i++)
        json_array_add_element (streams, json_node_copy (json_array_get_element (more, i)));
      g_free (next);
      next = g_strdup (wb_json_get_string (page, "streams_next", NULL));
    }
  json_object_remove_member (status, "streams_next");
  return g_steal_pointer (&status);
}

static gboolean
match_subscribed_cb (JsonObject *message, gint64 id, const char *stream_id)
{
  const char *type = wctl_message_type (message);

  if (g_strcmp0 (type, "subscribed") == 0)
    return message_has_id (message, id)
           || (message_has_no_id (message)
               && g_strcmp0 (wctl_message_stream_id (message), stream_id) == 0);
  /* Errors the bridge forwards from upstream carry no id; ours do. */
  return g_strcmp0 (type, "error") == 0 && message_has_id (message, id);
}

static gboolean
socket_subscribe (WctlClient *client, const char *stream_id, const char *const *events,
                  guint history, GError **error)
{
  WctlSocketClient *self = (WctlSocketClient *)client;
  g_autoptr (JsonObject) request = json_object_new ();
  g_autoptr (JsonObject) reply = NULL;
  JsonArray *array = json_array_new ();
  gint64 id;

  json_object_set_string_member (request, "type", "subscribe");
  json_object_set_string_member (request, "stream_id", stream_id);
  for (gsize i = 0; events != NULL && events[i] != NULL; i++)
    json_array_add_string_element (array, events[i]);
  json_object_set_array_member (request, "events", array);
  /* The bridge replays it after the acknowledgement, before live events. */
  if (history > 0)
    json_object_set_int_member (request, "history", history);
  id = send_request (self, request, error);
  if (id == 0)
    return FALSE;
  reply = wait_reply (self, match_subscribed_cb, id, stream_id, WCTL_REQUEST_TIMEOUT_MS, error);
  return reply != NULL && !reply_error (reply, error);
}

static gboolean
match_sent_cb (JsonObject *message, gint64 id, const char *stream_id)
{
  const char *type = wctl_message_type (message);

  return (g_strcmp0 (type, "sent") == 0 || g_strcmp0 (type, "error") == 0)
         && message_has_id (message, id);
}

static gboolean
socket_send (WctlClient *client, const char *type, const char *stream_id, const char *text,
             GError **error)
{
  WctlSocketClient *self = (WctlSocketClient *)client;
  g_autoptr (JsonObject) request = json_object_new ();
  g_autoptr (JsonObject) reply = NULL;
  gboolean chat = g_str_equal (type, "chat.message");
  gint64 id;

  json_object_set_string_member (request, "type", type);
  json_object_set_string_member (request, "stream_id", stream_id);
  json_object_set_string_member (request, chat ? "message" : "reaction", text);
  id = send_request (self, request, error);
  if (id == 0)
    return FALSE;
  reply = wait_reply (self, match_sent_cb, id, stream_id, WCTL_SEND_TIMEOUT_MS, error);
  return reply != NULL && !reply_error (reply, error);
}

static void
socket_request_status (WctlClient *client)
{
  WctlSocketClient *self = (WctlSocketClient *)client;
  g_autoptr (JsonObject) request = json_object_new ();
  g_autoptr (GError) error = NULL;

  if (self->eof)
    return;
  json_object_set_string_member (request, "type", "status");
  /* A failed write shows up as the end of the connection when reading. */
  if (send_request (self, request, &error) == 0)
    g_debug ("status request not sent: %s", error->message);
}

/* Hands the queued lines to the listener; stops if the loop must end. */
static void
deliver_pending (WctlSocketClient *self, GQueue *queue)
{
  PendingLine *pending;

  while ((pending = g_queue_pop_head (queue)) != NULL)
    {
      self->func (pending->message, pending->line, NULL, self->func_data);
      pending_line_free (pending);
    }
}

static gboolean
socket_readable_cb (int fd, GIOCondition condition, gpointer user_data)
{
  WctlSocketClient *self = user_data;
  GQueue fresh = G_QUEUE_INIT;
  gboolean alive = read_available (self, &fresh);

  deliver_pending (self, &fresh);
  if (alive)
    return G_SOURCE_CONTINUE;
  self->fd_source_id = 0;
  self->func (NULL, NULL, self->read_error, self->func_data);
  return G_SOURCE_REMOVE;
}

static gboolean
socket_flush_pending_cb (gpointer user_data)
{
  WctlSocketClient *self = user_data;
  GQueue queue = self->pending;

  self->idle_source_id = 0;
  g_queue_init (&self->pending);
  deliver_pending (self, &queue);
  if (self->eof)
    self->func (NULL, NULL, self->read_error, self->func_data);
  else
    self->fd_source_id
        = g_unix_fd_add (self->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, socket_readable_cb, self);
  return G_SOURCE_REMOVE;
}

static void
socket_listen (WctlClient *client, WctlMessageFunc func, gpointer user_data)
{
  WctlSocketClient *self = (WctlSocketClient *)client;

  g_return_if_fail (self->func == NULL);
  self->func = func;
  self->func_data = user_data;
  self->idle_source_id = g_idle_add (socket_flush_pending_cb, self);
}

static void
socket_free (WctlClient *client)
{
  WctlSocketClient *self = (WctlSocketClient *)client;

  g_clear_handle_id (&self->fd_source_id, g_source_remove);
  g_clear_handle_id (&self->idle_source_id, g_source_remove);
  g_queue_clear_full (&self->pending, (GDestroyNotify)pending_line_free);
  if (self->fd >= 0)
    close (self->fd);
  g_string_free (self->input, TRUE);
  g_clear_error (&self->read_error);
  g_clear_error (&self->refusal);
  g_free (self->path);
  g_free (self);
}

static const WctlClientOps socket_ops = {
  .get_status = socket_get_status,
  .subscribe = socket_subscribe,
  .send = socket_send,
  .listen = socket_listen,
  .request_status = socket_request_status,
  .free = socket_free,
};

WctlClient *
wctl_socket_client_new (const char *socket_path, GError **error)
{
  g_auto (GStrv) candidates = NULL;
  g_autoptr (GError) first_error = NULL;
  WctlSocketClient *self;
  const char *env = g_getenv ("WAVE_BRIDGE_SOCKET");
  int fd = -1;
  const char *used = NULL;

  if (socket_path != NULL)
    candidates = g_strdupv ((char *[]){ (char *)socket_path, NULL });
  else if (env != NULL && env[0] != '\0')
    candidates = g_strdupv ((char *[]){ (char *)env, NULL });
  else
    candidates = wctl_socket_default_paths ();

  for (gsize i = 0; candidates[i] != NULL && fd < 0; i++)
    {
      g_autoptr (GError) local_error = NULL;

      fd = connect_path (candidates[i], &local_error);
      if (fd >= 0)
        used = candidates[i];
      /* "Permission denied" tells the user more than "not running". */
      else if (first_error == NULL
               || (g_error_matches (first_error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING)
                   && !g_error_matches (local_error, WCTL_ERROR, WCTL_ERROR_NOT_RUNNING)))
        {
          g_clear_error (&first_error);
          first_error = g_steal_pointer (&local_error);
        }
    }
  if (fd < 0)
    {
      g_propagate_error (error, g_steal_pointer (&first_error));
      return NULL;
    }

  self = g_new0 (WctlSocketClient, 1);
  self->parent.ops = &socket_ops;
  self->fd = fd;
  self->path = g_strdup (used);
  self->input = g_string_new (NULL);
  g_queue_init (&self->pending);
  return &self->parent;
}
