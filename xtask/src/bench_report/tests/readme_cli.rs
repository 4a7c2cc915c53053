//! The README table, in-place sections, load errors and the command line.

use super::*;

const README: &str = "# Project\n\nIntro.\n\n## Performance (H200)\n\nProse above.\n\n\
                      <!-- perf-table:start -->\n| | old | table |\n| --- | --- | --- |\n\
                      | a | b | c |\n<!-- perf-table:end -->\n\nProse below, kept as is.\n\n\
                      ## Next\n";

#[test]
fn readme_table_is_rewritten_between_the_markers_only() {
    let dir = scratch("readme");
    let crit = dir.join("criterion");
    issue11_run(&crit);
    let readme = dir.join("README.md");
    std::fs::write(&readme, README).unwrap();
    let out = dir.join("BENCHMARKS.md");
    let choice = ReadmeChoice::File(readme.clone());
    let written = generate(&crit, &out, false, &choice).unwrap();
    assert!(written.contains(&readme), "{written:?}");
    let doc = std::fs::read_to_string(&readme).unwrap();
    println!("{doc}");
    let (before, _) = README.split_once(readme::START).unwrap();
    let (_, after) = README.split_once(readme::END).unwrap();
    assert!(doc.starts_with(&format!("{before}{}\n", readme::START)));
    assert!(doc.ends_with(&format!("\n{}{after}", readme::END)));
    assert!(!doc.contains("| a | b | c |"), "old table kept");
    assert!(doc.contains(
        "Measured on NVIDIA H200 (real driver), kernel driver 580.159.04, CUDA driver API 13.0, \
         2026-11-22, full sizes: criterion medians, each ratio from one process"
    ));
    assert!(doc.contains("| What | Measured | Target | Result |"));
    assert!(doc.contains(
        "| Growth to 16 GiB, `GrowthPolicy::speed()` / raw doubling | 29.6 ms / 31.1 ms = 0.951x | <= 1.1x | pass |"
    ));
    assert!(doc.contains(
        "| Zero-hole `SparseArray` of 1 TiB (zero blocks <= 256 MiB): create | 151 ms | <= 250 ms | pass |"
    ));
    // One row per target, plus the header and its rule.
    let rows = doc.lines().filter(|l| l.starts_with("| ")).count();
    let run = Run::load(&crit, false).unwrap();
    assert_eq!(rows, 2 + targets::targets(&run).len());

    // Regenerating changes nothing.
    generate(&crit, &out, false, &choice).unwrap();
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), doc);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn readme_without_markers_is_a_clear_error_and_writes_nothing() {
    let dir = scratch("nomarkers");
    let crit = dir.join("criterion");
    issue11_run(&crit);
    let readme = dir.join("README.md");
    let out = dir.join("BENCHMARKS.md");
    let choice = ReadmeChoice::File(readme.clone());
    for marker in [readme::START, readme::END] {
        let text = README.replace(marker, "");
        std::fs::write(&readme, &text).unwrap();
        let err = generate(&crit, &out, false, &choice).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{} has no `{marker}` line: put `{}` and `{}` around the performance table",
                readme.display(),
                readme::START,
                readme::END
            )
        );
        assert_eq!(
            std::fs::read_to_string(&readme).unwrap(),
            text,
            "README changed"
        );
        assert!(!out.exists(), "BENCHMARKS.md written despite the error");
    }
    let twice = format!("{README}{}\n{}\n", readme::START, readme::END);
    let err = readme::replace_table(&twice, "t", &readme).unwrap_err();
    assert!(
        err.ends_with("has more than one `<!-- perf-table:start -->` marker"),
        "{err}"
    );
    let missing = dir.join("missing.md");
    let err = generate(&crit, &out, false, &ReadmeChoice::File(missing.clone())).unwrap_err();
    assert!(
        err.starts_with(&format!("cannot read {}", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_directory_and_bad_json_are_clear_errors() {
    let err = Run::load(Path::new("/nonexistent/criterion"), false).unwrap_err();
    assert!(
        err.contains("/nonexistent/criterion is not a directory"),
        "{err}"
    );
    let dir = scratch("empty");
    let err = Run::load(&dir, false).unwrap_err();
    assert!(err.starts_with("no criterion estimates"), "{err}");
    bench(&dir, "a/b", 1.0);
    std::fs::write(dir.join(RUN_FILE), "{\"gpu\": 3}").unwrap();
    let err = Run::load(&dir, false).unwrap_err();
    assert!(
        err.contains("cuda-vmm-run.json: invalid type: integer `3`, expected a string"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sections_are_replaced_in_place() {
    let doc = upsert_section(
        "# T\n\n<!-- bench-run: k -->\nold\n<!-- end bench-run: k -->\ntail\n",
        "k",
        "<!-- bench-run: k -->\nnew\n<!-- end bench-run: k -->\n",
    );
    assert_eq!(
        doc,
        "# T\n\n<!-- bench-run: k -->\nnew\n<!-- end bench-run: k -->\ntail\n"
    );
}

fn parse(args: &[&str]) -> Result<Options, String> {
    Options::parse(&mut lexopt::Parser::from_args(args))
}

#[test]
fn arguments() {
    assert_eq!(
        parse(&[]),
        Ok(Options {
            criterion: None,
            out: None,
            include_stale: false,
            readme: ReadmeChoice::Default,
        })
    );
    assert_eq!(
        parse(&[
            "--criterion",
            "c",
            "--out",
            "--o.md",
            "--include-stale",
            "--readme",
            "r.md"
        ]),
        Ok(Options {
            criterion: Some(PathBuf::from("c")),
            out: Some(PathBuf::from("--o.md")),
            include_stale: true,
            readme: ReadmeChoice::File(PathBuf::from("r.md")),
        })
    );
    assert_eq!(
        parse(&["--readme", "r.md", "--no-readme"]).map(|o| o.readme),
        Ok(ReadmeChoice::Skip)
    );
    let unknown = |a: &str| {
        Err(format!(
            "unknown argument `{a}` to `cargo xtask bench-report`"
        ))
    };
    assert_eq!(parse(&["pos"]), unknown("pos"));
    assert_eq!(parse(&["-x"]), unknown("-x"));
    assert_eq!(parse(&["--out=x"]), unknown("--out=x"));
    assert_eq!(parse(&["--no-readme=1"]), unknown("--no-readme=1"));
    for (flag, what) in [
        ("--criterion", "a directory"),
        ("--out", "a file name"),
        ("--readme", "a file name"),
    ] {
        assert_eq!(parse(&[flag]), Err(format!("{flag} needs {what}")));
    }
}
