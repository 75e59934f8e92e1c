/// What `--version` prints.
public enum BuildInfo {
    /// The release of both executables (one version for the package).
    public static let version = "0.4.0"
}
