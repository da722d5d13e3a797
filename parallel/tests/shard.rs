//! The sharding transform on hand-built graphs: where it puts all-reduces, and what it refuses.

use hasten_parallel::{shard_graph, split_batch, Shard};
use hasten_tensor::ir::Op;
use hasten_tensor::{grad, DType, Graph};

fn all_reduces(g: &Graph) -> usize {
    g.nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::AllReduce { .. }))
        .count()
}

/// `loss = mean(relu(x·w + b))` with plain SGD updates of `w` and `b`.
fn train_step(batch: usize) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", [batch, 3], DType::F32).unwrap();
    let w = g.parameter("w", [3, 4], DType::F32).unwrap();
    let b = g.parameter("b", [4], DType::F32).unwrap();
    let xw = g.matmul(x, w).unwrap();
    let z = g.add(xw, b).unwrap();
    let y = g.relu(z).unwrap();
    let loss = g.mean_all(y).unwrap();
    g.output("loss", loss).unwrap();
    let grads = grad(&mut g, loss, &[w, b]).unwrap();
    for (p, dp) in [w, b].into_iter().zip(grads) {
        let step = g.scale(dp, -0.1).unwrap();
        let new = g.add(p, step).unwrap();
        g.update(p, new).unwrap();
    }
    g.output("y", y).unwrap();
    g
}

#[test]
fn gradients_share_one_bucketed_all_reduce() {
    let g = train_step(8);
    let shard = split_batch(8, 2).unwrap()[1];
    let sharded = shard_graph(&g, 8, shard).unwrap();
    // One for the loss's mean, one for the bucket holding both gradients.
    assert_eq!(all_reduces(&sharded.graph), 2);
    assert_eq!(sharded.batched_outputs, [false, true]);
    let y = sharded.graph.outputs()[1].1;
    assert_eq!(sharded.graph.shape(y).unwrap().dims(), &[4, 4]);
}

#[test]
fn merging_the_batch_with_other_axes_is_refused() {
    let mut g = Graph::new();
    let x = g.input("x", [8, 3], DType::F32).unwrap();
    let flat = g.reshape(x, [24]).unwrap();
    g.output("flat", flat).unwrap();
    let err = shard_graph(&g, 8, Shard { offset: 0, rows: 4 })
        .unwrap_err()
        .to_string();
    assert!(err.contains("merges the batch axis"), "{err}");
}

#[test]
fn state_that_keeps_one_value_per_sample_is_refused() {
    let mut g = Graph::new();
    let x = g.input("x", [8, 3], DType::F32).unwrap();
    let s = g.parameter("s", [8, 3], DType::F32).unwrap();
    let v = g.add(s, x).unwrap();
    g.update(s, v).unwrap();
    let err = shard_graph(&g, 8, Shard { offset: 0, rows: 4 })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"s\"") && err.contains("every replica"),
        "{err}"
    );
}
