//! The compile stages every backend shares, as named steps: simplify the graph, note which
//! values leave it, group its elementwise ops and find the products whose bias (and ReLU)
//! become a GEMM epilogue. A backend's compile then reads as
//! `prepare` → its own patterns → `fuse` → its steps → `memory_plan::plan`.

use super::affine::{self, Affine};
use super::fusion::{self, FusionGroup};
use crate::ir::{Graph, NodeId};
use crate::Result;

/// A graph after the shared passes, with what they found.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The graph every later stage indexes (simplified if asked).
    pub graph: Graph,
    /// `needed[i]`: node `i` is a graph output or a state's new value, so it must be stored.
    pub needed: Vec<bool>,
    /// Elementwise fusion groups (empty until [`Prepared::fuse`], or when fusion is off).
    pub groups: Vec<FusionGroup>,
    /// The group of each node, by node id.
    pub group_of: Vec<Option<usize>>,
    /// For each group, the product it becomes the epilogue of, if any.
    pub affines: Vec<Option<Affine>>,
    /// `absorbed[i]`: node `i` is a product computed by its group's epilogue GEMM.
    pub absorbed: Vec<bool>,
}

/// Simplifies `graph` (constant folding, dead nodes) when `simplify` is set and notes which
/// values leave it.
pub fn prepare(graph: &Graph, simplify: bool) -> Result<Prepared> {
    let graph = if simplify {
        super::simplify(graph)?
    } else {
        graph.clone()
    };
    let n = graph.nodes().len();
    let mut needed = vec![false; n];
    for (_, o) in graph.outputs() {
        needed[o.0] = true;
    }
    for (_, v) in graph.updates() {
        needed[v.0] = true;
    }
    Ok(Prepared {
        graph,
        needed,
        groups: Vec::new(),
        group_of: vec![None; n],
        affines: Vec::new(),
        absorbed: vec![false; n],
    })
}

impl Prepared {
    /// Whether node `id` is an output or a state update.
    pub fn is_needed(&self, id: NodeId) -> bool {
        self.needed[id.0]
    }

    /// Groups the elementwise ops (nodes for which `taken` holds stay out: the backend computes
    /// them in kernels of its own) and finds the groups that are a product's epilogue. With
    /// `fuse == false` nothing is grouped.
    pub fn fuse(&mut self, fuse: bool, taken: &dyn Fn(NodeId) -> bool) {
        if !fuse {
            return;
        }
        let needed = |id: NodeId| self.needed[id.0];
        let groups = fusion::elementwise_groups(&self.graph, &needed, taken);
        for (g, group) in groups.iter().enumerate() {
            for m in &group.members {
                self.group_of[m.0] = Some(g);
            }
        }
        let own_step = |id: NodeId| !taken(id) && self.group_of[id.0].is_none();
        self.affines = groups
            .iter()
            .map(|group| affine::find(&self.graph, group, &own_step, &needed))
            .collect();
        for a in self.affines.iter().flatten() {
            self.absorbed[a.matmul.0] = true;
        }
        self.groups = groups;
    }

    /// Whether node `id` is a member of a group but not one of its outputs (its value never
    /// leaves the fused kernel).
    pub fn is_interior(&self, id: NodeId) -> bool {
        self.group_of[id.0].is_some_and(|g| !self.groups[g].outputs.contains(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn a_dense_relu_becomes_one_epilogue_and_its_product_is_absorbed() {
        let mut g = Graph::new();
        let x = g.input("x", [4, 3], DType::F32).unwrap();
        let w = g.parameter("w", [3, 5], DType::F32).unwrap();
        let b = g.parameter("b", [5], DType::F32).unwrap();
        let p = g.matmul(x, w).unwrap();
        let s = g.add(p, b).unwrap();
        let y = g.relu(s).unwrap();
        g.output("y", y).unwrap();
        let mut prepared = prepare(&g, true).unwrap();
        prepared.fuse(true, &|_| false);
        assert_eq!(prepared.groups.len(), 1);
        let a = prepared.affines[0].expect("an epilogue");
        assert!(a.relu);
        assert!(prepared.absorbed[a.matmul.0]);
        assert!(prepared.is_needed(a.out));
    }

    #[test]
    fn without_fusion_nothing_is_grouped() {
        let mut g = Graph::new();
        let x = g.input("x", [4], DType::F32).unwrap();
        let y = g.relu(x).unwrap();
        g.output("y", y).unwrap();
        let mut prepared = prepare(&g, false).unwrap();
        prepared.fuse(false, &|_| false);
        assert!(prepared.groups.is_empty() && prepared.affines.is_empty());
    }
}
