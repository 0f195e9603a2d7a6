//! Configuration files (read from disk as `leadsync` does): every problem names its key or line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leadsync.toml");
    std::fs::write(&path, data).unwrap();
    let report = leadsync::config::report_with_env(Some(&path), Vec::<(String, String)>::new());
    for e in &report.problems.0 {
        assert_eq!(e.file, path);
        assert!(
            e.line > 0 || !e.field.is_empty(),
            "a configuration error that says neither key nor line: {e}"
        );
        assert!(!e.message.is_empty());
    }
});
