#ifndef KEYHOLD_TERMINAL_H
#define KEYHOLD_TERMINAL_H

#include <stddef.h>
#include <sys/types.h>

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

/// Installs a handler for each of `signals` that passes the signal on to the child named by `keyhold_forward_to`
/// (SIGWINCH first copies stdout's window size to the child's terminal, if it has one). The handler runs on whichever
/// thread the kernel picks and forwards at once (kill is async-signal-safe), so no signal depends on a thread being
/// scheduled or on which threads block it. A signal that arrives while there is no child is kept and delivered to the
/// next one. Returns 0, or -1 with errno set.
int keyhold_forward_signals(const int *signals, int count);
/// Names the child that forwarded signals go to (and its terminal's master side, or -1), delivering any kept ones.
void keyhold_forward_to(pid_t pid, int terminal);
/// Forgets `pid` once it has exited (if it is still the one named): later signals are kept for the next child.
void keyhold_forward_forget(pid_t pid);

#endif
