/*
 * A thin sqlite3_vfs that wraps the default one for each open store. It
 * exists for two reasons: to count the syncs SQLite really makes (the
 * fsyncs statistic) and to let tests make writes, syncs and truncates fail
 * exactly as a full or broken disk would (opts.fault_cb), so SQLite's own
 * error paths run. Everything else is delegated unchanged. Each store
 * registers its own instance under a unique name, so stores (and tests)
 * never see each other's hooks.
 */
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "store/internal.h"
#include "store/sqlite_int.h"

struct store_vfs {
	sqlite3_vfs vfs;
	sqlite3_vfs *real;
	struct moat_store *st;
	char name[48];
};

struct vfs_file {
	sqlite3_file base;
	struct moat_store *st;
	sqlite3_file *real; /* lives right after this struct */
};

static int fault(const struct vfs_file *f, enum moat_store_io op, int io_code)
{
	const struct moat_store *st = f->st;

	if (st->fault_cb == NULL)
		return SQLITE_OK;
	switch (st->fault_cb(st->fault_arg, op)) {
	case MOAT_STORE_FAULT_FULL:
		return SQLITE_FULL;
	case MOAT_STORE_FAULT_IO:
		return io_code;
	case MOAT_STORE_FAULT_NONE:
		break;
	}
	return SQLITE_OK;
}

static int f_close(sqlite3_file *file)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xClose(f->real);
}

static int f_read(sqlite3_file *file, void *buf, int n, sqlite3_int64 off)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int f_write(sqlite3_file *file, const void *buf, int n, sqlite3_int64 off)
{
	struct vfs_file *f = (struct vfs_file *)file;
	int rc;

	rc = fault(f, MOAT_STORE_IO_WRITE, SQLITE_IOERR_WRITE);
	if (rc == SQLITE_OK)
		rc = f->real->pMethods->xWrite(f->real, buf, n, off);
	return rc;
}

static int f_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct vfs_file *f = (struct vfs_file *)file;
	int rc;

	rc = fault(f, MOAT_STORE_IO_TRUNCATE, SQLITE_IOERR_TRUNCATE);
	if (rc == SQLITE_OK)
		rc = f->real->pMethods->xTruncate(f->real, size);
	return rc;
}

static int f_sync(sqlite3_file *file, int flags)
{
	struct vfs_file *f = (struct vfs_file *)file;
	int rc;

	rc = fault(f, MOAT_STORE_IO_SYNC, SQLITE_IOERR_FSYNC);
	if (rc == SQLITE_OK)
		rc = f->real->pMethods->xSync(f->real, flags);
	if (rc == SQLITE_OK)
		atomic_fetch_add(&f->st->n_fsync, 1);
	return rc;
}

static int f_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xFileSize(f->real, size);
}

static int f_lock(sqlite3_file *file, int lock)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xLock(f->real, lock);
}

static int f_unlock(sqlite3_file *file, int lock)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xUnlock(f->real, lock);
}

static int f_check_reserved(sqlite3_file *file, int *out)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int f_file_control(sqlite3_file *file, int op, void *arg)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int f_sector_size(sqlite3_file *file)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xSectorSize(f->real);
}

static int f_device_chars(sqlite3_file *file)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int f_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int f_shm_lock(sqlite3_file *file, int off, int n, int flags)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

static void f_shm_barrier(sqlite3_file *file)
{
	struct vfs_file *f = (struct vfs_file *)file;

	f->real->pMethods->xShmBarrier(f->real);
}

static int f_shm_unmap(sqlite3_file *file, int del)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xShmUnmap(f->real, del);
}

static int f_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **pp)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int f_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
	struct vfs_file *f = (struct vfs_file *)file;

	return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods io_methods = {
    .iVersion = 3,
    .xClose = f_close,
    .xRead = f_read,
    .xWrite = f_write,
    .xTruncate = f_truncate,
    .xSync = f_sync,
    .xFileSize = f_file_size,
    .xLock = f_lock,
    .xUnlock = f_unlock,
    .xCheckReservedLock = f_check_reserved,
    .xFileControl = f_file_control,
    .xSectorSize = f_sector_size,
    .xDeviceCharacteristics = f_device_chars,
    .xShmMap = f_shm_map,
    .xShmLock = f_shm_lock,
    .xShmBarrier = f_shm_barrier,
    .xShmUnmap = f_shm_unmap,
    .xFetch = f_fetch,
    .xUnfetch = f_unfetch,
};

