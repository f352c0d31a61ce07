#include "ckeyholdshims.h"

#include <sqlite_nio_sqlite3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// The write-ahead-log-buffering VFS (see ckeyholdshims.h). Every file is the default VFS's file with these methods in
// front; only a WAL file gets a buffer. A commit writes its frames as one run of bytes and then syncs the WAL: SQLite
// (synchronous=FULL) calls xSync before it publishes the frames in the WAL index, so no other connection can look for
// them in the file while they are still in the buffer, and xSync writes them out first. Every other method that looks
// at the file's bytes or size writes the buffer out first as well, and so does releasing the WAL's write lock: frames
// of a rolled-back transaction then reach the file before another writer may append there, as without the buffer.
// Not buffered: a database without SQLITE_IOCAP_POWERSAFE_OVERWRITE (URI psow=0), where SQLite syncs the WAL in the
// middle of a commit's last padding frame and publishes the commit without syncing again.

typedef struct KeyholdFile KeyholdFile;
struct KeyholdFile {
    sqlite3_file base;
    sqlite3_file *real;      // the default VFS's file, in the bytes just after this struct
    unsigned char *buffer;   // a buffered WAL file only
    sqlite3_int64 start;     // file offset of buffer[0]
    int used;
    KeyholdFile *wal;        // a database file: its buffered WAL file, while that is open
    KeyholdFile *database;   // a buffered WAL file: its database file
};

enum { keyhold_wal_buffer = 512 * 1024 };

static sqlite3_vfs *keyhold_default_vfs;

// The unix VFS masks a write's length with 0x1ffff (a 128 KiB write would become an empty one, reported as a full
// disk), so the buffer goes out in pieces below that.
enum { keyhold_write_chunk = 124 * 1024 };

