//! Reading build cache records back: a record's value (see [`kiln_cache::CacheRecord`]) is
//! an [`Output`] as JSON. The garbage collector asks this for the layers a record keeps
//! alive ([`kiln_cache::GcRoots::record_layers`]).

use crate::Output;
use kiln_oci::Layer;

/// The layers a build cache record's value references, bottom first; none when the value
/// is not an [`Output`] (such a record is unusable, and a prune removes it).
pub fn record_layers(value: &[u8]) -> Vec<Layer> {
    serde_json::from_slice::<Output>(value)
        .map(|o| o.layers().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_their_layers() {
        let l = Layer {
            diff_id: "sha256:aa".into(),
            digest: "sha256:bb".into(),
            size: 1,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        };
        let v = serde_json::to_vec(&Output::Layers(vec![l.clone()])).unwrap();
        assert_eq!(record_layers(&v), [l]);
        let local = Output::Local {
            name: "context".into(),
            exclude: vec![],
        };
        assert!(record_layers(&serde_json::to_vec(&local).unwrap()).is_empty());
        assert!(record_layers(b"not json").is_empty());
    }
}
