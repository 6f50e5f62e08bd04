/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-upstream"

#include "close-policy.h"

typedef enum
{
  MATCH_CLOSE_CODE,
  MATCH_HTTP_STATUS,
  MATCH_LOCAL_FAILURE,
} MatchKind;

typedef struct
{
  MatchKind kind;
  guint first; /* inclusive range of codes, statuses or WbLocalFailure values */
  guint last;
  WbClosePolicy policy;
} PolicyRow;

#define NO_RETRY(state, text)                                                                      \
  {                                                                                                \
    WB_CLOSE_ACTION_NO_RETRY_UNTIL_DEMAND, WB_CLOSE_WAIT_NONE, state, text                         \
  }
#define FIXED(wait, state, text)                                                                   \
  {                                                                                                \
    WB_CLOSE_ACTION_FIXED_WAIT, wait, state, text                                                  \
  }
#define BACKOFF(text)                                                                              \
  {                                                                                                \
    WB_CLOSE_ACTION_BACKOFF, WB_CLOSE_WAIT_NONE, WB_LINK_WAITING, text                             \
  }
#define PARK(text)                                                                                 \
  {                                                                                                \
    WB_CLOSE_ACTION_PARK_UNTIL_RELOAD, WB_CLOSE_WAIT_NONE, WB_LINK_AUTH_FAILED, text               \
  }

/* DESIGN.md "Close handling", one row per case; the first matching row wins,
 * so each kind ends with its catch-all. */
static const PolicyRow policy_rows[] = {
  { MATCH_CLOSE_CODE, 1000, 1000, NO_RETRY (WB_LINK_CLOSED, "normal closure") },
  { MATCH_CLOSE_CODE, 1001, 1001, FIXED (WB_CLOSE_WAIT_GOING_AWAY, WB_LINK_WAITING, "going away") },
  { MATCH_CLOSE_CODE, 1006, 1006, BACKOFF ("abnormal closure") },
  { MATCH_CLOSE_CODE, 4401, 4401, PARK ("invalid api key") },
  { MATCH_CLOSE_CODE, 4429, 4429,
    FIXED (WB_CLOSE_WAIT_RATE_LIMITED, WB_LINK_RATE_LIMITED, "rate limited") },
  { MATCH_CLOSE_CODE, 4500, 4500, BACKOFF ("server error") },
  { MATCH_CLOSE_CODE, 0, G_MAXUINT16, BACKOFF ("other close code") },

  { MATCH_HTTP_STATUS, 401, 401, PARK ("handshake unauthorized") },
  { MATCH_HTTP_STATUS, 403, 403, PARK ("handshake forbidden") },
  { MATCH_HTTP_STATUS, 429, 429,
    FIXED (WB_CLOSE_WAIT_RATE_LIMITED, WB_LINK_RATE_LIMITED, "handshake rate limited") },
  { MATCH_HTTP_STATUS, 500, 599, BACKOFF ("handshake server error") },
  { MATCH_HTTP_STATUS, 0, G_MAXUINT, BACKOFF ("handshake refused") },

  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_NETWORK, WB_LOCAL_FAILURE_NETWORK,
    BACKOFF ("network failure") },
  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_DNS, WB_LOCAL_FAILURE_DNS,
    BACKOFF ("name resolution failure") },
  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_TLS, WB_LOCAL_FAILURE_TLS, BACKOFF ("TLS failure") },
  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_CONNECT_TIMEOUT, WB_LOCAL_FAILURE_CONNECT_TIMEOUT,
    BACKOFF ("connect timeout") },
  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_PONG_TIMEOUT, WB_LOCAL_FAILURE_PONG_TIMEOUT,
    BACKOFF ("pong timeout") },
  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_WRITE_ERROR, WB_LOCAL_FAILURE_WRITE_ERROR,
    BACKOFF ("write error") },
  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_PROTOCOL, WB_LOCAL_FAILURE_PROTOCOL,
    BACKOFF ("protocol error") },
  /* A bad URL does not fix itself, but retrying it is cheap and the bridge
   * must never talk itself into silence; config validation rejects most. */
  { MATCH_LOCAL_FAILURE, WB_LOCAL_FAILURE_INVALID_URL, WB_LOCAL_FAILURE_INVALID_URL,
    BACKOFF ("invalid URL") },
  { MATCH_LOCAL_FAILURE, 0, G_MAXUINT, BACKOFF ("local failure") },
};

#undef NO_RETRY
#undef FIXED
#undef BACKOFF
#undef PARK

static const WbClosePolicy *
lookup (MatchKind kind, guint value)
{
  for (gsize i = 0; i < G_N_ELEMENTS (policy_rows); i++)
    {
      const PolicyRow *row = &policy_rows[i];

      if (row->kind == kind && value >= row->first && value <= row->last)
        return &row->policy;
    }
  /* Unreachable: every kind ends with a catch-all row. */
  g_return_val_if_reached (&policy_rows[G_N_ELEMENTS (policy_rows) - 1].policy);
}

const WbClosePolicy *
wb_close_policy_for_close_code (guint16 code)
{
  return lookup (MATCH_CLOSE_CODE, code);
}

const WbClosePolicy *
wb_close_policy_for_http_status (guint status)
{
  return lookup (MATCH_HTTP_STATUS, status);
}

const WbClosePolicy *
wb_close_policy_for_local_failure (WbLocalFailure kind)
{
  return lookup (MATCH_LOCAL_FAILURE, kind);
}

guint
wb_close_policy_fixed_wait_ms (const WbClosePolicy *policy, const WbConfig *config)
{
  g_return_val_if_fail (policy != NULL && config != NULL, 0);

  if (policy->action != WB_CLOSE_ACTION_FIXED_WAIT)
    return 0;
  switch (policy->wait)
    {
    case WB_CLOSE_WAIT_GOING_AWAY:
      return config->going_away_wait_ms;
    case WB_CLOSE_WAIT_RATE_LIMITED:
      return config->rate_limited_wait_ms;
    case WB_CLOSE_WAIT_NONE:
    default:
      return 0;
    }
}

const char *
wb_close_action_to_string (WbCloseAction action)
{
  switch (action)
    {
    case WB_CLOSE_ACTION_NO_RETRY_UNTIL_DEMAND:
      return "no-retry-until-demand";
    case WB_CLOSE_ACTION_FIXED_WAIT:
      return "fixed-wait";
    case WB_CLOSE_ACTION_BACKOFF:
      return "backoff";
    case WB_CLOSE_ACTION_PARK_UNTIL_RELOAD:
      return "park-until-reload";
    default:
      return "unknown";
    }
}

const char *
wb_local_failure_to_string (WbLocalFailure kind)
{
  g_return_val_if_fail (kind < WB_LOCAL_FAILURE_N_KINDS, "unknown");
  return wb_close_policy_for_local_failure (kind)->description;
}
