//! Every parser that reads untrusted bytes, held to what its fuzz target
//! asserts. Each module's `check` is the body of one cargo-fuzz target
//! (`fuzz/fuzz_targets/`, which include these files); here the same checks
//! replay every saved input, so CI guards them without the fuzzer: the seed
//! corpora made from real artefacts (`fuzz/seeds/<target>/`, by
//! `fuzz/seeds/generate.sh`) and the inputs that once failed
//! (`fuzz/regressions/<target>/`). The Ed25519 module also holds the
//! differential tests of the single and the batch signature check.
//! docs/security.md ("Fuzzing") tells how to run the fuzzer.

mod ed25519;
mod id_token;
mod krl;
mod policy;
mod proof;
mod subject_key;

use std::path::{Path, PathBuf};

/// The body of a fuzz target: panics when `data` breaks what it asserts.
type Check = fn(&[u8]);

/// The fuzz targets, by the names of their binaries in `fuzz/Cargo.toml`,
/// and the check each runs.
const TARGETS: [(&str, Check); 6] = [
    ("ed25519", ed25519::check),
    ("id_token", id_token::check),
    ("krl", krl::check),
    ("policy", policy::check),
    ("proof", proof::check),
    ("subject_key", subject_key::check),
];

#[test]
fn ed25519_inputs_pass_their_check() {
    replay("ed25519");
}

#[test]
fn id_token_inputs_pass_their_check() {
    replay("id_token");
}

#[test]
fn krl_inputs_pass_their_check() {
    replay("krl");
}

#[test]
fn policy_inputs_pass_their_check() {
    replay("policy");
}

#[test]
fn proof_inputs_pass_their_check() {
    replay("proof");
}

#[test]
fn subject_key_inputs_pass_their_check() {
    replay("subject_key");
}

#[test]
fn every_fuzz_target_is_replayed_here_and_has_seeds() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut declared: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|name| name.strip_suffix('"'))
        .filter(|name| *name != "jit-ssh-fuzz")
        .collect();
    declared.sort_unstable();
    let replayed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(declared, replayed);
    for target in replayed {
        assert!(
            !inputs(&fuzz_dir().join("seeds").join(target)).is_empty(),
            "no seeds for {target}"
        );
    }
}

/// Runs the check of `target` on each of its seeds and regression inputs,
/// and names every input that fails it.
fn replay(target: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let mut failed = Vec::new();
    let mut count = 0;
    for kind in ["seeds", "regressions"] {
        for path in inputs(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&path).expect("input");
            count += 1;
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs: {failed:#?}");
    assert!(count > 0, "{target}: no inputs");
}

/// The files in `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}
