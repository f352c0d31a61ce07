import Foundation

/// Secrets as environment variables, named as 1Claw's CLI names them: an `env_bundle` secret expands to its
/// `KEY=VALUE` lines; any other secret at `a/b-c` becomes `A_B_C`.
public enum SecretEnvironment {
    /// Names `keyhold run` never sets, whatever a vault holds: the process's own footing, and the loader's.
    public static func isReserved(_ name: String) -> Bool {
        reserved.contains(name) || name.hasPrefix("KEYHOLD_") || name.hasPrefix("ONECLAW_")
    }

    static let reserved: Set<String> = [
        "PATH", "HOME", "SHELL", "USER", "LOGNAME", "PWD", "OLDPWD", "TERM", "LANG", "TMPDIR", "IFS", "LD_PRELOAD",
        "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "DYLD_LIBRARY_PATH",
    ]

    /// `a/b-c` → `A_B_C`: upper case, every character outside `[A-Z0-9_]` becomes `_`, and a leading digit gets a
    /// `_` in front.
    public static func name(forPath path: String) -> String {
        var name = String(
            path.uppercased().unicodeScalars.map { scalar -> Character in
                switch scalar {
                case "A"..."Z", "0"..."9", "_": Character(scalar)
                default: "_"
                }
            })
        if let first = name.first, first.isNumber { name = "_" + name }
        return name
    }

    /// `KEY=VALUE` lines (a dotenv file or an `env_bundle`): blank and `#` lines are skipped, `export ` is allowed,
    /// a value in double quotes has `\n`, `\"` and `\\` unescaped, one in single quotes is taken as it is.
    public static func parseLines(_ text: String) -> [(String, String)] {
        var pairs: [(String, String)] = []
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { continue }
            var value = String(line[line.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.first == "\"", value.last == "\"" {
                value = unescapeDoubleQuoted(String(value.dropFirst().dropLast()))
            } else if value.count >= 2, value.first == "'", value.last == "'" {
                value = String(value.dropFirst().dropLast())
            }
            pairs.append((key, value))
        }
        return pairs
    }

    static func unescapeDoubleQuoted(_ text: String) -> String {
        var result = ""
        var escaped = false
        for character in text {
            if escaped {
                switch character {
                case "n": result.append("\n")
                case "r": result.append("\r")
                case "t": result.append("\t")
                default: result.append(character)
                }
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                result.append(character)
            }
        }
        if escaped { result.append("\\") }
        return result
    }

    /// The variables a secret gives: its bundle's lines, or one variable named after its path.
    public static func variables(path: String, type: String?, value: String) -> [(String, String)] {
        type == "env_bundle" ? parseLines(value) : [(name(forPath: path), value)]
    }

    public enum Format: String, Sendable, CaseIterable { case dotenv, json, shell }

    public static func render(_ variables: [(String, String)], as format: Format) throws -> String {
        switch format {
        case .dotenv:
            return variables.map { name, value in
                let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                    .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
                return "\(name)=\"\(escaped)\"\n"
            }.joined()
        case .shell:
            return variables.map { name, value in
                "export \(name)='\(value.replacingOccurrences(of: "'", with: "'\\''"))'\n"
            }.joined()
        case .json:
            var object: [String: String] = [:]
            for (name, value) in variables { object[name] = value }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            return String(decoding: data, as: UTF8.self) + "\n"
        }
    }

    /// `keyhold://VAULT/PATH`, split into its vault and path; nil for anything else.
    public static func reference(_ value: String) -> (vault: String, path: String)? {
        guard value.hasPrefix("keyhold://") else { return nil }
        let rest = value.dropFirst("keyhold://".count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let vault = String(rest[..<slash])
        let path = String(rest[rest.index(after: slash)...])
        guard !vault.isEmpty, !path.isEmpty else { return nil }
        return (vault, path)
    }
}
