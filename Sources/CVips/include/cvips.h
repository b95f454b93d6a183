#ifndef CVIPS_H
#define CVIPS_H
#include <vips/vips.h>
// Fixed-arity wrappers around libvips' variadic calls, callable from Swift.
int cvips_init(const char *argv0);
#endif
