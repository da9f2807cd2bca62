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
pub(crate) fn children_of(data: &Path) -> Vec<String> {
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

/// `GET path` on a local port: the status and body, if it answered.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        buf.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// Waits (bounded) until `/readyz` answers `status`; how long that took.
fn readyz_becomes(port: u16, status: u16, within: Duration) -> Option<Duration> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < within {
        if let Some((s, body)) = get(port, "/readyz")
            && s == status
        {
            println!("dev: /readyz {s} after {:?}: {body}", t0.elapsed());
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_dev_whose_temporal_dies_fails_readyz_at_once_says_so_and_restarts_it_with_its_data() {
    let dir = infra().dir.join(format!("dev-{}", uid()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let port = drift::dev::free_port().unwrap();
    let log = dir.join("dev.log");
    let mut dev = std::process::Command::new(drift_bin())
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let dev_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        readyz_becomes(port, 200, Duration::from_secs(120)).is_some(),
        "drift dev never became ready: {}",
        dev_log()
    );
    let key = std::fs::read_to_string(data.join("dev-api-key")).unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = send(
        http.post(format!("{base}/v3/workflow/start"))
            .bearer_auth(key.trim())
            .json(&serde_json::json!({"workflow": "bank_account"})),
    )
    .await;
    assert_eq!(status_of(&started), "WAITING", "{started:?}");
    let id = id_of(&started);

    // kill -9 the Temporal server itself (not its supervisor).
    let temporal: Vec<i32> = children_of(&data)
        .iter()
        .filter(|p| p.contains("start-dev") && !p.split_once(": ").unwrap().1.starts_with("sh "))
        .map(|p| p.split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(temporal.len(), 1, "{:?}", children_of(&data));
    // SAFETY: kill(2) on a process this test's drift dev started.
    unsafe {
        libc::kill(temporal[0], libc::SIGKILL);
    }
    let failed = readyz_becomes(port, 503, Duration::from_secs(10));
    println!("dev: /readyz failed {failed:?} after Temporal was killed");
    assert!(
        failed.is_some_and(|t| t < Duration::from_secs(3)),
        "{failed:?}: {}",
        dev_log()
    );
    let back = readyz_becomes(port, 200, Duration::from_secs(120));
    println!("dev: /readyz ready again {back:?} later");
    assert!(back.is_some(), "{}", dev_log());
    let said = dev_log();
    assert!(
        said.contains("temporal exited unexpectedly") && said.contains("restarted temporal"),
        "{said}"
    );
    // Its data survived: the workflow started before goes on.
    let mut done = None;
    for _ in 0..30 {
        let r = send(
            http.put(format!("{base}/v3/workflow/resume/{id}"))
                .bearer_auth(key.trim())
                .json(&serde_json::json!({"viewResponse": {"selectedOptions": {"accountNumber": "11112222", "save": "save"}}})),
        )
        .await;
        let now = send(http.get(format!("{base}/v3/workflow/{id}")).bearer_auth(key.trim())).await;
        if status_of(&r) == "COMPLETED" || status_of(&now) == "COMPLETED" {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(done.is_some(), "the workflow went on after the restart: {}", dev_log());
    // SAFETY: kill(2) on the child we spawned.
    unsafe {
        libc::kill(dev.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(dev.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(children_of(&data), Vec::<String>::new(), "left behind");
}
