/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-socket"

#include "socket-client.h"

#include <errno.h>
#include <gio/gio.h>
#include <limits.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <string.h>
#include <unistd.h>

#include "errno-util.h"
#include "message.h"

/* One read per wake-up keeps a chatty client from starving the others. */
#define READ_CHUNK_BYTES (64 * 1024)
/* Lines per sendmsg(); IOV_MAX is the kernel's own ceiling. */
#define WRITE_BATCH_LINES MIN (IOV_MAX, 1024)
/* Events resume once the queue drained to 1/LOW_WATER_DIVISOR of its bound,
 * so a client hovering at the bound gets one bridge.dropped, not thousands. */
#define LOW_WATER_DIVISOR 2
/* Past this much queued output a client is written at once instead of at the
 * end of the loop iteration: libsoup hands over a whole upstream burst in one
 * dispatch, and the clients must not wait for all of it. */
#define FLUSH_EARLY_BYTES (64 * 1024)
/* During an upstream burst the loop iteration is long (a bounded share of
 * frames, each fanned out), and its first events would wait for the last.
 * So the clients are also written in the middle of it, as soon as the time
 * since the last write is EARLY_WRITE_COST_RATIO times what that write
 * cost (so writing early adds at most about 1/ratio to the work), and at
 * least EARLY_WRITE_MIN_US: one client is written every ~0.1 ms, a
 * thousand, whose writes cost more, in proportion. The clock is read every
 * EARLY_WRITE_CHECK_LINES queued lines, not for each. */
#define EARLY_WRITE_COST_RATIO 16
#define EARLY_WRITE_MIN_US 100
#define EARLY_WRITE_CHECK_LINES 8
/* Readiness events taken per epoll_wait(); the rest come next iteration. */
#define MAX_EPOLL_EVENTS 256

typedef struct
{
  GSource source;
  WbSocketClientGroup *group;
  gpointer fd_tag; /* the epoll descriptor */
} GroupSource;

struct _WbSocketClientGroup
{
  int epoll_fd;
  GSource *source;
  GQueue clients;          /* every client, by all_link */
  GQueue dirty;            /* to write, or dead: handled at the next dispatch */
  GQueue held;             /* with input left over their user's line budget */
  guint64 serial;          /* counts dispatches */
  gint64 last_write_us;    /* monotonic: when the dirty list was last written */
  gint64 write_cost_us;    /* what that took */
  guint lines_since_check; /* queued since the clock was last read */
  gint64 next_deadline;    /* earliest slow/closing deadline, G_MAXINT64: none */
};

struct _WbSocketClient
{
  int fd;
  WbSocketClientLimits limits;
  WbSocketClientCallbacks callbacks;
  gpointer user_data;

  WbSocketClientGroup *group;
  GList all_link;
  GList dirty_link;
  gboolean in_dirty;
  GList held_link;
  gboolean input_held;    /* lines wait for the next dispatch: not reading */
  guint32 epoll_events;   /* the interest registered with the group */
  gboolean write_blocked; /* the kernel said EAGAIN: wait for EPOLLOUT */

  GByteArray *input;
  gboolean reading; /* FALSE after EOF, a too-long line or close_after_flush */

  GQueue output;            /* GBytes, each a whole line */
  gsize output_offset;      /* bytes of the head already written */
  gsize queued_bytes;       /* not yet written, offset deducted */
  WbSocketAccount *account; /* the user's total, or NULL */

  GList starved_link; /* in account->starved */
  gboolean starved;   /* missed events to the account's total: announce when under */

  gboolean congested;     /* refusing events until drained to the low-water mark */
  gint64 congested_since; /* monotonic µs */
  guint dropped_pending;  /* refused since the last bridge.dropped */
  guint64 dropped_total;

  gboolean closing;   /* close once the output is written */
  gboolean lingering; /* output written, write side shut: discarding input until EOF */
  gboolean dead;      /* emit closed at the next dispatch */
  WbSocketClientCloseReason dead_reason;
};

