import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A program run by `keyhold run`: its environment given whole, stdin passed through, stdout and stderr passed
/// through a masker each (or inherited as they are), the signals a terminal or a supervisor sends forwarded to it,
/// and its exit status returned as a shell would (the code, or 128 + the signal that killed it).
public final class ChildProcess: Sendable {
    public static let forwardedSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]

    public let pid: pid_t
    private let readers: DispatchGroup

    private init(pid: pid_t, readers: DispatchGroup) {
        self.pid = pid
        self.readers = readers
    }

    /// Until keyhold exits, the forwarded signals are the child's business: keyhold only passes them on, to whichever
    /// child runs at the time.
    public static func forwardSignals(to current: @escaping @Sendable () -> pid_t?) -> [any DispatchSourceSignal] {
        for signal in forwardedSignals + [SIGPIPE] { _ = Glibc.signal(signal, SIG_IGN) }
        return forwardedSignals.map { signal in
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler {
                if let pid = current() { _ = kill(pid, signal) }
            }
            source.resume()
            return source
        }
    }

    /// Starts `arguments` (looked up on PATH) with exactly `environment`; stdin is inherited, stdout and stderr
    /// pass through a copy of `masker` each (or are inherited when it is nil).
    public static func start(_ arguments: [String], environment: [String: String], masker: OutputMasker?) throws
        -> ChildProcess
    {
        guard let program = arguments.first else { throw ClientError("no command to run: keyhold run -- CMD ARGS…") }
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        var pipes: [(read: Int32, write: Int32, target: Int32)] = []
        if masker != nil {
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
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

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
            throw SpawnError(program: program, code: spawned)
        }

        let readers = DispatchGroup()
        for end in pipes {
            guard let masker else { break }
            readers.enter()
            Thread.detachNewThread {
                var streamMasker = masker
                defer {
                    close(end.read)
                    readers.leave()
                }
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
        return ChildProcess(pid: pid, readers: readers)
    }

    /// Waits (on a thread of its own) for the child to exit and its output to be written: its exit code, or 128 +
    /// the signal that ended it, as a shell reports it.
    public func wait() async -> Int32 {
        let (pid, readers) = (self.pid, self.readers)
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                readers.wait()
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
