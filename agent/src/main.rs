//! `waveguard`: the endpoint agent and the vendor's and operator's command-line tool.
fn main() {}
