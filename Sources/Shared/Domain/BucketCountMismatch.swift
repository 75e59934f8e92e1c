/// `BUCKETS` differs from the count the deployment's Redis was started with.
public struct BucketCountMismatch: Error, CustomStringConvertible {
    public let configured: Int
    public let recorded: String

    public init(configured: Int, recorded: String) {
        self.configured = configured
        self.recorded = recorded
    }

    public var description: String {
        "BUCKETS=\(configured), but this Redis holds a deployment started with BUCKETS=\(recorded) (\(KeySchema.bucketCountKey)); "
            + "every gateway and monitor must use the same count: set BUCKETS=\(recorded)"
    }
}
