//! Rebuilds the binary when a file of the web console is added or removed: rust-embed notices
//! changes to the files it embedded, not new ones.

fn main() {
    println!("cargo:rerun-if-changed=../../console/app");
    println!("cargo:rerun-if-changed=../../console/vendor");
}
