#ifndef KEYHOLD_TERMINAL_H
#define KEYHOLD_TERMINAL_H

#include <stddef.h>

/// Opens a pseudo-terminal pair's master side (close-on-exec) and writes the slave's path into `name`.
/// Returns the master's descriptor, or -1 with errno set.
int keyhold_pty_open(char *name, size_t length);

/// Copies the window size of terminal `from` to terminal `to` (the kernel then signals SIGWINCH to `to`'s
/// foreground process group). Returns 0, or -1 with errno set.
int keyhold_pty_copy_size(int from, int to);

/// Puts terminal `fd` into raw mode, saving its settings in an opaque buffer of `keyhold_termios_size()` bytes.
int keyhold_terminal_raw(int fd, void *saved);
/// Restores settings saved by `keyhold_terminal_raw`.
int keyhold_terminal_restore(int fd, const void *saved);
size_t keyhold_termios_size(void);

#endif
