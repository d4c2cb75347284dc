//! The ccproxy host: CLI, config, plugin loader, registry, hook pipeline, server.