static int keyhold_flush(KeyholdFile *file) {
    int used = file->used;
    file->used = 0;
    for (int done = 0; done < used; done += keyhold_write_chunk) {
        int amount = used - done < keyhold_write_chunk ? used - done : keyhold_write_chunk;
        int rc = file->real->pMethods->xWrite(file->real, file->buffer + done, amount, file->start + done);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static int keyhold_overlaps(const KeyholdFile *file, sqlite3_int64 offset, int amount) {
    return file->used > 0 && offset < file->start + file->used && file->start < offset + amount;
}

static int keyhold_close(sqlite3_file *base) {
    KeyholdFile *file = (KeyholdFile *)base;
    int rc = keyhold_flush(file);
    if (file->database != NULL && file->database->wal == file) file->database->wal = NULL;
    int closed = file->real->pMethods->xClose(file->real);
    free(file->buffer);
    file->buffer = NULL;
    return rc != SQLITE_OK ? rc : closed;
}

static int keyhold_read(sqlite3_file *base, void *out, int amount, sqlite3_int64 offset) {
    KeyholdFile *file = (KeyholdFile *)base;
    if (keyhold_overlaps(file, offset, amount)) {
        int rc = keyhold_flush(file);
        if (rc != SQLITE_OK) return rc;
    }
    return file->real->pMethods->xRead(file->real, out, amount, offset);
}

static int keyhold_write(sqlite3_file *base, const void *data, int amount, sqlite3_int64 offset) {
    KeyholdFile *file = (KeyholdFile *)base;
    if (file->buffer == NULL) return file->real->pMethods->xWrite(file->real, data, amount, offset);
    sqlite3_int64 end = file->start + file->used;
    if (file->used > 0 && offset >= file->start && offset + amount <= end) {
        // A frame rewritten within the same transaction.
        memcpy(file->buffer + (offset - file->start), data, (size_t)amount);
        return SQLITE_OK;
    }
    if (file->used > 0 && offset == end && file->used + amount <= keyhold_wal_buffer) {
        memcpy(file->buffer + file->used, data, (size_t)amount);
        file->used += amount;
        return SQLITE_OK;
    }
    int rc = keyhold_flush(file);
    if (rc != SQLITE_OK) return rc;
    if (amount > keyhold_write_chunk) return file->real->pMethods->xWrite(file->real, data, amount, offset);
    memcpy(file->buffer, data, (size_t)amount);
    file->start = offset;
    file->used = amount;
    return SQLITE_OK;
}

static int keyhold_truncate(sqlite3_file *base, sqlite3_int64 size) {
    KeyholdFile *file = (KeyholdFile *)base;
    int rc = keyhold_flush(file);
    return rc != SQLITE_OK ? rc : file->real->pMethods->xTruncate(file->real, size);
}

static int keyhold_sync(sqlite3_file *base, int flags) {
    KeyholdFile *file = (KeyholdFile *)base;
    int rc = keyhold_flush(file);
    return rc != SQLITE_OK ? rc : file->real->pMethods->xSync(file->real, flags);
}

static int keyhold_file_size(sqlite3_file *base, sqlite3_int64 *size) {
    KeyholdFile *file = (KeyholdFile *)base;
    int rc = keyhold_flush(file);
    return rc != SQLITE_OK ? rc : file->real->pMethods->xFileSize(file->real, size);
}

// The rest only pass the call on.
#define REAL(base) (((KeyholdFile *)(base))->real)

static int keyhold_lock(sqlite3_file *base, int level) { return REAL(base)->pMethods->xLock(REAL(base), level); }
static int keyhold_unlock(sqlite3_file *base, int level) { return REAL(base)->pMethods->xUnlock(REAL(base), level); }
static int keyhold_check_reserved(sqlite3_file *base, int *out) {
    return REAL(base)->pMethods->xCheckReservedLock(REAL(base), out);
}
static int keyhold_file_control(sqlite3_file *base, int op, void *arg) {
    return REAL(base)->pMethods->xFileControl(REAL(base), op, arg);
}
static int keyhold_sector_size(sqlite3_file *base) { return REAL(base)->pMethods->xSectorSize(REAL(base)); }
static int keyhold_device_characteristics(sqlite3_file *base) {
    return REAL(base)->pMethods->xDeviceCharacteristics(REAL(base));
}
static int keyhold_shm_map(sqlite3_file *base, int region, int size, int extend, void volatile **out) {
    return REAL(base)->pMethods->xShmMap(REAL(base), region, size, extend, out);
}
static int keyhold_shm_lock(sqlite3_file *base, int offset, int count, int flags) {
    KeyholdFile *file = (KeyholdFile *)base;
    // Slot 0 is the WAL's write lock (WAL_WRITE_LOCK in sqlite3.c).
    if (offset == 0 && file->wal != NULL && flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE)) {
        keyhold_flush(file->wal);  // uncommitted frames only: a failed write loses nothing anyone may read
    }
    return file->real->pMethods->xShmLock(file->real, offset, count, flags);
}
static void keyhold_shm_barrier(sqlite3_file *base) { REAL(base)->pMethods->xShmBarrier(REAL(base)); }
static int keyhold_shm_unmap(sqlite3_file *base, int delete) {
    return REAL(base)->pMethods->xShmUnmap(REAL(base), delete);
}
static int keyhold_fetch(sqlite3_file *base, sqlite3_int64 offset, int amount, void **out) {
    KeyholdFile *file = (KeyholdFile *)base;
    if (keyhold_overlaps(file, offset, amount)) {
        *out = NULL;  // SQLite then reads the page with xRead
        return SQLITE_OK;
    }
    return file->real->pMethods->xFetch(file->real, offset, amount, out);
}
static int keyhold_unfetch(sqlite3_file *base, sqlite3_int64 offset, void *page) {
    return REAL(base)->pMethods->xUnfetch(REAL(base), offset, page);
}

static const sqlite3_io_methods keyhold_io_methods = {
    3,
    keyhold_close, keyhold_read, keyhold_write, keyhold_truncate, keyhold_sync, keyhold_file_size,
    keyhold_lock, keyhold_unlock, keyhold_check_reserved, keyhold_file_control, keyhold_sector_size,
    keyhold_device_characteristics,
    keyhold_shm_map, keyhold_shm_lock, keyhold_shm_barrier, keyhold_shm_unmap,
    keyhold_fetch, keyhold_unfetch,
};

static int keyhold_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *base, int flags, int *outFlags) {
    (void)vfs;
    KeyholdFile *file = (KeyholdFile *)base;
    memset(file, 0, sizeof *file);
    file->real = (sqlite3_file *)(file + 1);
    if (flags & SQLITE_OPEN_WAL) {
        // The database file was opened through this VFS too, so it is a KeyholdFile.
        KeyholdFile *database = (KeyholdFile *)sqlite_nio_sqlite3_database_file_object(name);
        if (database != NULL && database->base.pMethods == &keyhold_io_methods && database->wal == NULL &&
            (keyhold_device_characteristics(&database->base) & SQLITE_IOCAP_POWERSAFE_OVERWRITE)) {
            file->buffer = malloc(keyhold_wal_buffer);
            if (file->buffer == NULL) return SQLITE_NOMEM;
            file->database = database;
        }
    }
    int rc = keyhold_default_vfs->xOpen(keyhold_default_vfs, name, file->real, flags, outFlags);
    if (rc != SQLITE_OK) {
        if (file->real->pMethods) file->real->pMethods->xClose(file->real);
        free(file->buffer);
        file->buffer = NULL;
        return rc;
    }
    // Only a file whose methods are the unix VFS's version 3 ones can be wrapped by a version 3 front.
    if (file->real->pMethods->iVersion < 3) {
        file->real->pMethods->xClose(file->real);
        free(file->buffer);
        file->buffer = NULL;
        return SQLITE_CANTOPEN;
    }
    base->pMethods = &keyhold_io_methods;
    if (file->database != NULL) file->database->wal = file;
    return SQLITE_OK;
}

