//! Explain throughput on a generated HAR (filled in below).
fn main() {}
