//! `adoport sim` as scripts use it: `--port-latency-ms` delays every Port answer, and SIGUSR1
//! prints the requests each simulator received so far, and per kind against the minimum
//! (scripts/side-by-side.sh --bench).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The child, killed when the test ends (passing or not).
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("adoport sim printed a line within 30 s")
}

/// POSTs Port's token request; the time until the answer's status line.
fn token_request(address: &str) -> (String, Duration) {
    let body = r#"{"clientId":"sim-client","clientSecret":"sim-secret"}"#;
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).expect("the Port simulator accepts connections");
    write!(
        stream,
        "POST /v1/auth/access_token HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    let status = answer.lines().next().unwrap_or_default().to_string();
    (status, started.elapsed())
}

/// Starts `adoport sim` with `args` after the listen addresses; the child and its stdout lines.
fn start_sim(port_address: &str, args: &[&str]) -> (Sim, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adoport"))
        .args([
            "sim",
            "--ado-listen",
            "127.0.0.1:0",
            "--port-listen",
            port_address,
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("adoport sim starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let sim = Sim(child);
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    assert!(next_line(&lines).contains("organization URL"));
    assert!(next_line(&lines).contains(port_address));
    (sim, lines)
}

/// Sends SIGUSR1; the request report's kind rows and the totals line that follow.
fn report(sim: &Sim, lines: &mpsc::Receiver<String>) -> (Vec<String>, String) {
    let pid = sim.0.id().to_string();
    let signalled = Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let mut kinds = Vec::new();
    let totals = loop {
        let line = next_line(lines);
        match line.strip_prefix("azure_devops kind: ") {
            Some(row) => kinds.push(row.to_string()),
            None if line.starts_with("azure_devops route: ") => {}
            None => break line,
        }
    };
    (kinds, totals)
}

fn free_address() -> String {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    free.local_addr().expect("address").to_string()
}

#[test]
fn sim_delays_port_answers_and_reports_its_requests_on_sigusr1() {
    let port_address = free_address();
    let (sim, lines) = start_sim(
        &port_address,
        &[
            "--projects",
            "1",
            "--repositories",
            "1",
            "--ado-latency-ms",
            "300",
            "--port-latency-ms",
            "300",
        ],
    );

    let (status, took) = token_request(&port_address);
    assert!(status.contains("200"), "token request answered {status}");
    assert!(
        took >= Duration::from_millis(300),
        "the Port answer took {took:?}, less than --port-latency-ms 300"
    );

    // One line per row of the request report (made, minimum, kind) before the totals: none
    // made yet; the whole default mapping's minimum for 1 project of 1 repository.
    let (kinds, totals) = report(&sim, &lines);
    assert_eq!(totals, "requests: azure_devops=0 port=1");
    for row in [
        "0 1 projects (list; every kind)",
        "0 1 repository-policy",
        "0 2 work-item",
        "0 1 release",
    ] {
        assert!(kinds.iter().any(|k| k == row), "no {row:?} in {kinds:?}");
    }
}

/// `--work-items` and `--releases` size the organization (scripts/side-by-side.sh's
/// SIDE_BY_SIDE_* shapes): the minimum grows with them (a WIQL query and a batch read per 200
/// work items of a project; a page per 100 releases).
#[test]
fn sim_sizes_work_items_and_releases() {
    let port_address = free_address();
    let (sim, lines) = start_sim(
        &port_address,
        &[
            "--projects",
            "2",
            "--repositories",
            "1",
            "--work-items",
            "401",
            "--pull-requests",
            "5",
            "--releases",
            "101",
        ],
    );
    let (kinds, _) = report(&sim, &lines);
    for row in ["0 8 work-item", "0 4 release"] {
        assert!(kinds.iter().any(|k| k == row), "no {row:?} in {kinds:?}");
    }
}
