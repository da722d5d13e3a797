//! A scaling model for data-parallel training, fed with times measured in this run (not in
//! CI): how efficiently would the reference models train on 8…512 workers?
//!
//! Each worker keeps its batch (`--batch-per-worker`, weak scaling) and all-reduces the whole
//! gradient every step, in `BUCKET_BYTES` buckets, over a ring:
//!
//! `T_ar(N) = buckets · 2(N−1) · α + 2(N−1)/N · S / B`
//!
//! with S the gradient's bytes, α the per-message latency and B the link bandwidth of the
//! network (`--latency-us`, `--bandwidth-gbit`: the network is an assumption, this machine has
//! none). The step's compute time `t_c` is measured here on one CPU backend. Efficiency is
//! `t_c / (t_c + T_ar)` when communication waits for the backward pass (hasten's CPU backend
//! today), and `t_c / (t_f + max(t_b, T_ar))` when it overlaps the backward pass entirely (the
//! bound for overlapping implementations such as Horovod's), taking `t_b = 2 t_f`. Before
//! projecting, the model is checked on this machine: it predicts a 2-rank all-reduce of each
//! gradient with the memcpy bandwidth and zero latency, next to the measured threads
//! communicator.

use clap::Parser;
use hasten::nn::history::plot_font_available;
use hasten::parallel::{ThreadGroup, BUCKET_BYTES};
use hasten::prelude::*;
use hasten::tensor::AllReduceOp;
use hasten_examples::collective_timing::{median, memcpy_bandwidth, ring_bound};
use hasten_examples::{
    compile_reference, exit_code, reference_cnn, reference_mlp, train_throughput,
};
use plotters::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Flags.
#[derive(Parser, Debug)]
struct Args {
    /// Samples per worker per step.
    #[arg(long, default_value_t = 32)]
    batch_per_worker: usize,
    /// The network's link bandwidth, in Gbit/s (Horovod's benchmark cluster: 25).
    #[arg(long, default_value_t = 25.0)]
    bandwidth_gbit: f64,
    /// The network's per-message latency, in µs.
    #[arg(long, default_value_t = 5.0)]
    latency_us: f64,
    /// Draw the projected efficiencies into this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Workers the model projects to.
const WORKERS: [usize; 7] = [8, 16, 32, 64, 128, 256, 512];

/// Horovod's published efficiency: about 90 % at 512 GPUs (Inception V3 and ResNet-101).
const HOROVOD: (usize, f64) = (512, 0.90);

/// What the model knows about one reference model.
struct Measured {
    name: &'static str,
    /// Seconds of one train step on one worker.
    step: f64,
    /// Bytes of its gradient.
    gradient: usize,
}

/// The network the projection assumes.
struct Network {
    /// Bytes per second per link.
    bandwidth: f64,
    /// Seconds per message.
    latency: f64,
}

impl Network {
    /// Seconds of a ring all-reduce of `bytes` over `n` workers, in buckets.
    fn all_reduce(&self, n: usize, bytes: usize) -> f64 {
        let buckets = bytes.div_ceil(BUCKET_BYTES).max(1) as f64;
        let hops = 2.0 * (n as f64 - 1.0);
        buckets * hops * self.latency + ring_bound(n, bytes, self.bandwidth)
    }
}

impl Measured {
    /// Efficiency on `n` workers when the all-reduce waits for the backward pass.
    fn serial(&self, net: &Network, n: usize) -> f64 {
        self.step / (self.step + net.all_reduce(n, self.gradient))
    }

