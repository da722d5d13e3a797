//! After its first step, a compiled train step allocates nothing: proven with a global
//! allocator that counts every allocation on every thread. One test per binary, so no other
//! test's allocations are counted.

mod common;

use hasten_tensor::{Backend, CpuBackend, HostSlice};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_after_warm_up(step: common::TrainStep, x_len: usize, batch: usize) -> usize {
    let mut exe = CpuBackend::new().compile(&step.graph).unwrap();
    for (name, value) in &step.init {
        exe.write_state(name, value.data.as_slice()).unwrap();
    }
    let x: Vec<f32> = (0..x_len).map(|i| (i % 255) as f32 / 255.0).collect();
    let y: Vec<i32> = (0..batch as i32).map(|i| i % 10).collect();
    let inputs = [HostSlice::F32(&x), HostSlice::I32(&y)];
    let loss = exe.output_index("loss").unwrap();
    exe.run(&inputs).unwrap();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut total = 0.0;
    for _ in 0..100 {
        exe.run(&inputs).unwrap();
        if let HostSlice::F32(l) = exe.output_slice(loss).unwrap() {
            total += l[0];
        }
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(total.is_finite());
    after - before
}

#[test]
fn train_steps_allocate_nothing_after_the_first() {
    for batch in [1, 32, 128] {
        let mlp = common::mlp(batch, 1).unwrap();
        assert_eq!(
            allocations_after_warm_up(mlp, batch * 784, batch),
            0,
            "MLP at batch {batch}"
        );
    }
    for batch in [1, 8] {
        let cnn = common::cnn(batch, 1).unwrap();
        assert_eq!(
            allocations_after_warm_up(cnn, batch * 784, batch),
            0,
            "CNN at batch {batch}"
        );
    }
}
