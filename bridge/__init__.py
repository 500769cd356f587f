"""bridge: wire protocol, ZeroMQ publisher and subscribers, OpenXR conversions."""
