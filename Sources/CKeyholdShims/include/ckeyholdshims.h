#ifndef CKEYHOLDSHIMS_H
#define CKEYHOLDSHIMS_H

/// C calls Swift cannot make itself (variadic functions, headers outside Glibc's module map).

/// Turns on SQLITE_DBCONFIG_ENABLE_QPSG (query planner stability) for a connection of sqlite-nio's bundled SQLite:
/// without it, statements whose plan may depend on a bound value are re-prepared every time that value is bound
/// again (seen in profiles: the parser ran on every read). Returns SQLite's result code.
int keyhold_sqlite_enable_qpsg(void *db);

/// Tunes glibc's allocator for a long-running server: freed heap is kept for reuse (up to 64 MiB) instead of being
/// handed back to the kernel on every trim, and allocations below 4 MiB come from the heap. Each hand-back
/// (madvise/munmap) flushed every core's TLB; profiles showed those flushes on the database thread. No-op elsewhere.
void keyhold_tune_allocator(void);

#endif
