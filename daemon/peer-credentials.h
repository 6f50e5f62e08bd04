/* SPDX-License-Identifier: MIT */
/*
 * Who is on the other end: a local socket's peer (SO_PEERCRED for pid, uid,
 * gid and SO_PEERGROUPS for supplementary groups, taken by the kernel at
 * connect() time, so a client cannot lie about them afterwards) or a D-Bus
 * caller (the credentials the bus daemon vouches for).
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef struct
{
  pid_t pid;
  uid_t uid;
  gid_t gid;
  gid_t *groups; /* supplementary groups; may be empty if the kernel lacks SO_PEERGROUPS */
  guint n_groups;
} WbPeerCredentials;

WbPeerCredentials *wb_peer_credentials_new_from_fd (int fd, GError **error);
/* From credentials known otherwise (the bus); copies @groups. */
WbPeerCredentials *wb_peer_credentials_new (pid_t pid, uid_t uid, gid_t gid, const gid_t *groups,
                                            guint n_groups);
WbPeerCredentials *wb_peer_credentials_copy (const WbPeerCredentials *credentials);
void wb_peer_credentials_free (WbPeerCredentials *credentials);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (WbPeerCredentials, wb_peer_credentials_free)

/* TRUE for root, or when @gid is the peer's primary or a supplementary
 * group; never for (gid_t)-1 (an unknown primary group is set to it). */
gboolean wb_peer_credentials_in_group (const WbPeerCredentials *credentials, gid_t gid);

/* Resolves a group name (or a decimal gid) to a gid via NSS. */
gboolean wb_group_lookup (const char *name, gid_t *out_gid, GError **error);

G_END_DECLS
