/* SPDX-License-Identifier: MIT */
/*
 * The local key of the local WAVE endpoint (ws-frontend.c): the token a
 * local app passes as api_key= instead of the account's real key, which
 * never leaves the daemon. Kept in a file that is created with a random key
 * at first start, mode 0640 (group: the daemon's, `wave` for the system
 * service); rotated by replacing or deleting the file and reloading.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Bytes of randomness in a generated key (hex-encoded after a prefix). */
#define WB_LOCAL_KEY_RANDOM_BYTES 32
#define WB_LOCAL_KEY_PREFIX "wave_local_"
/* A key written by hand: URL-safe ([A-Za-z0-9._~-]), so an app can put it
 * in a query string as it is, and long enough not to be guessed. */
#define WB_LOCAL_KEY_MIN_BYTES 16
#define WB_LOCAL_KEY_MAX_BYTES 512

typedef struct _WbLocalKey WbLocalKey;

/* Reads the key in @path; if there is no such file, creates it (and its
 * directory, mode 0750) with a new random key. Warns when others may read
 * it. The key is never logged. */
WbLocalKey *wb_local_key_load (const char *path, GError **error);
/* Wipes the key. Accepts NULL. */
void wb_local_key_free (WbLocalKey *key);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbLocalKey, wb_local_key_free)

const char *wb_local_key_get_path (const WbLocalKey *key);
/* TRUE if @candidate (may be NULL) is the key; takes the same time
 * whatever prefix of it matches. */
gboolean wb_local_key_check (const WbLocalKey *key, const char *candidate);
/* Same key, e.g. after a reload: clients need not be told. */
gboolean wb_local_key_equal (const WbLocalKey *a, const WbLocalKey *b);

G_END_DECLS
