//! Where recordings live and what their names say:
//! `{RECORDINGS_DIR}/{engagement}/{start_ms}-{channel}.wav`.
//!
//! Ids come from Zoom (and, for downloads, from a URL), so they never reach
//! a path as they are: every byte outside `[A-Za-z0-9_-]` is written `%XX`
//! (so no `/`, no `.`, no `..`; distinct ids give distinct names), and
//! overlong ids name nothing. `start_ms` is Zoom's timestamp of the file's
//! first sample (the file then follows wall-clock time). Directories are
//! created owner-only (0700), files 0600. Blocking file-system calls: run
//! off the async threads. Never decides who may read a file.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

/// Longest engagement id recorded (bytes, before encoding).
pub const MAX_ENGAGEMENT_ID: usize = 80;
/// Longest channel id recorded.
pub const MAX_CHANNEL_ID: usize = 32;
/// In an engagement's directory: the user id of its agent, so removing the
/// app deletes their recordings even once the engagement itself is forgotten.
pub const AGENT_FILE: &str = ".agent";

/// One recording, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recording {
    /// The file name (what the download route takes).
    pub file: String,
    /// Zoom's channel id.
    pub channel: String,
    /// Zoom's timestamp of the first sample (Unix ms).
    pub started_ms: i64,
    pub bytes: u64,
    /// Length of the audio, from the file's size.
    pub duration_ms: u64,
    /// Last written (Unix ms).
    pub modified_ms: i64,
}

fn encode(id: &str, max: usize) -> Option<String> {
    if id.is_empty() || id.len() > max {
        return None;
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// `s` as one URL path segment: everything but `A-Z a-z 0-9 _ - . ~` as
/// `%XX` (the router decodes it back).
pub fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_-.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The directory name of an engagement's recordings.
pub fn engagement_dir(engagement_id: &str) -> Option<String> {
    encode(engagement_id, MAX_ENGAGEMENT_ID)
}

/// The file name of a channel's recording starting at `start_ms`.
pub fn file_name(start_ms: i64, channel: &str) -> Option<String> {
    Some(format!(
        "{}-{}.wav",
        start_ms.max(0),
        encode(channel, MAX_CHANNEL_ID)?
    ))
}

/// `(start_ms, channel id)` of a recording's file name; None for anything
/// [`file_name`] does not make (so a name from a URL is safe to join).
pub fn parse_file_name(name: &str) -> Option<(i64, String)> {
    let stem = name.strip_suffix(".wav")?;
    let (start, channel) = stem.split_once('-')?;
    if start.is_empty() || start.len() > 15 || !start.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let start: i64 = start.parse().ok()?;
    let channel = decode(channel)?;
    (file_name(start, &channel)? == name).then_some((start, channel))
}

/// Create `dir` (and parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Create a new recording file (0600), never replacing one.
pub fn create_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Name `user_id` as the agent of the recordings in `dir` (created if need be).
pub fn write_agent(dir: &Path, user_id: &str) -> io::Result<()> {
    use std::io::Write as _;
    create_private_dir(dir)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join(AGENT_FILE))?;
    f.write_all(user_id.as_bytes())
}

/// The engagement directories under `root` whose agent is `user_id`.
pub fn dirs_of_agent(root: &Path, user_id: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| fs::read(e.path().join(AGENT_FILE)).is_ok_and(|who| who == user_id.as_bytes()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| decode(n).is_some())
        .collect()
}

fn modified_ms(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The recordings in one engagement's directory, oldest first.
pub fn list(dir: &Path) -> Vec<Recording> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Recording> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (started_ms, channel) = parse_file_name(&name)?;
            let meta = e.metadata().ok().filter(fs::Metadata::is_file)?;
            Some(Recording {
                file: name,
                channel,
                started_ms,
                bytes: meta.len(),
                // 44 header bytes; 32 bytes per ms at 16 kHz, 16-bit.
                duration_ms: meta.len().saturating_sub(44) / 32,
                modified_ms: modified_ms(&meta),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.started_ms, &a.channel).cmp(&(b.started_ms, &b.channel)));
    out
}

/// Remove an engagement's directory; the number of recordings this call
/// removed (exact even when two deletions race).
pub fn remove_dir(dir: &Path) -> usize {
    let n = list(dir)
        .iter()
        .filter(|r| fs::remove_file(dir.join(&r.file)).is_ok())
        .count();
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, "deleting recordings"),
    }
    n
}