// Everything but xOpen is the default VFS's own.
static int keyhold_delete(sqlite3_vfs *vfs, const char *name, int syncDir) {
    (void)vfs;
    return keyhold_default_vfs->xDelete(keyhold_default_vfs, name, syncDir);
}
static int keyhold_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
    (void)vfs;
    return keyhold_default_vfs->xAccess(keyhold_default_vfs, name, flags, out);
}
static int keyhold_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
    (void)vfs;
    return keyhold_default_vfs->xFullPathname(keyhold_default_vfs, name, size, out);
}
static void *keyhold_dl_open(sqlite3_vfs *vfs, const char *name) {
    (void)vfs;
    return keyhold_default_vfs->xDlOpen(keyhold_default_vfs, name);
}
static void keyhold_dl_error(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    keyhold_default_vfs->xDlError(keyhold_default_vfs, size, out);
}
static void (*keyhold_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
    (void)vfs;
    return keyhold_default_vfs->xDlSym(keyhold_default_vfs, handle, symbol);
}
static void keyhold_dl_close(sqlite3_vfs *vfs, void *handle) {
    (void)vfs;
    keyhold_default_vfs->xDlClose(keyhold_default_vfs, handle);
}
static int keyhold_randomness(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return keyhold_default_vfs->xRandomness(keyhold_default_vfs, size, out);
}
static int keyhold_sleep(sqlite3_vfs *vfs, int microseconds) {
    (void)vfs;
    return keyhold_default_vfs->xSleep(keyhold_default_vfs, microseconds);
}
static int keyhold_current_time(sqlite3_vfs *vfs, double *out) {
    (void)vfs;
    return keyhold_default_vfs->xCurrentTime(keyhold_default_vfs, out);
}
static int keyhold_get_last_error(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return keyhold_default_vfs->xGetLastError(keyhold_default_vfs, size, out);
}
static int keyhold_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
    (void)vfs;
    return keyhold_default_vfs->xCurrentTimeInt64(keyhold_default_vfs, out);
}

static sqlite3_vfs keyhold_vfs = {
    2, 0, 1024, NULL, KEYHOLD_WAL_VFS, NULL,
    keyhold_open, keyhold_delete, keyhold_access, keyhold_full_pathname,
    keyhold_dl_open, keyhold_dl_error, keyhold_dl_sym, keyhold_dl_close,
    keyhold_randomness, keyhold_sleep, keyhold_current_time, keyhold_get_last_error,
    keyhold_current_time_int64,
    NULL, NULL, NULL,
};

static int keyhold_register_result = SQLITE_ERROR;
static pthread_once_t keyhold_register_once = PTHREAD_ONCE_INIT;

static void keyhold_register(void) {
    keyhold_default_vfs = sqlite_nio_sqlite3_vfs_find(NULL);
    if (keyhold_default_vfs == NULL || keyhold_default_vfs->iVersion < 2) return;
    keyhold_vfs.szOsFile = (int)sizeof(KeyholdFile) + keyhold_default_vfs->szOsFile;
    keyhold_vfs.mxPathname = keyhold_default_vfs->mxPathname;
    if (keyhold_default_vfs->xDlOpen == NULL) {  // built without loadable extensions
        keyhold_vfs.xDlOpen = NULL;
        keyhold_vfs.xDlError = NULL;
        keyhold_vfs.xDlSym = NULL;
        keyhold_vfs.xDlClose = NULL;
    }
    keyhold_register_result = sqlite_nio_sqlite3_vfs_register(&keyhold_vfs, 0);
}

int keyhold_sqlite_register_wal_vfs(void) {
    pthread_once(&keyhold_register_once, keyhold_register);
    return keyhold_register_result;
}
