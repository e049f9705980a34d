//! The image history of a build: which steps added a layer is only known once it ran.

use crate::Output;
use kiln_exporter::HistoryEntry;
use kiln_oci::PendingHistory;
use kiln_opgraph::{Definition, Op, VertexDigest};

/// Decides `empty_layer` for each history entry by comparing the layer count of its
/// vertex's result with that of the vertex's base input (RUN's rootfs, a file op's base).
/// `output` gives a vertex's result (from the solve, or from the cache); an entry whose
/// results are unknown counts as adding a layer, one without a vertex as adding none.
pub fn reconcile(
    history: &[PendingHistory],
    def: &Definition,
    output: impl Fn(&VertexDigest) -> Option<Output>,
) -> Vec<HistoryEntry> {
    history
        .iter()
        .map(|h| HistoryEntry {
            created_by: h.created_by.clone(),
            comment: h.comment.clone(),
            empty_layer: match &h.layer_vertex {
                None => true,
                Some(v) => {
                    let d = VertexDigest(v.clone());
                    let base = def.vertices.get(&d).and_then(|vx| match &vx.op {
                        Op::Exec(e) => Some(e.rootfs.vertex.clone()),
                        Op::File(f) => Some(f.base.vertex.clone()),
                        _ => None,
                    });
                    match (output(&d), base.and_then(|b| output(&b))) {
                        (Some(o), Some(b)) => o.layers().len() == b.layers().len(),
                        _ => false,
                    }
                }
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::Layer;
    use kiln_opgraph::{ExecOp, FileOp, VertexMeta};
    use std::collections::BTreeMap;

    fn layer(n: u8) -> Layer {
        Layer {
            diff_id: format!("sha256:{n:064x}"),
            digest: format!("sha256:{n:064x}"),
            size: 1,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }
    }

    fn run(d: &mut Definition, rootfs: kiln_opgraph::Input, arg: &str) -> VertexDigest {
        d.add(
            Op::Exec(ExecOp {
                rootfs,
                args: vec![arg.into()],
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                network: kiln_opgraph::NetworkMode::Default,
                mounts: vec![],
                security: kiln_opgraph::Security::Sandbox,
            }),
            VertexMeta::default(),
        )
        .vertex
    }

    fn entry(by: &str, v: Option<&VertexDigest>) -> PendingHistory {
        PendingHistory {
            created_by: by.into(),
            comment: None,
            layer_vertex: v.map(|v| v.0.clone()),
        }
    }

    #[test]
    fn a_step_is_empty_when_it_added_no_layer_to_its_base() {
        let mut d = Definition::new();
        let base = d.add(Op::Scratch, VertexMeta::default());
        let adds = run(&mut d, base.clone(), "adds");
        let same = run(
            &mut d,
            kiln_opgraph::Input {
                vertex: adds.clone(),
            },
            "same",
        );
        let copy = d
            .add(
                Op::File(FileOp {
                    base: kiln_opgraph::Input {
                        vertex: same.clone(),
                    },
                    actions: vec![],
                }),
                VertexMeta::default(),
            )
            .vertex;
        let outputs: BTreeMap<VertexDigest, Output> = [
            (base.vertex.clone(), Output::Layers(vec![])),
            (adds.clone(), Output::Layers(vec![layer(1)])),
            (same.clone(), Output::Layers(vec![layer(1)])),
            (copy.clone(), Output::Layers(vec![layer(1), layer(2)])),
        ]
        .into();
        let history = [
            entry("ENV A=1", None),
            entry("RUN adds", Some(&adds)),
            entry("RUN same", Some(&same)),
            entry("COPY x /", Some(&copy)),
        ];
        let got = reconcile(&history, &d, |v| outputs.get(v).cloned());
        let empty: Vec<(&str, bool)> = got
            .iter()
            .map(|h| (h.created_by.as_str(), h.empty_layer))
            .collect();
        assert_eq!(
            empty,
            [
                ("ENV A=1", true),
                ("RUN adds", false),
                ("RUN same", true),
                ("COPY x /", false)
            ]
        );
    }

    #[test]
    fn unknown_results_count_as_a_layer() {
        let mut d = Definition::new();
        let base = d.add(Op::Scratch, VertexMeta::default());
        let step = run(&mut d, base.clone(), "x");
        let missing = VertexDigest("sha256:not-in-the-definition".into());
        let outputs: BTreeMap<VertexDigest, Output> =
            [(step.clone(), Output::Layers(vec![]))].into();
        let mut with_comment = entry("RUN x", Some(&step));
        with_comment.comment = Some("buildkit.dockerfile.v0".into());
        let got = reconcile(&[with_comment, entry("gone", Some(&missing))], &d, |v| {
            outputs.get(v).cloned()
        });
        // The base's result is unknown (a cached step's input is never loaded).
        assert!(!got[0].empty_layer);
        assert_eq!(got[0].comment.as_deref(), Some("buildkit.dockerfile.v0"));
        assert!(!got[1].empty_layer);
    }
}
