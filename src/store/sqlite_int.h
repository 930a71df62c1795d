/* Inside the SQLite backend: the per-store wrapping VFS (sqlite_vfs.c). */
#ifndef MOAT_STORE_SQLITE_INT_H
#define MOAT_STORE_SQLITE_INT_H

#include "core/error.h"

struct moat_store;
struct store_vfs;

/* Register a VFS for st under a unique name (valid until freed). */
moat_err store_vfs_new(struct moat_store *st, struct store_vfs **out, const char **name);
/* Unregister and free; every connection using it must be closed. */
void store_vfs_free(struct store_vfs *sv);

#endif
