/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-dbus"

#include "dbus-errors.h"

#include <errno.h>

#include "dbus-text.h"
#include "hub.h"
#include "status.h"

typedef struct
{
  const char *name;
  int errno_value; /* what sd-bus handlers return alongside the error */
} WbDbusErrorInfo;

static WbDbusErrorInfo
error_info_from_gerror (const GError *error)
{
  if (error->domain == WB_HUB_ERROR)
    {
      switch ((WbHubError)error->code)
        {
        case WB_HUB_ERROR_INVALID_ARGUMENT:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_INVALID_ARGUMENT, EINVAL };
        case WB_HUB_ERROR_RATE_LIMITED:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_RATE_LIMITED, EBUSY };
        case WB_HUB_ERROR_TOO_MANY_SUBSCRIPTIONS:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_TOO_MANY_SUBSCRIPTIONS, ENOSPC };
        case WB_HUB_ERROR_NOT_SUBSCRIBED:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_NOT_SUBSCRIBED, ENOENT };
        case WB_HUB_ERROR_SHUTTING_DOWN:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_FAILED, ESHUTDOWN };
        case WB_HUB_ERROR_TOO_MANY_CLIENTS:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_LIMITS_EXCEEDED, EUSERS };
        case WB_HUB_ERROR_FORBIDDEN:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_FORBIDDEN, EACCES };
        }
    }
  else if (error->domain == WB_SEND_ERROR)
    {
      switch ((WbSendError)error->code)
        {
        case WB_SEND_ERROR_NOT_CONNECTED:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_NOT_CONNECTED, ENOTCONN };
        case WB_SEND_ERROR_FAILED:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_SEND_FAILED, EIO };
        }
    }
  else if (error->domain == WB_LINK_ERROR)
    {
      switch ((WbLinkError)error->code)
        {
        case WB_LINK_ERROR_SERVER_WAIT:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_RATE_LIMITED, EBUSY };
        case WB_LINK_ERROR_AUTH_FAILED:
          return (WbDbusErrorInfo){ WB_DBUS_ERROR_NOT_CONNECTED, ENOTCONN };
        }
    }
  return (WbDbusErrorInfo){ WB_DBUS_ERROR_FAILED, EIO };
}

int
wb_dbus_error_set_from_gerror (sd_bus_error *ret_error, const GError *error)
{
  WbDbusErrorInfo info;

  g_return_val_if_fail (error != NULL, -EINVAL);

  info = error_info_from_gerror (error);
  {
    /* An error text may quote what a client sent; the reply must still go. */
    g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);

    sd_bus_error_set (ret_error, info.name, wb_dbus_text_carryable (error->message, keep));
  }
  return -info.errno_value;
}
