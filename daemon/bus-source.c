/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-bus"

#include "bus-source.h"

#include <errno.h>
#include <poll.h>

/* Messages handled per main-loop iteration. */
#define MAX_PROCESS_PER_DISPATCH 64

#define USEC_PER_MSEC 1000

typedef struct
{
  GSource source;
  sd_bus *bus;
  gpointer fd_tag;
  GIOCondition condition; /* what fd_tag currently waits for */
  gboolean lost;
} WbBusSource;

static void
bus_source_report_lost (WbBusSource *self, int error, GSourceFunc callback, gpointer user_data)
{
  WbBusSourceLostFunc lost_func = (WbBusSourceLostFunc)(void (*) (void))callback;

  if (self->lost)
    return;
  self->lost = TRUE;
  /* A dead fd polls as HUP forever: stop watching it before anyone else runs. */
  g_source_remove_unix_fd (&self->source, self->fd_tag);
  self->fd_tag = NULL;
  g_debug ("sd-bus connection lost: %s", g_strerror (-error));
  if (lost_func != NULL)
    lost_func (error, user_data);
}

static gboolean
bus_source_prepare (GSource *source, gint *out_timeout)
{
  WbBusSource *self = (WbBusSource *)source;
  GIOCondition condition = 0;
  uint64_t until_us = UINT64_MAX;
  int events;
  int r;

  *out_timeout = -1;
  if (self->lost)
    return FALSE;

  /* Re-read on every iteration: a signal emitted from another source's
   * callback leaves output queued, and messages already read make the
   * timeout 0. */
  events = sd_bus_get_events (self->bus);
  if (events < 0)
    return TRUE; /* closed: let dispatch see the error */
  if (events & POLLIN)
    condition |= G_IO_IN;
  if (events & POLLOUT)
    condition |= G_IO_OUT;
  /* Only on change: g_source_modify_unix_fd() wakes the context up, and
   * doing that from every prepare would turn poll() into a busy loop. */
  if (condition != self->condition)
    {
      g_source_modify_unix_fd (source, self->fd_tag, condition);
      self->condition = condition;
    }

  r = sd_bus_get_timeout (self->bus, &until_us);
  if (r < 0)
    return TRUE;
  if (until_us != UINT64_MAX)
    {
      /* sd-bus gives an absolute CLOCK_MONOTONIC time, like GLib's clock. */
      gint64 now_us = g_get_monotonic_time ();
      guint64 rest_us;

      if ((gint64)until_us <= now_us)
        {
          *out_timeout = 0;
          return TRUE;
        }
      rest_us = until_us - (guint64)now_us;
      /* Rounded up, or we would wake just before it is due and spin. */
      *out_timeout = (gint)MIN ((rest_us + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (guint64)G_MAXINT);
    }
  return FALSE;
}

static gboolean
bus_source_check (GSource *source)
{
  WbBusSource *self = (WbBusSource *)source;
  uint64_t until_us = UINT64_MAX;

  if (self->lost)
    return FALSE;
  if (g_source_query_unix_fd (source, self->fd_tag) != 0)
    return TRUE;
  if (sd_bus_get_timeout (self->bus, &until_us) < 0)
    return TRUE;
  return until_us != UINT64_MAX && (gint64)until_us <= g_get_monotonic_time ();
}

static gboolean
bus_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  WbBusSource *self = (WbBusSource *)source;
  int r;

  if (self->lost)
    return G_SOURCE_REMOVE;

  /* Keep ourselves alive: a lost callback may destroy and unref the source. */
  g_source_ref (source);
  /* Bounded, so a flood of bus calls cannot starve the sockets and upstream;
   * with messages left sd_bus_get_timeout() is 0 and we run again next
   * iteration. */
  for (guint n = 0; (r = sd_bus_process (self->bus, NULL)) > 0 && n < MAX_PROCESS_PER_DISPATCH; n++)
    ;
  if (r < 0)
    {
      bus_source_report_lost (self, r, callback, user_data);
      g_source_unref (source);
      return G_SOURCE_REMOVE;
    }
  g_source_unref (source);
  return G_SOURCE_CONTINUE;
}

static void
bus_source_finalize (GSource *source)
{
  WbBusSource *self = (WbBusSource *)source;

  self->bus = sd_bus_flush_close_unref (self->bus);
}

static GSourceFuncs bus_source_funcs = {
  .prepare = bus_source_prepare,
  .check = bus_source_check,
  .dispatch = bus_source_dispatch,
  .finalize = bus_source_finalize,
};

GSource *
wb_bus_source_new (sd_bus *bus)
{
  WbBusSource *self;
  int fd;

  g_return_val_if_fail (bus != NULL, NULL);

  fd = sd_bus_get_fd (bus);
  g_return_val_if_fail (fd >= 0, NULL);

  self = (WbBusSource *)g_source_new (&bus_source_funcs, sizeof (WbBusSource));
  g_source_set_static_name (&self->source, "sd-bus");
  self->bus = sd_bus_ref (bus);
  self->condition = G_IO_IN;
  self->fd_tag = g_source_add_unix_fd (&self->source, fd, self->condition);
  /* Never dispatched recursively (no nested loops); without the flag GLib
   * takes the fd out of the poll set around every dispatch and puts it
   * back, each change writing the loop's wakeup eventfd. */
  g_source_set_can_recurse (&self->source, TRUE);
  return &self->source;
}

gboolean
wb_bus_source_is_lost (GSource *source)
{
  g_return_val_if_fail (source != NULL, FALSE);
  return ((WbBusSource *)source)->lost;
}
