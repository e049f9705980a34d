//! kiln's worker: implements every op (image, local, exec, file) on the store and the executor
