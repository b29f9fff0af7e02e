import PulseGateVendorFitbit
import PulseGateVendorGarmin
import PulseGateVendorKit
import PulseGateVendorOura
import PulseGateVendorPolar
import PulseGateVendorStrava
import PulseGateVendorSuunto
import PulseGateVendorWahoo
import PulseGateVendorWhoop
import PulseGateVendorWithings

/// Every vendor adapter built into this daemon: one line per vendor (see vendors/README.md).
public enum VendorRegistry {
    /// The adapters, each with its manifest loaded and checked — once per process (the configuration
    /// and the daemon both ask).
    public static func adapters() throws(ManifestError) -> [any VendorAdapter] {
        try loaded.get()
    }

    private static let loaded = Result { () throws(ManifestError) -> [any VendorAdapter] in
        [
            try StravaAdapter(),
            try FitbitAdapter(),
            try PolarAdapter(),
            try GarminAdapter(),
            try OuraAdapter(),
            try WhoopAdapter(),
            try WahooAdapter(),
            try WithingsAdapter(),
            try SuuntoAdapter(),
        ]
    }
}
