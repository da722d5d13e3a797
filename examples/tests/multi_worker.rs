//! `MultiWorker` over MPI, run under `mpirun` (feature `mpi`; skipped, with a message, where
//! `mpirun` is absent).

#![cfg(feature = "mpi")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mpirun() -> Option<Command> {
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
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-n", "2"]);
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
    let Some(mut cmd) = mpirun() else { return };
    cmd.args([env!("CARGO_BIN_EXE_multi_worker_mlp"), "--check"]);
    let (ok, out) = run_within(cmd, Duration::from_secs(120));
    assert!(ok, "{out}");
    assert!(out.contains("multi-worker equals one device"), "{out}");
}

#[test]
fn a_hanging_rank_ends_the_job_at_the_timeout() {
    let Some(mut cmd) = mpirun() else { return };
    cmd.args(["-x", "HASTEN_TEST_HANG_RANK=1"]);
    cmd.args([env!("CARGO_BIN_EXE_multi_worker_mlp"), "--timeout-s", "2"]);
    let (ok, out) = run_within(cmd, Duration::from_secs(90));
    assert!(!ok, "{out}");
    assert!(out.contains("aborting the job"), "{out}");
}
