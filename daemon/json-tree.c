/* SPDX-License-Identifier: MIT */
#define G_LOG_DOMAIN "wave-json"

#include "json-tree.h"

#include <string.h>

/* Number tokens up to this long are converted from the stack. */
#define NUMBER_BUFFER_BYTES 64

/* Reads text already checked: every escape, surrogate pair and number
 * range holds, so nothing here can fail. The end is still minded at every
 * step, so that a checker bug would give a wrong tree, never a read past
 * the buffer. */
typedef struct
{
  const char *p;
  const char *end;
} Reader;

static JsonNode *read_value (Reader *r);

static void
skip_whitespace (Reader *r)
{
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    r->p++;
}

static gunichar
read_hex4 (Reader *r)
{
  gunichar unit = 0;

  for (guint i = 0; i < 4 && r->p < r->end; i++)
    {
      int digit = g_ascii_xdigit_value (*r->p++);

      unit = (unit << 4) | (gunichar)MAX (digit, 0);
    }
  return unit;
}

/* At the opening quote; returns the decoded string (newly allocated). */
static char *
read_string (Reader *r)
{
  const char *start = ++r->p;
  const char *q = start;
  GString *decoded;

  while (q < r->end && *q != '"' && *q != '\\')
    q++;
  if (q >= r->end || *q == '"')
    {
      r->p = MIN (q + 1, r->end);
      return g_strndup (start, (gsize)(q - start));
    }
  decoded = g_string_new_len (start, q - start);
  r->p = q;
  while (r->p < r->end && *r->p != '"')
    {
      const char *run = r->p;
      gunichar c;

      if (*r->p != '\\')
        {
          while (r->p < r->end && *r->p != '"' && *r->p != '\\')
            r->p++;
          g_string_append_len (decoded, run, r->p - run);
          continue;
        }
      if (++r->p >= r->end)
        break;
      switch (*r->p++)
        {
        case 'b':
          g_string_append_c (decoded, '\b');
          break;
        case 'f':
          g_string_append_c (decoded, '\f');
          break;
        case 'n':
          g_string_append_c (decoded, '\n');
          break;
        case 'r':
          g_string_append_c (decoded, '\r');
          break;
        case 't':
          g_string_append_c (decoded, '\t');
          break;
        case 'u':
          c = read_hex4 (r);
          if (c >= 0xD800 && c <= 0xDBFF)
            {
              /* The checker let through only whole pairs: "\uD83D\uDE00". */
              r->p = MIN (r->p + 2, r->end);
              c = 0x10000 + ((c - 0xD800) << 10) + (read_hex4 (r) - 0xDC00);
            }
          g_string_append_unichar (decoded, c);
          break;
        default: /* '"', '\\', '/' stand for themselves */
          g_string_append_c (decoded, r->p[-1]);
          break;
        }
    }
  r->p = MIN (r->p + 1, r->end);
  return g_string_free (decoded, FALSE);
}

/* An integer (no fraction, no exponent) is a gint64 in range, as json-glib
 * reads it; anything else a double. */
static JsonNode *
read_number (Reader *r)
{
  const char *begin = r->p;
  gboolean integer = TRUE;
  char stack_buffer[NUMBER_BUFFER_BYTES + 1];
  g_autofree char *heap_buffer = NULL;
  char *token = stack_buffer;
  gsize length;
  JsonNode *node = json_node_alloc ();

  while (r->p < r->end
         && (g_ascii_isdigit (*r->p) || *r->p == '-' || *r->p == '+' || *r->p == '.' || *r->p == 'e'
             || *r->p == 'E'))
    {
      if (*r->p == '.' || *r->p == 'e' || *r->p == 'E')
        integer = FALSE;
      r->p++;
    }
  if (r->p == begin && r->p < r->end)
    r->p++; /* not a number (a checker bug): move on rather than loop */
  length = (gsize)(r->p - begin);
  if (length > NUMBER_BUFFER_BYTES)
    token = heap_buffer = g_malloc (length + 1);
  memcpy (token, begin, length);
  token[length] = '\0';
  if (integer)
    json_node_init_int (node, g_ascii_strtoll (token, NULL, 10));
  else
    json_node_init_double (node, g_ascii_strtod (token, NULL));
  return node;
}

static JsonNode *
read_object (Reader *r)
{
  JsonObject *object = json_object_new ();
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);

  r->p++;
  skip_whitespace (r);
  while (r->p < r->end && *r->p != '}')
    {
      g_autofree char *name = read_string (r);

      skip_whitespace (r);
      r->p = MIN (r->p + 1, r->end); /* ':' */
      json_object_set_member (object, name, read_value (r));
      skip_whitespace (r);
      if (r->p < r->end && *r->p == ',')
        {
          r->p++;
          skip_whitespace (r);
        }
    }
  r->p = MIN (r->p + 1, r->end);
  json_node_take_object (node, object);
  return node;
}

static JsonNode *
read_array (Reader *r)
{
  JsonArray *array = json_array_new ();
  JsonNode *node = json_node_new (JSON_NODE_ARRAY);

  r->p++;
  skip_whitespace (r);
  while (r->p < r->end && *r->p != ']')
    {
      json_array_add_element (array, read_value (r));
      skip_whitespace (r);
      if (r->p < r->end && *r->p == ',')
        {
          r->p++;
          skip_whitespace (r);
        }
    }
  r->p = MIN (r->p + 1, r->end);
  json_node_take_array (node, array);
  return node;
}

static JsonNode *
read_value (Reader *r)
{
  JsonNode *node;

  skip_whitespace (r);
  if (r->p >= r->end)
    return json_node_init_null (json_node_alloc ());
  switch (*r->p)
    {
    case '{':
      return read_object (r);
    case '[':
      return read_array (r);
    case '"':
      {
        g_autofree char *text = read_string (r);

        node = json_node_new (JSON_NODE_VALUE);
        json_node_set_string (node, text);
        return node;
      }
    case 't':
      r->p = MIN (r->p + strlen ("true"), r->end);
      return json_node_init_boolean (json_node_alloc (), TRUE);
    case 'f':
      r->p = MIN (r->p + strlen ("false"), r->end);
      return json_node_init_boolean (json_node_alloc (), FALSE);
    case 'n':
      r->p = MIN (r->p + strlen ("null"), r->end);
      return json_node_init_null (json_node_alloc ());
    default:
      return read_number (r);
    }
}

JsonNode *
wb_json_tree_new (const char *data, gsize length)
{
  Reader reader = { .p = data, .end = data + length };
  JsonNode *root;

  g_return_val_if_fail (data != NULL && length > 0, NULL);

  root = read_value (&reader);
  json_node_seal (root);
  return root;
}
