//! RFC 6455 conformance and abuse probe. (stub)
