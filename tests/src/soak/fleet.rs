//! The processes under test: two replicas of each role (`adoport ingest`, `transform`,
//! `publish`), each an `adoport` child process with the environment a deployment gives it, on
//! fixed ports of its own (ingest's webhook port, every role's health port), so that a
//! replica restarted after a kill is found where it was, as behind a Kubernetes Service.
//!
//! The fleet kills replicas with `SIGKILL` (no goodbye: unacked deliveries go back to the
//! broker, open HTTP requests are cut) and starts them again, as a restart policy does. A
//! replica that exits by itself (e.g. it cannot read the mapping while Port is down) is
//! started again after a pause too, and counted: the soak reports such exits.
//!
//! Each replica's output (JSON log lines) is appended to `{role}-{n}.log` in the soak's
//! directory; the soak reads the publish replicas' logs for the reconciliation summaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// A role of the scaled-out stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Ingest,
    Transform,
    Publish,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Ingest, Role::Transform, Role::Publish];

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Transform => "transform",
            Role::Publish => "publish",
        }
    }
}

/// How to start `adoport ROLE`: a program and the arguments before the role (`[]` for the
/// `adoport` binary, `["adoport"]` for the soak binary, which runs `adoport` on request).
#[derive(Debug, Clone)]
pub struct Executable {
    pub program: PathBuf,
    pub arguments: Vec<String>,
}

/// One replica's slot: where it listens, and the process when it runs.
struct Replica {
    role: Role,
    index: usize,
    environment: Vec<(String, String)>,
    health_port: u16,
    webhook_port: Option<u16>,
    child: Option<Child>,
    /// Down on purpose (killed, and not yet started again by the soak).
    held_down: bool,
    starts: u32,
}

/// Replicas of every role.
pub struct Fleet {
    executable: Executable,
    directory: PathBuf,
    replicas: Mutex<Vec<Replica>>,
    /// Kills per role.
    kills: Mutex<BTreeMap<Role, u64>>,
    /// Exits nobody asked for (the replica was started again).
    exits: AtomicU64,
}

/// The fleet's figures.
#[derive(Debug, Clone, Default)]
pub struct FleetFigures {
    pub kills: BTreeMap<Role, u64>,
    pub exits: u64,
    pub starts: u64,
}

impl Fleet {
    /// Slots for `replicas` of every role, none started yet. `environment` is every role's;
    /// ports are added per replica.
    pub fn new(
        executable: Executable,
        directory: &Path,
        environment: &[(String, String)],
        replicas: usize,
    ) -> Fleet {
        let mut slots = Vec::new();
        for role in Role::ALL {
            for index in 0..replicas {
                let health_port = crate::free_port();
                let webhook_port = (role == Role::Ingest).then(crate::free_port);
                let mut environment = environment.to_vec();
                environment.push((
                    "ADOPORT__HEALTH__LISTEN".into(),
                    format!("127.0.0.1:{health_port}"),
                ));
                if let Some(port) = webhook_port {
                    environment.push((
                        "ADOPORT__INGEST__LISTEN".into(),
                        format!("127.0.0.1:{port}"),
                    ));
                }
                slots.push(Replica {
                    role,
                    index,
                    environment,
                    health_port,
                    webhook_port,
                    child: None,
                    held_down: false,
                    starts: 0,
                });
            }
        }
        Fleet {
            executable,
            directory: directory.to_path_buf(),
            replicas: Mutex::new(slots),
            kills: Mutex::new(BTreeMap::new()),
            exits: AtomicU64::new(0),
        }
    }

    /// The log file of a replica.
    pub fn log_path(&self, role: Role, index: usize) -> PathBuf {
        self.directory.join(format!("{}-{index}.log", role.name()))
    }

    /// Every replica's log file.
    pub async fn log_paths(&self, role: Role) -> Vec<PathBuf> {
        let replicas = self.replicas.lock().await;
        replicas
            .iter()
            .filter(|r| r.role == role)
            .map(|r| self.log_path(r.role, r.index))
            .collect()
    }

    /// The webhook URLs of the ingest replicas (`/integration/webhook` on each).
    pub async fn ingest_ports(&self) -> Vec<u16> {
        let replicas = self.replicas.lock().await;
        replicas.iter().filter_map(|r| r.webhook_port).collect()
    }

