/* SPDX-License-Identifier: MIT */
/*
 * The upstream close policy as data: DESIGN.md's close table (WAVE close
 * codes, handshake HTTP statuses and the bridge's own failures) mapped to
 * what happens next. upstream.c asks this module and never branches on a
 * close code itself. See docs/upstream.md.
 */
#pragma once

#include <glib.h>

#include "config.h"
#include "status.h"

G_BEGIN_DECLS

typedef enum
{
  /* Server closed normally: stay down until a local demand (subscribe, send,
   * Reconnect(), reload). */
  WB_CLOSE_ACTION_NO_RETRY_UNTIL_DEMAND,
  /* Retry after a fixed wait (1001: 5 s, 4429: 60 s); jitter only lengthens it. */
  WB_CLOSE_ACTION_FIXED_WAIT,
  /* Retry after the next exponential backoff delay. */
  WB_CLOSE_ACTION_BACKOFF,
  /* Bad key: stay down until wb_upstream_reload(). */
  WB_CLOSE_ACTION_PARK_UNTIL_RELOAD,
} WbCloseAction;

/* Which configured duration a fixed wait uses. */
typedef enum
{
  WB_CLOSE_WAIT_NONE,
  WB_CLOSE_WAIT_GOING_AWAY,   /* WbConfig.going_away_wait_ms */
  WB_CLOSE_WAIT_RATE_LIMITED, /* WbConfig.rate_limited_wait_ms */
} WbCloseWait;

/* Failures seen by the bridge itself, without a close code or HTTP status. */
typedef enum
{
  WB_LOCAL_FAILURE_NETWORK,         /* TCP refused/reset, unreachable, I/O error */
  WB_LOCAL_FAILURE_DNS,             /* host name did not resolve */
  WB_LOCAL_FAILURE_TLS,             /* handshake failed, certificate not trusted */
  WB_LOCAL_FAILURE_CONNECT_TIMEOUT, /* handshake took too long */
  WB_LOCAL_FAILURE_PONG_TIMEOUT,    /* bridge closed: no pong in time */
  WB_LOCAL_FAILURE_WRITE_ERROR,     /* bridge closed: the connection broke */
  WB_LOCAL_FAILURE_PROTOCOL,        /* not a WebSocket answer, bad frames */
  WB_LOCAL_FAILURE_INVALID_URL,     /* the configured URL cannot be used */
  WB_LOCAL_FAILURE_N_KINDS
} WbLocalFailure;

/* The close code a teardown by the bridge counts as (DESIGN.md: "counts as 1006"). */
#define WB_CLOSE_CODE_ABNORMAL 1006

typedef struct
{
  WbCloseAction action;
  WbCloseWait wait;
  WbLinkState state; /* the state while parked or waiting */
  const char *description;
} WbClosePolicy;

/* Each returns a static row; never NULL (unknown values fall to a catch-all). */
const WbClosePolicy *wb_close_policy_for_close_code (guint16 code);
const WbClosePolicy *wb_close_policy_for_http_status (guint status);
const WbClosePolicy *wb_close_policy_for_local_failure (WbLocalFailure kind);

/* The configured base duration of a fixed wait; 0 for other actions. */
guint wb_close_policy_fixed_wait_ms (const WbClosePolicy *policy, const WbConfig *config);

const char *wb_close_action_to_string (WbCloseAction action);
const char *wb_local_failure_to_string (WbLocalFailure kind);

G_END_DECLS
