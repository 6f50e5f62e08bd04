/* SPDX-License-Identifier: MIT */
/*
 * Who is on the other end of a loopback TCP connection: the kernel knows
 * the uid that owns the peer's socket (the one ss(8) prints), and tells
 * anyone who asks by the connection's addresses (NETLINK_SOCK_DIAG, no
 * privilege and no /proc needed, so it works under ProcSubset=pid).
 */
#pragma once

#include <gio/gio.h>
#include <sys/types.h>

G_BEGIN_DECLS

/* @local: our end of an accepted connection; @remote: the peer's. Both must
 * be IPv4 or IPv6 addresses of this machine. FALSE if the kernel does not
 * know the peer's socket (it is closed already, or lives in another network
 * namespace) or cannot be asked. */
gboolean wb_tcp_peer_lookup_uid (GSocketAddress *local, GSocketAddress *remote, uid_t *out_uid,
                                 GError **error);

G_END_DECLS
