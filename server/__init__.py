"""offerbandit gRPC adapter."""
