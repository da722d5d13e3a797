//! Sparse files round-trip; sparse models predict as the dense model does (the kernels
//! themselves: `sparse_kernels.rs`).

mod common;

use common::*;
use hasten_compress::sparse::Bsr;
use hasten_compress::{
    dense_size, load_sparse, prune_low_magnitude, save_sparse, sparse_size, ConstantSparsity,
    PruningParams, SparseChoice, SparseModel,
};

#[test]
fn bsr_round_trips_with_partial_edge_blocks() {
    for block in [(1, 1), (1, 4), (4, 1), (2, 3), (1, 16)] {
        let w = sparse_random(13 * 10, 0.2, 4);
        let bsr = Bsr::from_dense(&w, 13, 10, block).unwrap();
        assert_eq!(bsr.to_dense().unwrap(), w, "block {block:?}");
    }
    let mut broken = Bsr::from_dense(&sparse_random(16, 0.5, 1), 4, 4, (1, 1)).unwrap();
    broken.indices[0] = 99;
    assert!(broken
        .to_dense()
        .unwrap_err()
        .to_string()
        .contains("inconsistent"));
}

fn pruned_trained_mlp(
    sparsity: f32,
    block: (usize, usize),
) -> (hasten_nn::Sequential, hasten_tensor::HostTensor) {
    let (x, y) = classification(256, &[64], 4, 11);
    let params = PruningParams::new(ConstantSparsity::new(sparsity, 0).frequency(8))
        .block_size(block.0, block.1);
    let mut model = prune_low_magnitude(mlp(64, 128, 4), params).unwrap();
    compile(&mut model, 0.01);
    model.fit(&x, &y, options(2, 32)).unwrap();
    (model, x)
}

#[test]
fn a_sparse_file_round_trips_and_is_smaller() {
    for block in [(1, 1), (1, 4)] {
        let (mut model, x) = pruned_trained_mlp(0.8, block);
        let dir = TempDir::new(&format!("export-{}x{}", block.0, block.1));
        let path = dir.join("model.safetensors");
        save_sparse(&mut model, &path).unwrap();
        let mut back = load_sparse(&path).unwrap();
        assert!(back.layers().iter().all(|l| l.kind() == "Dense"));
        assert_eq!(
            values(&back.predict(&x, 64).unwrap()),
            values(&model.predict(&x, 64).unwrap())
        );
        let dense = dense_size(&mut model).unwrap();
        let sparse = sparse_size(&mut model).unwrap();
        assert!(
            sparse.raw < dense.raw / 2,
            "{block:?}: {sparse:?} vs {dense:?}"
        );
        assert!(
            sparse.gzip < dense.gzip,
            "{block:?}: {sparse:?} vs {dense:?}"
        );
    }
    let dir = TempDir::new("export-bad");
    let path = dir.join("junk.safetensors");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    assert!(load_sparse(&path).is_err());
    let mut plain = mlp(4, 2, 2);
    plain.save_weights(dir.join("dense.safetensors")).unwrap();
    let err = load_sparse(dir.join("dense.safetensors"))
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("hasten-sparse-1"), "{err}");
}

#[test]
fn the_sparse_model_predicts_what_the_dense_model_predicts() {
    let (mut model, x) = pruned_trained_mlp(0.9, (1, 1));
    let want = values(&model.predict(&x, 64).unwrap());
    for (choice, sparse_layers) in [
        (SparseChoice::Auto, 2),
        (SparseChoice::DensityBelow(0.3), 2),
        (SparseChoice::Always, 2),
        (SparseChoice::Never, 0),
        (SparseChoice::DensityBelow(0.05), 0),
    ] {
        let mut sparse = SparseModel::new(&mut model, choice).unwrap();
        assert_eq!(sparse.sparse_layers().len(), sparse_layers, "{choice:?}");
        for batch in [1, 3, 7, 33, 64, 256] {
            let got = values(&sparse.predict(&x, batch).unwrap());
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{choice:?} batch {batch}: {a} vs {b}");
            }
        }
    }
    // A CNN: conv and pooling on the backend, the Dense layer sparse when asked.
    let (cx, cy) = classification(64, &[10, 10, 1], 3, 12);
    let params = PruningParams::new(ConstantSparsity::new(0.9, 0).frequency(4));
    let mut cnn_model = prune_low_magnitude(cnn(10, 4, 3), params).unwrap();
    compile(&mut cnn_model, 0.01);
    cnn_model.fit(&cx, &cy, options(1, 16)).unwrap();
    let want = values(&cnn_model.predict(&cx, 16).unwrap());
    // Its classifier (64 features, 3 units) moves more values into tiles than the dense
    // product multiplies: `Auto` keeps it dense; `Always` runs it sparse.
    let auto = SparseModel::new(&mut cnn_model, SparseChoice::Auto).unwrap();
    assert!(
        auto.sparse_layers().is_empty(),
        "{:?}",
        auto.sparse_layers()
    );
    let mut sparse = SparseModel::new(&mut cnn_model, SparseChoice::Always).unwrap();
    assert_eq!(sparse.sparse_layers().len(), 1);
    let got = values(&sparse.predict(&cx, 16).unwrap());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}
