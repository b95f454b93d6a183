// The kernel's struct inotify_event first, so that libinotifytools' functions return it typed.
#include <sys/inotify.h>
#include <inotifytools/inotifytools.h>
