import Foundation

/// Instants are kept as whole milliseconds since the Unix epoch: exact in every database and cheap to compare.
public struct Timestamp: Sendable, Hashable, Comparable, Codable {
    public let milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    /// The nearest millisecond: a parsed `…09.936Z` is exactly 936 ms, not 935.999… rounded down.
    /// Saturates instead of trapping for instants outside ±292 million years.
    public init(_ date: Date) {
        let value = (date.timeIntervalSince1970 * 1000).rounded()
        self.milliseconds = value.isNaN ? 0 : value >= 9.2e18 ? .max : value <= -9.2e18 ? .min : Int64(value)
    }
    public static var now: Timestamp { Timestamp(Date()) }

    public var date: Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }
    public var seconds: Int64 { milliseconds / 1000 }

    public func adding(seconds: Int64) -> Timestamp { Timestamp(milliseconds: milliseconds + seconds * 1000) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.milliseconds < rhs.milliseconds }

    /// RFC 3339 in UTC, with milliseconds only when they are not zero: `2026-02-18T12:00:00Z`.
    /// Formatted from the integer milliseconds with the civil-from-days algorithm: exact (a `Date` round trip
    /// could print 935 for 936) and cheap (Foundation's formatters showed up in profiles).
    public var iso8601: String {
        let (seconds, remainder) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        let whole = remainder < 0 ? seconds - 1 : seconds
        let fraction = Int(remainder < 0 ? remainder + 1000 : remainder)
        let (days, secondOfDay) = whole.quotientAndRemainder(dividingBy: 86_400)
        let day = Int(secondOfDay < 0 ? days - 1 : days)
        let second = Int(secondOfDay < 0 ? secondOfDay + 86_400 : secondOfDay)
        let (year, month, dayOfMonth) = RFC3339.civil(fromDays: day)
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        var text = "\(pad(year, 4))-\(pad(month, 2))-\(pad(dayOfMonth, 2))T\(pad(second / 3600, 2)):"
            + "\(pad(second / 60 % 60, 2)):\(pad(second % 60, 2))"
        if fraction != 0 { text += "." + pad(fraction, 3) }
        return text + "Z"
    }

    /// Accepts RFC 3339 date-times only (see `RFC3339`).
    public init?(iso8601 text: String) {
        guard let milliseconds = RFC3339.milliseconds(text) else { return nil }
        self.init(milliseconds: milliseconds)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Timestamp(iso8601: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "expected an ISO 8601 date-time"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(iso8601)
    }
}
