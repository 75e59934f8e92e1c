import Foundation
import PostgresAdapter

/// A fresh PostgreSQL database per test, created from `TEST_POSTGRES_URL` and dropped at the end.
struct TestDatabase {
    let name: String
    let url: String
    let adminURL: String
    /// A connection for the test's own queries.
    let connection: PostgresConnection

    static func create() async throws -> TestDatabase {
        guard let adminURL = ProcessInfo.processInfo.environment["TEST_POSTGRES_URL"] else {
            throw TestFailure("TEST_POSTGRES_URL is not set: run the tests with `make test` (scripts/run-tests.sh starts PostgreSQL)")
        }
        let name = "hb_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        let admin = try await PostgresConnection.connect(url: adminURL, applicationName: "test-admin")
        try await admin.simpleQuery("CREATE DATABASE \(name)")
        await admin.close()
        guard let slash = adminURL.lastIndex(of: "/") else { throw TestFailure("bad TEST_POSTGRES_URL") }
        let url = adminURL[..<slash] + "/" + name
        let connection = try await PostgresConnection.connect(url: String(url), applicationName: "test")
        return TestDatabase(name: name, url: String(url), adminURL: adminURL, connection: connection)
    }

    func drop() async {
        await connection.close()
        guard let admin = try? await PostgresConnection.connect(url: adminURL, applicationName: "test-admin") else { return }
        _ = try? await admin.simpleQuery("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        await admin.close()
    }
}
