import CKeyholdTerminal
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A program run by `keyhold run`: its environment given whole, stdin passed through, stdout and stderr passed
/// through a masker each (or inherited as they are), the signals a terminal or a supervisor sends forwarded to it,
/// and its exit status returned as a shell would (the code, or 128 + the signal that killed it).
public final class ChildProcess: Sendable {
    public static let forwardedSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]
    /// glibc's `POSIX_SPAWN_SETSID` (a macro Swift does not import): the child starts a session of its own.
    static let spawnSetSID: Int32 = 0x80

    public let pid: pid_t
    private let readers: DispatchGroup
    /// The pseudo-terminal's master side, when the child runs on one.
    private let terminal: Int32?

    private init(pid: pid_t, readers: DispatchGroup, terminal: Int32?) {
        self.pid = pid
        self.readers = readers
        self.terminal = terminal
    }

    /// Until keyhold exits, the forwarded signals are the child's business: keyhold passes them on to whichever child
    /// runs at the time, and keeps those that arrive between two children for the next one. The forwarding is done
    /// in a signal handler (see `keyhold_forward_signals`), not a dispatch source: libdispatch's sources on Linux can
    /// lose a signal that its handler re-raises on a thread other than the one reading its signalfd.
    public static func forwardSignals() {
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
        _ = forwardedSignals.withUnsafeBufferPointer { keyhold_forward_signals($0.baseAddress, Int32($0.count)) }
    }

    /// Starts `arguments` (looked up on PATH) with exactly `environment`; stdin is inherited, stdout and stderr
    /// pass through a copy of `masker` each (or are inherited when it is nil). When keyhold's stdout is a terminal
    /// and output is masked, the child runs on a pseudo-terminal of its own instead (its own session, the terminal
    /// its controlling one, the window size copied), so colours, line editing and job control keep working: keyhold
    /// relays the keyboard to it (its own terminal in raw mode meanwhile) and its masked output back.
    public static func start(_ arguments: [String], environment: [String: String], masker: OutputMasker?) throws
        -> ChildProcess
    {
        guard let program = arguments.first else { throw ClientError("no command to run: keyhold run -- CMD ARGS…") }
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        var pipes: [(read: Int32, write: Int32, target: Int32)] = []
        var terminal: Int32?
        if masker != nil, isatty(STDOUT_FILENO) == 1 {
            var name = [CChar](repeating: 0, count: 128)
            let master = keyhold_pty_open(&name, name.count)
            guard master >= 0 else { throw ClientError("cannot open a pseudo-terminal: \(String(cString: strerror(errno)))") }
            _ = keyhold_pty_copy_size(STDOUT_FILENO, master)
            // Opened after setsid, the terminal becomes the child's controlling one.
            posix_spawn_file_actions_addopen(&fileActions, STDIN_FILENO, name, O_RDWR, 0)
            posix_spawn_file_actions_adddup2(&fileActions, STDIN_FILENO, STDOUT_FILENO)
            posix_spawn_file_actions_adddup2(&fileActions, STDIN_FILENO, STDERR_FILENO)
            terminal = master
        } else if masker != nil {
            for target in [STDOUT_FILENO, STDERR_FILENO] {
                var ends: [Int32] = [0, 0]
                guard pipe(&ends) == 0 else { throw ClientError("cannot create a pipe: \(String(cString: strerror(errno)))") }
                _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
                posix_spawn_file_actions_adddup2(&fileActions, ends[1], target)
                posix_spawn_file_actions_addclose(&fileActions, ends[1])
                pipes.append((ends[0], ends[1], target))
            }
        }

        // The child starts with default dispositions and nothing blocked, whatever keyhold ignores.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in forwardedSignals + [SIGPIPE] { sigaddset(&defaults, signal) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(
            &attributes,
            Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (terminal == nil ? 0 : Self.spawnSetSID)))

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, program, &fileActions, &attributes, argv, envp)
        for end in pipes { close(end.write) }
        guard spawned == 0 else {
            for end in pipes { close(end.read) }
            if let terminal { close(terminal) }
            throw SpawnError(program: program, code: spawned)
        }
        keyhold_forward_to(pid, terminal ?? -1)
        let outputDone = Flag()
        let master = terminal
        if let terminal {
            // The child's terminal reads what is typed here (our terminal raw meanwhile) and writes its output back
            // through the masker; it ends when the child and everything it started have closed the terminal. The
            // relay closes it once the output has ended, so nothing writes to a descriptor number reused since.
            pipes.append((terminal, -1, STDOUT_FILENO))
            Thread.detachNewThread { relayInput(to: terminal, until: outputDone) }
        }

        let readers = DispatchGroup()
        for end in pipes {
            guard let masker else { break }
            readers.enter()
            Thread.detachNewThread {
                var streamMasker = masker
                defer {
                    // The relay closes the terminal's master; pipes are closed here.
                    if end.read == master { outputDone.set() } else { close(end.read) }
                    readers.leave()
                }
                // (A pseudo-terminal's master reads EIO once the child side is closed: the end, like EOF.)
                var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(end.read, $0.baseAddress, $0.count) }
                    if count < 0, errno == EINTR { continue }
                    guard count > 0 else { break }
                    writeAll(end.target, streamMasker.feed(buffer[0..<count]))
                }
                writeAll(end.target, streamMasker.finish())
            }
        }
        return ChildProcess(pid: pid, readers: readers, terminal: terminal)
    }

    final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    /// Keyboard to the child's terminal until its output has ended, then closes the terminal. Our terminal goes raw
    /// (the child's terminal does the line editing) and is restored when the child is done; the end of our input is
    /// passed on as the terminal's end-of-file character.
    static func relayInput(to terminal: Int32, until outputDone: Flag) {
        if isatty(STDIN_FILENO) == 1 {
            savedTerminal.withLock { saved in
                guard saved == nil else { return }
                let settings = UnsafeMutableRawPointer.allocate(byteCount: keyhold_termios_size(), alignment: 16)
                if keyhold_terminal_raw(STDIN_FILENO, settings) == 0 { saved = SavedTerminal(settings: settings) }
            }
        }
        var inputOpen = true
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !outputDone.isSet {
            guard inputOpen else {
                usleep(50_000)
                continue
            }
            var ready = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 50) > 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count > 0 {
                writeAll(terminal, Array(buffer[0..<count]))
            } else {
                writeAll(terminal, [4])
                inputOpen = false
            }
        }
        close(terminal)
    }

    struct SavedTerminal: @unchecked Sendable {
        let settings: UnsafeMutableRawPointer
    }

    static let savedTerminal = Mutex<SavedTerminal?>(nil)

    /// Gives the terminal back as it was before `keyhold run` made it raw.
    public static func restoreTerminal() {
        savedTerminal.withLock { saved in
            if let settings = saved?.settings { _ = keyhold_terminal_restore(STDIN_FILENO, settings) }
            saved = nil
        }
    }

    /// Waits (on a thread of its own) for the child to exit and its output to be written: its exit code, or 128 +
    /// the signal that ended it, as a shell reports it.
    public func wait() async -> Int32 {
        let (pid, readers) = (self.pid, self.readers)
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                keyhold_forward_forget(pid)
                readers.wait()
                ChildProcess.restoreTerminal()
                let signal = status & 0x7F
                continuation.resume(returning: signal == 0 ? (status >> 8) & 0xFF : 128 + signal)
            }
        }
    }

    public func signal(_ signal: Int32) { _ = kill(pid, signal) }

    /// The program could not be started (127 when it does not exist, 126 otherwise, as shells answer).
    public struct SpawnError: Error, CustomStringConvertible {
        public let program: String
        public let code: Int32
        public var exitCode: Int32 { code == ENOENT ? 127 : 126 }
        public var description: String { "cannot run \(program): \(String(cString: strerror(code)))" }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}
