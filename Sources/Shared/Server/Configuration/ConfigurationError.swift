/// A configuration value that cannot be used, named by its environment variable.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var variable: String
    public var value: String?
    public var reason: String

    public init(variable: String, value: String?, reason: String) {
        self.variable = variable
        self.value = value
        self.reason = reason
    }

    public var description: String {
        if let value { return "\(variable)=\(value) is invalid: \(reason)" }
        return "\(variable) \(reason)"
    }
}
