//! ccproxy plugin interface (placeholder while the SDK is written).
