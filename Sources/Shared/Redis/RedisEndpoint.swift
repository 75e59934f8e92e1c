/// Where a Redis server is and how to log in, parsed from `REDIS_URL`
/// (`redis://[[user]:password@]host[:port][/db]`).
public struct RedisEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var password: String?
    public var username: String?
    public var database: Int

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses a `redis://` URL; `nil` when it is not one.
    public init?(url: String) {
        guard url.hasPrefix("redis://") else { return nil }
        var rest = Substring(url.dropFirst("redis://".count))
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let dbText = rest[rest.index(after: slash)...]
            if !dbText.isEmpty {
                guard let db = Int(dbText), db >= 0 else { return nil }
                database = db
            }
            rest = rest[..<slash]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = credentials[..<colon]
                username = user.isEmpty ? nil : String(user)
                password = String(credentials[credentials.index(after: colon)...])
            } else {
                password = String(credentials)
            }
        }
        var host = rest
        var port = 6379
        if let colon = rest.lastIndex(of: ":") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
            host = rest[..<colon]
        }
        guard !host.isEmpty else { return nil }
        self.init(host: String(host), port: port, username: username, password: password, database: database)
    }

    /// What a new connection sends first: `AUTH` when there is a password, `SELECT` for a database other than 0.
    var setupCommands: [[String]] {
        var setup: [[String]] = []
        if let password { setup.append(username.map { ["AUTH", $0, password] } ?? ["AUTH", password]) }
        if database != 0 { setup.append(["SELECT", String(database)]) }
        return setup
    }
}
