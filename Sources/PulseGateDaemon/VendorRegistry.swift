import PulseGateVendorFitbit
import PulseGateVendorKit
import PulseGateVendorOura
import PulseGateVendorPolar
import PulseGateVendorStrava

/// Every vendor adapter built into this daemon: one line per vendor (see vendors/README.md).
public enum VendorRegistry {
    /// The adapters, each with its manifest loaded and checked.
    public static func adapters() throws(ManifestError) -> [any VendorAdapter] {
        [
            try StravaAdapter(),
            try FitbitAdapter(),
            try PolarAdapter(),
            try OuraAdapter(),
        ]
    }
}
