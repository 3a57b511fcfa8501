//! Replays a `node_inputs` input file and prints every step and output, to
//! read what a crashing input does: `cargo run --example trace_node -- <file>`.

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: trace_node <input file>");
        std::process::exit(2);
    };
    let data = std::fs::read(path)?;
    let summary = waveguard_fuzz::node_inputs::trace(&data);
    println!("{summary:#?}");
    Ok(())
}
