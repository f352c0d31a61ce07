#ifndef CKEYHOLDSHIMS_H
#define CKEYHOLDSHIMS_H

/// C calls Swift cannot make itself (variadic functions).

/// Turns on SQLITE_DBCONFIG_ENABLE_QPSG (query planner stability) for a connection of sqlite-nio's bundled SQLite:
/// without it, statements whose plan may depend on a bound value are re-prepared every time that value is bound
/// again (seen in profiles: the parser ran on every read). Returns SQLite's result code.
int keyhold_sqlite_enable_qpsg(void *db);

#endif
