#include "cpkcs11.h"

#include <dlfcn.h>
#include <stdio.h>

int keyhold_p11_load(const char *path, void **handle, CK_FUNCTION_LIST **functions, char *error,
                     size_t error_size) {
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (*handle == NULL) {
        const char *reason = dlerror();
        snprintf(error, error_size, "cannot load the PKCS#11 module: %s", reason ? reason : "unknown error");
        return 1;
    }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(*handle, "C_GetFunctionList");
    if (get == NULL) {
        snprintf(error, error_size, "the library has no C_GetFunctionList: it is not a PKCS#11 module");
        dlclose(*handle);
        *handle = NULL;
        return 2;
    }
    CK_RV rv = get(functions);
    if (rv != CKR_OK || *functions == NULL) {
        snprintf(error, error_size, "C_GetFunctionList failed with 0x%lx", (unsigned long)rv);
        dlclose(*handle);
        *handle = NULL;
        return 3;
    }
    return 0;
}

void keyhold_p11_unload(void *handle) {
    if (handle != NULL) dlclose(handle);
}
