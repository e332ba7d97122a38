//! Mailbox-open throughput (filled in below).
fn main() {}
