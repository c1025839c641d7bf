#[test]
fn t() {
    let st = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "wb-cli", "--bin", "wb"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(st.success());
}
