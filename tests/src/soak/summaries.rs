//! How each resync ended, as the publish replicas log it (one JSON line, with `resync_id`),
//! read from their log files as they grow: how the soak knows which resyncs were reconciled and
//! waits for the final one's, whichever replica's coordinator reconciled it.
//!
//! The coordinator logs the outcome as soon as it has deleted (`"reconciliation deleted the
//! entities the resync no longer produced"`: completed), refused to (`"mass deletion
//! refused"`, `"resync incomplete; no entity is deleted"`) or was superseded; the `"resync
//! summary"` line with its `status` comes later (it waits, up to a minute, for the process's
//! publish worker's counts) and has the last word.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde_json::Value;

/// The summaries seen so far, by resync id.
#[derive(Debug, Default)]
pub struct Summaries {
    offsets: HashMap<PathBuf, u64>,
    partial: HashMap<PathBuf, String>,
    /// Resync id → status (`completed`, `deletion_refused`, `failed`) and deleted count.
    pub by_resync: BTreeMap<String, (String, u64)>,
}

impl Summaries {
    /// Reads what `files` gained since the last call.
    pub fn scan(&mut self, files: &[PathBuf]) {
        for path in files {
            let Ok(mut file) = std::fs::File::open(path) else {
                continue;
            };
            let offset = self.offsets.get(path).copied().unwrap_or(0);
            if file.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_err() {
                continue;
            }
            self.offsets
                .insert(path.clone(), offset + bytes.len() as u64);
            let mut text = self.partial.remove(path).unwrap_or_default();
            text.push_str(&String::from_utf8_lossy(&bytes));
            let complete = text.ends_with('\n');
            let mut lines: Vec<&str> = text.lines().collect();
            if !complete && let Some(last) = lines.pop() {
                self.partial.insert(path.clone(), last.to_string());
            }
            for line in lines {
                self.read_line(line);
            }
        }
    }

    fn read_line(&mut self, line: &str) {
        if !line.contains("resync") {
            return;
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let field = |name: &str| {
            value
                .get(name)
                .or_else(|| value.get("fields").and_then(|f| f.get(name)))
                .cloned()
        };
        if field("message")
            .and_then(|m| m.as_str().map(str::to_string))
            .as_deref()
            != Some("resync summary")
        {
            return;
        }
        let (Some(Value::String(id)), Some(Value::String(status))) =
            (field("resync_id"), field("status"))
        else {
            return;
        };
        let deleted = field("deleted").and_then(|d| d.as_u64()).unwrap_or(0);
        self.by_resync.insert(id, (status, deleted));
    }

    /// The status of one resync's summary, if logged.
    pub fn status(&self, resync_id: &str) -> Option<&str> {
        self.by_resync.get(resync_id).map(|(s, _)| s.as_str())
    }

    /// Resyncs per summary status.
    pub fn per_status(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (status, _) in self.by_resync.values() {
            *out.entry(status.clone()).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_read_across_partial_writes() {
        let dir =
            std::env::temp_dir().join(format!("soak-summaries-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("publish-0.log");
        let line = r#"{"timestamp":"t","level":"INFO","message":"resync summary","resync_id":"r1","status":"completed","deleted":3,"target":"x"}"#;
        let (head, tail) = line.split_at(40);
        std::fs::write(&path, format!("{{\"soak\":\"start\"}}\n{head}")).expect("write");
        let mut summaries = Summaries::default();
        summaries.scan(std::slice::from_ref(&path));
        assert_eq!(summaries.status("r1"), None);
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        writeln!(file, "{tail}").expect("append");
        summaries.scan(std::slice::from_ref(&path));
        assert_eq!(summaries.status("r1"), Some("completed"));
        assert_eq!(summaries.per_status().get("completed"), Some(&1));
        let _ = std::fs::remove_dir_all(dir);
    }
}
