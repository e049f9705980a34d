//! kiln's exporters: image store, OCI layout, docker archive, local dir, tar, registry push
