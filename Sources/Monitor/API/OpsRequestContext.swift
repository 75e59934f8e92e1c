import Foundation
import Hummingbird

/// The monitor's request context: Hummingbird's basic one, with documents written with sorted keys
/// and unescaped slashes, so the ops API's answers read (and diff) the same every time.
struct OpsRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage

    init(source: Source) {
        coreContext = .init(source: source)
    }

    var responseEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
