/* SPDX-License-Identifier: MIT */
/*
 * The name every error domain of the daemon registers. G_DEFINE_QUARK
 * stringizes its first argument, so a formatter that puts spaces around
 * '-' silently renames the domain ("wb - hub - error - quark"), and
 * nothing else would notice.
 */
#define G_LOG_DOMAIN "wave-test-error-domains"

#include "config.h"
#include "hub.h"
#include "json-strict.h"
#include "message.h"
#include "status.h"

typedef struct
{
  GQuark (*quark) (void);
  const char *name;
} Domain;

static const Domain domains[] = {
  { wb_config_error_quark, "wb-config-error-quark" },
  { wb_hub_error_quark, "wb-hub-error-quark" },
  { wb_json_strict_error_quark, "wb-json-strict-error-quark" },
  { wb_message_error_quark, "wb-message-error-quark" },
  { wb_send_error_quark, "wb-send-error-quark" },
};

static void
test_registered_names (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (domains); i++)
    {
      GQuark quark = domains[i].quark ();

      g_assert_cmpuint (quark, !=, 0);
      g_assert_cmpstr (g_quark_to_string (quark), ==, domains[i].name);
      /* The name is the domain: looking it up gives the same quark back. */
      g_assert_cmpuint (g_quark_try_string (domains[i].name), ==, quark);
    }
}

static void
test_error_macros (void)
{
  /* The public macros are the domains the names above belong to. */
  g_assert_cmpstr (g_quark_to_string (WB_CONFIG_ERROR), ==, "wb-config-error-quark");
  g_assert_cmpstr (g_quark_to_string (WB_HUB_ERROR), ==, "wb-hub-error-quark");
  g_assert_cmpstr (g_quark_to_string (WB_JSON_STRICT_ERROR), ==, "wb-json-strict-error-quark");
  g_assert_cmpstr (g_quark_to_string (WB_MESSAGE_ERROR_DOMAIN), ==, "wb-message-error-quark");
  g_assert_cmpstr (g_quark_to_string (WB_SEND_ERROR), ==, "wb-send-error-quark");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/error-domains/registered-names", test_registered_names);
  g_test_add_func ("/error-domains/error-macros", test_error_macros);
  return g_test_run ();
}
