/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-local-key"

#include "local-key.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "errno-util.h"

/* Owner writes, the daemon's group (`wave`) reads: exactly, whatever the
 * umask (the unit has UMask=0077). */
#define LOCAL_KEY_MODE 0640
#define LOCAL_KEY_DIR_MODE 0750

struct _WbLocalKey
{
  char *path;
  char *secret; /* wiped on free */
};

void
wb_local_key_free (WbLocalKey *key)
{
  if (key == NULL)
    return;
  wb_secret_free (key->secret);
  g_free (key->path);
  g_free (key);
}

const char *
wb_local_key_get_path (const WbLocalKey *key)
{
  g_return_val_if_fail (key != NULL, NULL);
  return key->path;
}

static gboolean
key_char_is_valid (char c)
{
  return g_ascii_isalnum (c) || c == '-' || c == '_' || c == '.' || c == '~';
}

gboolean
wb_local_key_check (const WbLocalKey *key, const char *candidate)
{
  gsize key_length;
  gsize candidate_length;
  guchar diff;

  g_return_val_if_fail (key != NULL, FALSE);
  if (candidate == NULL)
    return FALSE;
  key_length = strlen (key->secret);
  candidate_length = strlen (candidate);
  /* Compare every byte of the key, so the time says nothing of how much
   * of a guess was right. */
  diff = key_length != candidate_length;
  for (gsize i = 0; i < key_length; i++)
    diff |= (guchar)key->secret[i] ^ (guchar)(i < candidate_length ? candidate[i] : 0);
  return diff == 0;
}

gboolean
wb_local_key_equal (const WbLocalKey *a, const WbLocalKey *b)
{
  g_return_val_if_fail (a != NULL && b != NULL, FALSE);
  return wb_local_key_check (a, b->secret);
}

static char *
generate_secret (GError **error)
{
  guchar random[WB_LOCAL_KEY_RANDOM_BYTES];
  GString *text;
  gsize got = 0;

  while (got < sizeof random)
    {
      ssize_t r = getrandom (random + got, sizeof random - got, 0);

      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        {
          wb_set_error_from_errno (error, errno, "Cannot get random bytes for a local key");
          return NULL;
        }
      got += (gsize)r;
    }
  text = g_string_new (WB_LOCAL_KEY_PREFIX);
  for (gsize i = 0; i < sizeof random; i++)
    g_string_append_printf (text, "%02x", random[i]);
  explicit_bzero (random, sizeof random);
  return g_string_free (text, FALSE);
}

/* Written under a temporary name and linked into place, so a reader never
 * sees half a key and a file someone else created meanwhile is kept. */
static gboolean
create_key_file (const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *temp_path = g_strdup_printf ("%s.%d.new", path, (int)getpid ());
  g_autoptr (WbSecret) secret = NULL;
  g_autofree char *line = NULL;
  mode_t old_umask;
  gsize length;
  int fd;
  int r;

  secret = generate_secret (error);
  if (secret == NULL)
    return FALSE;
  old_umask = umask (0);
  r = g_mkdir_with_parents (dir, LOCAL_KEY_DIR_MODE);
  umask (old_umask);
  if (r < 0)
    return wb_set_error_from_errno (error, errno, "Cannot create directory %s", dir);
  unlink (temp_path);
  fd = open (temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, LOCAL_KEY_MODE);
  if (fd < 0)
    return wb_set_error_from_errno (error, errno, "Cannot create %s", temp_path);
  line = g_strconcat (secret, "\n", NULL);
  length = strlen (line);
  r = fchmod (fd, LOCAL_KEY_MODE) == 0 && write (fd, line, length) == (ssize_t)length
              && fsync (fd) == 0
          ? 0
          : -1;
  wb_secret_wipe (line);
  if (r < 0)
    {
      int saved_errno = errno;

      close (fd);
      unlink (temp_path);
      return wb_set_error_from_errno (error, saved_errno, "Cannot write %s", temp_path);
    }
  close (fd);
  r = link (temp_path, path);
  if (r < 0 && errno != EEXIST)
    {
      int saved_errno = errno;

      unlink (temp_path);
      return wb_set_error_from_errno (error, saved_errno, "Cannot create %s", path);
    }
  unlink (temp_path);
  if (r == 0)
    g_message ("Created a new local key in %s", path);
  return TRUE;
}

WbLocalKey *
wb_local_key_load (const char *path, GError **error)
{
  g_autoptr (WbLocalKey) key = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autoptr (WbSecret) contents = NULL;
  gsize length = 0;
  struct stat st;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (lstat (path, &st) < 0 && errno == ENOENT && !create_key_file (path, error))
    return NULL;
  if (!g_file_get_contents (path, &contents, &length, &local_error))
    {
      g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE, "Local key file %s: %s",
                   path, local_error->message);
      return NULL;
    }
  if (stat (path, &st) == 0 && (st.st_mode & S_IROTH) != 0)
    g_warning ("Local key file %s is readable by every user; chmod o-r it", path);
  g_strstrip (contents);
  length = strlen (contents);
  if (length < WB_LOCAL_KEY_MIN_BYTES || length > WB_LOCAL_KEY_MAX_BYTES)
    {
      g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE,
                   "Local key file %s: the key must be %d to %d bytes long; delete the file "
                   "and reload to get a new one",
                   path, WB_LOCAL_KEY_MIN_BYTES, WB_LOCAL_KEY_MAX_BYTES);
      return NULL;
    }
  for (gsize i = 0; i < length; i++)
    if (!key_char_is_valid (contents[i]))
      {
        g_set_error (error, WB_CONFIG_ERROR, WB_CONFIG_ERROR_INVALID_VALUE,
                     "Local key file %s: the key may hold only letters, digits and - _ . ~", path);
        return NULL;
      }
  key = g_new0 (WbLocalKey, 1);
  key->path = g_strdup (path);
  key->secret = g_steal_pointer (&contents);
  return g_steal_pointer (&key);
}
