//! kiln's solver: runs an op graph in parallel with a content-addressed cache
