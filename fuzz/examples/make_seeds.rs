//! Writes the seed inputs in `seeds/<target>/` (see `waveguard_fuzz::seeds`).
//!
//! Run from `fuzz/` with `cargo run --example make_seeds` after a format or
//! fixture change, and commit the result. It overwrites seeds of the same
//! name and keeps others (such as former crash inputs kept as seeds).

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, name, bytes) in waveguard_fuzz::seeds::all() {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(&name), &bytes)?;
        println!("seeds/{target}/{name}: {} bytes", bytes.len());
    }
    Ok(())
}
