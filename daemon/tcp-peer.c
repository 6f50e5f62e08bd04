/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-tcp-peer"

#include "tcp-peer.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "errno-util.h"

/* The kernel answers at once; never let a lookup hold the main loop longer. */
#define DIAG_TIMEOUT_US 100000

static gboolean
fill_address (GSocketAddress *address, int *family, __be32 out[4], __be16 *out_port)
{
  GInetAddress *inet;
  gsize size;

  if (!G_IS_INET_SOCKET_ADDRESS (address))
    return FALSE;
  inet = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address));
  size = g_inet_address_get_native_size (inet);
  *family = g_inet_address_get_family (inet) == G_SOCKET_FAMILY_IPV6 ? AF_INET6 : AF_INET;
  memset (out, 0, 4 * sizeof (__be32));
  memcpy (out, g_inet_address_to_bytes (inet), MIN (size, 4 * sizeof (__be32)));
  *out_port = htons (g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (address)));
  return TRUE;
}

gboolean
wb_tcp_peer_lookup_uid (GSocketAddress *local, GSocketAddress *remote, uid_t *out_uid,
                        GError **error)
{
  struct
  {
    struct nlmsghdr header;
    struct inet_diag_req_v2 request;
  } query = { 0 };
  union
  {
    struct nlmsghdr header;
    char bytes[8192];
  } answer;
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  struct timeval timeout = { .tv_sec = 0, .tv_usec = DIAG_TIMEOUT_US };
  int local_family = 0;
  int remote_family = 0;
  ssize_t received;
  int fd;

  g_return_val_if_fail (local != NULL && remote != NULL && out_uid != NULL, FALSE);

  /* The peer's socket: its source is the connection's remote end. */
  if (!fill_address (remote, &remote_family, query.request.id.idiag_src,
                     &query.request.id.idiag_sport)
      || !fill_address (local, &local_family, query.request.id.idiag_dst,
                        &query.request.id.idiag_dport)
      || local_family != remote_family)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "not a TCP/IP connection");
      return FALSE;
    }
  query.header.nlmsg_len = sizeof query;
  query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  query.header.nlmsg_flags = NLM_F_REQUEST;
  query.request.sdiag_family = (__u8)local_family;
  query.request.sdiag_protocol = IPPROTO_TCP;
  query.request.idiag_states = ~0U;
  query.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  query.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  fd = socket (AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0)
    return wb_set_error_from_errno (error, errno, "Cannot open a sock_diag socket");
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (sendto (fd, &query, sizeof query, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
    {
      int saved_errno = errno;

      close (fd);
      return wb_set_error_from_errno (error, saved_errno, "Cannot ask sock_diag");
    }
  do
    received = recv (fd, &answer, sizeof answer, 0);
  while (received < 0 && errno == EINTR);
  if (received < 0)
    {
      int saved_errno = errno;

      close (fd);
      return wb_set_error_from_errno (error, saved_errno, "No answer from sock_diag");
    }
  close (fd);

  for (struct nlmsghdr *header = &answer.header; NLMSG_OK (header, (gsize)received);
       header = NLMSG_NEXT (header, received))
    {
      if (header->nlmsg_type == NLMSG_ERROR)
        {
          const struct nlmsgerr *failure = NLMSG_DATA (header);

          return wb_set_error_from_errno (error, failure->error < 0 ? -failure->error : ENOENT,
                                          "The peer's socket is not known");
        }
      if (header->nlmsg_type == SOCK_DIAG_BY_FAMILY
          && header->nlmsg_len >= NLMSG_LENGTH (sizeof (struct inet_diag_msg)))
        {
          const struct inet_diag_msg *message = NLMSG_DATA (header);

          *out_uid = message->idiag_uid;
          return TRUE;
        }
    }
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "The peer's socket is not known");
  return FALSE;
}
