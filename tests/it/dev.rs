//! `drift dev` as a newcomer runs it: it finds what setup installed, and leaves no child
//! process behind however it ends.

use crate::helpers::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A folder of symlinks to just these programs, to run `drift dev` with a PATH of our choosing.
fn bin_dir(dir: &Path, programs: &[(&str, PathBuf)]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, target) in programs {
        std::os::unix::fs::symlink(target, bin.join(name)).unwrap();
    }
    bin
}

fn real(program: &str) -> PathBuf {
    drift::dev::which(program).unwrap_or_else(|| panic!("{program} on PATH"))
}

/// Processes whose working folder or command line mentions `data` (Redis runs in its data
/// folder; Temporal names its database file).
fn children_of(data: &Path) -> Vec<String> {
    let data = data.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cwd.to_string_lossy().starts_with(&data) || cmd.contains(&data) {
            found.push(format!("{pid}: {cmd}"));
        }
    }
    found
}

#[test]
fn drift_dev_that_cannot_start_temporal_stops_the_redis_it_started() {
    let dir = infra().dir.join(format!("dev-{}", uid()));
    let bin = bin_dir(
        &dir,
        &[
            ("redis-server", real("redis-server")),
            ("sh", real("sh")),
            ("sleep", real("sleep")),
        ],
    );
    let data = dir.join("data");
    let out = std::process::Command::new(drift_bin())
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("PATH", &bin)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("temporal was not found") && stderr.contains("scripts/setup.sh"),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(children_of(&data), Vec::<String>::new(), "left behind");
}

#[test]
fn drift_dev_finds_the_temporal_cli_in_pythons_scripts_folder_and_sigterm_stops_every_child() {
    let dir = infra().dir.join(format!("dev-{}", uid()));
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = PathBuf::from(String::from_utf8_lossy(&python.stdout).trim());
    // No `temporal` on this PATH: only where pip put it.
    let bin = bin_dir(
        &dir,
        &[
            ("redis-server", real("redis-server")),
            ("sh", real("sh")),
            ("sleep", real("sleep")),
            ("python3", python),
        ],
    );
    let data = dir.join("data");
    let port = drift::dev::free_port().unwrap();
    let mut dev = std::process::Command::new(drift_bin())
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .env("PATH", &bin)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("dev.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
        });
        if up || std::time::Instant::now() > deadline || dev.try_wait().unwrap().is_some() {
            break up;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        ready,
        "drift dev never became ready: {}",
        std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default()
    );
    assert!(!children_of(&data).is_empty(), "it started Temporal and Redis");
    // SAFETY: kill(2) on the child we spawned.
    unsafe {
        libc::kill(dev.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = dev.wait().unwrap();
    assert!(status.success(), "a clean stop: {status}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(children_of(&data), Vec::<String>::new(), "left behind");
}