static sqlite3_vfs *real_of(sqlite3_vfs *vfs)
{
	return ((struct store_vfs *)vfs->pAppData)->real;
}

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
	struct store_vfs *sv = vfs->pAppData;
	struct vfs_file *f = (struct vfs_file *)file;
	int rc;

	f->st = sv->st;
	f->real = (sqlite3_file *)(void *)(f + 1);
	f->base.pMethods = NULL;
	rc = sv->real->xOpen(sv->real, name, f->real, flags, out_flags);
	/* SQLite calls xClose only when pMethods is set: mirror the real one. */
	if (f->real->pMethods != NULL)
		f->base.pMethods = &io_methods;
	return rc;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	return real_of(vfs)->xDelete(real_of(vfs), name, sync_dir);
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	return real_of(vfs)->xAccess(real_of(vfs), name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	return real_of(vfs)->xFullPathname(real_of(vfs), name, n, out);
}

static void *v_dlopen(sqlite3_vfs *vfs, const char *name)
{
	return real_of(vfs)->xDlOpen(real_of(vfs), name);
}

static void v_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	real_of(vfs)->xDlError(real_of(vfs), n, msg);
}

static void (*v_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	return real_of(vfs)->xDlSym(real_of(vfs), h, sym);
}

static void v_dlclose(sqlite3_vfs *vfs, void *h)
{
	real_of(vfs)->xDlClose(real_of(vfs), h);
}

static int v_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	return real_of(vfs)->xRandomness(real_of(vfs), n, out);
}

static int v_sleep(sqlite3_vfs *vfs, int us)
{
	return real_of(vfs)->xSleep(real_of(vfs), us);
}

static int v_current_time(sqlite3_vfs *vfs, double *out)
{
	return real_of(vfs)->xCurrentTime(real_of(vfs), out);
}

static int v_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	return real_of(vfs)->xGetLastError(real_of(vfs), n, out);
}

static int v_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	return real_of(vfs)->xCurrentTimeInt64(real_of(vfs), out);
}

moat_err store_vfs_new(struct moat_store *st, struct store_vfs **out, const char **name)
{
	struct store_vfs *sv = NULL;
	sqlite3_vfs *real;
	moat_err rc = MOAT_E_INTERNAL;

	real = sqlite3_vfs_find(NULL);
	/* We need the version-2 calls and the shared-memory file methods WAL
	 * uses; every default VFS of a supported SQLite has them. */
	if (real == NULL || real->iVersion < 2 || real->szOsFile < 0)
		goto out;
	rc = MOAT_E_NOMEM;
	sv = calloc(1, sizeof(*sv));
	if (sv == NULL)
		goto out;
	sv->real = real;
	sv->st = st;
	snprintf(sv->name, sizeof(sv->name), "moat-%p", (void *)sv);
	sv->vfs.iVersion = 2;
	sv->vfs.szOsFile = (int)sizeof(struct vfs_file) + real->szOsFile;
	sv->vfs.mxPathname = real->mxPathname;
	sv->vfs.zName = sv->name;
	sv->vfs.pAppData = sv;
	sv->vfs.xOpen = v_open;
	sv->vfs.xDelete = v_delete;
	sv->vfs.xAccess = v_access;
	sv->vfs.xFullPathname = v_full_pathname;
	sv->vfs.xDlOpen = v_dlopen;
	sv->vfs.xDlError = v_dlerror;
	sv->vfs.xDlSym = v_dlsym;
	sv->vfs.xDlClose = v_dlclose;
	sv->vfs.xRandomness = v_randomness;
	sv->vfs.xSleep = v_sleep;
	sv->vfs.xCurrentTime = v_current_time;
	sv->vfs.xGetLastError = v_last_error;
	sv->vfs.xCurrentTimeInt64 = v_current_time64;
	rc = MOAT_E_INTERNAL;
	if (sqlite3_vfs_register(&sv->vfs, 0) != SQLITE_OK)
		goto out;
	*name = sv->name;
	*out = sv;
	sv = NULL;
	rc = MOAT_OK;
out:
	free(sv);
	return rc;
}

void store_vfs_free(struct store_vfs *sv)
{
	if (sv == NULL)
		return;
	sqlite3_vfs_unregister(&sv->vfs);
	free(sv);
}
