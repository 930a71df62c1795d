/* moat-regbench: the cost of one registry change, before and after
 * per-identity events (bench/registry/README in bench/README.md). */
#ifndef MOAT_REGBENCH_H
#define MOAT_REGBENCH_H

#include "registry/registry.h"

/* legacy.c: the whole-registry snapshot main used before (2f04d8d). */
struct legacy_snap;
moat_err legacy_snap_load(struct moat_store *st, struct legacy_snap **out, char *err,
			  size_t errlen);
void legacy_snap_ref(struct legacy_snap *s);
void legacy_snap_unref(struct legacy_snap *s);
size_t legacy_snap_count(const struct legacy_snap *s);
enum moat_admit legacy_snap_admit(const struct legacy_snap *s, const char *identity,
				  const char *serial, bool unknown_allow, struct moat_acl **acl,
				  const char **why);
bool legacy_snap_revoked(const struct legacy_snap *s, const char *serial);
bool legacy_snap_decommissioned(const struct legacy_snap *s, const char *identity);

#endif
