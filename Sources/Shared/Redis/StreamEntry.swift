/// One Redis stream entry: its id (`<ms>-<seq>`) and fields.
public struct StreamEntry: Sendable, Equatable {
    public var id: String
    public var fields: StreamFields

    public init(id: String, fields: StreamFields) {
        self.id = id
        self.fields = fields
    }

    /// Parses `[[id, [field, value, …]], …]`, the entry list of XRANGE / XAUTOCLAIM / XREADGROUP.
    public static func list(_ value: RedisValue?) -> [StreamEntry] {
        guard let items = value?.array else { return [] }
        return items.compactMap { item in
            guard let pair = item.array, pair.count == 2, let id = pair[0].string else { return nil }
            return StreamEntry(id: id, fields: StreamFields(flat: pair[1].array ?? []))
        }
    }
}
