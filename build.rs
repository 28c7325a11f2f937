//! Marks the Postgres variants of the integration tests `#[ignore]` when no Postgres URL is given at
//! build time, so a run without Postgres reports them as ignored (with the reason) instead of "ok".

fn main() {
    println!("cargo:rerun-if-env-changed=CHIME_TEST_POSTGRES_URL");
    println!("cargo:rustc-check-cfg=cfg(chime_no_postgres)");
    let given = std::env::var("CHIME_TEST_POSTGRES_URL").is_ok_and(|v| !v.trim().is_empty());
    if !given {
        println!("cargo:rustc-cfg=chime_no_postgres");
    }
}
