//! Schedules follow tfmot's formulas; masks keep exactly the largest magnitudes.

use hasten_compress::mask::magnitude_mask;
use hasten_compress::{
    BlockPooling, ConstantSparsity, PolynomialDecay, PruningParams, PruningSchedule,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// tfmot's PolynomialDecay written out independently, in f64.
fn polynomial_reference(s: &PolynomialDecay, step: i64) -> f64 {
    let p = ((step - s.begin_step) as f64 / (s.end_step - s.begin_step) as f64).clamp(0.0, 1.0);
    (s.initial_sparsity as f64 - s.final_sparsity as f64) * (1.0 - p).powf(s.power as f64)
        + s.final_sparsity as f64
}

/// tfmot's `_should_prune_in_step`, written out.
fn should_prune_reference(step: i64, begin: i64, end: i64, frequency: i64) -> bool {
    step >= begin && (step <= end || end < 0) && (step - begin) % frequency == 0
}

#[test]
fn polynomial_decay_sparsity_and_turns_follow_tfmot() {
    let s = PolynomialDecay::new(0.1, 0.8, 200, 1200).frequency(50);
    let schedule = PruningSchedule::from(s);
    for step in 0..2000u64 {
        let want = polynomial_reference(&s, step as i64);
        let got = schedule.sparsity(step) as f64;
        assert!((got - want).abs() < 1e-6, "step {step}: {got} vs {want}");
        assert_eq!(
            schedule.should_prune(step),
            should_prune_reference(step as i64, 200, 1200, 50),
            "step {step}"
        );
    }
    // Known points: the start, the end, halfway (0.8 + (0.1 - 0.8) · 0.5³).
    assert!((schedule.sparsity(200) - 0.1).abs() < 1e-6);
    assert!((schedule.sparsity(700) - (0.8 - 0.7 * 0.125)).abs() < 1e-6);
    assert!((schedule.sparsity(5000) - 0.8).abs() < 1e-6);
    assert!(!schedule.should_prune(1250), "no pruning after end_step");
}

#[test]
fn constant_sparsity_prunes_forever_by_default_and_stops_at_end_step() {
    let forever = PruningSchedule::from(ConstantSparsity::new(0.5, 10));
    assert!(!forever.should_prune(0));
    assert!(forever.should_prune(10) && forever.should_prune(110) && forever.should_prune(100_010));
    assert!(!forever.should_prune(50));
    assert_eq!(forever.sparsity(3), 0.5);
    let bounded = PruningSchedule::from(ConstantSparsity::new(0.5, 0).end_step(200).frequency(100));
    assert!(bounded.should_prune(200) && !bounded.should_prune(300));
    let default = PruningSchedule::default();
    assert_eq!(
        default,
        ConstantSparsity::new(0.5, 0).into(),
        "tfmot's default schedule"
    );
}

#[test]
fn bad_schedules_are_refused_with_the_parameter_named() {
    let cases: Vec<(PruningSchedule, &str)> = vec![
        (ConstantSparsity::new(1.0, 0).into(), "target_sparsity"),
        (ConstantSparsity::new(-0.1, 0).into(), "target_sparsity"),
        (ConstantSparsity::new(0.5, -1).into(), "begin_step"),
        (
            ConstantSparsity::new(0.5, 0).frequency(0).into(),
            "frequency",
        ),
        (
            ConstantSparsity::new(0.5, 100).end_step(50).into(),
            "end_step",
        ),
        (PolynomialDecay::new(0.0, 0.9, 100, 10).into(), "end_step"),
        (
            PolynomialDecay::new(0.0, 1.5, 0, 10).into(),
            "final_sparsity",
        ),
    ];
    for (schedule, name) in cases {
        let err = PruningParams::new(schedule)
            .validate()
            .expect_err("must be refused");
        assert!(err.to_string().contains(name), "{err} should name {name}");
    }
    let err = PruningParams::default()
        .block_size(0, 4)
        .validate()
        .expect_err("zero block");
    assert!(err.to_string().contains("block_size"), "{err}");
    let err = PruningParams::default()
        .m_by_n(4, 4)
        .validate()
        .expect_err("m = n");
    assert!(err.to_string().contains("m < n"), "{err}");
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

#[test]
fn masks_keep_exactly_the_largest_magnitudes() {
    let (rows, cols) = (37, 11);
    let w = random(rows * cols, 1);
    for sparsity in [0.0, 0.1, 0.5, 0.8, 0.95, 0.999] {
        let mask = magnitude_mask(&w, &[rows, cols], &PruningParams::default(), sparsity).unwrap();
        let keep = ((w.len() as f32) * (1.0 - sparsity)).round() as usize;
        let kept: Vec<f32> = w
            .iter()
            .zip(&mask.values)
            .filter(|(_, &m)| m == 1.0)
            .map(|(w, _)| w.abs())
            .collect();
        assert_eq!(kept.len(), keep, "sparsity {sparsity}");
        let mut sorted: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let smallest_kept = kept.iter().copied().fold(f32::INFINITY, f32::min);
        if keep > 0 {
            assert_eq!(
                smallest_kept,
                sorted[keep - 1],
                "the k-th largest is the threshold"
            );
            assert_eq!(mask.threshold, sorted[keep - 1]);
        }
        for (v, m) in w.iter().zip(&mask.values) {
            assert!(*m == 0.0 || *m == 1.0);
            if keep < w.len() && v.abs() > sorted[keep] {
                assert_eq!(*m, 1.0, "{v} is larger than every pruned weight");
            }
        }
    }
}

#[test]
fn ties_go_to_the_lower_index_so_the_count_is_exact() {
    let w = vec![0.5, -0.5, 0.5, 0.1, -0.5, 0.5];
    let mask = magnitude_mask(&w, &[6], &PruningParams::default(), 0.5).unwrap();
    assert_eq!(mask.values, vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(mask.threshold, 0.5);
}

#[test]
fn blocks_are_pruned_as_units_scored_by_their_pooled_magnitude() {
    // A [4, 4] kernel in 2×2 blocks: magnitudes 1, 2, 3, 4 by block, one outlier in block 0.
    let mut w = vec![0.0f32; 16];
    for r in 0..4 {
        for c in 0..4 {
            let block = (r / 2) * 2 + c / 2;
            w[r * 4 + c] = (block + 1) as f32;
        }
    }
    w[0] = 9.0; // block 0: avg (9+1+1+1)/4 = 3, max 9
    let avg = PruningParams::default().block_size(2, 2);
    let mask = magnitude_mask(&w, &[4, 4], &avg, 0.5).unwrap();
    // Avg scores 3, 2, 3, 4: keep block 3 (4) and block 0 (3, lower index than block 2).
    let kept_blocks = |m: &[f32]| -> Vec<usize> {
        (0..4)
            .filter(|b| m[(b / 2) * 8 + (b % 2) * 2] == 1.0)
            .collect()
    };
    assert_eq!(kept_blocks(&mask.values), vec![0, 3]);
    let max = avg.block_pooling(BlockPooling::Max);
    let mask = magnitude_mask(&w, &[4, 4], &max, 0.75).unwrap();
    assert_eq!(
        kept_blocks(&mask.values),
        vec![0],
        "max pooling sees the outlier"
    );
    for b in 0..4 {
        let cells: Vec<f32> = (0..4)
            .map(|i| mask.values[(b / 2) * 8 + (b % 2) * 2 + (i / 2) * 4 + i % 2])
            .collect();
        assert!(
            cells.iter().all(|&m| m == cells[0]),
            "block {b} is one unit: {cells:?}"
        );
    }
    // 1×4 blocks on a kernel whose 6 columns do not divide: the partial edge block counts.
    let w = random(5 * 6, 3);
    let mask =
        magnitude_mask(&w, &[5, 6], &PruningParams::default().block_size(1, 4), 0.5).unwrap();
    for row in mask.values.chunks(6) {
        assert!(
            row[..4].iter().all(|&m| m == row[0]) && row[4] == row[5],
            "{row:?}"
        );
    }
}

#[test]
fn two_of_four_keeps_the_two_largest_of_each_input_group() {
    // A Dense kernel [8, 3]: groups of 4 along the input axis, in each column.
    let w = random(8 * 3, 5);
    let mask = magnitude_mask(&w, &[8, 3], &PruningParams::default().m_by_n(2, 4), 0.0).unwrap();
    for col in 0..3 {
        for group in 0..2 {
            let idx: Vec<usize> = (0..4).map(|t| (group * 4 + t) * 3 + col).collect();
            let kept: Vec<usize> = idx
                .iter()
                .copied()
                .filter(|&i| mask.values[i] == 1.0)
                .collect();
            assert_eq!(kept.len(), 2);
            let smallest_kept = kept
                .iter()
                .map(|&i| w[i].abs())
                .fold(f32::INFINITY, f32::min);
            for &i in &idx {
                if mask.values[i] == 0.0 {
                    assert!(w[i].abs() <= smallest_kept);
                }
            }
        }
    }
    // A conv kernel [3, 3, 6, 2] has 6 input channels: not a multiple of 4.
    let err = magnitude_mask(
        &random(108, 1),
        &[3, 3, 6, 2],
        &PruningParams::default().m_by_n(2, 4),
        0.0,
    )
    .expect_err("6 channels");
    assert!(err.to_string().contains("multiple of 4"), "{err}");
}
