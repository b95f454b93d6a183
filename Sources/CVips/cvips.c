#include "cvips.h"
int cvips_init(const char *argv0) { return vips_init(argv0); }
