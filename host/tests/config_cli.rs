//! `dinoedge run --config FILE` as the service runs it: a good file runs, a misspelt key or a
//! bad value is refused naming the key, and the file cannot be mixed with flags.

use crate::common::{dinoedge, fixture_model};

#[test]
fn a_config_runs_a_replay_and_a_bad_one_is_refused_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = crate::common::import_echo_cine(tmp.path());
    let results = tmp.path().join("results.jsonl");
    let config = tmp.path().join("dinoedge.toml");
    let good = format!(
        "[source]\nreplay = {rec:?}\n\n[model]\ndir = {model:?}\nsize = \"64x64\"\n\n\
         [run]\npolicy = \"offline\"\n\n[results]\nfile = {results:?}\n",
        rec = rec.to_str().unwrap(),
        model = fixture_model("tiny_mlp"),
        results = results.to_str().unwrap(),
    );
    std::fs::write(&config, &good).unwrap();
    let config_s = config.to_str().unwrap();
    let (code, _, err) = dinoedge(&["run", "--config", config_s]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        30
    );

    // A misspelt key: refused, named, nothing run.
    std::fs::write(&config, good.replace("[results]\nfile", "[results]\nfiel")).unwrap();
    let (code, _, err) = dinoedge(&["run", "--config", config_s]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `fiel`"), "{err}");
    // A value its flag refuses: named by its key.
    std::fs::write(&config, good.replace("64x64", "64by64")).unwrap();
    let (code, _, err) = dinoedge(&["run", "--config", config_s]);
    assert_eq!(code, 2);
    assert!(
        err.contains("key model.size") && err.contains("64by64"),
        "{err}"
    );
    // A value of the wrong kind.
    std::fs::write(&config, good.replace("policy = \"offline\"", "policy = 3")).unwrap();
    let (code, _, err) = dinoedge(&["run", "--config", config_s]);
    assert_eq!(code, 2);
    assert!(err.contains("policy"), "{err}");
    // The file and flags together: refused.
    let (code, _, err) = dinoedge(&["run", "--config", config_s, "--frames", "3"]);
    assert_eq!(code, 2);
    assert!(err.contains("--config"), "{err}");
    // A file that is not there.
    let (code, _, err) = dinoedge(&["run", "--config", "/nonexistent/dinoedge.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/dinoedge.toml"), "{err}");
}