const char *
wb_socket_client_close_reason_to_string (WbSocketClientCloseReason reason)
{
  switch (reason)
    {
    case WB_SOCKET_CLIENT_CLOSED_BY_PEER:
      return "closed by the client";
    case WB_SOCKET_CLIENT_CLOSED_DONE:
      return "closed by the bridge";
    case WB_SOCKET_CLIENT_CLOSED_ERROR:
      return "socket error";
    case WB_SOCKET_CLIENT_CLOSED_SLOW:
      return "too slow: over its queue bound for too long";
    case WB_SOCKET_CLIENT_CLOSED_OVERFLOW:
      return "not reading its replies: over the hard queue bound";
    }
  return "unknown";
}

static void
client_mark_dead (WbSocketClient *client, WbSocketClientCloseReason reason)
{
  if (client->dead)
    return;
  client->dead = TRUE;
  client->dead_reason = reason;
  client->reading = FALSE;
}

/* Nothing to arm: the group's prepare() sees the dirty and held lists at
 * the end of every loop iteration (see group_source_prepare). */
static void
client_mark_dirty (WbSocketClient *client)
{
  if (client->in_dirty)
    return;
  client->in_dirty = TRUE;
  g_queue_push_tail_link (&client->group->dirty, &client->dirty_link);
}

static gint64
client_deadline (const WbSocketClient *client)
{
  if (client->dead || !(client->congested || client->closing))
    return G_MAXINT64;
  return client->congested_since + (gint64)client->limits.slow_timeout_ms * 1000;
}

static gsize
low_water_bytes (const WbSocketClient *client)
{
  return client->limits.queue_bytes / LOW_WATER_DIVISOR;
}

/* Poll interest follows the state: IN while reading, OUT only while a write
 * was refused. epoll_ctl only when that changes; a dead client is handed to
 * its owner at the next dispatch; a slow deadline moves the group's. */
static void
client_update_interest (WbSocketClient *client)
{
  WbSocketClientGroup *group = client->group;
  guint32 events = 0;
  gint64 deadline;

  if (client->dead)
    {
      client_mark_dirty (client);
      return;
    }
  if ((client->reading && !client->input_held) || client->lingering)
    events |= EPOLLIN;
  if (client->write_blocked && client->queued_bytes > 0)
    events |= EPOLLOUT;
  if (events != client->epoll_events)
    {
      struct epoll_event event = { .events = events, .data.ptr = client };

      if (epoll_ctl (group->epoll_fd, EPOLL_CTL_MOD, client->fd, &event) < 0)
        {
          g_warning ("Watching a local client failed: %s", g_strerror (errno));
          client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_ERROR);
          client_mark_dirty (client);
          return;
        }
      client->epoll_events = events;
    }
  if (client->queued_bytes > 0 && !client->write_blocked)
    client_mark_dirty (client);

  deadline = client_deadline (client);
  if (deadline < group->next_deadline)
    group->next_deadline = deadline;
}

static void
client_set_congested (WbSocketClient *client)
{
  if (client->congested)
    return;
  client->congested = TRUE;
  if (!client->closing)
    client->congested_since = g_get_monotonic_time ();
}

static void
client_push (WbSocketClient *client, GBytes *line)
{
  g_queue_push_tail (&client->output, g_bytes_ref (line));
  client->queued_bytes += g_bytes_get_size (line);
  if (client->account != NULL)
    client->account->queued += g_bytes_get_size (line);
}

static void
client_queue_dropped_notice (WbSocketClient *client)
{
  g_autoptr (JsonNode) node = NULL;
  g_autoptr (GBytes) line = NULL;
  JsonObject *payload = json_object_new ();

  json_object_set_int_member (payload, "count", client->dropped_pending);
  node = wb_message_new_enveloped ("bridge.dropped", payload);
  line = wb_json_to_line (node);
  client->dropped_pending = 0;
  client_push (client, line);
}

