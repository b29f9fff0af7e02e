// swift-tools-version: 6.1
import PackageDescription

/// Settings every pulsegate target shares: Swift 6 language mode (the tools-version default),
/// plus the two upcoming features the style guide asks for.
let sharedSwiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

extension Target {
    /// A vendor adapter target: its folder holds the code, `vendor.yaml` (a resource the adapter reads)
    /// and an operator's README. `fit`: the vendor hands over FIT files (PulseGateFIT decodes them).
    static func vendor(_ name: String, folder: String, fit: Bool = false) -> Target {
        .target(
            name: "PulseGateVendor\(name)",
            dependencies: [
                "PulseGateCore", "PulseGateOAuth", "PulseGateVendorKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ] + (fit ? ["PulseGateFIT"] : []),
            path: "vendors/\(folder)",
            exclude: ["README.md"],
            resources: [.copy("vendor.yaml")],
            swiftSettings: sharedSwiftSettings
        )
    }
}

let package = Package(
    name: "pulsegate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pulsegate", targets: ["pulsegate"]),
        .library(name: "PulseGateCore", targets: ["PulseGateCore"]),
        .library(name: "PulseGateFIT", targets: ["PulseGateFIT"]),
        // libFuzzer target for the FIT decoder: scripts/fuzz.sh fit (a plain build replays saved inputs)
        .executable(name: "fuzz-fit", targets: ["FuzzFIT"]),
        // the sensor decoders: scripts/fuzz.sh sensors (all, the first byte picks) or one profile
        .executable(name: "fuzz-sensors", targets: ["FuzzSensors"]),
        .library(name: "PulseGateStore", targets: ["PulseGateStore"]),
        .library(name: "PulseGateDelivery", targets: ["PulseGateDelivery"]),
        .library(name: "PulseGateServer", targets: ["PulseGateServer"]),
        .library(name: "PulseGateDaemon", targets: ["PulseGateDaemon"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // MARK: system libraries (module maps only; the headers come from Debian -dev packages)
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .systemLibrary(
            name: "CLibUSB",
            pkgConfig: "libusb-1.0",
            providers: [.apt(["libusb-1.0-0-dev"])]
        ),
        .systemLibrary(
            name: "CBluetooth",
            pkgConfig: "bluez",
            providers: [.apt(["libbluetooth-dev"])]
        ),

        // MARK: libraries, in import order (each may import only those above it)
        .target(
            name: "PulseGateCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto")
            ],
            resources: [.copy("Resources/sample-v1.schema.json"), .copy("Resources/event-v1.schema.json")],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateOAuth",
            dependencies: [
                "PulseGateCore",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateVendorKit",
            dependencies: [
                "PulseGateCore",
                "PulseGateOAuth",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        // MARK: vendor adapters: one target per vendors/<id>/ folder (see vendors/README.md)
        .vendor("Strava", folder: "strava"),
        .vendor("Fitbit", folder: "fitbit"),
        .vendor("Oura", folder: "oura"),
        .vendor("Polar", folder: "polar"),
        .vendor("Garmin", folder: "garmin", fit: true),
        .vendor("Withings", folder: "withings"),
        .vendor("Whoop", folder: "whoop"),
        .vendor("Wahoo", folder: "wahoo", fit: true),
        .vendor("Suunto", folder: "suunto", fit: true),
        .target(
            name: "PulseGateSensors",
            dependencies: ["CBluetooth", "CLibUSB", "CSystemd", "PulseGateCore"],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateFIT",
            dependencies: ["PulseGateCore"],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateStore",
            dependencies: [
                "PulseGateCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateAccounts",
            dependencies: [
                "PulseGateCore",
                "PulseGateOAuth",
                "PulseGateVendorKit",
                "PulseGateStore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateDelivery",
            dependencies: [
                "PulseGateCore",
                "PulseGateStore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateServer",
            dependencies: [
                "PulseGateAccounts",
                "PulseGateSensors",
                "PulseGateVendorKit",
                "PulseGateCore",
                "PulseGateStore",
                "PulseGateDelivery",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .target(
            name: "PulseGateDaemon",
            dependencies: [
                "CSystemd",
                "PulseGateAccounts",
                "PulseGateSensors",
                "PulseGateOAuth",
                "PulseGateVendorKit",
                // one line per vendor adapter:
                "PulseGateVendorStrava",
                "PulseGateVendorFitbit",
                "PulseGateVendorPolar",
                "PulseGateVendorGarmin",
                "PulseGateVendorOura",
                "PulseGateVendorWhoop",
                "PulseGateVendorWahoo",
                "PulseGateVendorWithings",
                "PulseGateVendorSuunto",
                "PulseGateCore",
                "PulseGateStore",
                "PulseGateDelivery",
                "PulseGateServer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .executableTarget(
            name: "pulsegate",
            dependencies: [
                "PulseGateAccounts",
                "PulseGateSensors",
                "PulseGateFIT",
                "PulseGateOAuth",
                "PulseGateVendorKit",
                "PulseGateCore",
                "PulseGateStore",
                "PulseGateDaemon",
                "PulseGateDelivery",
                "PulseGateServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: sharedSwiftSettings
        ),

        // MARK: fuzz targets (built with -sanitize=fuzzer by scripts/fuzz.sh)
        .executableTarget(
            name: "FuzzFIT",
            dependencies: ["PulseGateFIT", "PulseGateCore"],
            path: "Fuzz/FIT",
            swiftSettings: sharedSwiftSettings
        ),
        .executableTarget(
            name: "FuzzSensors",
            dependencies: ["PulseGateSensors", "PulseGateCore"],
            path: "Fuzz/Sensors",
            swiftSettings: sharedSwiftSettings
        ),

        // MARK: benchmarks (run with `make bench`; see Benchmarks/README.md)
        .executableTarget(
            name: "pulsegate-bench",
            dependencies: [
                "PulseGateCore", "PulseGateStore", "PulseGateDelivery", "PulseGateDaemon", "PulseGateSensors",
                "PulseGateTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/PulseGateBench",
            swiftSettings: sharedSwiftSettings
        ),

        // MARK: tests
        .target(
            name: "PulseGateTestSupport",
            dependencies: [
                "PulseGateCore", "PulseGateOAuth", "PulseGateVendorKit", "PulseGateSensors",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/PulseGateTestSupport",
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateCoreTests",
            dependencies: ["PulseGateCore"],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateStoreTests",
            dependencies: ["PulseGateStore", "PulseGateCore", "PulseGateTestSupport"],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateDeliveryTests",
            dependencies: [
                "PulseGateDelivery", "PulseGateStore", "PulseGateCore", "PulseGateTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateSensorsTests",
            dependencies: ["PulseGateSensors", "PulseGateCore", "PulseGateTestSupport"],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateFITTests",
            dependencies: ["PulseGateFIT", "PulseGateCore"],
            resources: [.copy("Fixtures")],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateAccountsTests",
            dependencies: [
                "PulseGateAccounts", "PulseGateOAuth", "PulseGateVendorKit", "PulseGateStore", "PulseGateCore",
                "PulseGateTestSupport", "PulseGateVendorStrava",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateVendorTests",
            dependencies: [
                "PulseGateCore", "PulseGateOAuth", "PulseGateVendorKit", "PulseGateTestSupport",
                // one line per vendor adapter:
                "PulseGateVendorStrava",
                "PulseGateVendorFitbit",
                "PulseGateVendorOura",
                "PulseGateVendorPolar",
                "PulseGateVendorGarmin",
                "PulseGateVendorWhoop",
                "PulseGateVendorWahoo",
                "PulseGateVendorWithings",
                "PulseGateVendorSuunto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: sharedSwiftSettings
        ),
        .testTarget(
            name: "PulseGateServerTests",
            dependencies: [
                "PulseGateServer", "PulseGateDaemon", "PulseGateDelivery", "PulseGateStore", "PulseGateCore",
                "PulseGateTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: sharedSwiftSettings
        ),
    ]
)
