#ifndef KEYHOLD_CPKCS11_H
#define KEYHOLD_CPKCS11_H

/* PKCS#11 for Swift: p11-kit's pkcs11.h (vendored from Debian's libp11-kit-dev; its licence permits copying)
   and a loader that dlopen()s a module and returns its function list. */

#include <stddef.h>
#include "pkcs11.h"

/* Loads `path` and fetches its function list. On failure returns a non-zero value and writes a message. */
int keyhold_p11_load(const char *path, void **handle, CK_FUNCTION_LIST **functions, char *error,
                     size_t error_size);

void keyhold_p11_unload(void *handle);

#endif