static void
client_unstarve (WbSocketClient *client)
{
  if (!client->starved)
    return;
  client->starved = FALSE;
  g_queue_unlink (&client->account->starved, &client->starved_link);
}

/* The user's total is under its limit again: every connection that missed
 * events to it is told how many now, not at its next event (which may
 * never come: a stream's last event, such as stream.ended, lost silently).
 * One that is congested on its own gets its notice when it drains. */
static void
account_announce_drops (WbSocketAccount *account)
{
  while (account->starved.length > 0 && account->queued < account->limit)
    {
      WbSocketClient *client = g_queue_peek_head (&account->starved);

      client_unstarve (client);
      if (client->dead || client->closing || client->congested || client->dropped_pending == 0)
        continue;
      client_queue_dropped_notice (client);
      client_update_interest (client);
    }
}

static void
client_consume (WbSocketClient *client, gsize written)
{
  client->queued_bytes -= written;
  if (client->account != NULL)
    client->account->queued -= written;
  while (written > 0)
    {
      GBytes *head = g_queue_peek_head (&client->output);
      gsize rest = g_bytes_get_size (head) - client->output_offset;

      if (written < rest)
        {
          client->output_offset += written;
          return;
        }
      written -= rest;
      client->output_offset = 0;
      g_bytes_unref (g_queue_pop_head (&client->output));
    }
}

/* The last reply is out. Closing now, with the peer's unread input still in
 * our buffer, would make the kernel answer with RST, which can destroy that
 * reply before the peer reads it (a client still sending its too-long
 * line). So: shut our write side (the peer reads the reply, then EOF) and
 * discard its input until it closes too, or the closing deadline passes. */
static void
client_linger (WbSocketClient *client)
{
  if (client->lingering || client->dead)
    return;
  client->lingering = TRUE;
  if (shutdown (client->fd, SHUT_WR) < 0)
    client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_DONE);
}

static void
client_drain (WbSocketClient *client)
{
  char scratch[READ_CHUNK_BYTES];
  ssize_t n;

  do
    n = recv (client->fd, scratch, sizeof scratch, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
    client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_DONE);
}

static void
client_flush (WbSocketClient *client)
{
  struct iovec iov[WRITE_BATCH_LINES];

  while (!client->dead && client->queued_bytes > 0)
    {
      struct msghdr msg = { 0 };
      gsize batch_bytes = 0;
      guint n = 0;
      ssize_t written;

      for (GList *l = client->output.head; l != NULL && n < G_N_ELEMENTS (iov); l = l->next, n++)
        {
          gsize size = 0;
          const guint8 *data = g_bytes_get_data (l->data, &size);
          gsize skip = n == 0 ? client->output_offset : 0;

          iov[n].iov_base = (guint8 *)data + skip;
          iov[n].iov_len = size - skip;
          batch_bytes += size - skip;
        }
      msg.msg_iov = iov;
      msg.msg_iovlen = n;

      written = sendmsg (client->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (written < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK)
            {
              client->write_blocked = TRUE;
              break;
            }
          if (errno == EPIPE || errno == ECONNRESET)
            client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_BY_PEER);
          else
            {
              g_warning ("Writing to local client failed: %s", g_strerror (errno));
              client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_ERROR);
            }
          return;
        }
      client_consume (client, (gsize)written);
      if ((gsize)written < batch_bytes)
        {
          /* A short write means the socket buffer is full. */
          client->write_blocked = TRUE;
          break;
        }
    }

  if (client->congested && client->queued_bytes <= low_water_bytes (client))
    {
      client->congested = FALSE;
      if (client->dropped_pending > 0)
        client_queue_dropped_notice (client);
    }
  if (client->account != NULL)
    account_announce_drops (client->account);
  if (client->closing && client->queued_bytes == 0)
    client_linger (client);
}

