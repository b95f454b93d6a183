import Foundation

/// The part of TOML that a flat configuration file needs: `key = value` lines, `#` comments,
/// basic strings ("..." with \" \\ \n \t \uXXXX escapes), literal strings ('...'), integers
/// (with `_` separators), floats and booleans. Tables, arrays, dates and multi-line strings are
/// rejected with the line number, so a file that uses them fails loudly instead of half-loading.
public enum TOMLValue: Equatable, Sendable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)

    var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a number"
        case .bool: "true or false"
        }
    }
}

public struct TOMLSubsetError: Error, CustomStringConvertible, Equatable {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

public enum TOMLSubset {
    /// Parses `text` into key → value. Duplicate keys are an error, as in TOML.
    public static func parse(_ text: String) throws(TOMLSubsetError) -> [String: TOMLValue] {
        var result: [String: TOMLValue] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if trimmed.hasPrefix("[") {
                throw TOMLSubsetError(
                    line: lineNumber,
                    message: "tables ([section]) are not supported here; write every key at the top level")
            }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw TOMLSubsetError(line: lineNumber, message: "expected `key = value`")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty,
                key.unicodeScalars.allSatisfy({
                    CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-"
                })
            else {
                throw TOMLSubsetError(
                    line: lineNumber, message: "bad key `\(key)`: use letters, digits, `_` or `-`")
            }
            var rest = trimmed[trimmed.index(after: equals)...].drop(while: { $0 == " " || $0 == "\t" })
            let value = try parseValue(&rest, line: lineNumber)
            let tail = rest.drop(while: { $0 == " " || $0 == "\t" })
            if !tail.isEmpty && !tail.hasPrefix("#") {
                throw TOMLSubsetError(line: lineNumber, message: "unexpected text after the value: `\(tail)`")
            }
            if result[key] != nil {
                throw TOMLSubsetError(line: lineNumber, message: "`\(key)` is set twice")
            }
            result[key] = value
        }
        return result
    }

    private static func parseValue(_ s: inout Substring, line: Int) throws(TOMLSubsetError) -> TOMLValue {
        guard let first = s.first else {
            throw TOMLSubsetError(line: line, message: "missing value after `=`")
        }
        switch first {
        case "\"":
            if s.hasPrefix("\"\"\"") {
                throw TOMLSubsetError(line: line, message: "multi-line strings are not supported")
            }
            return .string(try basicString(&s, line: line))
        case "'":
            s = s.dropFirst()
            guard let end = s.firstIndex(of: "'") else {
                throw TOMLSubsetError(line: line, message: "unterminated string")
            }
            let value = String(s[..<end])
            s = s[s.index(after: end)...]
            return .string(value)
        case "[", "{":
            throw TOMLSubsetError(line: line, message: "arrays and inline tables are not supported")
        default:
            let token = s.prefix(while: { $0 != " " && $0 != "\t" && $0 != "#" })
            s = s[token.endIndex...]
            if token == "true" { return .bool(true) }
            if token == "false" { return .bool(false) }
            let digits = token.replacingOccurrences(of: "_", with: "")
            if let integer = Int64(digits) { return .integer(integer) }
            if let number = Double(digits), number.isFinite,
                digits.allSatisfy({ $0.isNumber || "+-.eE".contains($0) })
            {
                return .float(number)
            }
            throw TOMLSubsetError(
                line: line, message: "cannot read value `\(token)` (strings need quotes: \"...\")")
        }
    }

    private static func basicString(_ s: inout Substring, line: Int) throws(TOMLSubsetError) -> String {
        var out = ""
        var i = s.index(after: s.startIndex)
        while i < s.endIndex {
            let c = s[i]
            if c == "\"" {
                s = s[s.index(after: i)...]
                return out
            }
            if c == "\\" {
                i = s.index(after: i)
                guard i < s.endIndex else { break }
                switch s[i] {
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "u":
                    let hexStart = s.index(after: i)
                    guard let hexEnd = s.index(hexStart, offsetBy: 4, limitedBy: s.endIndex),
                        let code = UInt32(s[hexStart..<hexEnd], radix: 16),
                        let scalar = Unicode.Scalar(code)
                    else {
                        throw TOMLSubsetError(line: line, message: "bad \\u escape")
                    }
                    out.unicodeScalars.append(scalar)
                    i = s.index(before: hexEnd)
                default:
                    throw TOMLSubsetError(line: line, message: "unknown escape `\\\(s[i])`")
                }
            } else {
                out.append(c)
            }
            i = s.index(after: i)
        }
        throw TOMLSubsetError(line: line, message: "unterminated string")
    }
}
