import Foundation

/// A fresh, empty directory under the system's temporary directory, one per call, so tests that
/// create stores and files never see each other's state (they run in parallel).
public func temporaryDirectory(_ label: String = "test") -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pulsegate-\(label)-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.path
}
