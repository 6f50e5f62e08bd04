/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-websocket"

#include "ws-meter.h"

struct _WbWsMeter
{
  GFilterInputStream parent;
  gsize budget;
  guint64 total;
  guint64 mark;    /* total at the last mark */
  GSocket *socket; /* reads wait while it takes no output, or NULL */
  gboolean held;   /* the last read found the socket's output full */
};

/* The meter's readiness: the socket's input while it takes output, else
 * its output (once writable, reading goes on). One fd, its events switched
 * in prepare, so a held peer's pending input does not wake the loop. */
typedef struct
{
  GSource source;
  WbWsMeter *meter; /* owned */
  gpointer tag;
  GIOCondition watched;
} MeterSource;

static void wb_ws_meter_pollable_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (WbWsMeter, wb_ws_meter, G_TYPE_FILTER_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
                                                      wb_ws_meter_pollable_init))

static gboolean
meter_source_prepare (GSource *source, gint *timeout)
{
  MeterSource *self = (MeterSource *)source;
  GIOCondition wanted = self->meter->held ? G_IO_OUT : G_IO_IN;

  *timeout = -1;
  if (wanted != self->watched)
    {
      g_source_modify_unix_fd (source, self->tag, wanted);
      self->watched = wanted;
    }
  return FALSE;
}

static gboolean
meter_source_check (GSource *source)
{
  MeterSource *self = (MeterSource *)source;

  return g_source_query_unix_fd (source, self->tag) != 0;
}

/* Calls the reader back as a pollable stream's source does. */
static gboolean
meter_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  MeterSource *self = (MeterSource *)source;
  GPollableSourceFunc func = (GPollableSourceFunc)(GCallback)callback;

  if (func == NULL)
    return G_SOURCE_CONTINUE;
  return func (G_OBJECT (self->meter), user_data);
}

static void
meter_source_finalize (GSource *source)
{
  g_clear_object (&((MeterSource *)source)->meter);
}

/* A stream wrapping the meter makes this source its child, with a dummy
 * closure (g_pollable_source_new_full): invoked as GLib's own pollable
 * sources invoke theirs. */
static gboolean
meter_source_closure_callback (GObject *stream, gpointer data)
{
  GClosure *closure = data;
  GValue param = G_VALUE_INIT;
  GValue result = G_VALUE_INIT;
  gboolean again;

  g_value_init (&result, G_TYPE_BOOLEAN);
  g_value_init (&param, G_TYPE_OBJECT);
  g_value_set_object (&param, stream);
  g_closure_invoke (closure, &result, 1, &param, NULL);
  again = g_value_get_boolean (&result);
  g_value_unset (&result);
  g_value_unset (&param);
  return again;
}

static GSourceFuncs meter_source_funcs = {
  .prepare = meter_source_prepare,
  .check = meter_source_check,
  .dispatch = meter_source_dispatch,
  .finalize = meter_source_finalize,
  .closure_callback = (GSourceFunc)(GCallback)meter_source_closure_callback,
};

/* TRUE (and the meter held) if the peer's socket takes no output now. */
static gboolean
meter_hold (WbWsMeter *meter)
{
  GIOCondition condition;

  if (meter->socket == NULL)
    return FALSE;
  condition = g_socket_condition_check (meter->socket, G_IO_OUT | G_IO_ERR | G_IO_HUP);
  /* An error or hangup is for the reader to find. */
  meter->held = condition == 0;
  return meter->held;
}

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
  if (meter_hold (WB_WS_METER (stream)))
    return FALSE;
  return g_pollable_input_stream_is_readable (
      G_POLLABLE_INPUT_STREAM (meter_base (WB_WS_METER (stream))));
}

static GSource *
meter_create_source (GPollableInputStream *stream, GCancellable *cancellable)
{
  WbWsMeter *meter = WB_WS_METER (stream);
  g_autoptr (GSource) base_source = NULL;

  if (meter->socket != NULL)
    {
      MeterSource *own = (MeterSource *)g_source_new (&meter_source_funcs, sizeof (MeterSource));

      own->meter = g_object_ref (meter);
      own->watched = G_IO_IN;
      own->tag = g_source_add_unix_fd (&own->source, g_socket_get_fd (meter->socket), G_IO_IN);
      g_source_set_static_name (&own->source, "WbWsMeter");
      if (cancellable != NULL)
        {
          g_autoptr (GSource) cancelled = g_cancellable_source_new (cancellable);

          g_source_set_dummy_callback (cancelled);
          g_source_add_child_source (&own->source, cancelled);
        }
      return &own->source;
    }
  base_source
      = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (meter_base (meter)), NULL);
  /* Callbacks get the meter, not the socket's stream. */
  return g_pollable_source_new_full (stream, base_source, cancellable);
}

static gssize
meter_read_nonblocking (GPollableInputStream *stream, void *buffer, gsize count, GError **error)
{
  WbWsMeter *meter = WB_WS_METER (stream);
  gssize read;

  if (meter_hold (meter))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                           "the peer reads nothing: waiting before reading more");
      return -1;
    }
  read = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (meter_base (meter)),
                                                   buffer, count, NULL, error);

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
meter_finalize (GObject *object)
{
  g_clear_object (&WB_WS_METER (object)->socket);
  G_OBJECT_CLASS (wb_ws_meter_parent_class)->finalize (object);
}

static void
wb_ws_meter_class_init (WbWsMeterClass *klass)
{
  GInputStreamClass *input_class = G_INPUT_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = meter_finalize;
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

void
wb_ws_meter_set_socket (WbWsMeter *meter, GSocket *socket)
{
  g_return_if_fail (WB_IS_WS_METER (meter) && G_IS_SOCKET (socket));
  g_set_object (&meter->socket, socket);
}

guint64
wb_ws_meter_get_total (WbWsMeter *meter)
{
  g_return_val_if_fail (WB_IS_WS_METER (meter), 0);
  return meter->total;
}
