/// One Redis stream entry: its id (`<ms>-<seq>`) and fields.
public struct StreamEntry: Sendable, Equatable {
    public var id: String
    public var fields: [String: String]

    public init(id: String, fields: [String: String]) {
        self.id = id
        self.fields = fields
    }

    /// Parses `[[id, [field, value, …]], …]`, the entry list of XRANGE / XAUTOCLAIM / XREADGROUP.
    public static func list(_ value: RedisValue?) -> [StreamEntry] {
        guard let items = value?.array else { return [] }
        return items.compactMap { item in
            guard let pair = item.array, pair.count == 2, let id = pair[0].string else { return nil }
            let flat = pair[1].array?.compactMap(\.string) ?? []
            var fields: [String: String] = [:]
            var i = 0
            while i + 1 < flat.count {
                fields[flat[i]] = flat[i + 1]
                i += 2
            }
            return StreamEntry(id: id, fields: fields)
        }
    }
}
