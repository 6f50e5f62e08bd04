/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-socket"

#include "peer-credentials.h"

#include <errno.h>
#include <gio/gio.h>
#include <grp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errno-util.h"

/* A generous first guess; SO_PEERGROUPS tells the real size on ERANGE. */
#define INITIAL_GROUPS 64
/* NGROUPS_MAX on Linux is 65536; never trust a size beyond it. */
#define MAX_GROUPS 65536
#define GROUP_BUFFER_INITIAL_BYTES 1024
#define GROUP_BUFFER_MAX_BYTES (1024 * 1024)

WbPeerCredentials *
wb_peer_credentials_new_from_fd (int fd, GError **error)
{
  g_autoptr (WbPeerCredentials) credentials = g_new0 (WbPeerCredentials, 1);
  struct ucred ucred = { 0 };
  socklen_t length = sizeof ucred;
  guint capacity = INITIAL_GROUPS;

  g_return_val_if_fail (fd >= 0, NULL);

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &ucred, &length) < 0)
    {
      wb_set_error_from_errno (error, errno, "SO_PEERCRED");
      return NULL;
    }
  credentials->pid = ucred.pid;
  credentials->uid = ucred.uid;
  credentials->gid = ucred.gid;

  while (TRUE)
    {
      socklen_t groups_length = capacity * sizeof (gid_t);

      g_free (credentials->groups);
      credentials->groups = g_new (gid_t, capacity);
      if (getsockopt (fd, SOL_SOCKET, SO_PEERGROUPS, credentials->groups, &groups_length) == 0)
        {
          credentials->n_groups = groups_length / sizeof (gid_t);
          break;
        }
      if (errno == ERANGE && groups_length / sizeof (gid_t) > capacity
          && groups_length / sizeof (gid_t) <= MAX_GROUPS)
        {
          capacity = groups_length / sizeof (gid_t);
          continue;
        }
      /* Old kernels (< 4.13): only the primary group is known; membership
       * checks then fail closed for supplementary groups. */
      g_debug ("SO_PEERGROUPS unavailable (%s); using the primary group only", g_strerror (errno));
      credentials->n_groups = 0;
      break;
    }
  return g_steal_pointer (&credentials);
}

WbPeerCredentials *
wb_peer_credentials_new (pid_t pid, uid_t uid, gid_t gid, const gid_t *groups, guint n_groups)
{
  WbPeerCredentials *credentials = g_new0 (WbPeerCredentials, 1);

  credentials->pid = pid;
  credentials->uid = uid;
  credentials->gid = gid;
  credentials->groups = n_groups > 0 ? g_memdup2 (groups, n_groups * sizeof (gid_t)) : NULL;
  credentials->n_groups = n_groups;
  return credentials;
}

WbPeerCredentials *
wb_peer_credentials_copy (const WbPeerCredentials *credentials)
{
  g_return_val_if_fail (credentials != NULL, NULL);
  return wb_peer_credentials_new (credentials->pid, credentials->uid, credentials->gid,
                                  credentials->groups, credentials->n_groups);
}

void
wb_peer_credentials_free (WbPeerCredentials *credentials)
{
  if (credentials == NULL)
    return;
  g_free (credentials->groups);
  g_free (credentials);
}

gboolean
wb_peer_credentials_in_group (const WbPeerCredentials *credentials, gid_t gid)
{
  g_return_val_if_fail (credentials != NULL, FALSE);

  if (credentials->uid == 0)
    return TRUE;
  /* (gid_t)-1 is "no group": what a D-Bus caller's unknown primary group
   * is set to, so a group that NSS gives that gid must admit nobody. */
  if (gid == (gid_t)-1)
    return FALSE;
  if (credentials->gid == gid)
    return TRUE;
  for (guint i = 0; i < credentials->n_groups; i++)
    if (credentials->groups[i] == gid)
      return TRUE;
  return FALSE;
}

gboolean
wb_group_lookup (const char *name, gid_t *out_gid, GError **error)
{
  gsize buffer_size = GROUP_BUFFER_INITIAL_BYTES;
  guint64 numeric = 0;

  g_return_val_if_fail (name != NULL && out_gid != NULL, FALSE);

  while (buffer_size <= GROUP_BUFFER_MAX_BYTES)
    {
      g_autofree char *buffer = g_malloc (buffer_size);
      struct group group;
      struct group *result = NULL;
      int r = getgrnam_r (name, &group, buffer, buffer_size, &result);

      if (r == ERANGE)
        {
          buffer_size *= 2;
          continue;
        }
      if (r == 0 && result != NULL)
        {
          *out_gid = result->gr_gid;
          return TRUE;
        }
      break;
    }

  if (g_ascii_string_to_unsigned (name, 10, 0, G_MAXUINT32 - 1, &numeric, NULL))
    {
      *out_gid = (gid_t)numeric;
      return TRUE;
    }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no such group '%s'", name);
  return FALSE;
}
