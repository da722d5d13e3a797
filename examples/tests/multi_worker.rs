//! `MultiWorker` over MPI, run under `mpirun` (feature `mpi`; skipped, with a message, where
//! `mpirun` is absent).

#![cfg(feature = "mpi")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mpirun() -> Option<Command> {
    mpirun_n(2)
}

/// `mpirun` for `ranks` processes, or `None` (with a message) where it is absent.
fn mpirun_n(ranks: usize) -> Option<Command> {
    let found = Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: no mpirun on PATH (install openmpi-bin)");
        return None;
    }
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-n",
        &ranks.to_string(),
    ]);
    Some(cmd)
}

/// Runs `cmd`, killing it if it outlives `limit`; its status and output.
fn run_within(mut cmd: Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mpirun");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for mpirun") {
            let out = child.wait_with_output().expect("read mpirun's output");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            return (status.success(), text);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mpirun still running after {limit:?}: a dead rank hung the job");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_ranks_train_as_one_device() {
    for model in ["mlp", "cnn", "dropout", "batchnorm"] {
        let Some(mut cmd) = mpirun() else { return };
        cmd.args([env!("CARGO_BIN_EXE_multi_worker_check"), "--check"]);
        cmd.args(["--model", model]);
        let (ok, out) = run_within(cmd, Duration::from_secs(120));
        assert!(ok, "{model}: {out}");
        assert!(
            out.contains("multi-worker equals one device"),
            "{model}: {out}"
        );
    }
}

#[test]
fn a_hanging_rank_ends_the_job_at_the_timeout() {
    let Some(mut cmd) = mpirun() else { return };
    cmd.args(["-x", "HASTEN_TEST_HANG_RANK=1"]);
    cmd.args([env!("CARGO_BIN_EXE_multi_worker_check"), "--timeout-s", "2"]);
    let (ok, out) = run_within(cmd, Duration::from_secs(90));
    assert!(!ok, "{out}");
    assert!(out.contains("aborting the job"), "{out}");
}

#[test]
fn a_killed_rank_ends_the_job_within_the_timeout() {
    let Some(mut cmd) = mpirun() else { return };
    cmd.args(["-x", "HASTEN_TEST_KILL_RANK=1"]);
    cmd.args([env!("CARGO_BIN_EXE_multi_worker_check"), "--timeout-s", "5"]);
    cmd.args(["--epochs", "3", "--check"]);
    let start = Instant::now();
    let (ok, out) = run_within(cmd, Duration::from_secs(90));
    assert!(!ok, "{out}");
    assert!(!out.contains("multi-worker equals one device"), "{out}");
    // Either the watchdog of the surviving rank or mpirun (seeing a rank die) ends the job.
    let reported = out.contains("aborting the job") || out.contains("signal");
    assert!(reported, "no error names the dead rank:\n{out}");
    assert!(start.elapsed() < Duration::from_secs(60), "{out}");
}

#[test]
fn a_job_resumes_with_its_rank_count_only() {
    let dir = std::env::temp_dir().join(format!("hasten-multi-worker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir
        .to_str()
        .expect("a UTF-8 temporary directory")
        .to_string();
    let bin = env!("CARGO_BIN_EXE_multi_worker_check");
    let Some(mut first) = mpirun() else { return };
    first.args([bin, "--epochs", "1", "--checkpoint-dir", &dir_arg]);
    let (ok, out) = run_within(first, Duration::from_secs(120));
    assert!(ok, "{out}");

    let mut other = mpirun_n(1).expect("mpirun");
    other.args([
        bin,
        "--epochs",
        "2",
        "--resume",
        "--checkpoint-dir",
        &dir_arg,
    ]);
    let (ok, out) = run_within(other, Duration::from_secs(120));
    assert!(!ok, "{out}");
    assert!(
        out.contains("written by a job of 2 worker process(es)"),
        "{out}"
    );

    let mut resumed = mpirun().expect("mpirun");
    resumed.args([
        bin,
        "--epochs",
        "2",
        "--resume",
        "--checkpoint-dir",
        &dir_arg,
        "--check",
    ]);
    let (ok, out) = run_within(resumed, Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{out}");
    assert!(out.contains("multi-worker equals one device"), "{out}");
}
