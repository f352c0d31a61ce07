#define _GNU_SOURCE
#include "keyhold_terminal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int keyhold_pty_open(char *name, size_t length) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, name, length) != 0) {
        int saved = errno;
        close(master);
        errno = saved;
        return -1;
    }
    return master;
}

int keyhold_pty_copy_size(int from, int to) {
    struct winsize size;
    if (ioctl(from, TIOCGWINSZ, &size) != 0) return -1;
    return ioctl(to, TIOCSWINSZ, &size);
}

size_t keyhold_termios_size(void) { return sizeof(struct termios); }

int keyhold_terminal_raw(int fd, void *saved) {
    struct termios raw;
    if (tcgetattr(fd, &raw) != 0) return -1;
    memcpy(saved, &raw, sizeof raw);
    cfmakeraw(&raw);
    return tcsetattr(fd, TCSANOW, &raw);
}

int keyhold_terminal_restore(int fd, const void *saved) {
    return tcsetattr(fd, TCSANOW, (const struct termios *)saved);
}