    /// Efficiency on `n` workers when the all-reduce overlaps the whole backward pass.
    fn overlapped(&self, net: &Network, n: usize) -> f64 {
        let (forward, backward) = (self.step / 3.0, 2.0 * self.step / 3.0);
        self.step / (forward + backward.max(net.all_reduce(n, self.gradient)))
    }
}

fn measure(
    name: &'static str,
    model: Sequential,
    sample: &[usize],
    batch: usize,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let mut model = model;
    let gradient = model.count_params()? * 4;
    let per_second = train_throughput(model, Arc::new(CpuBackend::new()), batch, sample)?;
    Ok(Measured {
        name,
        step: batch as f64 / per_second,
        gradient,
    })
}

/// Median seconds of a 2-rank all-reduce of `bytes` on the threads communicator.
fn threads_all_reduce(bytes: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let group = ThreadGroup::new(2)?;
    let comms = group.communicators();
    let times = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let mut buf = vec![1.0f32; bytes / 4];
                    (0..50)
                        .map(|_| {
                            let start = Instant::now();
                            c.all_reduce(&mut buf, AllReduceOp::Sum)
                                .map(|()| start.elapsed())
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an all-reduce thread panicked"))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut slowest: Vec<f64> = (0..50)
        .map(|i| times.iter().map(|t| t[i].as_secs_f64()).fold(0.0, f64::max))
        .collect();
    Ok(median(&mut slowest))
}

fn print_check(models: &[Measured]) -> Result<(), Box<dyn std::error::Error>> {
    let local = Network {
        bandwidth: memcpy_bandwidth(),
        latency: 0.0,
    };
    println!("check on this machine (2 thread ranks, memcpy bandwidth, no latency):");
    for m in models {
        let measured = threads_all_reduce(m.gradient)?;
        println!(
            "  {}: step {:.3} ms, gradient {} B; all-reduce measured {:.1} µs, modelled {:.1} µs",
            m.name,
            m.step * 1e3,
            m.gradient,
            measured * 1e6,
            local.all_reduce(2, m.gradient) * 1e6
        );
    }
    Ok(())
}

fn print_projection(models: &[Measured], net: &Network) {
    print!("{:>8}", "workers");
    for m in models {
        print!(" {:>14} {:>14}", format!("{} serial", m.name), "overlapped");
    }
    println!();
    for n in WORKERS {
        print!("{n:>8}");
        for m in models {
            print!(
                " {:>13.1}% {:>13.1}%",
                100.0 * m.serial(net, n),
                100.0 * m.overlapped(net, n)
            );
        }
        println!();
    }
    println!(
        "Horovod (published): {:.0} % at {} GPUs",
        100.0 * HOROVOD.1,
        HOROVOD.0
    );
    for m in models {
        // t_c / (t_c + T) = 0.9 ⇔ t_c = 9 T.
        let needed = 9.0 * net.all_reduce(HOROVOD.0, m.gradient);
        println!(
            "{}: 90 % at {} workers without overlap needs a step of ≥ {:.2} ms (measured {:.3} ms)",
            m.name,
            HOROVOD.0,
            needed * 1e3,
            m.step * 1e3
        );
    }
}

fn plot(
    path: &PathBuf,
    models: &[Measured],
    net: &Network,
) -> Result<(), Box<dyn std::error::Error>> {
    let text = plot_font_available();
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(50);
    if text {
        builder.caption("projected data-parallel efficiency", ("sans-serif", 22));
    }
    // Workers on a log2 axis: x = log2(N), labelled N.
    let mut chart = builder.build_cartesian_2d(3f64..9.2f64, 0f64..1.05f64)?;
    let workers_label = |x: &f64| format!("{}", 2f64.powf(*x).round());
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("workers")
            .y_desc("efficiency")
            .x_labels(7)
            .x_label_formatter(&workers_label);
    } else {
        mesh.disable_x_mesh().x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    let colours = [BLUE, RED, GREEN, MAGENTA];
    for (i, m) in models.iter().enumerate() {
        for (overlap, style) in [(false, 0), (true, 1)] {
            let colour = colours[(2 * i + style) % colours.len()];
            let points = WORKERS.iter().map(|&n| {
                let e = if overlap {
                    m.overlapped(net, n)
                } else {
                    m.serial(net, n)
                };
                ((n as f64).log2(), e)
            });
            let series = chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
            if text {
                let label = format!(
                    "{} {}",
                    m.name,
                    if overlap { "overlapped" } else { "serial" }
                );
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
            }
        }
    }
    let horovod = Circle::new(((HOROVOD.0 as f64).log2(), HOROVOD.1), 6, BLACK.filled());
    let series = chart.draw_series(std::iter::once(horovod))?;
    if text {
        series
            .label("Horovod, published (512 GPUs)")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
    }
    root.present()?;
    println!("plot written to {}", path.display());
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let batch = args.batch_per_worker;
    let models = [
        measure(
            "CNN",
            compile_reference(reference_cnn(42))?,
            &[28, 28],
            batch,
        )?,
        measure("MLP", compile_reference(reference_mlp(42))?, &[784], batch)?,
    ];
    print_check(&models)?;
    let net = Network {
        bandwidth: args.bandwidth_gbit * 1e9 / 8.0,
        latency: args.latency_us * 1e-6,
    };
    println!(
        "projection: {batch} samples per worker, network {} Gbit/s with {} µs per message",
        args.bandwidth_gbit, args.latency_us
    );
    print_projection(&models, &net);
    if let Some(path) = &args.plot {
        plot(path, &models, &net)?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    exit_code(run(&Args::parse()))
}
