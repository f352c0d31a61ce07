import Foundation
import Hummingbird
import KeyholdCore

/// Reading JSON request bodies with a size limit, and writing JSON responses.
enum RequestBody {
    static let maxBytes = 1 << 20

    /// Decodes the body as `T`; an empty body reads as `{}` when `emptyAsObject` is set (routes whose body is optional).
    /// A `T` that `RefusesUnsupportedFields` first has its body checked against its list.
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, emptyAsObject: Bool = false) async throws -> T {
        let buffer = try await request.body.collect(upTo: maxBytes)
        try requireUnambiguous(buffer)
        var data = Data(buffer.readableBytesView)
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            guard emptyAsObject else { throw KeyholdError.badRequest("A JSON request body is required") }
            data = Data("{}".utf8)
        }
        do {
            if let refusing = T.self as? any RefusesUnsupportedFields.Type,
                let body = try? JSONDecoder().decode(JSONValue.self, from: data)
            {
                try UnsupportedField.check(body, against: refusing.unsupportedFields)
            }
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw KeyholdError.badRequest(describe(error))
        } catch let error as KeyholdError {
            throw error
        } catch {
            throw KeyholdError.badRequest("Request body is not valid JSON")
        }
    }

    /// Refuses JSON that the decoder would read one way and a proxy or firewall in front of Keyhold perhaps another:
    /// an object that names a key twice (the decoder keeps the first value, others take the last), and a body in
    /// UTF-16 or UTF-32, which the decoder transcodes without a word and the key check, reading UTF-8, would not see
    /// through. JSON in UTF-8 never holds a NUL byte, and in any other Unicode encoding it always does (every JSON
    /// text has an ASCII character). `/mcp` runs it too, on the messages the MCP SDK decodes.
    static func requireUnambiguous(_ body: ByteBuffer) throws {
        let duplicate = try body.withUnsafeReadableBytes { bytes in
            guard !bytes.contains(0) else { throw KeyholdError.badRequest("Request body must be JSON in UTF-8") }
            return JSONDuplicateKeys.firstDuplicate(in: bytes)
        }
        if let path = duplicate {
            // A key is the client's own text, of any length: the tail of a long path names enough.
            let shown = path.count > 100 ? "…" + path.suffix(99) : path
            throw KeyholdError.badRequest("Field '\(shown)' appears twice in one object")
        }
    }

    /// A description naming the field and the problem, never the offending value.
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "body" : path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "Missing required field '\(field(context.codingPath + [key]))'"
        case .typeMismatch(let type, let context):
            return "Field '\(field(context.codingPath))' must be \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "Field '\(field(context.codingPath))' must be \(typeName(type)), not null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? "Request body is not valid JSON" : "Field '\(field(context.codingPath))' has an invalid value"
        @unknown default:
            return "Request body is invalid"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Bool.Type: "a boolean"
        case is Double.Type: "a number"
        default: "of the documented type"
        }
    }
}

enum JSONResponse {
    /// Sorted keys: equal values always give equal bytes (an answer that must not tell two cases apart, such as an
    /// open sign-up's, depends on it).
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return encoder
    }()

    static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok, contentType: String = "application/json")
        throws -> Response
    {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        return Response(
            status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func make(_ json: JSONObjectWriter, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: json.buffer))
    }

    static func noContent() -> Response { Response(status: .noContent) }
}
