/// The fields of a stream entry, in their order.
///
/// A handful per entry, so looked up by scanning them: the history writer reads ~30,000 entries a
/// second at full load, and a dictionary per entry (its storage, and hashing every name on insert
/// and lookup) was a tenth of the monitor's CPU there.
public struct StreamFields: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// `[name, value, name, value, …]` as Redis sent them: the reply's own array is kept, not copied
    /// into pairs (one allocation less per entry).
    private let flat: [RedisValue]

    public init(dictionaryLiteral elements: (String, String)...) {
        flat = elements.flatMap { [RedisValue.string($0.0), .string($0.1)] }
    }

    /// From a flat `[name, value, name, value, …]` list (a trailing name without a value is
    /// ignored, and so is a pair that is not two strings).
    init(flat: [RedisValue]) {
        self.flat = flat
    }

    /// The value of the first field named `name`.
    public subscript(name: String) -> String? {
        var index = 0
        while index + 1 < flat.count {
            if case .string(let field) = flat[index], field == name, case .string(let value) = flat[index + 1] { return value }
            index += 2
        }
        return nil
    }

    /// The names of the pairs that are two strings, in order.
    private var names: [String] {
        stride(from: 0, to: flat.count - 1, by: 2).compactMap { flat[$0 + 1].string == nil ? nil : flat[$0].string }
    }

    /// Equal when the same names have the same values, whatever their order.
    public static func == (lhs: StreamFields, rhs: StreamFields) -> Bool {
        let names = lhs.names
        return names.count == rhs.names.count && names.allSatisfy { lhs[$0] == rhs[$0] }
    }
}
