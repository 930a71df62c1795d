/*
 * The modules whose storage moat holds, in migration order, and what the
 * old single migration list (global versions 1..5) created in each: the
 * one-time conversion of a database made before modules owned their
 * tables. Each module's tables, statements and migrations live next to its
 * code (src/<module>/schema.c); this is the only list of them.
 */
#include "audit/schema.h"
#include "auth/schema.h"
#include "mqtt/schema.h"
#include "registry/schema.h"
#include "store/internal.h"

const struct moat_store_module *const moat_store_modules[] = {
    &moat_mqtt_store,
    &moat_auth_store,
    &moat_audit_store,
    &moat_registry_store,
};

const size_t moat_store_n_modules = sizeof(moat_store_modules) / sizeof(moat_store_modules[0]);

/* Never edit: this is what versions 1..5 of the shipped global list were.
 * 1 broker state; 2 operators, tokens, audit log; 3 registry and PKI
 * tables; 4 certificates.revoke_at; 5 manufacturer CA scopes. */
const struct store_legacy_step store_legacy_steps[] = {
    {1, "mqtt", 1},	{2, "auth", 1},	    {2, "audit", 1},
    {3, "registry", 1}, {4, "registry", 2}, {5, "registry", 3},
};

const size_t store_n_legacy_steps = sizeof(store_legacy_steps) / sizeof(store_legacy_steps[0]);