static void
client_line_too_long (WbSocketClient *client)
{
  client->reading = FALSE;
  g_byte_array_set_size (client->input, 0);
  client->callbacks.line_too_long (client, client->user_data);
}

/* One more line for the client's user in this dispatch? */
static gboolean
client_take_line_budget (WbSocketClient *client)
{
  WbSocketAccount *account = client->account;

  if (account == NULL || account->lines_per_dispatch == 0)
    return TRUE;
  if (account->serial != client->group->serial)
    {
      account->serial = client->group->serial;
      account->lines_used = 0;
    }
  if (account->lines_used >= account->lines_per_dispatch)
    return FALSE;
  account->lines_used++;
  return TRUE;
}

/* The user's budget is spent: the rest of the input waits for the next
 * dispatch, and nothing more is read meanwhile (the kernel holds it). */
static void
client_hold_input (WbSocketClient *client)
{
  WbSocketClientGroup *group = client->group;

  if (client->input_held)
    return;
  client->input_held = TRUE;
  g_queue_push_tail_link (&group->held, &client->held_link);
}

/* Hands complete lines to the owner; with @at_eof the unterminated rest too. */
static void
client_process_input (WbSocketClient *client, gboolean at_eof)
{
  const char *data = (const char *)client->input->data;
  gsize length = client->input->len;
  gsize start = 0;

  while (start < length && client->reading && !client->closing && !client->dead)
    {
      const char *newline = memchr (data + start, '\n', length - start);
      gsize end = newline != NULL ? (gsize)(newline - data) : length;
      gsize line_length;

      if (newline == NULL && !at_eof)
        break;
      if (!at_eof && !client_take_line_budget (client))
        {
          client_hold_input (client);
          break;
        }
      line_length = end - start;
      if (line_length > 0 && data[start + line_length - 1] == '\r')
        line_length--;
      if (line_length > client->limits.max_line_bytes)
        {
          client_line_too_long (client);
          return;
        }
      if (line_length > 0)
        client->callbacks.line (client, data + start, line_length, client->user_data);
      start = newline != NULL ? end + 1 : end;
    }

  if (!client->reading)
    {
      g_byte_array_set_size (client->input, 0);
      return;
    }
  g_byte_array_remove_range (client->input, 0, (guint)start);
  /* One byte of slack for a '\r' whose '\n' has not arrived yet. Held
   * input still has whole lines in it: it is measured when they are taken. */
  if (!client->input_held && client->input->len > client->limits.max_line_bytes + 1)
    client_line_too_long (client);
}

static void
client_read (WbSocketClient *client)
{
  guint old_length = client->input->len;
  ssize_t n;

  g_byte_array_set_size (client->input, old_length + READ_CHUNK_BYTES);
  do
    n = recv (client->fd, client->input->data + old_length, READ_CHUNK_BYTES, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  g_byte_array_set_size (client->input, old_length + (n > 0 ? (guint)n : 0));

  if (n < 0)
    {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (errno == ECONNRESET)
        client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_BY_PEER);
      else
        {
          g_warning ("Reading from local client failed: %s", g_strerror (errno));
          client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_ERROR);
        }
      return;
    }
  if (n == 0)
    {
      /* Half-closed: the client sent all it will, but may still listen
       * (`printf '…subscribe…\n' | socat -t… - UNIX:…`). */
      client_process_input (client, TRUE);
      client->reading = FALSE;
      g_byte_array_set_size (client->input, 0);
      return;
    }
  client_process_input (client, FALSE);
}

