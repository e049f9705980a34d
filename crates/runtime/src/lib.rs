//! kiln's container runtime: run containers from stored images on the executor
