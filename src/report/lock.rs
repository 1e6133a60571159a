//! One writer per run folder. Every command that writes a folder (eval, knockout, lens, attention,
//! merge, demo) holds an exclusive advisory lock on `<folder>/.vidflow.lock` for its whole life.
//! The operating system releases the lock when the process ends, however it ends, so a folder left
//! by a killed run never blocks the next one; the file itself stays (deleting it on exit would let
//! a third process lock a fresh file while a second still holds the old one). The file's text
//! names the holder, so that a refused writer can say who holds the folder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const LOCK_FILE: &str = ".vidflow.lock";

/// Who holds a folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    /// UTC, ISO 8601.
    pub started: String,
}

impl Holder {
    fn current() -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started: utc_now(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "pid {} on {}, `{}`, started {}",
            self.pid, self.host, self.command, self.started
        )
    }
}

/// An exclusive hold on a run folder, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    dir: PathBuf,
}

impl FolderLock {
    /// Creates `dir` if needed and takes its lock, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(busy(dir, &mut file)),
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let text = serde_json::to_string(&Holder::current()).expect("holder serialises") + "\n";
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| Error::io(&path, e))?;
        Ok(FolderLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// Takes a shared hold on a folder that is only read (a shard being merged): refused while a
    /// writer holds it, so a merge never reads a shard that is still being written.
    pub fn acquire_shared(dir: &Path) -> Result<Option<FolderLock>> {
        let path = dir.join(LOCK_FILE);
        let mut file = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(FolderLock {
                _file: file,
                dir: dir.to_path_buf(),
            })),
            Err(TryLockError::WouldBlock) => Err(busy(dir, &mut file)),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn busy(dir: &Path, file: &mut File) -> Error {
    let mut text = String::new();
    let holder = file
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| serde_json::from_str::<Holder>(text.trim()).ok());
    let who = holder.map_or_else(
        || "another process (it has not yet written its name)".to_string(),
        |h| h.describe(),
    );
    Error::Data {
        path: dir.to_path_buf(),
        msg: format!(
            "this folder is being written by another vidflow run ({who}); a run folder has one \
             writer: wait for that run to end or choose another output folder"
        ),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_iso(secs)
}

/// Seconds since the Unix epoch as a UTC date and time (the civil-from-days algorithm).
fn utc_iso(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc_iso(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC (a leap day), from `date -u -d @951827696`.
        assert_eq!(utc_iso(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(utc_iso(1_798_761_600), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn a_second_writer_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = FolderLock::acquire(dir.path()).unwrap();
        let e = FolderLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("being written by another vidflow run"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        let e = FolderLock::acquire_shared(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("being written"), "{e}");
        drop(first);
        let again = FolderLock::acquire(dir.path()).unwrap();
        drop(again);
        assert!(FolderLock::acquire_shared(dir.path()).unwrap().is_some());
    }
}
