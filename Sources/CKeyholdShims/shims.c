#include "ckeyholdshims.h"

#include <stdlib.h>  // defines __GLIBC__ with glibc
#if defined(__GLIBC__)
#include <malloc.h>
#endif

// sqlite-nio's bundled SQLite (linked through SQLiteNIO) prefixes its symbols with `sqlite_nio_`. Its
// sqlite3_db_config is variadic, which Swift cannot call.
extern int sqlite_nio_sqlite3_db_config(void *db, int op, ...);

#define KEYHOLD_SQLITE_DBCONFIG_ENABLE_QPSG 1007

int keyhold_sqlite_enable_qpsg(void *db) {
    return sqlite_nio_sqlite3_db_config(db, KEYHOLD_SQLITE_DBCONFIG_ENABLE_QPSG, 1, (int *)0);
}

void keyhold_set_malloc_trim_threshold(int bytes) {
#if defined(__GLIBC__)
    mallopt(M_TRIM_THRESHOLD, bytes);
#else
    (void)bytes;
#endif
}
