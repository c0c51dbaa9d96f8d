//! A full disk on demand: a small tmpfs mounted on a fresh temp dir (root
//! only), filled with one file, unmounted when dropped.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A tmpfs of `mb` megabytes mounted on a fresh temp dir; unmounted when
/// dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(mb: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mounting a tmpfs needs root (CAP_SYS_ADMIN)");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill what is left with one file; returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        // Bounded: the tmpfs is a few MB.
        for _ in 0..10_000 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
