//! The solver's cache storage on the store: local records first, then those of imported
//! (`--cache-from`) caches; and what a finished build does with them (imported hits kept
//! locally, records chosen for `--cache-to`).

use super::{Notice, Observer};
use crate::Output;
use kiln_cache::Store;
use kiln_opgraph::{Definition, Op};
use kiln_remotecache::{Imported, Record};
use kiln_solver::{CacheStorage, Solved};
use std::collections::HashMap;
use std::sync::Arc;

/// [`CacheStorage`] on the store, falling back to imported caches.
pub struct StoreCache {
    store: Arc<Store>,
    /// What explanations compare against: the previous build of the same project
    /// (context dir, Dockerfile and target; see `explain_scope`).
    scope: String,
    imported: Vec<Arc<Imported>>,
    observer: Arc<dyn Observer>,
}

impl StoreCache {
    /// A cache on `store`; `scope` keys the explanations' records; `imported` caches are
    /// read after the store's own records; failures to record go to `observer`.
    pub fn new(
        store: Arc<Store>,
        scope: String,
        imported: Vec<Arc<Imported>>,
        observer: Arc<dyn Observer>,
    ) -> Self {
        Self {
            store,
            scope,
            imported,
            observer,
        }
    }

    /// Records locally the imported results this build used, so the next build on this
    /// machine hits them without `--cache-from`.
    pub fn keep_imported_hits(&self, solved: &Solved<Output>) {
        if self.imported.is_empty() {
            return;
        }
        for (d, out) in &solved.outputs {
            let Some(key) = solved.keys.get(d) else {
                continue;
            };
            if matches!(self.store.cache_get(key), Ok(None))
                && self.imported.iter().any(|c| c.get(key).is_some())
            {
                if let Ok(v) = serde_json::to_vec(out) {
                    let _ = self.store.cache_put(key, &v);
                }
            }
        }
    }

    /// The records to export: every step's (`max`), or the steps whose layers the result
    /// holds (`min`), among those whose layers this machine has. Build contexts are never
    /// exported (their results name host directories).
    pub fn export_records(
        &self,
        def: &Definition,
        solved: &Solved<Output>,
        max: bool,
    ) -> Vec<Record> {
        let root = solved.root.layers();
        let mut out = Vec::new();
        for (d, key) in &solved.keys {
            if matches!(
                def.vertices.get(d).map(|v| &v.op),
                Some(Op::Local { .. }) | None
            ) {
                continue;
            }
            let Some(value) = self.store.cache_get(key).ok().flatten() else {
                continue;
            };
            let Ok(output) = serde_json::from_slice::<Output>(&value) else {
                continue;
            };
            let layers = output.layers().to_vec();
            let in_result = layers.len() <= root.len() && root[..layers.len()] == layers[..];
            if (max || in_result) && layers.iter().all(|l| self.store.layer_available(l)) {
                out.push(Record {
                    key: key.clone(),
                    value,
                    layers,
                });
            }
        }
        out
    }
}

impl CacheStorage for StoreCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.store
            .cache_get(key)
            .ok()
            .flatten()
            .or_else(|| self.imported.iter().find_map(|c| c.get(key)))
    }
    fn put(&self, key: &str, value: &[u8]) {
        if let Err(error) = self.store.cache_put(key, value) {
            self.observer
                .notice(Notice::CacheRecordFailed { error: &error });
        }
    }
    fn previous_inputs(&self) -> HashMap<String, (String, Vec<u8>)> {
        self.store
            .key_inputs_get_many(&self.scope)
            .unwrap_or_default()
    }
    fn record_inputs(&self, records: Vec<(String, String, Vec<u8>)>) {
        // Only explanations depend on these: failing to record them must not fail a build.
        let _ = self.store.key_inputs_put_many(&self.scope, &records);
    }
    fn describe_content_change(&self, old: &str, new: &str) -> Option<String> {
        crate::context::describe_change(&self.store, old, new)
    }
}

#[cfg(test)]
mod tests;
