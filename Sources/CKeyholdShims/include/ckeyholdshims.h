#ifndef CKEYHOLDSHIMS_H
#define CKEYHOLDSHIMS_H

/// C calls Swift cannot make itself (variadic functions, an SQLite VFS, glibc's mallopt).

/// Turns on SQLITE_DBCONFIG_ENABLE_QPSG (query planner stability) for a connection of sqlite-nio's bundled SQLite:
/// without it, statements whose plan may depend on a bound value are re-prepared every time that value is bound
/// again (seen in profiles: the parser ran on every read). Returns SQLite's result code.
int keyhold_sqlite_enable_qpsg(void *db);

/// The name of the VFS `keyhold_sqlite_register_wal_vfs` registers.
#define KEYHOLD_WAL_VFS "keyhold-wal"

/// Registers (once; not as the default) a VFS over the default one that collects a connection's writes to its
/// write-ahead log in memory and writes them out as one run when the log is synced, read, resized or closed, or its
/// write lock released: a commit of n pages then costs one write system call per 124 KiB instead of 2n. Only for a
/// connection with `synchronous=FULL` (or EXTRA), which syncs the log before it makes a commit visible to other
/// connections; with NORMAL or OFF they could see a commit whose frames are still in the buffer. Returns SQLite's
/// result code.
int keyhold_sqlite_register_wal_vfs(void);

/// glibc's M_TRIM_THRESHOLD: how much free memory the top of a heap may hold before it is returned to the kernel
/// (a no-op with other C libraries). Process-wide, so only the executable sets it.
void keyhold_set_malloc_trim_threshold(int bytes);

#endif
