/* errors.c: messages and names for the error codes (generated from SM_ERROR_MAP). */
#include "internal.h"

const char *sm_strerror(int code) {
    switch (code) {
    case 0:
        return "success";
#define SM_XX_MSG(name, value, pyclass, msg) \
    case name:                      \
        return msg;
        SM_ERROR_MAP(SM_XX_MSG)
#undef SM_XX_MSG
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        const char *s = smi_strerrordesc(-code); /* static, thread-safe (compat.c) */
        if (s)
            return s;
    }
    return "unknown error";
}

const char *sm_errname(int code) {
    switch (code) {
    case 0:
        return "SM_OK";
#define SM_XX_NAME(name, value, pyclass, msg) \
    case name:                       \
        return #name;
        SM_ERROR_MAP(SM_XX_NAME)
#undef SM_XX_NAME
    default:
        break;
    }
    if (code < 0 && code > -4096)
        return smi_strerrorname(-code);
    return NULL;
}
