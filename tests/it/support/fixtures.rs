//! The golden RTMS messages under `tests/fixtures/rtms/`, read from disk:
//! one by name, all of them, or the server's. What they must decode to is
//! the tests' business.

use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rtms")
}

/// The fixture `{name}.json`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = dir().join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture as (file stem, bytes), sorted by name.
pub fn all() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir())
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_stem().expect("stem").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

/// The messages the server sends (`server_*.json`), sorted by name.
pub fn server_fixtures() -> Vec<(String, Vec<u8>)> {
    all()
        .into_iter()
        .filter(|(name, _)| name.starts_with("server_"))
        .collect()
}
