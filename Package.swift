// swift-tools-version: 6.2
import PackageDescription

let callerExecutor: [SwiftSetting] = [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]

let package = Package(
    name: "Keyhold",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "keyhold", targets: ["keyhold"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", from: "0.12.1"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        .target(
            name: "KeyholdCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // The storage layer's async functions and closures run on their caller's executor: a transaction body or a
        // read awaits many small calls, and each would otherwise hop to the global executor and back.
        .target(name: "KeyholdSQL", dependencies: ["KeyholdCore"], swiftSettings: callerExecutor),
        .target(
            name: "KeyholdSQLite",
            dependencies: [
                "KeyholdCore",
                "KeyholdSQL",
                "CKeyholdShims",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: callerExecutor
        ),
        .target(
            name: "KeyholdPostgres",
            dependencies: [
                "KeyholdCore",
                "KeyholdSQL",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: callerExecutor
        ),
        .target(name: "CKeyholdShims", dependencies: [.product(name: "SQLiteNIO", package: "sqlite-nio")]),
        .target(
            name: "CPKCS11",
            linkerSettings: [.linkedLibrary("dl")]
        ),
        .target(
            name: "KeyholdPKCS11",
            dependencies: [
                "KeyholdCore",
                "CPKCS11",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "KeyholdHTTP",
            dependencies: [
                "KeyholdCore",
                "KeyholdClient",
                "KeyholdMCP",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            resources: [.copy("Resources/openapi.json"), .copy("Resources/console")]
        ),
        // The composition root: the only module that names the concrete storage and keystore.
        .target(
            name: "KeyholdServer",
            dependencies: [
                "KeyholdHTTP", "KeyholdSQLite", "KeyholdPostgres", "KeyholdPKCS11",
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        .target(name: "CKeyholdTerminal"),
        .target(
            name: "KeyholdClient",
            dependencies: [
                "CKeyholdTerminal",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .target(
            name: "KeyholdMCP",
            dependencies: ["KeyholdClient", .product(name: "MCP", package: "swift-sdk")]
        ),
        .executableTarget(
            name: "keyhold",
            dependencies: [
                "KeyholdHTTP", "KeyholdServer", "KeyholdClient", "KeyholdMCP", "CKeyholdShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "KeyholdCoreTests",
            dependencies: ["KeyholdCore"]
        ),
        .testTarget(
            name: "KeyholdStorageTests",
            dependencies: [
                "KeyholdCore", "KeyholdSQL", "KeyholdSQLite", "KeyholdPostgres", "CKeyholdShims",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "KeyholdClientTests",
            dependencies: ["KeyholdClient"]
        ),
        .testTarget(
            name: "KeyholdPKCS11Tests",
            dependencies: ["KeyholdCore", "KeyholdPKCS11"]
        ),
        .testTarget(
            name: "KeyholdHTTPTests",
            dependencies: [
                "KeyholdHTTP", "KeyholdServer",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