/// Past retention: last written more than `retention` before `now_ms`.
pub fn expired(modified_ms: i64, now_ms: i64, retention: Duration) -> bool {
    let keep = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    now_ms.saturating_sub(modified_ms) > keep
}

/// Delete every recording past retention under `root`, and directories
/// left empty; the number of recordings removed.
pub fn sweep(root: &Path, now_ms: i64, retention: Duration) -> usize {
    let mut files = 0;
    let Ok(entries) = fs::read_dir(root) else {
        return files;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| decode(n).is_some());
        if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let all = list(&path);
        for r in &all {
            if expired(r.modified_ms, now_ms, retention)
                && fs::remove_file(path.join(&r.file)).is_ok()
            {
                files += 1;
            }
        }
        // No recording left, and its agent note is old too: gone (a new
        // note is a stream about to write).
        let note_expired = fs::metadata(path.join(AGENT_FILE))
            .map_or(true, |m| expired(modified_ms(&m), now_ms, retention));
        if list(&path).is_empty() && note_expired {
            let _ = fs::remove_dir_all(&path);
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_so_no_name_escapes_or_collides() {
        assert_eq!(engagement_dir("eng-1_A").as_deref(), Some("eng-1_A"));
        assert_eq!(engagement_dir("..").as_deref(), Some("%2E%2E"));
        assert_eq!(engagement_dir("a/b").as_deref(), Some("a%2Fb"));
        assert_eq!(engagement_dir("a%2Fb").as_deref(), Some("a%252Fb"));
        assert_eq!(engagement_dir("x=="), Some("x%3D%3D".to_owned()));
        assert_eq!(engagement_dir(""), None);
        assert_eq!(engagement_dir(&"a".repeat(81)), None);
        assert_eq!(decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(decode("a/b"), None);
        assert_eq!(decode("%2"), None);
        assert_eq!(url_segment("a b/c%.wav"), "a%20b%2Fc%25.wav");
    }

    #[test]
    fn only_names_the_recorder_makes_parse() {
        let name = file_name(1_700_000_000_000, "1").expect("name");
        assert_eq!(name, "1700000000000-1.wav");
        assert_eq!(
            parse_file_name(&name),
            Some((1_700_000_000_000, "1".into()))
        );
        let odd = file_name(5, "a b").expect("name");
        assert_eq!(parse_file_name(&odd), Some((5, "a b".into())));
        for bad in [
            "../1-1.wav",
            "1-1.wav/..",
            "1-.wav",
            "-1.wav",
            "x-1.wav",
            "1-1.WAV",
            "1-a/b.wav",
            "1-%2e.wav",
            "01-1.wav",
            "1-1.wav.part",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn retention_counts_from_the_last_write() {
        let day = Duration::from_secs(86_400);
        assert!(!expired(1_000, 1_000 + 86_400_000, day));
        assert!(expired(1_000, 1_000 + 86_400_001, day));
        assert!(
            !expired(5_000, 1_000, day),
            "a clock that went back keeps it"
        );
    }

    #[test]
    fn the_sweep_removes_old_recordings_and_empty_directories() {
        let root = tempfile::tempdir().expect("tempdir");
        let eng = root.path().join("e1");
        create_private_dir(&eng).expect("dir");
        create_file(&eng.join("10-1.wav")).expect("file");
        write_agent(&eng, "ann").expect("agent");
        let stray = root.path().join("notes.txt");
        fs::write(&stray, "kept").expect("write");
        let now = crate::time::now_ms();
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(sweep(root.path(), now, week), 0);
        assert_eq!(list(&eng).len(), 1, "the agent note is no recording");
        assert_eq!(dirs_of_agent(root.path(), "ann"), ["e1"]);
        assert!(dirs_of_agent(root.path(), "an").is_empty());
        let later = now + 8 * 86_400_000;
        assert_eq!(sweep(root.path(), later, week), 1);
        assert!(!eng.exists());
        assert!(stray.exists(), "only recordings are touched");
    }

    #[test]
    fn files_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b");
        create_private_dir(&dir).expect("dir");
        let path = dir.join("1-1.wav");
        create_file(&path).expect("file");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(create_file(&path).is_err(), "never replaced");
    }
}
