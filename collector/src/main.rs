//! Cordon's collector. Ingest, storage and the API arrive with the uplink.

fn main() {
    println!("cordon-collector {}", env!("CARGO_PKG_VERSION"));
}
