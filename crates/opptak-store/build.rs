//! `sqlx::migrate!` embeds `migrations/` at compile time; without this an
//! edited migration alone would not rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
