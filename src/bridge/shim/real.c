/*
 * The real libc functions, resolved lazily with dlsym(RTLD_NEXT).
 */
#include "shim.h"

#define REAL(ret, name, ...) ret (*real_##name)(__VA_ARGS__);
#include "real-libc.h"
