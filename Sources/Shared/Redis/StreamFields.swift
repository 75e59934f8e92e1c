/// The fields of a stream entry, in their order.
///
/// A handful per entry, so looked up by scanning them: the history writer reads ~30,000 entries a
/// second at full load, and a dictionary per entry (its storage, and hashing every name on insert
/// and lookup) was a tenth of the monitor's CPU there.
public struct StreamFields: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    private var pairs: [(name: String, value: String)]

    public init(dictionaryLiteral elements: (String, String)...) {
        pairs = elements.map { (name: $0.0, value: $0.1) }
    }

    /// From a flat `[name, value, name, value, …]` list (a trailing name without a value is dropped).
    init(flat: [RedisValue]) {
        pairs = []
        pairs.reserveCapacity(flat.count / 2)
        var index = 0
        while index + 1 < flat.count {
            if let name = flat[index].string, let value = flat[index + 1].string { pairs.append((name, value)) }
            index += 2
        }
    }

    /// The value of the first field named `name`.
    public subscript(name: String) -> String? {
        pairs.first { $0.name == name }?.value
    }

    /// Equal when the same names have the same values, whatever their order.
    public static func == (lhs: StreamFields, rhs: StreamFields) -> Bool {
        lhs.pairs.count == rhs.pairs.count && lhs.pairs.allSatisfy { rhs[$0.name] == $0.value }
    }
}
