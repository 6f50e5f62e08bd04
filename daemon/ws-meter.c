/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-websocket"

#include "ws-meter.h"

struct _WbWsMeter
{
  GFilterInputStream parent;
  gsize budget;
  guint64 total;
  guint64 mark; /* total at the last mark */
};

static void wb_ws_meter_pollable_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (WbWsMeter, wb_ws_meter, G_TYPE_FILTER_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
                                                      wb_ws_meter_pollable_init))

static GInputStream *
meter_base (WbWsMeter *meter)
{
  return g_filter_input_stream_get_base_stream (G_FILTER_INPUT_STREAM (meter));
}

/* Counts @count bytes just read; FALSE (with an error) past the budget. */
static gboolean
meter_count (WbWsMeter *meter, gssize count, GError **error)
{
  if (count <= 0)
    return TRUE;
  meter->total += (guint64)count;
  if (meter->total - meter->mark > meter->budget)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                   "the peer sent more than %" G_GSIZE_FORMAT " bytes at once", meter->budget);
      return FALSE;
    }
  return TRUE;
}

static gssize
meter_read (GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable,
            GError **error)
{
  WbWsMeter *meter = WB_WS_METER (stream);
  gssize read = g_input_stream_read (meter_base (meter), buffer, count, cancellable, error);

  return meter_count (meter, read, error) ? read : -1;
}

static gboolean
meter_can_poll (GPollableInputStream *stream)
{
  GInputStream *base = meter_base (WB_WS_METER (stream));

  return G_IS_POLLABLE_INPUT_STREAM (base)
         && g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (base));
}

static gboolean
meter_is_readable (GPollableInputStream *stream)
{
  return g_pollable_input_stream_is_readable (
      G_POLLABLE_INPUT_STREAM (meter_base (WB_WS_METER (stream))));
}

static GSource *
meter_create_source (GPollableInputStream *stream, GCancellable *cancellable)
{
  g_autoptr (GSource) base_source = g_pollable_input_stream_create_source (
      G_POLLABLE_INPUT_STREAM (meter_base (WB_WS_METER (stream))), NULL);

  /* Callbacks get the meter, not the socket's stream. */
  return g_pollable_source_new_full (stream, base_source, cancellable);
}

static gssize
meter_read_nonblocking (GPollableInputStream *stream, void *buffer, gsize count, GError **error)
{
  WbWsMeter *meter = WB_WS_METER (stream);
  gssize read = g_pollable_input_stream_read_nonblocking (
      G_POLLABLE_INPUT_STREAM (meter_base (meter)), buffer, count, NULL, error);

  return meter_count (meter, read, error) ? read : -1;
}

static void
wb_ws_meter_pollable_init (GPollableInputStreamInterface *iface)
{
  iface->can_poll = meter_can_poll;
  iface->is_readable = meter_is_readable;
  iface->create_source = meter_create_source;
  iface->read_nonblocking = meter_read_nonblocking;
}

static void
wb_ws_meter_class_init (WbWsMeterClass *klass)
{
  GInputStreamClass *input_class = G_INPUT_STREAM_CLASS (klass);

  input_class->read_fn = meter_read;
}

static void
wb_ws_meter_init (WbWsMeter *meter)
{
}

GInputStream *
wb_ws_meter_new (GInputStream *base, gsize budget)
{
  WbWsMeter *meter;

  g_return_val_if_fail (G_IS_POLLABLE_INPUT_STREAM (base), NULL);

  meter = g_object_new (WB_TYPE_WS_METER, "base-stream", base, "close-base-stream", TRUE, NULL);
  meter->budget = budget;
  return G_INPUT_STREAM (meter);
}

void
wb_ws_meter_set_budget (WbWsMeter *meter, gsize budget)
{
  g_return_if_fail (WB_IS_WS_METER (meter));
  meter->budget = budget;
  meter->mark = meter->total;
}

void
wb_ws_meter_mark (WbWsMeter *meter)
{
  g_return_if_fail (WB_IS_WS_METER (meter));
  meter->mark = meter->total;
}

void
wb_ws_meter_credit (WbWsMeter *meter, gsize count)
{
  g_return_if_fail (WB_IS_WS_METER (meter));
  meter->mark = MIN (meter->mark + count, meter->total);
}

guint64
wb_ws_meter_get_total (WbWsMeter *meter)
{
  g_return_val_if_fail (WB_IS_WS_METER (meter), 0);
  return meter->total;
}
