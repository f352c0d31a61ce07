#define _GNU_SOURCE
#include "keyhold_terminal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
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

/* The child that signals go to (0: none), its terminal (-1: none), and the signals kept while there is none, one bit
   each. Lock-free atomics only: they are read in a signal handler. */
static _Atomic pid_t forward_pid = 0;
static _Atomic int forward_terminal = -1;
static _Atomic unsigned long long forward_kept = 0;

static void forward_kept_signals(void) {
    pid_t pid = atomic_load(&forward_pid);
    if (pid <= 0) return;
    unsigned long long kept = atomic_exchange(&forward_kept, 0);
    for (int signal = 1; signal < 64; signal++) {
        if (kept & (1ULL << signal)) kill(pid, signal);
    }
}

static void forward_signal(int signal) {
    int saved = errno;
    int terminal = atomic_load(&forward_terminal);
    if (signal == SIGWINCH && terminal >= 0) keyhold_pty_copy_size(STDOUT_FILENO, terminal);
    pid_t pid = atomic_load(&forward_pid);
    if (pid > 0) {
        kill(pid, signal);
    } else if (signal > 0 && signal < 64) {
        atomic_fetch_or(&forward_kept, 1ULL << signal);
        /* A child named meanwhile may have looked for kept signals before this one was kept. */
        forward_kept_signals();
    }
    errno = saved;
}

int keyhold_forward_signals(const int *signals, int count) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_signal;
    action.sa_flags = SA_RESTART;
    sigfillset(&action.sa_mask);
    for (int index = 0; index < count; index++) {
        if (sigaction(signals[index], &action, NULL) != 0) return -1;
    }
    return 0;
}

void keyhold_forward_to(pid_t pid, int terminal) {
    atomic_store(&forward_terminal, terminal);
    atomic_store(&forward_pid, pid);
    forward_kept_signals();
}

void keyhold_forward_forget(pid_t pid) {
    pid_t expected = pid;
    if (atomic_compare_exchange_strong(&forward_pid, &expected, 0)) atomic_store(&forward_terminal, -1);
}
