import Logging
import ServiceLifecycle

/// Runs every sink pump side by side and drains them together on graceful shutdown, so the drain
/// timeout bounds the whole shutdown rather than applying once per sink.
public struct DeliveryService: Service {
    public let pumps: [SinkPump]

    public init(pumps: [SinkPump]) {
        self.pumps = pumps
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for pump in pumps {
                    group.addTask { try await pump.run() }
                }
            }
        } onGracefulShutdown: {
            for pump in pumps { pump.beginDrain() }
        }
    }
}
