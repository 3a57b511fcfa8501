//! `waveguard-sim`: runs waveguard's protocol engines under a simulated network.
fn main() {}
