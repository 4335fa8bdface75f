//! A private RabbitMQ node for tests that stop, kill or restart the broker: the shared broker
//! at 127.0.0.1:5672 serves every other test running at the same time and is never touched.
//!
//! The node is the installed RabbitMQ (3.10 on Debian) started as a child process with
//! everything of its own, through the variables `rabbitmq-server` reads: `RABBITMQ_NODENAME`
//! (unique), `RABBITMQ_NODE_IP_ADDRESS`/`RABBITMQ_NODE_PORT` (a free port of 127.0.0.1),
//! `RABBITMQ_DIST_PORT` (another free one), `RABBITMQ_MNESIA_BASE` and `RABBITMQ_LOG_BASE` (a
//! temporary directory), and `RABBITMQ_CONFIG_FILE`, `RABBITMQ_CONF_ENV_FILE`,
//! `RABBITMQ_ENABLED_PLUGINS_FILE` pointing there too (so `/etc/rabbitmq`, which configures
//! the shared node's listener, is not read), and `HOME` there (its own Erlang cookie). The
//! Debian wrapper `/usr/sbin/rabbitmq-server` switches to the `rabbitmq` user; the script
//! behind it (`/usr/lib/rabbitmq/bin/rabbitmq-server`) runs as we are. Set
//! `ADOPORT_TEST_RABBITMQ_SERVER` to use another script.
//!
//! Stopping is `SIGTERM` to the script, which stops the node gracefully (as a rolling upgrade
//! does: clients see their connections closed); killing is `SIGKILL` to the node's process
//! group. Starting again keeps the data: durable queues and confirmed messages survive, as
//! on a real restart. Dropping the node kills it and removes its directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How long a node may take to boot or to stop on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(90);

/// A RabbitMQ node of one test.
pub struct RabbitNode {
    dir: PathBuf,
    name: String,
    port: u16,
    dist_port: u16,
    child: Option<Child>,
}

/// A free TCP port of 127.0.0.1 (free when asked; the OS does not hand it out again soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn server_script() -> PathBuf {
    if let Ok(path) = std::env::var("ADOPORT_TEST_RABBITMQ_SERVER") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
    if debian.exists() {
        debian.to_path_buf()
    } else {
        PathBuf::from("rabbitmq-server")
    }
}

/// Sends `signal` to a process (`pid`) or, negative, to a process group.
fn signal(signal: &str, target: i64) {
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &target.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl RabbitNode {
    /// Starts a new node and waits until it accepts connections. Panics with the node's own
    /// output when it does not come up.
    pub async fn start() -> RabbitNode {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("adoport-rabbit-{}", &id[..12]));
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("node directory");
        }
        let port = free_port();
        let mut dist_port = free_port();
        while dist_port == port {
            dist_port = free_port();
        }
        let config = format!(
            "listeners.tcp.default = 127.0.0.1:{port}\n\
             # A test machine's disk is small and shared: do not stop publishers early.\n\
             disk_free_limit.absolute = 50MB\n"
        );
        std::fs::write(dir.join("rabbitmq.conf"), config).expect("node config");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("env file");
        let mut node = RabbitNode {
            name: format!("adoport-test-{}@localhost", &id[..12]),
            dir,
            port,
            dist_port,
            child: None,
        };
        node.start_again().await;
        node
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Where the node listens for AMQP.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the (stopped) node again, with its data, and waits until it accepts connections.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the node {} already runs", self.name);
        let output = std::fs::File::create(self.dir.join("server.out")).expect("output file");
        let errors = output.try_clone().expect("output file");
        let dir = &self.dir;
        let child = Command::new(server_script())
            .current_dir(dir)
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("node.pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            // Its own process group: killing the node reaches the Erlang VM and its helpers.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); is RabbitMQ installed (scripts/ensure-rabbitmq.sh)?",
                    server_script().display()
                )
            });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(self.address()).await.is_ok() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                panic!(
                    "RabbitMQ node {} exited ({status}) before accepting connections:\n{}",
                    self.name,
                    self.output_tail()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "RabbitMQ node {} did not accept connections within {PATIENCE:?}:\n{}",
                self.name,
                self.output_tail()
            );
            // Booting is a few seconds: look twice a second.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the node gracefully (connections are closed by the broker, as in a rolling
    /// upgrade) and waits until it is gone.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Some(pid) = child.id() else {
            return;
        };
        signal("-TERM", i64::from(pid));
        if tokio::time::timeout(PATIENCE, child.wait()).await.is_err() {
            self.kill_group(&mut child).await;
        }
        // Whatever the script left behind in its group (it should be nothing).
        signal("-KILL", -i64::from(pid));
    }

    /// Kills the node outright (`SIGKILL`): no goodbye to the clients.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.kill_group(&mut child).await;
        }
    }

    /// Stops the node, waits `down` more, and starts it again.
    pub async fn restart(&mut self, down: Duration) {
        self.stop().await;
        tokio::time::sleep(down).await;
        self.start_again().await;
    }

    async fn kill_group(&self, child: &mut Child) {
        if let Some(pid) = child.id() {
            signal("-KILL", -i64::from(pid));
        }
        let _ = tokio::time::timeout(PATIENCE, child.wait()).await;
    }

    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(pid) = child.id() {
                signal("-KILL", -i64::from(pid));
            }
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
