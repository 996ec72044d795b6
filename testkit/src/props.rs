//! The property tests' shared settings (`proptest`).

use proptest::test_runner::Config;

/// `cases` per property unless `PROPTEST_CASES` asks for another number;
/// found cases are kept as plain tests, not in persistence files.
pub fn config(cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}
