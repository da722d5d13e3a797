pub use hasten_tensor as tensor;