    /// How many replicas the fleet has.
    pub async fn replica_count(&self) -> usize {
        self.replicas.lock().await.len()
    }

    fn spawn(&self, replica: &mut Replica) -> std::io::Result<()> {
        let path = self.log_path(replica.role, replica.index);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        replica.starts += 1;
        use std::io::Write;
        writeln!(
            log,
            "{{\"soak\":\"start {} of {}-{}\"}}",
            replica.starts,
            replica.role.name(),
            replica.index
        )?;
        let errors = log.try_clone()?;
        let child = Command::new(&self.executable.program)
            .args(&self.executable.arguments)
            .arg(replica.role.name())
            .env_clear()
            .envs(replica.environment.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .kill_on_drop(true)
            .spawn()?;
        replica.child = Some(child);
        replica.held_down = false;
        Ok(())
    }

    /// Starts every replica that does not run.
    pub async fn start_all(&self) -> std::io::Result<()> {
        let mut replicas = self.replicas.lock().await;
        for replica in replicas.iter_mut() {
            if replica.child.is_none() {
                self.spawn(replica)?;
            }
        }
        Ok(())
    }

    /// Kills replica `slot` (modulo the fleet's size) with SIGKILL and keeps it down until
    /// [`Fleet::start`]; its role, or `None` when it was not running.
    pub async fn kill(&self, slot: usize) -> Option<(Role, usize)> {
        let mut replicas = self.replicas.lock().await;
        let count = replicas.len();
        let replica = replicas.get_mut(slot % count)?;
        let mut child = replica.child.take()?;
        // tokio's `start_kill` is SIGKILL on Unix.
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        replica.held_down = true;
        *self.kills.lock().await.entry(replica.role).or_default() += 1;
        Some((replica.role, replica.index))
    }

    /// Starts replica `slot` again if it is down.
    pub async fn start(&self, slot: usize) -> std::io::Result<()> {
        let mut replicas = self.replicas.lock().await;
        let count = replicas.len();
        if let Some(replica) = replicas.get_mut(slot % count)
            && replica.child.is_none()
        {
            self.spawn(replica)?;
        }
        Ok(())
    }

    /// Starts again the replicas that exited by themselves (not those held down); how many.
    pub async fn revive_exited(&self) -> std::io::Result<usize> {
        let mut replicas = self.replicas.lock().await;
        let mut revived = 0;
        for replica in replicas.iter_mut() {
            let exited = match replica.child.as_mut() {
                Some(child) => child.try_wait()?.is_some(),
                None => !replica.held_down,
            };
            if exited {
                replica.child = None;
                self.exits.fetch_add(1, Ordering::Relaxed);
                self.spawn(replica)?;
                revived += 1;
            }
        }
        Ok(revived)
    }

    /// Whether every replica runs and answers `/readyz` with 200.
    pub async fn all_ready(&self, http: &reqwest::Client) -> bool {
        let ports: Vec<Option<u16>> = {
            let mut replicas = self.replicas.lock().await;
            replicas
                .iter_mut()
                .map(|r| match r.child.as_mut().map(Child::try_wait) {
                    Some(Ok(None)) => Some(r.health_port),
                    _ => None,
                })
                .collect()
        };
        for port in ports {
            let Some(port) = port else {
                return false;
            };
            let ready = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !ready {
                return false;
            }
        }
        true
    }

    pub async fn figures(&self) -> FleetFigures {
        let replicas = self.replicas.lock().await;
        FleetFigures {
            kills: self.kills.lock().await.clone(),
            exits: self.exits.load(Ordering::Relaxed),
            starts: replicas.iter().map(|r| u64::from(r.starts)).sum(),
        }
    }

    /// Kills every replica (the end of the soak).
    pub async fn stop_all(&self) {
        let mut replicas = self.replicas.lock().await;
        for replica in replicas.iter_mut() {
            if let Some(mut child) = replica.child.take() {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            }
            replica.held_down = true;
        }
    }
}

/// Shared handle.
pub type SharedFleet = Arc<Fleet>;