/* One readiness report of the client's socket. */
static void
client_handle_events (WbSocketClient *client, guint32 events)
{
  if (!client->dead && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
    {
      client->write_blocked = FALSE;
      if (client->queued_bytes > 0)
        client_flush (client);
    }
  if (!client->dead && client->reading && !client->input_held
      && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
    client_read (client);
  else if (!client->dead && client->lingering && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
    client_drain (client);
  /* Without read interest, HUP/ERR is the only sign the peer is gone. */
  if (!client->dead && !client->reading && (events & (EPOLLERR | EPOLLHUP)))
    client_mark_dead (client, client->closing ? WB_SOCKET_CLIENT_CLOSED_DONE
                                              : WB_SOCKET_CLIENT_CLOSED_BY_PEER);
  client_update_interest (client);
}

/* Cuts clients past their slow deadline; finds the next deadline. */
static void
group_sweep_deadlines (WbSocketClientGroup *group, gint64 now)
{
  group->next_deadline = G_MAXINT64;
  for (GList *l = group->clients.head; l != NULL; l = l->next)
    {
      WbSocketClient *client = l->data;
      gint64 deadline = client_deadline (client);

      if (deadline <= now)
        {
          /* A closing client past the deadline only ends its goodbye. */
          client_mark_dead (client, client->closing ? WB_SOCKET_CLIENT_CLOSED_DONE
                                                    : WB_SOCKET_CLIENT_CLOSED_SLOW);
          client_mark_dirty (client);
        }
      else if (deadline < group->next_deadline)
        group->next_deadline = deadline;
    }
}

/* Writes every dirty client's queue, one sendmsg each (more only past a
 * full batch). TRUE if a client died meanwhile: handing it to its owner is
 * dispatch's work, never done from here. */
static gboolean
group_write_dirty (WbSocketClientGroup *group)
{
  GQueue pending = group->dirty;
  GList *link;
  gint64 started_us;

  if (g_queue_is_empty (&pending))
    return FALSE;
  started_us = g_get_monotonic_time ();
  g_queue_init (&group->dirty);
  while ((link = g_queue_pop_head_link (&pending)) != NULL)
    {
      WbSocketClient *client = link->data;

      client->in_dirty = FALSE;
      if (!client->dead && client->queued_bytes > 0 && !client->write_blocked)
        client_flush (client);
      /* Dead clients go back on the list; others may ask for EPOLLOUT. */
      client_update_interest (client);
    }
  group->last_write_us = g_get_monotonic_time ();
  group->write_cost_us = group->last_write_us - started_us;
  return !g_queue_is_empty (&group->dirty);
}

/* A line was queued in the middle of a loop iteration: write everyone now
 * if the iteration has run long enough (see EARLY_WRITE_COST_RATIO). */
static void
group_line_queued (WbSocketClientGroup *group)
{
  gint64 now;

  if (++group->lines_since_check < EARLY_WRITE_CHECK_LINES)
    return;
  group->lines_since_check = 0;
  now = g_get_monotonic_time ();
  if (now - group->last_write_us
      >= MAX (EARLY_WRITE_MIN_US, EARLY_WRITE_COST_RATIO * group->write_cost_us))
    group_write_dirty (group);
}

/*
 * The end of a loop iteration: every source has run, and what they queued
 * for the clients is written now, before the loop sleeps. So an upstream
 * event reaches its clients in the iteration that read it, and all the
 * events of a burst go out in one sendmsg per client. Nothing is armed
 * when a line is queued: g_source_set_ready_time() and a blocked source's
 * poll changes each write the context's wakeup eventfd on GLib 2.74 (an
 * extra write() and an extra loop iteration per event at light load), so
 * the group keeps its state in its lists and reads them here.
 */
static gboolean
group_source_prepare (GSource *source, gint *out_timeout)
{
  WbSocketClientGroup *group = ((GroupSource *)source)->group;
  gint64 now;

  *out_timeout = -1;
  if (group_write_dirty (group) || !g_queue_is_empty (&group->held))
    {
      *out_timeout = 0;
      return TRUE;
    }
  if (group->next_deadline == G_MAXINT64)
    return FALSE;
  now = g_get_monotonic_time ();
  if (now >= group->next_deadline)
    {
      *out_timeout = 0;
      return TRUE;
    }
  /* Rounded up, or the loop would wake just before the deadline and spin. */
  *out_timeout = (gint)MIN ((group->next_deadline - now + G_TIME_SPAN_MILLISECOND - 1)
                                / G_TIME_SPAN_MILLISECOND,
                            G_MAXINT);
  return FALSE;
}

static gboolean
group_source_check (GSource *source)
{
  GroupSource *group_source = (GroupSource *)source;
  WbSocketClientGroup *group = group_source->group;

  if (g_source_query_unix_fd (source, group_source->fd_tag) != 0)
    return TRUE;
  if (!g_queue_is_empty (&group->dirty) || !g_queue_is_empty (&group->held))
    return TRUE;
  return group->next_deadline != G_MAXINT64 && g_get_monotonic_time () >= group->next_deadline;
}

static gboolean
group_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  WbSocketClientGroup *group = ((GroupSource *)source)->group;
  struct epoll_event events[MAX_EPOLL_EVENTS];
  guint held_count;
  gint64 now;
  int n;

  group->serial++;

  /* Input held over from the last dispatch goes first, in order. */
  held_count = group->held.length;
  for (guint i = 0; i < held_count; i++)
    {
      GList *link = g_queue_pop_head_link (&group->held);
      WbSocketClient *client = link->data;

      client->input_held = FALSE;
      if (!client->dead)
        {
          client_process_input (client, FALSE);
          client_update_interest (client);
        }
    }

  do
    n = epoll_wait (group->epoll_fd, events, G_N_ELEMENTS (events), 0);
  while (n < 0 && errno == EINTR);
  /* Clients are only freed from their closed callback, below: every
   * pointer in events[] stays valid for this loop. */
  for (int i = 0; i < n; i++)
    client_handle_events (events[i].data.ptr, events[i].events);

  now = g_get_monotonic_time ();
  if (now >= group->next_deadline)
    group_sweep_deadlines (group, now);

  while (!g_queue_is_empty (&group->dirty))
    {
      GList *link = g_queue_pop_head_link (&group->dirty);
      WbSocketClient *client = link->data;

      client->in_dirty = FALSE;
      if (!client->dead && client->queued_bytes > 0 && !client->write_blocked)
        client_flush (client);
      if (client->dead)
        {
          /* The owner frees the client here. */
          client->callbacks.closed (client, client->dead_reason, client->user_data);
          continue;
        }
      /* Output left over a full batch puts the client back in the queue. */
      client_update_interest (client);
    }
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs group_source_funcs = {
  .prepare = group_source_prepare,
  .check = group_source_check,
  .dispatch = group_source_dispatch,
};

WbSocketClientGroup *
wb_socket_client_group_new (GError **error)
{
  WbSocketClientGroup *group;
  int epoll_fd = epoll_create1 (EPOLL_CLOEXEC);

  if (epoll_fd < 0)
    {
      wb_set_error_from_errno (error, errno, "Cannot create an epoll descriptor");
      return NULL;
    }
  group = g_new0 (WbSocketClientGroup, 1);
  group->epoll_fd = epoll_fd;
  group->next_deadline = G_MAXINT64;
  g_queue_init (&group->clients);
  g_queue_init (&group->dirty);
  g_queue_init (&group->held);
  group->source = g_source_new (&group_source_funcs, sizeof (GroupSource));
  ((GroupSource *)group->source)->group = group;
  g_source_set_static_name (group->source, "wave-bridge socket clients");
  ((GroupSource *)group->source)->fd_tag = g_source_add_unix_fd (group->source, epoll_fd, G_IO_IN);
  /* Never dispatched recursively (no nested loops); without the flag GLib
   * "blocks" the source around every dispatch, taking its fd out of the
   * poll set and back, and each of the two changes writes the wakeup
   * eventfd: two write()s and a spurious iteration per dispatch. */
  g_source_set_can_recurse (group->source, TRUE);
  g_source_attach (group->source, NULL);
  return group;
}

void
wb_socket_client_group_free (WbSocketClientGroup *group)
{
  if (group == NULL)
    return;
  g_warn_if_fail (g_queue_is_empty (&group->clients));
  g_source_destroy (group->source);
  g_source_unref (group->source);
  close (group->epoll_fd);
  g_free (group);
}

WbSocketClient *
wb_socket_client_new (WbSocketClientGroup *group, int fd, const WbSocketClientLimits *limits,
                      const WbSocketClientCallbacks *callbacks, gpointer user_data)
{
  WbSocketClient *client;
  struct epoll_event event = { .events = EPOLLIN };

  g_return_val_if_fail (group != NULL && fd >= 0, NULL);
  g_return_val_if_fail (limits != NULL && callbacks != NULL, NULL);
  g_return_val_if_fail (callbacks->line != NULL && callbacks->line_too_long != NULL
                            && callbacks->closed != NULL,
                        NULL);

  client = g_new0 (WbSocketClient, 1);
  event.data.ptr = client;
  if (epoll_ctl (group->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0)
    {
      g_warning ("Cannot watch a local client: %s", g_strerror (errno));
      close (fd);
      g_free (client);
      return NULL;
    }
  client->fd = fd;
  client->limits = *limits;
  client->callbacks = *callbacks;
  client->user_data = user_data;
  client->input = g_byte_array_new ();
  client->reading = TRUE;
  client->epoll_events = EPOLLIN;
  client->group = group;
  client->all_link.data = client;
  client->dirty_link.data = client;
  client->held_link.data = client;
  client->starved_link.data = client;
  g_queue_init (&client->output);
  g_queue_push_tail_link (&group->clients, &client->all_link);
  return client;
}

void
wb_socket_client_free (WbSocketClient *client)
{
  if (client == NULL)
    return;
  if (client->in_dirty)
    g_queue_unlink (&client->group->dirty, &client->dirty_link);
  if (client->input_held)
    g_queue_unlink (&client->group->held, &client->held_link);
  g_queue_unlink (&client->group->clients, &client->all_link);
  /* Closing the fd would drop it from the epoll set only if no duplicate
   * existed; say so explicitly. */
  epoll_ctl (client->group->epoll_fd, EPOLL_CTL_DEL, client->fd, NULL);
  wb_socket_client_set_account (client, NULL);
  g_queue_clear_full (&client->output, (GDestroyNotify)g_bytes_unref);
  g_byte_array_unref (client->input);
  if (client->fd >= 0)
    close (client->fd);
  g_free (client);
}

void
wb_socket_client_set_limits (WbSocketClient *client, const WbSocketClientLimits *limits)
{
  g_return_if_fail (client != NULL && limits != NULL);
  client->limits = *limits;
  client_update_interest (client);
}

gboolean
wb_socket_client_queue_event (WbSocketClient *client, GBytes *line)
{
  g_return_val_if_fail (client != NULL && line != NULL, FALSE);

  if (client->dead || client->closing)
    return FALSE;
  /* A burst from upstream is fanned out before the loop polls again: before
   * calling the client slow, see whether the kernel takes what is queued. */
  if (!client->congested && client->queued_bytes > 0
      && client->queued_bytes + g_bytes_get_size (line) > client->limits.queue_bytes)
    client_flush (client);
  if (client->dead)
    return FALSE;
  /* An empty queue takes any one line, however large: refusing it would
   * leave the client congested with nothing to drain. */
  if (client->congested
      || (client->queued_bytes > 0
          && client->queued_bytes + g_bytes_get_size (line) > client->limits.queue_bytes))
    {
      client_set_congested (client);
      client->dropped_pending++;
      client->dropped_total++;
      client_update_interest (client);
      return FALSE;
    }
  /* The user's connections together are over their bound: this one may be
   * idle, so it is not congested (nothing of its own to drain), but what it
   * misses is counted and announced before its next event. */
  if (client->account != NULL && client->account->queued > 0
      && client->account->queued + g_bytes_get_size (line) > client->account->limit)
    {
      client->dropped_pending++;
      client->dropped_total++;
      if (client->write_blocked)
        {
          /* It does not read either: one of the connections holding the
           * user over. Its own slow deadline runs, so a user's stuck
           * connections cannot keep the others silent for longer than
           * SlowClientTimeout; its notice comes when it drains. */
          client_set_congested (client);
          client_update_interest (client);
        }
      else if (!client->starved)
        {
          client->starved = TRUE;
          g_queue_push_tail_link (&client->account->starved, &client->starved_link);
        }
      return FALSE;
    }
  if (client->dropped_pending > 0 && !client->congested)
    client_queue_dropped_notice (client);
  client_push (client, line);
  if (client->queued_bytes >= FLUSH_EARLY_BYTES && !client->write_blocked)
    client_flush (client);
  client_update_interest (client);
  group_line_queued (client->group);
  return TRUE;
}

void
wb_socket_client_set_account (WbSocketClient *client, WbSocketAccount *account)
{
  g_return_if_fail (client != NULL);

  WbSocketAccount *old = client->account;

  if (old != NULL)
    {
      client_unstarve (client);
      old->queued -= client->queued_bytes;
    }
  client->account = account;
  if (account != NULL)
    account->queued += client->queued_bytes;
  /* What this one had queued may have been what kept the others waiting. */
  if (old != NULL && old != account)
    account_announce_drops (old);
}

static gboolean
client_over_hard_bound (const WbSocketClient *client)
{
  return client->queued_bytes > client->limits.hard_queue_bytes
         || (client->account != NULL && client->account->queued > client->account->hard_limit);
}

static void
client_flush_now (WbSocketClient *client)
{
  if (!client->dead && !client->write_blocked && client->queued_bytes > 0)
    client_flush (client);
}

/* Writes what is queued for @account's connections that can take it now. */
static void
group_flush_account (WbSocketClientGroup *group, WbSocketAccount *account)
{
  for (GList *l = group->dirty.head; l != NULL && account->queued > 0; l = l->next)
    {
      WbSocketClient *client = l->data;

      if (client->account == account)
        client_flush_now (client);
    }
}

void
wb_socket_client_queue_control (WbSocketClient *client, GBytes *line)
{
  g_return_if_fail (client != NULL && line != NULL);

  if (client->dead)
    return;
  client_push (client, line);
  if (client_over_hard_bound (client))
    {
      /* Output is written once per loop iteration, so replies to requests
       * of this one have not been yet: a user whose connections each asked
       * for something large at the same moment is not a user who does not
       * read. Judge by what the kernel does not take. */
      client_flush_now (client);
      if (client->account != NULL && client->account->queued > client->account->hard_limit)
        group_flush_account (client->group, client->account);
    }
  if (client->dead)
    return;
  if (client_over_hard_bound (client))
    client_mark_dead (client, WB_SOCKET_CLIENT_CLOSED_OVERFLOW);
  else if (client->queued_bytes > client->limits.queue_bytes)
    client_set_congested (client);
  client_update_interest (client);
}

void
wb_socket_client_close_after_flush (WbSocketClient *client)
{
  g_return_if_fail (client != NULL);

  if (client->closing || client->dead)
    return;
  client->closing = TRUE;
  client->reading = FALSE;
  /* The slow deadline doubles as the limit on waiting for the last reply. */
  client->congested_since = g_get_monotonic_time ();
  if (client->queued_bytes == 0)
    client_linger (client);
  client_update_interest (client);
}

gsize
wb_socket_client_get_queued_bytes (WbSocketClient *client)
{
  g_return_val_if_fail (client != NULL, 0);
  return client->queued_bytes;
}

guint64
wb_socket_client_get_dropped_total (WbSocketClient *client)
{
  g_return_val_if_fail (client != NULL, 0);
  return client->dropped_total;
}
